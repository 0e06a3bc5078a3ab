/**
 * Identity by key and exact integers, end to end: two engines (real SQLite-WASM) syncing through a
 * real server's HTTP push and pull with the replica, as replica.test.ts does.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Ack, Changes } from '../lib/protocol/down.js';
import { mintUserToken } from '../server/auth.js';
import type { RunningServer } from '../server/server.js';
import type { Engine } from '../worker/engine.js';
import { Replica } from '../worker/sync/replica.js';
import { openEngine } from './helpers/engine.js';
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
  constructor(readonly engine: Engine) {
    this.replica = new Replica(engine);
  }

  async push(): Promise<Ack> {
    const res = await fetch(`${server.url}v1/projects/p/push`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ deviceId: this.engine.deviceId, cursor: this.replica.cursor, changes: this.replica.pending(1000) }),
    });
    expect(res.status).toBe(200);
    const ack = (await res.json()) as Ack;
    this.replica.acknowledge(ack.results.map((r) => r.id));
    return ack;
  }

  async pull(): Promise<void> {
    for (;;) {
      const res = await fetch(`${server.url}v1/projects/p/pull?cursor=${this.replica.cursor}&limit=100`, { headers: { Authorization: `Bearer ${token}` } });
      const batch = (await res.json()) as Changes;
      this.replica.apply(batch.changes, batch.cursor);
      if (!batch.hasMore) return;
    }
  }
}

async function device(id: string, setup: string): Promise<Device> {
  return new Device(await openEngine({ deviceId: id }, setup));
}

describe('two devices', () => {
  it('inserting the same natural key offline edit one row, and both sync on (defect 1)', async () => {
    const setup = 'CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT, note TEXT)';
    const a = await device('device-a', setup);
    const b = await device('device-b', setup);
    a.engine.insert('settings', { key: 'theme', value: 'dark' });
    b.engine.execute("INSERT INTO settings (key, value, note) VALUES ('theme', 'light', 'from b')");
    await a.push();
    await b.push();
    await a.pull();
    await b.pull();
    const rows = (d: Device) => d.engine.query('SELECT key, value, note, ps_global_id FROM settings');
    expect(rows(a)).toHaveLength(1);
    expect(rows(b)).toEqual(rows(a));
    expect(rows(a)[0]).toMatchObject({ key: 'theme', value: 'light', note: 'from b' });
    // Sync goes on: B's later edit reaches A.
    b.engine.update('settings', { value: 'blue' }, { key: 'theme' });
    await b.push();
    await a.pull();
    expect(rows(a)[0]).toMatchObject({ value: 'blue' });
  });

  it('carry 9007199254740993 exactly (defect 8)', async () => {
    const setup = 'CREATE TABLE big (name TEXT, n INTEGER)';
    const a = await device('device-a', setup);
    const b = await device('device-b', setup);
    a.engine.insert('big', { name: 'x', n: 9007199254740993n });
    a.engine.insert('big', { name: 'y', n: -9223372036854775808n });
    await a.push();
    await b.pull();
    expect(b.engine.query('SELECT name, n FROM big ORDER BY name')).toEqual([
      { name: 'x', n: 9007199254740993n },
      { name: 'y', n: -9223372036854775808n },
    ]);
  });
});
