/**
 * The sync loop under faults: a server restarted in the middle of sync (new process state, same
 * data directory), a push whose ack was lost, and a large offline queue.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import { mintUserToken } from '../server/auth.js';
import { createServer, type RunningServer } from '../server/server.js';
import type { Engine } from '../worker/engine.js';
import type { Connector } from '../worker/sync/connection.js';
import { Replica } from '../worker/sync/replica.js';
import { SyncLoop } from '../worker/sync/sync-loop.js';
import { webSocketConnector } from '../worker/sync/websocket-connection.js';
import { openEngine, todoSchema } from './helpers/engine.js';
import { waitFor } from './helpers/instance.js';
import { syncUrl } from './helpers/server.js';

const dirs: string[] = [];
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

async function serverOn(dataDir: string, port = 0): Promise<RunningServer> {
  const server = await createServer({ dataDir, port, adminKey: 'admin', log: null });
  cleanups.push(() => server.close());
  return server;
}

function loop(engine: Engine, url: string, token: string, connect?: Connector): SyncLoop {
  const sync = new SyncLoop(engine, new Replica(engine), { url, token: () => token, WebSocket, ...(connect ? { connect } : {}) });
  cleanups.push(() => sync.stop());
  return sync;
}

const count = (engine: Engine) => Number(engine.query('SELECT count(*) AS n FROM todos')[0]?.n);

describe('sync under faults', () => {
  it('loses and duplicates nothing when the server restarts in the middle of sync', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'pocketsync-restart-'));
    dirs.push(dataDir);
    let server = await serverOn(dataDir);
    const project = await server.store.createProject({ id: 'p', secret: 's'.repeat(32) });
    const token = await mintUserToken(project, 'alice');
    const url = syncUrl(server);
    const port = server.port;
    const a = await openEngine({ schema: todoSchema, deviceId: 'device-a' });
    const b = await openEngine({ schema: todoSchema, deviceId: 'device-b' });
    const syncA = loop(a, url, token);
    const syncB = loop(b, url, token);
    syncA.start();
    syncB.start();
    await waitFor(() => syncA.status.state === 'live' && syncB.status.state === 'live');
    for (let i = 0; i < 300; i++) {
      a.insert('todos', { title: `a${i}` });
      if (i % 50 === 0) syncA.localWrite();
      if (i === 150) {
        await server.close(); // in the middle of the stream
        server = await serverOn(dataDir, port);
      }
    }
    syncA.localWrite();
    await waitFor(() => count(b) === 300 && syncA.status.pending === 0, 15_000, 'all 300 rows on B');
    expect(Number(b.query('SELECT count(DISTINCT ps_global_id) AS n FROM todos')[0]?.n)).toBe(300);
    const pulled = await server.store.pull({ projectId: 'p', scopes: ['shared', 'user:alice'], cursor: 0, limit: 5000 });
    expect(pulled.changes).toHaveLength(300);
  });

  it('applies a push retried after a lost ack once', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'pocketsync-retry-'));
    dirs.push(dataDir);
    const server = await serverOn(dataDir);
    const project = await server.store.createProject({ id: 'p', secret: 's'.repeat(32) });
    const a = await openEngine({ schema: todoSchema, deviceId: 'device-a' });
    a.insert('todos', { title: 'once' });
    const replica = new Replica(a);
    const changes = replica.pending(100);
    // The first push commits but its ack never reaches the device...
    await server.store.push({ projectId: 'p', userId: 'alice', deviceId: 'device-a', deviceCursor: 0, changes });
    expect(replica.pendingCount()).toBe(1);
    // ...so the loop pushes it again after connecting.
    const sync = loop(a, syncUrl(server), await mintUserToken(project, 'alice'));
    sync.start();
    await waitFor(() => sync.status.state === 'live' && sync.status.pending === 0, 5_000, 'the retried push’s ack');
    expect(await server.store.currentSeq('p')).toBe(1);
    expect(count(a)).toBe(1);
  });

  it('delivers 20,000 changes queued offline', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'pocketsync-queue-'));
    dirs.push(dataDir);
    const server = await serverOn(dataDir);
    const project = await server.store.createProject({ id: 'p', secret: 's'.repeat(32) });
    const token = await mintUserToken(project, 'alice');
    const url = syncUrl(server);
    const a = await openEngine({ schema: todoSchema, deviceId: 'device-a' });
    a.begin();
    for (let i = 0; i < 20_000; i++) a.insert('todos', { title: `t${i}` });
    a.commit();
    const b = await openEngine({ schema: todoSchema, deviceId: 'device-b' });
    const syncA = loop(a, url, token);
    syncA.start();
    await waitFor(() => syncA.status.state === 'live' && syncA.status.pending === 0, 60_000, 'A’s queue to drain');
    const syncB = loop(b, url, token);
    syncB.start();
    await waitFor(() => count(b) === 20_000, 60_000, 'all 20,000 on B');
    expect(await server.store.currentSeq('p')).toBe(20_000);
  }, 120_000);

  it('parses every frame from the server: a malformed one is kind invalid, applies nothing of it, and the connection starts over', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'pocketsync-frames-'));
    dirs.push(dataDir);
    const server = await serverOn(dataDir);
    const project = await server.store.createProject({ id: 'p', secret: 's'.repeat(32) });
    const token = await mintUserToken(project, 'alice');
    const url = syncUrl(server);
    const a = await openEngine({ schema: todoSchema, deviceId: 'device-a' });
    const b = await openEngine({ schema: todoSchema, deviceId: 'device-b' });
    // Two rows at the server before B connects, so that B's catch-up brings both in one frame.
    const syncA = loop(a, url, token);
    syncA.start();
    a.insert('todos', { title: 'one' });
    a.insert('todos', { title: 'two' });
    syncA.localWrite();
    await waitFor(() => syncA.status.state === 'live' && syncA.status.pending === 0, 5_000, 'A’s push');

    // B's transport spoils frames on their way in: first a frame that is not JSON, then the batch
    // with its second row's value made an integer that is not one; later frames pass untouched.
    const spoil: Array<(frame: string) => string> = [
      () => '{"type":"changes","changes":[',
      (frame) => {
        const batch = JSON.parse(frame) as { changes: Array<{ values: Record<string, unknown> }> };
        batch.changes[1]!.values.title = { $int: '12abc' };
        return JSON.stringify(batch);
      },
    ];
    let attempts = 0;
    const real = webSocketConnector(WebSocket);
    const spoiling: Connector = (target, handlers) => {
      attempts++;
      return real(target, { ...handlers, onMessage: (frame) => handlers.onMessage((spoil.shift() ?? ((f: string) => f))(frame)) });
    };
    const errors: Array<{ kind: string; message: string; rows: number }> = [];
    const syncB = new SyncLoop(b, new Replica(b), {
      url, token: () => token, connect: spoiling, retry: { initialMs: 20, maxMs: 100 },
      onStatus: (status) => {
        if (status.error && errors.at(-1)?.message !== status.error.message) errors.push({ ...status.error, rows: count(b) });
      },
    });
    cleanups.push(() => syncB.stop());
    syncB.start();
    await waitFor(() => syncB.status.state === 'live' && count(b) === 2, 5_000, 'B to catch up in the end');
    expect(errors).toEqual([
      { kind: 'invalid', message: expect.stringMatching(/not JSON/), rows: 0 },
      { kind: 'invalid', message: expect.stringMatching(/malformed frame \(at changes\.1\.values\.title\.\$int\): not a 64-bit integer/), rows: 0 },
    ]);
    expect(attempts).toBe(3);
    expect(syncB.status.error).toBeNull();
  });
});
