import { describe, expect, it } from 'vitest';
import { ErrorKind } from '../lib/protocol/error-kind.js';
import { parseClock } from '../worker/hlc.js';
import { changes, openEngine, todoSchema } from './helpers/engine.js';

describe('change capture', () => {
  it('records an insert with the new row, every column as changed, a clock and the table version', async () => {
    const engine = await openEngine({ schema: todoSchema });
    const gid = engine.insert('todos', { title: 'milk' });
    const [change, ...rest] = changes(engine);
    expect(rest).toEqual([]);
    expect(change).toMatchObject({ table_name: 'todos', ps_global_id: gid, operation: 'insert', version: 1, synced: 0 });
    expect(JSON.parse(change!.payload)).toEqual({ row: { id: 1, title: 'milk', done: 0 } });
    expect(change!.change_id).toMatch(/^[0-9a-f]{32}$/);
    expect(parseClock(change!.clock).deviceId).toBe('device-a');
  });

  it('records an update with the new row and only the columns that changed', async () => {
    const engine = await openEngine({ schema: todoSchema });
    const gid = engine.insert('todos', { title: 'milk' });
    expect(engine.update('todos', { done: 1 }, { ps_global_id: gid })).toBe(1);
    const update = changes(engine)[1]!;
    expect(update).toMatchObject({ operation: 'update', ps_global_id: gid, version: 2 });
    expect(JSON.parse(update.payload)).toEqual({ row: { id: 1, title: 'milk', done: 1 }, changed: ['done'] });
  });

  it('records a delete with the old row', async () => {
    const engine = await openEngine({ schema: todoSchema });
    const gid = engine.insert('todos', { title: 'milk' });
    expect(engine.delete('todos', { id: 1 })).toBe(1);
    const deletion = changes(engine)[1]!;
    expect(deletion).toMatchObject({ operation: 'delete', ps_global_id: gid });
    expect(JSON.parse(deletion.payload)).toEqual({ old: { id: 1, title: 'milk', done: 0, ps_global_id: gid } });
  });

  it('records nothing for an update that changes no value', async () => {
    const engine = await openEngine({ schema: todoSchema });
    engine.insert('todos', { title: 'milk', done: 1 });
    engine.update('todos', { done: 1 }, { id: 1 });
    engine.execute("UPDATE todos SET title = 'milk'");
    expect(changes(engine).map((c) => c.operation)).toEqual(['insert']);
  });

  it('stamps strictly increasing clocks, even for many changes in one millisecond', async () => {
    let now = 1_700_000_000_000;
    const engine = await openEngine({ schema: todoSchema, time: () => now });
    engine.begin();
    for (let i = 0; i < 1500; i++) engine.insert('todos', { title: `t${i}` });
    engine.commit();
    now -= 5_000; // the wall clock steps back: stamps must still increase
    engine.insert('todos', { title: 'after' });
    const clocks = changes(engine).map((c) => c.clock);
    expect(clocks).toHaveLength(1501);
    expect([...clocks].sort()).toEqual(clocks);
    expect(new Set(clocks).size).toBe(clocks.length);
  });

  it('keeps the clock and versions moving forward after the database is reopened', async () => {
    const { loadSqlite } = await import('./helpers/engine.js');
    const { Engine } = await import('../worker/engine.js');
    const sqlite3 = await loadSqlite();
    const db = new sqlite3.oo1.DB(':memory:');
    const first = Engine.open(sqlite3, db, { deviceId: 'd', schema: todoSchema, time: () => 2_000_000_000_000 });
    first.insert('todos', { title: 'a' });
    first.insert('todos', { title: 'b' });
    // Reopened with a wall clock far behind: stamps and versions still move forward.
    const second = Engine.open(sqlite3, db, { deviceId: 'd', schema: todoSchema, time: () => 1_000 });
    second.insert('todos', { title: 'c' });
    const recorded = changes(second);
    expect(recorded.map((c) => c.version)).toEqual([1, 2, 3]);
    expect(recorded[2]!.clock > recorded[1]!.clock).toBe(true);
    second.close();
  });

  it('captures the BLOB columns JSON cannot hold as base16', async () => {
    const engine = await openEngine({}, 'CREATE TABLE files (id INTEGER PRIMARY KEY, data BLOB)');
    engine.insert('files', { data: new Uint8Array([1, 2, 255]) });
    expect(JSON.parse(changes(engine)[0]!.payload)).toEqual({ row: { id: 1, data: { $base16: '0102FF' } } });
  });

  it('reads an empty BLOB back as an empty BLOB, not NULL, and captures it as one', async () => {
    const engine = await openEngine({}, 'CREATE TABLE files (id INTEGER PRIMARY KEY, data BLOB)');
    engine.insert('files', { data: new Uint8Array(0) });
    engine.insert('files', { data: null });
    expect(engine.query('SELECT data FROM files ORDER BY id')).toEqual([{ data: new Uint8Array(0) }, { data: null }]);
    expect(JSON.parse(changes(engine)[0]!.payload)).toEqual({ row: { id: 1, data: { $base16: '' } } });
  });

  it('records nothing while capture is suppressed, and ps_global_id is still assigned', async () => {
    const engine = await openEngine({ schema: todoSchema });
    engine.applyWithoutCapture(() => {
      engine.execute("INSERT INTO todos (title, ps_global_id) VALUES ('remote', 'aaaa')");
      engine.execute("INSERT INTO todos (title) VALUES ('no id')");
      engine.execute("UPDATE todos SET done = 1");
      engine.execute("DELETE FROM todos WHERE title = 'remote'");
    });
    expect(changes(engine)).toEqual([]);
    expect(engine.query('SELECT ps_global_id FROM todos')[0]!.ps_global_id).toMatch(/^[0-9a-f]{32}$/);
    // Capture resumes afterwards.
    engine.execute("UPDATE todos SET done = 0");
    expect(changes(engine).map((c) => c.operation)).toEqual(['update']);
  });

  it('works on WITHOUT ROWID tables', async () => {
    const engine = await openEngine({}, 'CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID');
    engine.execute("INSERT INTO kv (k, v) VALUES ('a', '1')");
    engine.execute("UPDATE kv SET v = '2' WHERE k = 'a'");
    const [insert, update] = changes(engine);
    // Identified by its key (engine-identity.test.ts).
    expect(insert!.ps_global_id).toMatch(/^k[0-9a-f]{32}$/);
    expect(update!.ps_global_id).toBe(insert!.ps_global_id);
    expect(engine.query('SELECT ps_global_id FROM kv')[0]!.ps_global_id).toBe(insert!.ps_global_id);
  });
});

