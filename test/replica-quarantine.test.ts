/**
 * The quarantine (issue 10, defects 1 and 2): a remote row the local schema refuses, or a local
 * change the server rejected, is kept with its error while sync goes on. The real Replica on the
 * real engine (SQLite-WASM in memory); the batches are the server's wire shape.
 */
import { describe, expect, it } from 'vitest';
import type { RowChange } from '../lib/protocol/change.js';
import type { ColumnValue } from '../lib/protocol/values.js';
import { Engine } from '../worker/engine.js';
import { Replica } from '../worker/sync/replica.js';
import { loadSqlite, openEngine, todoSchema } from './helpers/engine.js';

const clock = (ms: number, device = 'device-b') => `${String(ms * 1024).padStart(21, '0')}-${device}`;

/** The server's state of one row at `seq`, every column won at `ms`. */
function row(seq: number, table: string, id: string, values: Record<string, ColumnValue>, ms = 1_000_000 + seq): RowChange {
  return { seq, table, row: id, deleted: false, values, clocks: Object.fromEntries(Object.keys(values).map((c) => [c, clock(ms)])) };
}

const usersSchema = {
  version: 1,
  migrations: [{ version: 1, sql: ['CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT, name TEXT)', 'CREATE UNIQUE INDEX users_email ON users (email)'] }],
};

