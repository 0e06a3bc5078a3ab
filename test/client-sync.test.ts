/** The public API syncing: two PocketSync instances (real client, worker API and engine) and a real server. */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Row } from '../lib/index.js';
import { mintUserToken } from '../server/auth.js';
import type { RunningServer } from '../server/server.js';
import type { Project } from '../server/store/store.js';
import { todoSchema } from './helpers/engine.js';
import { openInstance, waitFor } from './helpers/instance.js';
import { startTestServer, stopTestServer } from './helpers/server.js';

let server: RunningServer;
let project: Project;

beforeEach(async () => {
  ({ server, project } = await startTestServer());
});
afterEach(() => stopTestServer(server));

describe('PocketSync with a server', () => {
  it('a write on A shows up in B’s watch, and A’s pending count returns to 0', async () => {
    const token = await mintUserToken(project, 'alice');
    const options = { schema: todoSchema, serverUrl: server.url, projectId: 'p', authToken: () => token };
    const a = await openInstance(options);
    const b = await openInstance(options);
    expect(a.sync.enabled).toBe(true);
    await waitFor(() => a.sync.status.state === 'live' && b.sync.status.state === 'live', 5_000, 'both live');
    const seen: Row[][] = [];
    b.database.watch('SELECT title FROM todos', [], (rows) => seen.push(rows));
    await a.database.insert('todos', { title: 'milk' });
    await waitFor(() => seen.some((rows) => rows.length === 1 && rows[0]?.title === 'milk'), 5_000, 'B’s watch');
    await waitFor(() => a.sync.status.pending === 0, 5_000, 'the ack');
    expect(a.sync.status.lastSyncedAt).toBeGreaterThan(0);
  });

  it('keeps working offline after stop(), and sends the queued writes after start()', async () => {
    const token = await mintUserToken(project, 'alice');
    const options = { schema: todoSchema, serverUrl: server.url, projectId: 'p', authToken: token };
    const a = await openInstance(options);
    const b = await openInstance(options);
    await waitFor(() => a.sync.status.state === 'live' && b.sync.status.state === 'live');
    await a.sync.stop();
    await waitFor(() => a.sync.status.state === 'offline', 5_000, 'state offline');
    await a.database.insert('todos', { title: 'offline write' });
    await waitFor(() => a.sync.status.pending === 1);
    await a.sync.start();
    await waitFor(async () => (await b.database.query('SELECT title FROM todos')).length === 1, 5_000, 'the queued write to arrive');
  });

  it('lists the rows whose changes are unacknowledged, live, until their ack is stored', async () => {
    const token = await mintUserToken(project, 'alice');
    const a = await openInstance({ schema: todoSchema, serverUrl: server.url, projectId: 'p', authToken: token });
    await waitFor(() => a.sync.status.state === 'live', 5_000, 'live');
    await a.sync.stop();
    await waitFor(() => a.sync.status.state === 'offline', 5_000, 'offline');
    const seen: string[][] = [];
    const stopWatching = a.sync.watchUnsynced('todos', (ids) => seen.push([...ids].sort()));
    await waitFor(() => seen.length === 1, 5_000, 'the first call');
    expect(seen[0]).toEqual([]);

    const milk = await a.database.insert('todos', { title: 'milk' });
    const bread = await a.database.insert('todos', { title: 'bread' });
    await waitFor(() => seen.at(-1)?.length === 2, 5_000, 'both rows unsynced');
    expect(seen.at(-1)).toEqual([milk, bread].sort());
    // A second edit of an unsynced row leaves the set as it was: no call.
    const calls = seen.length;
    await a.database.update('todos', { done: 1 }, { ps_global_id: milk });
    expect(await a.sync.unsynced('todos')).toEqual(expect.arrayContaining([{ table: 'todos', id: milk }, { table: 'todos', id: bread }]));
    expect(await a.sync.unsynced()).toHaveLength(2);
    expect(seen.length).toBe(calls);

    await a.sync.start();
    await waitFor(() => seen.at(-1)?.length === 0, 5_000, 'the ack to empty the set');
    expect(await a.sync.unsynced()).toEqual([]);
    expect(a.sync.status.pending).toBe(0);
    stopWatching();
    await a.database.insert('todos', { title: 'after' });
    await waitFor(async () => (await a.sync.unsynced('todos')).length === 0, 5_000, 'its ack');
    expect(seen.at(-1)).toEqual([]);
  });

  it('tells the app when one of its writes lost, with both values', async () => {
    const token = await mintUserToken(project, 'alice');
    const options = { schema: todoSchema, serverUrl: server.url, projectId: 'p', authToken: token };
    const a = await openInstance(options);
    const b = await openInstance(options);
    await waitFor(() => a.sync.status.state === 'live' && b.sync.status.state === 'live');
    const gid = (await a.database.insert('todos', { title: 'milk' }))!;
    await waitFor(async () => (await b.database.query('SELECT 1 FROM todos')).length === 1, 5_000, 'the row on B');
    const conflicts: unknown[] = [];
    b.sync.onConflict((conflict) => conflicts.push(conflict));
    await b.sync.stop();
    await b.database.update('todos', { title: 'from b, earlier' }, { ps_global_id: gid });
    const t0 = Date.now();
    await waitFor(() => Date.now() > t0 + 1, 1_000, 'the wall clock to move on');
    await a.database.update('todos', { title: 'from a, later' }, { ps_global_id: gid });
    await waitFor(async () => (await server.store.currentSeq('p')) === 2, 5_000, 'A’s push');
    await b.sync.start();
    await waitFor(() => conflicts.length === 1, 5_000, 'the conflict event');
    expect(conflicts[0]).toMatchObject({
      table: 'todos', row: gid, column: 'title', rule: 'column-lww',
      losing: { value: 'from b, earlier' }, winning: { value: 'from a, later' },
    });
    expect(await b.database.query('SELECT title FROM todos')).toEqual([{ title: 'from a, later' }]);
  });

  it('reset() deletes local data and sync state, and gives a new device id', async () => {
    const token = await mintUserToken(project, 'alice');
    const ps = await openInstance({ schema: todoSchema, serverUrl: server.url, projectId: 'p', authToken: token });
    await waitFor(() => ps.sync.status.state === 'live');
    await ps.database.insert('todos', { title: 'synced' });
    await waitFor(async () => (await server.store.currentSeq('p')) === 1, 5_000, 'the push');
    await ps.sync.stop();
    await ps.database.insert('todos', { title: 'not yet synced' });
    const seen: number[] = [];
    ps.database.watch('SELECT count(*) AS n FROM todos', [], (rows) => seen.push(Number(rows[0]?.n)));
    await waitFor(() => seen.at(-1) === 2);
    const before = ps.deviceId;
    await ps.reset();
    expect(ps.deviceId).not.toBe(before);
    await waitFor(() => seen.at(-1) === 0, 5_000, 'the watch to see the empty database');
    expect(await ps.database.query('SELECT count(*) AS n FROM __pocketsync_changes')).toEqual([{ n: 0 }]);
    expect(await ps.database.query('SELECT server_cursor FROM __pocketsync_device_state')).toEqual([{ server_cursor: 0 }]);
    await waitFor(() => ps.sync.status.state === 'offline');
    // The server kept what was pushed.
    expect(await server.store.currentSeq('p')).toBe(1);
  });

  it('without a server it is local only', async () => {
    const local = await openInstance({ schema: todoSchema });
    expect(local.sync.enabled).toBe(false);
    expect(local.sync.status.state).toBe('offline');
    await expect(local.sync.start()).rejects.toMatchObject({ kind: 'invalid' });
  });
});