describe('ps_global_id', () => {
  it('is assigned to rows inserted by raw SQL, and recorded in the change', async () => {
    const engine = await openEngine({ schema: todoSchema });
    engine.execute("INSERT INTO todos (title) VALUES ('a'), ('b')");
    const rows = engine.query('SELECT ps_global_id FROM todos ORDER BY id');
    const ids = rows.map((r) => r.ps_global_id);
    expect(ids.every((id) => typeof id === 'string' && /^[0-9a-f]{32}$/.test(id))).toBe(true);
    expect(changes(engine).map((c) => c.ps_global_id)).toEqual(ids);
    // The id assignment itself is not an update.
    expect(changes(engine).map((c) => c.operation)).toEqual(['insert', 'insert']);
  });

  it('is assigned inside a transaction', async () => {
    const engine = await openEngine({ schema: todoSchema });
    engine.begin();
    engine.execute("INSERT INTO todos (title) VALUES ('in tx')");
    const gid = engine.insert('todos', { title: 'typed in tx' });
    engine.commit();
    const rows = engine.query('SELECT ps_global_id FROM todos ORDER BY id');
    expect(rows[0]!.ps_global_id).toMatch(/^[0-9a-f]{32}$/);
    expect(rows[1]!.ps_global_id).toBe(gid);
  });

  it('is given to rows that existed before PocketSync, which are recorded once as inserts', async () => {
    const setup = "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes (body) VALUES ('old 1'), ('old 2');";
    const engine = await openEngine({}, setup);
    const rows = engine.query('SELECT body, ps_global_id FROM notes ORDER BY id');
    expect(rows.every((r) => typeof r.ps_global_id === 'string')).toBe(true);
    const recorded = changes(engine);
    expect(recorded.map((c) => [c.operation, c.ps_global_id])).toEqual(rows.map((r) => ['insert', r.ps_global_id]));
    expect(JSON.parse(recorded[0]!.payload)).toEqual({ row: { id: 1, body: 'old 1' } });
  });

  it('is unique across two engines inserting the same primary keys', async () => {
    const a = await openEngine({ schema: todoSchema, deviceId: 'device-a' });
    const b = await openEngine({ schema: todoSchema, deviceId: 'device-b' });
    const ids = new Set<unknown>();
    for (const engine of [a, b]) {
      for (let i = 0; i < 500; i++) engine.insert('todos', { title: `t${i}` });
      engine.execute("INSERT INTO todos (title) SELECT 'raw' FROM (SELECT 1 UNION ALL SELECT 2)");
      for (const row of engine.query('SELECT ps_global_id FROM todos')) ids.add(row.ps_global_id);
    }
    expect(ids.size).toBe(1004);
  });

  it('is unique: a duplicate is refused by the index', async () => {
    const engine = await openEngine({ schema: todoSchema });
    const gid = engine.insert('todos', { title: 'a' });
    expect(() => engine.insert('todos', { title: 'b', ps_global_id: gid })).toThrow(/UNIQUE constraint failed/);
  });
});