describe('a remote row the local schema refuses', () => {
  it('is quarantined with its error; the rest of the batch and the cursor go on', async () => {
    const engine = await openEngine({ schema: usersSchema });
    const replica = new Replica(engine);
    engine.insert('users', { email: 'ann@example.com', name: 'local ann' });
    const quarantined = replica.apply(
      [row(1, 'users', 'r1', { id: 1, email: 'ann@example.com', name: 'remote ann' }), row(2, 'users', 'r2', { id: 2, email: 'bob@example.com', name: 'bob' })],
      2,
    );
    expect(quarantined).toMatchObject([{ direction: 'remote', table: 'users', row: 'r1', source: '1', error: { kind: 'database' } }]);
    expect(quarantined[0]!.error.message).toMatch(/UNIQUE/);
    expect(replica.cursor).toBe(2);
    expect(engine.query('SELECT name FROM users ORDER BY name')).toEqual([{ name: 'bob' }, { name: 'local ann' }]);
    expect(replica.quarantined()).toEqual(quarantined);
    expect(replica.quarantineCount()).toBe(1);
    expect(engine.query("SELECT change FROM __pocketsync_quarantine").map((r) => JSON.parse(String(r.change)) as RowChange)).toMatchObject([
      { seq: 1, row: 'r1', values: { email: 'ann@example.com', name: 'remote ann' }, clocks: { email: clock(1_000_001) } },
    ]);
    // Nothing of the batch was captured as a local change.
    expect(replica.pendingCount()).toBe(1);
  });

  it('quarantines CHECK, NOT NULL, FOREIGN KEY and type failures alike', async () => {
    const engine = await openEngine(
      {
        schema: {
          version: 1,
          migrations: [
            {
              version: 1,
              sql: [
                'CREATE TABLE lists (id INTEGER PRIMARY KEY, name TEXT)',
                'CREATE TABLE items (id INTEGER PRIMARY KEY, qty INTEGER CHECK (qty >= 0), label TEXT NOT NULL, list TEXT REFERENCES lists (ps_global_id), n INTEGER) STRICT',
              ],
            },
          ],
        },
      },
      'PRAGMA foreign_keys = ON',
    );
    // lists gets ps_global_id (UNIQUE) from the engine, so it can be referenced.
    const replica = new Replica(engine);
    const out = replica.apply(
      [
        row(1, 'lists', 'l1', { id: 1, name: 'groceries' }),
        row(2, 'items', 'check', { id: 1, qty: -1, label: 'a', list: 'l1', n: 1 }),
        row(3, 'items', 'notnull', { id: 2, qty: 1, label: null, list: 'l1', n: 1 }),
        row(4, 'items', 'fk', { id: 3, qty: 1, label: 'c', list: 'no such list', n: 1 }),
        row(5, 'items', 'type', { id: 4, qty: 1, label: 'd', list: 'l1', n: 'not a number' }),
        row(6, 'items', 'fine', { id: 5, qty: 1, label: 'e', list: 'l1', n: 1 }),
      ],
      6,
    );
    expect(out.map((e) => e.row)).toEqual(['check', 'notnull', 'fk', 'type']);
    expect(out.map((e) => e.error.message)).toEqual([
      expect.stringMatching(/CHECK/),
      expect.stringMatching(/NOT NULL/),
      expect.stringMatching(/FOREIGN KEY/),
      expect.stringMatching(/cannot store TEXT value in INTEGER column/),
    ]);
    expect(engine.query('SELECT ps_global_id FROM items')).toEqual([{ ps_global_id: 'fine' }]);
    expect(replica.cursor).toBe(6);
  });

  it('quarantines a row the server holds with no values (an update of a row id nobody inserted)', async () => {
    const engine = await openEngine({ schema: todoSchema });
    const replica = new Replica(engine);
    const out = replica.apply([{ seq: 1, table: 'todos', row: 'ghost', deleted: false, values: {}, clocks: {} }, row(2, 'todos', 't2', { id: 9, title: 'real', done: 0 })], 2);
    expect(out).toMatchObject([{ row: 'ghost', error: { kind: 'database', message: expect.stringMatching(/NOT NULL/) } }]);
    expect(engine.query('SELECT ps_global_id, title FROM todos')).toEqual([{ ps_global_id: 't2', title: 'real' }]);
  });

  it('is tried again after a later batch brings what it was missing (a parent row)', async () => {
    const engine = await openEngine(
      {
        schema: {
          version: 1,
          migrations: [{ version: 1, sql: ['CREATE TABLE lists (id INTEGER PRIMARY KEY, name TEXT)', 'CREATE TABLE items (id INTEGER PRIMARY KEY, list TEXT REFERENCES lists (ps_global_id))'] }],
        },
      },
      'PRAGMA foreign_keys = ON',
    );
    const replica = new Replica(engine);
    // The parent was edited after the child was made: its state comes at a later seq.
    expect(replica.apply([row(3, 'items', 'i1', { id: 1, list: 'l1' })], 3)).toHaveLength(1);
    expect(replica.apply([row(7, 'lists', 'l1', { id: 1, name: 'renamed' })], 7)).toEqual([]);
    expect(replica.quarantineCount()).toBe(0);
    expect(engine.query('SELECT ps_global_id, list FROM items')).toEqual([{ ps_global_id: 'i1', list: 'l1' }]);
  });

  it('is superseded by a later remote state of the same row', async () => {
    const engine = await openEngine({ schema: usersSchema });
    const replica = new Replica(engine);
    engine.insert('users', { email: 'ann@example.com', name: 'local ann' });
    replica.apply([row(1, 'users', 'r1', { id: 1, email: 'ann@example.com', name: 'remote ann' })], 1);
    expect(replica.quarantineCount()).toBe(1);
    expect(replica.apply([row(2, 'users', 'r1', { id: 1, email: 'ann2@example.com', name: 'remote ann' })], 2)).toEqual([]);
    expect(replica.quarantineCount()).toBe(0);
    expect(engine.query("SELECT email FROM users WHERE ps_global_id = 'r1'")).toEqual([{ email: 'ann2@example.com' }]);
  });

  it('is retried after a migration changes the schema', async () => {
    const sqlite3 = await loadSqlite();
    const db = new sqlite3.oo1.DB(':memory:');
    const engine = Engine.open(sqlite3, db, { deviceId: 'device-a', schema: usersSchema });
    const replica = new Replica(engine);
    engine.insert('users', { email: 'ann@example.com', name: 'local ann' });
    replica.apply([row(1, 'users', 'r1', { id: 1, email: 'ann@example.com', name: 'remote ann' })], 1);
    expect(replica.quarantineCount()).toBe(1);
    // The next app version drops the unique index: the row now fits.
    const v2 = { version: 2, migrations: [...usersSchema.migrations, { version: 2, sql: ['DROP INDEX users_email'] }] };
    const upgraded = Engine.open(sqlite3, db, { deviceId: 'device-a', schema: v2 });
    try {
      const again = new Replica(upgraded);
      expect(again.quarantineCount()).toBe(0);
      expect(upgraded.query('SELECT name FROM users ORDER BY name')).toEqual([{ name: 'local ann' }, { name: 'remote ann' }]);
    } finally {
      upgraded.close();
    }
  });

  it('is retried by afterSchemaChange() after a schema change at runtime', async () => {
    const engine = await openEngine({ schema: usersSchema });
    const replica = new Replica(engine);
    engine.insert('users', { email: 'ann@example.com', name: 'local ann' });
    replica.apply([row(1, 'users', 'r1', { id: 1, email: 'ann@example.com', name: 'remote ann' })], 1);
    engine.execute('DROP INDEX users_email');
    expect(replica.afterSchemaChange()).toEqual([]);
    expect(replica.quarantineCount()).toBe(0);
    expect(engine.query("SELECT name FROM users WHERE ps_global_id = 'r1'")).toEqual([{ name: 'remote ann' }]);
  });

  it('applies a WITHOUT ROWID table with an INTEGER key: its key is not a local rowid', async () => {
    const engine = await openEngine({
      schema: { version: 1, migrations: [{ version: 1, sql: ['CREATE TABLE codes (code INTEGER PRIMARY KEY, label TEXT) WITHOUT ROWID'] }] },
    });
    const replica = new Replica(engine);
    expect(replica.apply([row(1, 'codes', 'c7', { code: 7, label: 'seven' })], 1)).toEqual([]);
    expect(engine.query('SELECT code, label FROM codes')).toEqual([{ code: 7, label: 'seven' }]);
  });
});

