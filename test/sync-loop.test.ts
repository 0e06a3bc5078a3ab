/** The sync loop: engines on in-memory SQLite-WASM syncing live through a real server's WebSocket. */
import WebSocket from 'ws';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mintUserToken } from '../server/auth.js';
import { createServer, type RunningServer } from '../server/server.js';
import { SqliteStore } from '../server/store/sqlite-store.js';
import type { Project } from '../server/store/store.js';
import type { Engine } from '../worker/engine.js';
import { Replica } from '../worker/sync/replica.js';
import { SyncLoop, type SyncState } from '../worker/sync/sync-loop.js';
import { openEngine, todoSchema } from './helpers/engine.js';
import { waitFor } from './helpers/instance.js';

let server: RunningServer;
let project: Project;
const loops: SyncLoop[] = [];

beforeEach(async () => {
  const store = new SqliteStore(':memory:');
  project = await store.createProject({ id: 'p', secret: 's'.repeat(32) });
  server = await createServer({ store, adminKey: 'admin', log: null });
});
afterEach(async () => {
  for (const loop of loops.splice(0)) loop.stop();
  await server.close();
  await server.store.close();
});

interface Device {
  engine: Engine;
  loop: SyncLoop;
  states: SyncState[];
  remoteTables: string[][];
}

async function device(name: string, token: () => string | Promise<string>, time?: () => number): Promise<Device> {
  const engine = await openEngine({ schema: todoSchema, deviceId: name, ...(time ? { time } : {}) });
  const states: SyncState[] = [];
  const remoteTables: string[][] = [];
  const loop = new SyncLoop(engine, new Replica(engine), {
    url: `${server.url.replace('http', 'ws')}v1/projects/p/sync`,
    token,
    WebSocket,
    onStatus: (status) => {
      if (states.at(-1) !== status.state) states.push(status.state);
    },
    onRemoteTables: (tables) => remoteTables.push(tables),
  });
  loops.push(loop);
  return { engine, loop, states, remoteTables };
}

const titles = (engine: Engine) => engine.query('SELECT title FROM todos ORDER BY title').map((r) => r.title);

describe('sync loop', () => {
  it('carries a write on A to B live, and tells B which tables changed', async () => {
    const token = await mintUserToken(project, 'alice');
    const a = await device('device-a', () => token);
    const b = await device('device-b', () => token);
    a.loop.start();
    b.loop.start();
    await waitFor(() => a.loop.status.state === 'live' && b.loop.status.state === 'live', 5_000, 'both live');
    a.engine.insert('todos', { title: 'milk' });
    a.loop.localWrite();
    await waitFor(() => titles(b.engine).includes('milk'), 5_000, 'the write to reach B');
    await waitFor(() => a.loop.status.pending === 0, 5_000, 'A’s ack');
    expect(b.remoteTables).toContainEqual(['todos']);
    expect(b.states).toEqual(['connecting', 'catching-up', 'live']);
  });

  it('catches up a device that was offline, and pushes what it wrote offline', async () => {
    const token = await mintUserToken(project, 'alice');
    const a = await device('device-a', () => token);
    const b = await device('device-b', () => token);
    a.loop.start();
    await waitFor(() => a.loop.status.state === 'live');
    for (let i = 0; i < 30; i++) a.engine.insert('todos', { title: `a${String(i).padStart(2, '0')}` });
    a.loop.localWrite();
    b.engine.insert('todos', { title: 'written offline on b' });
    await waitFor(() => a.loop.status.pending === 0, 5_000, 'A’s pushes');
    b.loop.start();
    await waitFor(() => titles(b.engine).length === 31 && titles(a.engine).length === 31, 5_000, 'both to converge');
    expect(titles(a.engine)).toEqual(titles(b.engine));
  });

  it('asks for a fresh token once after an auth failure, then gives up with state error', async () => {
    const good = await mintUserToken(project, 'alice');
    let calls = 0;
    const refreshed = await device('device-a', () => (++calls === 1 ? 'expired-or-garbage' : good));
    refreshed.loop.start();
    await waitFor(() => refreshed.loop.status.state === 'live', 5_000, 'live after a refreshed token');
    expect(calls).toBe(2);

    let badCalls = 0;
    const hopeless = await device('device-b', () => {
      badCalls++;
      return 'never-valid';
    });
    hopeless.loop.start();
    await waitFor(() => hopeless.loop.status.state === 'error', 5_000, 'state error');
    expect(hopeless.loop.status.error).toMatchObject({ kind: 'auth' });
    expect(badCalls).toBe(2);
    // No reconnect storm: the socket stays closed.
    expect(server.hub.connections).toBe(1);
  });

  it('stops with state error and the server\'s reason when a device\'s clock runs hours fast, and stores nothing', async () => {
    const token = await mintUserToken(project, 'alice');
    const fast = await device('device-fast', () => token, () => Date.now() + 2 * 3_600_000);
    fast.loop.start();
    await waitFor(() => fast.loop.status.state === 'live', 5_000, 'live');
    fast.engine.insert('todos', { title: 'from the future' });
    fast.loop.localWrite();
    await waitFor(() => fast.loop.status.state === 'error', 5_000, 'state error');
    expect(fast.loop.status.error).toMatchObject({ kind: 'invalid', message: expect.stringMatching(/clock 120 minutes ahead/) });
    expect(await server.store.currentSeq('p')).toBe(0);
    // The change stays queued for when the clock is right, and the socket is closed.
    expect(fast.loop.status.pending).toBe(1);
    await waitFor(() => server.hub.connections === 0, 5_000, 'the socket to close');
  });
});