describe('schema and migrations', () => {
  it('runs pending migrations once and records the version', async () => {
    const engine = await openEngine({ schema: todoSchema });
    expect(engine.schemaVersion).toBe(1);
    expect(engine.syncedTables).toEqual(['todos']);
    expect(engine.query('PRAGMA user_version')[0]!.user_version).toBe(1);
  });

  it('re-installs the triggers after a migration adds a column, which is captured from then on', async () => {
    const engine = await openEngine({}, todoSchema.migrations[0]!.sql[0]);
    engine.insert('todos', { title: 'before' });
    // Migrating the same connection happens on reopen; simulate it with the migration's DDL at runtime.
    engine.execute('ALTER TABLE todos ADD COLUMN priority INTEGER');
    engine.update('todos', { priority: 3 }, { title: 'before' });
    const update = changes(engine).at(-1)!;
    expect(JSON.parse(update.payload)).toEqual({ row: { id: 1, title: 'before', done: 0, priority: 3 }, changed: ['priority'] });
  });

  it('upgrades an existing database: v1 → v2 adds a column that is then captured', async () => {
    const { loadSqlite } = await import('./helpers/engine.js');
    const { Engine } = await import('../worker/engine.js');
    const sqlite3 = await loadSqlite();
    const db = new sqlite3.oo1.DB(':memory:');
    const v1 = Engine.open(sqlite3, db, { deviceId: 'd', schema: todoSchema });
    v1.insert('todos', { title: 'a' });
    // Reopen the same connection with schema v2 (what a page reload with a new app version does).
    const v2Schema = {
      version: 2,
      migrations: [...todoSchema.migrations, { version: 2, sql: ['ALTER TABLE todos ADD COLUMN due TEXT', "UPDATE todos SET due = 'someday'"] }],
    };
    const v2 = Engine.open(sqlite3, db, { deviceId: 'd', schema: v2Schema });
    expect(v2.schemaVersion).toBe(2);
    v2.update('todos', { due: 'tomorrow' }, { title: 'a' });
    const last = changes(v2).at(-1)!;
    expect(JSON.parse(last.payload)).toEqual({ row: { id: 1, title: 'a', done: 0, due: 'tomorrow' }, changed: ['due'] });
    // The migration's own data fix is not a captured change (every device runs it locally).
    expect(changes(v2).map((c) => c.operation)).toEqual(['insert', 'update']);
    v2.close();
  });

  it('rolls back a failing migration entirely and reports kind schema with SQLite’s message', async () => {
    const bad = { version: 2, migrations: [...todoSchema.migrations, { version: 2, sql: ['ALTER TABLE nope ADD COLUMN x'] }] };
    await expect(openEngine({ schema: bad })).rejects.toMatchObject({ kind: ErrorKind.Schema, message: expect.stringContaining('no such table: nope') });
  });

  it('refuses a database newer than the app and malformed migration lists', async () => {
    const { loadSqlite } = await import('./helpers/engine.js');
    const { Engine } = await import('../worker/engine.js');
    const sqlite3 = await loadSqlite();
    const db = new sqlite3.oo1.DB(':memory:');
    db.exec('PRAGMA user_version = 5');
    expect(() => Engine.open(sqlite3, db, { deviceId: 'd', schema: todoSchema })).toThrow(expect.objectContaining({ kind: ErrorKind.Schema }));
    db.close();
    const unordered = { version: 2, migrations: [{ version: 2, sql: [] }, { version: 1, sql: [] }] };
    await expect(openEngine({ schema: unordered })).rejects.toMatchObject({ kind: ErrorKind.Schema });
  });

  it('syncs only the listed tables when given, and refuses unknown ones', async () => {
    const setup = 'CREATE TABLE a (x); CREATE TABLE b (y);';
    const engine = await openEngine({ tables: ['a'] }, setup);
    expect(engine.syncedTables).toEqual(['a']);
    engine.execute('INSERT INTO b VALUES (1)');
    expect(changes(engine)).toEqual([]);
    expect(engine.query('SELECT name FROM pragma_table_info(?)', ['b']).map((r) => r.name)).toEqual(['y']);
    await expect(openEngine({ tables: ['missing'] }, setup)).rejects.toMatchObject({ kind: ErrorKind.Schema });
  });

  it('creates its system tables idempotently', async () => {
    const engine = await openEngine({ schema: todoSchema });
    const tables = engine.query("SELECT name FROM sqlite_schema WHERE type = 'table' AND name LIKE '\\_\\_pocketsync%' ESCAPE '\\' ORDER BY name");
    expect(tables.map((t) => t.name)).toEqual([
      '__pocketsync_changes',
      '__pocketsync_cursor_marks',
      '__pocketsync_device_state',
      '__pocketsync_quarantine',
      '__pocketsync_replica_state',
      '__pocketsync_resync_seen',
      '__pocketsync_stash',
      '__pocketsync_version',
    ]);
    expect(engine.query('SELECT device_id FROM __pocketsync_device_state')).toEqual([{ device_id: 'device-a' }]);
  });
});

