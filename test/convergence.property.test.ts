/**
 * Convergence, as a property (fast-check): 3–5 devices of one user make random inserts, updates and
 * deletes on a few rows and columns, and sync in a random interleaving. Some devices stay offline
 * for a while, some batches are delivered twice, and the server restarts on its data file. Once
 * every device has pushed and pulled until quiet, every device's rows equal the server's row state
 * and each other's. A device is disconnected for as long as it takes no 'sync' step; its writes
 * queue meanwhile, and its next sync is its reconnect.
 *
 * Devices talk to the store directly (push/pull), the way the sync loop does over a socket, so a
 * run takes milliseconds and CI can afford 100 of them. A failure prints the seed and the path:
 * replay with `fc.assert(..., { seed, path })`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, expect, it } from 'vitest';
import type { RowChange } from '../lib/protocol/change.js';
import { SqliteStore } from '../server/store/sqlite-store.js';
import { scopesOf } from '../server/store/store.js';
import type { Engine } from '../worker/engine.js';
import { Replica } from '../worker/sync/replica.js';
import { loadSqlite } from './helpers/engine.js';
import { Engine as EngineClass } from '../worker/engine.js';

const dir = mkdtempSync(join(tmpdir(), 'pocketsync-property-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const schema = {
  version: 1,
  migrations: [{ version: 1, sql: ['CREATE TABLE items (id INTEGER PRIMARY KEY, a TEXT, b INTEGER, c TEXT)'] }],
};

type Step =
  | { kind: 'insert'; device: number; key: number; a: string; b: number }
  | { kind: 'update'; device: number; key: number; column: 'a' | 'b' | 'c'; value: string | number }
  | { kind: 'delete'; device: number; key: number }
  | { kind: 'sync'; device: number; duplicate: boolean; pullFirst: boolean }
  | { kind: 'restart' };

const device = fc.integer({ min: 0, max: 4 });
const key = fc.integer({ min: 0, max: 5 });
const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ kind: fc.constant('insert' as const), device, key, a: fc.string({ maxLength: 3 }), b: fc.integer({ min: 0, max: 9 }) }),
  fc.record({ kind: fc.constant('update' as const), device, key, column: fc.constantFrom('a' as const, 'b' as const, 'c' as const), value: fc.oneof(fc.string({ maxLength: 3 }), fc.integer({ min: 0, max: 9 })) }),
  fc.record({ kind: fc.constant('delete' as const), device, key }),
  fc.record({ kind: fc.constant('sync' as const), device, duplicate: fc.boolean(), pullFirst: fc.boolean() }),
  fc.constant({ kind: 'restart' as const }),
);

interface Device {
  engine: Engine;
  replica: Replica;
}

let run = 0;

async function scenario(deviceCount: number, steps: Step[]): Promise<void> {
  const sqlite3 = await loadSqlite();
  const file = join(dir, `run-${++run}.db`);
  let store = new SqliteStore(file);
  await store.createProject({ id: 'p', secret: 'x'.repeat(32) });
  const devices: Device[] = Array.from({ length: deviceCount }, (_, i) => {
    const engine = EngineClass.open(sqlite3, new sqlite3.oo1.DB(':memory:'), { deviceId: `device-${i}`, schema });
    return { engine, replica: new Replica(engine) };
  });
  // Rows are addressed by a shared key -> ps_global_id, as an app would address a row it knows.
  const ids = new Map<number, string>();

  const push = async (d: Device) => {
    const pending = d.replica.pending(1000);
    if (pending.length === 0) return;
    const out = await store.push({ projectId: 'p', userId: 'u', deviceId: d.engine.deviceId, deviceCursor: d.replica.cursor, changes: pending });
    d.replica.acknowledge(out.results.map((r) => r.id));
  };
  const pull = async (d: Device, duplicate: boolean) => {
    for (;;) {
      const batch = await store.pull({ projectId: 'p', scopes: scopesOf('u'), cursor: d.replica.cursor, limit: 7 });
      d.replica.apply(batch.changes, batch.cursor);
      if (duplicate) d.replica.apply(batch.changes, batch.cursor);
      if (!batch.hasMore) break;
    }
  };
  // The sync loop catches up before it pushes; pulling first exercises local edits not yet pushed.
  const sync = async (d: Device, duplicate: boolean, pullFirst = false) => {
    if (pullFirst) await pull(d, duplicate);
    await push(d);
    await pull(d, duplicate);
  };

  try {
    for (const s of steps) {
      if (s.kind === 'restart') {
        await store.close();
        store = new SqliteStore(file);
        continue;
      }
      const d = devices[s.device % deviceCount]!;
      const gid = s.kind === 'sync' ? undefined : ids.get(s.key);
      switch (s.kind) {
        case 'insert':
          if (gid === undefined) ids.set(s.key, d.engine.insert('items', { a: s.a, b: s.b })!);
          break;
        case 'update':
          if (gid !== undefined) d.engine.update('items', { [s.column]: s.value }, { ps_global_id: gid });
          break;
        case 'delete':
          if (gid !== undefined) d.engine.delete('items', { ps_global_id: gid });
          break;
        case 'sync':
          await sync(d, s.duplicate, s.pullFirst);
          break;
      }
    }
    // Quiesce: everyone comes back and syncs until nothing is pending.
    for (let round = 0; round < 3; round++) for (const d of devices) await sync(d, false);

    const server = await store.pull({ projectId: 'p', scopes: scopesOf('u'), cursor: 0, limit: 5000 });
    const expected = serverRows(server.changes);
    for (const d of devices) {
      expect(d.replica.pendingCount()).toBe(0);
      expect(deviceRows(d.engine)).toEqual(expected);
    }
  } finally {
    for (const d of devices) d.engine.close();
    await store.close();
  }
}

function serverRows(changes: readonly RowChange[]) {
  return changes
    .filter((c) => !c.deleted)
    .map((c) => ({ ps_global_id: c.row, a: c.values?.a ?? null, b: c.values?.b ?? null, c: c.values?.c ?? null }))
    .sort((x, y) => x.ps_global_id.localeCompare(y.ps_global_id));
}

function deviceRows(engine: Engine) {
  return engine.query('SELECT ps_global_id, a, b, c FROM items ORDER BY ps_global_id').map((r) => ({ ...r }));
}

it('every device converges to the server’s rows, whatever the interleaving and faults', async () => {
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 3, max: 5 }), fc.array(step, { minLength: 5, maxLength: 60 }), scenario),
    { numRuns: 100, verbose: 1 },
  );
}, 120_000);
