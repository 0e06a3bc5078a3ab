/**
 * Two devices' engines (real SQLite-WASM in memory) syncing through a real server's HTTP push and
 * pull: the replica logic the sync loop will drive, without the loop.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Ack, Changes } from '../lib/protocol/down.js';
import { mintUserToken } from '../server/auth.js';
import type { RunningServer } from '../server/server.js';
import { Engine } from '../worker/engine.js';
import { Replica } from '../worker/sync/replica.js';
import { loadSqlite, openEngine, todoSchema } from './helpers/engine.js';
import { startTestServer, stopTestServer } from './helpers/server.js';

let server: RunningServer;
let token: string;

beforeEach(async () => {
  const started = await startTestServer();
  server = started.server;
  token = await mintUserToken(started.project, 'alice');
});
afterEach(() => stopTestServer(server));

class Device {
  readonly replica: Replica;
  constructor(readonly engine: Engine, readonly id: string) {
    this.replica = new Replica(engine);
  }

  async push(): Promise<Ack> {
    const changes = this.replica.pending(1000);
    const res = await fetch(`${server.url}v1/projects/p/push`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ deviceId: this.id, cursor: this.replica.cursor, changes }),
    });
    const ack = (await res.json()) as Ack;
    this.replica.acknowledge(ack.results.map((r) => r.id));
    return ack;
  }

  async pull(): Promise<Changes[]> {
    const batches: Changes[] = [];
    for (;;) {
      const res = await fetch(`${server.url}v1/projects/p/pull?cursor=${this.replica.cursor}&limit=100`, { headers: { Authorization: `Bearer ${token}` } });
      const batch = (await res.json()) as Changes;
      this.replica.apply(batch.changes, batch.cursor);
      batches.push(batch);
      if (!batch.hasMore) return batches;
    }
  }

  rows() {
    return this.engine.query('SELECT ps_global_id, title, done FROM todos ORDER BY ps_global_id');
  }
}

async function devices(): Promise<[Device, Device]> {
  return [new Device(await openEngine({ schema: todoSchema, deviceId: 'device-a' }), 'device-a'), new Device(await openEngine({ schema: todoSchema, deviceId: 'device-b' }), 'device-b')];
}

describe('replica', () => {
  it('carries inserts, updates and deletes from one device to another', async () => {
    const [a, b] = await devices();
    const milk = a.engine.insert('todos', { title: 'milk' });
    a.engine.insert('todos', { title: 'bread' });
    a.engine.update('todos', { done: 1 }, { ps_global_id: milk });
    await a.push();
    expect(a.replica.pendingCount()).toBe(0);
    await b.pull();
    expect(b.rows()).toEqual(a.rows());
    a.engine.delete('todos', { ps_global_id: milk });
    await a.push();
    await b.pull();
    expect(b.rows()).toEqual(a.rows());
    expect(b.rows()).toHaveLength(1);
    // What B applied was not captured as B's own changes.
    expect(b.replica.pendingCount()).toBe(0);
  });

  it('converges after both edit different columns of one row offline', async () => {
    const [a, b] = await devices();
    const gid = a.engine.insert('todos', { title: 'milk' });
    await a.push();
    await b.pull();
    a.engine.update('todos', { title: 'oat milk' }, { ps_global_id: gid });
    b.engine.update('todos', { done: 1 }, { ps_global_id: gid });
    await a.push();
    await b.push();
    await a.pull();
    await b.pull();
    expect(a.rows()).toEqual([{ ps_global_id: gid, title: 'oat milk', done: 1 }]);
    expect(b.rows()).toEqual(a.rows());
  });

  it('keeps a local unacknowledged edit against an older remote value', async () => {
    const [a, b] = await devices();
    const gid = a.engine.insert('todos', { title: 'milk' });
    await a.push();
    await b.pull();
    a.engine.update('todos', { title: 'from a (older)' }, { ps_global_id: gid });
    b.engine.update('todos', { title: 'from b (newer)' }, { ps_global_id: gid }); // later clock, not pushed yet
    await a.push();
    await b.pull(); // brings a's older title: b keeps its own
    expect(b.rows()[0]!.title).toBe('from b (newer)');
    await b.push();
    await a.pull();
    expect(a.rows()).toEqual(b.rows());
  });

  it('keeps a row deleted locally, not yet acknowledged, against an older remote update', async () => {
    const [a, b] = await devices();
    const gid = a.engine.insert('todos', { title: 'milk' });
    await a.push();
    await a.pull(); // so that A's cursor says it has the row
    await b.pull();
    a.engine.update('todos', { done: 1 }, { ps_global_id: gid });
    b.engine.delete('todos', { ps_global_id: gid }); // later clock, not pushed yet
    await a.push();
    await b.pull(); // brings a's older update: the row stays deleted on b
    expect(b.rows()).toEqual([]);
    await b.push();
    await a.pull();
    await b.pull();
    expect(a.rows()).toEqual([]);
    expect(b.rows()).toEqual([]);
  });

  it('applies a batch delivered twice once: redelivered later, it does not undo what came after it', async () => {
    const [a, b] = await devices();
    const gid = a.engine.insert('todos', { title: 'first' });
    await a.push();
    const [old] = await b.pull();
    b.replica.apply(old!.changes, old!.cursor);
    expect(b.rows()).toEqual(a.rows());
    a.engine.update('todos', { title: 'second' }, { ps_global_id: gid });
    await a.push();
    await b.pull();
    b.replica.apply(old!.changes, old!.cursor); // the first frame, delivered again
    expect(b.rows()).toEqual([{ ps_global_id: gid, title: 'second', done: 0 }]);
    expect(b.replica.cursor).toBe(2);
  });

  it('removes acknowledged changes from the log, keeping the clock and versions for the next open', async () => {
    const sqlite3 = await loadSqlite();
    const db = new sqlite3.oo1.DB(':memory:');
    const now = Date.now();
    const engine = Engine.open(sqlite3, db, { deviceId: 'device-a', schema: todoSchema, time: () => now });
    const a = new Device(engine, 'device-a');
    for (let i = 0; i < 1000; i++) engine.insert('todos', { title: `todo ${i}` });
    const newest = String(engine.query('SELECT max(clock) AS c FROM __pocketsync_changes')[0]?.c);
    await a.push();
    expect(engine.query('SELECT count(*) AS n FROM __pocketsync_changes')).toEqual([{ n: 0 }]);
    // Reopened with a wall clock far behind: stamps and versions still continue past the pruned ones.
    const reopened = Engine.open(sqlite3, db, { deviceId: 'device-a', schema: todoSchema, time: () => 1_000 });
    reopened.insert('todos', { title: 'after' });
    const [next] = reopened.query('SELECT version, clock FROM __pocketsync_changes');
    expect(next!.version).toBe(1001);
    expect(String(next!.clock) > newest).toBe(true);
    reopened.close();
  });

  it('removes changes an older version kept as synced when it starts', async () => {
    const engine = await openEngine({ schema: todoSchema });
    engine.insert('todos', { title: 'acknowledged long ago' });
    engine.insert('todos', { title: 'not yet' });
    engine.execute('UPDATE __pocketsync_changes SET synced = 1 WHERE id = (SELECT min(id) FROM __pocketsync_changes)');
    const replica = new Replica(engine);
    expect(replica.pending(10).map((c) => c.values?.title)).toEqual(['not yet']);
    expect(engine.query('SELECT count(*) AS n FROM __pocketsync_changes')).toEqual([{ n: 1 }]);
  });

  it('settles a row where its write lost under server-wins, though no new seq will bring it', async () => {
    const store = server.store;
    await store.createProject({ id: 'sw', secret: 'w'.repeat(32), strategy: 'server-wins' });
    const [a, b] = await devices();
    const sync = async (d: Device, cursor: number) => {
      const batch = await store.pull({ projectId: 'sw', scopes: ['shared', 'user:alice'], cursor, limit: 100 });
      d.replica.apply(batch.changes, batch.cursor);
    };
    const push = (d: Device) =>
      store.push({ projectId: 'sw', userId: 'alice', deviceId: d.id, deviceCursor: d.replica.cursor, changes: d.replica.pending(100) });
    const gid = a.engine.insert('todos', { title: 'milk' })!;
    a.replica.acknowledge((await push(a)).results.map((r) => r.id));
    await sync(b, 0);
    a.engine.update('todos', { title: 'from a' }, { ps_global_id: gid });
    b.engine.update('todos', { title: 'from b, later' }, { ps_global_id: gid }); // newer clock, but b has not seen a's write
    a.replica.acknowledge((await push(a)).results.map((r) => r.id));
    const out = await push(b); // b's write loses: the column changed after b's cursor
    expect(out.results).toMatchObject([{ outcome: 'superseded' }]);
    await sync(b, b.replica.cursor); // a's change arrives first: b's unacknowledged, newer edit keeps its value
    expect(b.rows()[0]!.title).toBe('from b, later');
    b.replica.acknowledge(out.results.map((r) => r.id), out.rows); // the ack's rows bring the server's decision
    expect(b.rows()).toEqual(a.rows());
    expect(b.rows()[0]!.title).toBe('from a');
  });

  it('advances the clock past every clock it receives', async () => {
    const [a, b] = await devices();
    // a's clock 30 minutes ahead: within the server's drift cap (LIMITS.maxClockAheadMs).
    const ahead = String((Date.now() + 30 * 60_000) * 1024).padStart(21, '0');
    a.engine.clock.receive(`${ahead}-device-a`);
    a.engine.insert('todos', { title: 'future' });
    await a.push();
    await b.pull();
    b.engine.insert('todos', { title: 'after' });
    const [received] = b.engine.query("SELECT clock FROM __pocketsync_changes ORDER BY id DESC LIMIT 1");
    expect(String(received!.clock) > ahead).toBe(true);
  });
});