describe('transactions and errors', () => {
  it('a rolled-back transaction leaves no rows and no change rows', async () => {
    const engine = await openEngine({ schema: todoSchema });
    engine.begin();
    engine.insert('todos', { title: 'gone' });
    engine.rollback();
    expect(engine.query('SELECT count(*) AS n FROM todos')).toEqual([{ n: 0 }]);
    expect(changes(engine)).toEqual([]);
  });

  it('bad SQL fails with kind database and SQLite’s message', async () => {
    const engine = await openEngine({ schema: todoSchema });
    expect(() => engine.query('SELEC 1')).toThrow(expect.objectContaining({ kind: ErrorKind.Database, message: 'near "SELEC": syntax error' }));
    expect(() => engine.query('SELECT * FROM missing')).toThrow(expect.objectContaining({ kind: ErrorKind.Database, message: 'no such table: missing' }));
    expect(() => engine.insert('todos', { title: null })).toThrow(expect.objectContaining({ kind: ErrorKind.Database, message: expect.stringContaining('NOT NULL constraint failed: todos.title') }));
  });

  it('refuses unknown tables and columns in the typed API with kind invalid', async () => {
    const engine = await openEngine({ schema: todoSchema });
    expect(() => engine.insert('nope', { a: 1 })).toThrow(expect.objectContaining({ kind: ErrorKind.Invalid }));
    expect(() => engine.insert('todos', { 'title"; DROP TABLE todos; --': 1 })).toThrow(expect.objectContaining({ kind: ErrorKind.Invalid }));
    expect(() => engine.update('todos', { done: 1 }, {})).toThrow(expect.objectContaining({ kind: ErrorKind.Invalid }));
    expect(engine.query('SELECT count(*) AS n FROM todos')).toEqual([{ n: 0 }]);
  });

  it('reports the tables a statement reads and, after a write, the tables it changed', async () => {
    const engine = await openEngine({ schema: todoSchema }, 'CREATE TABLE other (x)');
    engine.execute('CREATE VIEW open_todos AS SELECT * FROM todos WHERE done = 0');
    expect(engine.readTables('SELECT count(*) FROM open_todos')).toContain('todos');
    expect(engine.readTables('SELECT title FROM open_todos JOIN other')).toEqual(expect.arrayContaining(['todos', 'other']));
    expect(engine.readTables('SELECT 1')).toEqual([]);
    engine.takeChangedTables();
    engine.insert('todos', { title: 'x' });
    expect(engine.takeChangedTables().sort()).toEqual(['__pocketsync_changes', 'todos']);
    engine.begin();
    engine.execute('INSERT INTO other (x) VALUES (1)');
    expect(engine.takeChangedTables()).toEqual([]); // not before commit
    engine.commit();
    expect(engine.takeChangedTables()).toEqual(expect.arrayContaining(['other']));
  });
});