describe('a local change the server rejected', () => {
  it('moves from the change log into the quarantine with its error, and is never pushed again', async () => {
    const engine = await openEngine({ schema: todoSchema });
    const replica = new Replica(engine);
    const kept = engine.insert('todos', { title: 'kept' });
    const refused = engine.insert('todos', { title: 'refused' });
    const [first, second] = replica.pending(10);
    const out = replica.acknowledge([
      { id: first!.id, outcome: 'applied', seq: 1 },
      { id: second!.id, outcome: 'rejected', seq: null, error: { kind: 'invalid', message: 'values.title: too long' } },
    ]);
    expect(out).toMatchObject([{ direction: 'local', table: 'todos', row: refused, source: second!.id, error: { kind: 'invalid', message: 'values.title: too long' } }]);
    expect(replica.quarantined()).toEqual(out);
    expect(replica.pendingCount()).toBe(0);
    expect(replica.pending(10)).toEqual([]);
    // The row stays as the device has it.
    expect(engine.query('SELECT ps_global_id, title FROM todos ORDER BY title')).toEqual([
      { ps_global_id: kept, title: 'kept' },
      { ps_global_id: refused, title: 'refused' },
    ]);
    expect(JSON.parse(String(engine.query('SELECT change FROM __pocketsync_quarantine')[0]!.change))).toMatchObject({ id: second!.id, op: 'insert', values: { title: 'refused' } });
  });

  it('is matched by position when the server could not read its id', async () => {
    const engine = await openEngine({ schema: todoSchema });
    const replica = new Replica(engine);
    engine.insert('todos', { title: 'a' });
    engine.insert('todos', { title: 'b' });
    const [first, second] = replica.pending(10);
    const out = replica.acknowledge([
      { id: first!.id, outcome: 'applied', seq: 1 },
      { id: '', outcome: 'rejected', seq: null, error: { kind: 'invalid', message: 'malformed' } },
    ]);
    expect(out.map((e) => e.source)).toEqual([second!.id]);
    expect(replica.pendingCount()).toBe(0);
  });
});
