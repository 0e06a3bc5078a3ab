/**
 * Tombstone garbage collection, end to end: real engines and SyncLoops over real sockets, a server
 * with a file store whose compaction forgot the deletes a device had not yet seen. That device
 * re-syncs its scopes in full: it ends with exactly the server's rows, and none of its own pending
 * writes is lost, also when the re-sync is cut off half way.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { afterEach, expect, it } from 'vitest';
import { mintUserToken } from '../server/auth.js';
import { createServer, type RunningServer } from '../server/server.js';
import { SqliteStore } from '../server/store/sqlite-store.js';
import type { Project } from '../server/store/store.js';
import type { Engine } from '../worker/engine.js';
import { Replica } from '../worker/sync/replica.js';
import { SyncLoop } from '../worker/sync/sync-loop.js';
import { FaultyTransport } from './chaos/transport.js';
import { openEngine, todoSchema } from './helpers/engine.js';
import { waitFor } from './helpers/instance.js';
import { syncUrl } from './helpers/server.js';

let server: RunningServer | null = null;
let dir = '';
const loops: SyncLoop[] = [];

afterEach(async () => {
  for (const loop of loops.splice(0)) loop.stop();
  if (server) {
    await server.close();
    await server.store.close();
    server = null;
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function start(): Promise<{ server: RunningServer; project: Project }> {
  dir = mkdtempSync(join(tmpdir(), 'pocketsync-retention-'));
  const store = new SqliteStore(join(dir, 'store.db'));
  const project = await store.createProject({ id: 'p', secret: 's'.repeat(32) });
  // Small batches, so that a re-sync takes several; compaction only when the test asks.
  server = await createServer({ store, adminKey: 'admin', log: null, batchSize: 2, retention: { tombstonesMs: 1, compactEveryMs: 3_600_000 } });
  return { server, project };
}

interface Device {
  readonly engine: Engine;
  readonly replica: Replica;
  readonly loop: SyncLoop;
  readonly transport: FaultyTransport;
}

async function device(s: RunningServer, project: Project, name: string): Promise<Device> {
  const token = await mintUserToken(project, 'alice');
  const engine = await openEngine({ schema: todoSchema, deviceId: name });
  const replica = new Replica(engine);
  const transport = new FaultyTransport();
  const loop = new SyncLoop(engine, replica, { url: syncUrl(s), token: () => token, connect: transport.connect, WebSocket, pushDelayMs: 0 });
  loops.push(loop);
  return { engine, replica, loop, transport };
}

const rows = (engine: Engine) => engine.query('SELECT ps_global_id AS id, title FROM todos ORDER BY ps_global_id');
const live = (...devices: Device[]) => devices.every((d) => d.loop.status.state === 'live' && d.loop.status.pending === 0);

async function serverRows(s: RunningServer): Promise<Array<{ id: string; title: unknown }>> {
  const { changes } = await s.store.pull({ projectId: 'p', scopes: ['user:alice'], cursor: 0, limit: 1000, fresh: true });
  return changes.map((c) => ({ id: c.row, title: c.values?.title ?? null })).sort((a, b) => (a.id < b.id ? -1 : 1));
}

/** A and B share eight rows; B goes offline; A deletes two and edits one; the server forgets the deletes. */
async function forgottenDeletes(s: RunningServer, a: Device, b: Device): Promise<{ ids: string[] }> {
  a.loop.start();
  b.loop.start();
  const ids = ['one', 'two', 'three', 'four', 'six', 'seven', 'eight', 'nine'].map((title) => a.engine.insert('todos', { title })!);
  a.loop.localWrite();
  await waitFor(() => live(a, b) && rows(b.engine).length === 8, 8_000, 'the rows on both');
  b.loop.stop();
  a.engine.delete('todos', { ps_global_id: ids[1]! });
  a.engine.delete('todos', { ps_global_id: ids[2]! });
  a.engine.update('todos', { title: 'one, edited' }, { ps_global_id: ids[0]! });
  a.loop.localWrite();
  await waitFor(async () => live(a) && (await serverRows(s)).length === 6, 5_000, "A's edits at the server");
  // Compaction with a 1 ms retention: once a millisecond has passed, both tombstones (one commit) go.
  const retention = { changeLogMs: 3_600_000, conflictsMs: 3_600_000, tombstonesMs: 1, compactEveryMs: 3_600_000 };
  await waitFor(async () => (await s.store.compact(retention)).tombstones === 2, 5_000, 'the tombstones forgotten');
  // B, offline: an edit of a row that lives, and a new row.
  b.engine.update('todos', { title: 'four, edited on B' }, { ps_global_id: ids[3]! });
  b.engine.insert('todos', { title: 'five, from B' });
  return { ids };
}

it('a device whose cursor is older than the tombstone horizon re-syncs: it drops the deleted rows and keeps its pending writes', async () => {
  const { server: s, project } = await start();
  const a = await device(s, project, 'device-a');
  const b = await device(s, project, 'device-b');
  const { ids } = await forgottenDeletes(s, a, b);
  b.loop.start();
  b.loop.localWrite();
  await waitFor(() => live(a, b) && JSON.stringify(rows(a.engine)) === JSON.stringify(rows(b.engine)), 8_000, 'A and B agree');
  expect(rows(b.engine)).toEqual(await serverRows(s));
  expect(rows(b.engine).map((r) => r.title).sort()).toEqual(['eight', 'five, from B', 'four, edited on B', 'nine', 'one, edited', 'seven', 'six']);
  expect(rows(b.engine).map((r) => r.id)).not.toContain(ids[1]);
  expect(b.replica.resyncing).toBe(false);
});

it('a re-sync cut off half way goes on at the next connection and ends the same', async () => {
  const { server: s, project } = await start();
  const a = await device(s, project, 'device-a');
  const b = await device(s, project, 'device-b');
  await forgottenDeletes(s, a, b);
  // Every row changes after the horizon: the first page of the re-sync ends at a cursor above it,
  // so the device, not the server, has to know that its re-sync did not end.
  for (const { id, title } of rows(a.engine)) a.engine.update('todos', { title: `${String(title)}!` }, { ps_global_id: String(id) });
  a.loop.localWrite();
  await waitFor(async () => live(a) && (await serverRows(s)).every((r) => String(r.title).endsWith('!')), 5_000, "A's edits at the server");
  // Two rows a page: the re-sync takes three pages; the connection is cut after the first.
  b.transport.arm({ kind: 'cut-down', after: 1 });
  b.loop.start();
  await waitFor(() => b.transport.stats.cuts === 1, 5_000, 'the cut');
  b.loop.localWrite();
  await waitFor(() => live(a, b) && JSON.stringify(rows(a.engine)) === JSON.stringify(rows(b.engine)), 8_000, 'A and B agree');
  expect(rows(b.engine)).toEqual(await serverRows(s));
  expect(rows(b.engine)).toHaveLength(7);
  expect(b.replica.resyncing).toBe(false);
});
