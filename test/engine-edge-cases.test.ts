/**
 * Edge cases of the engine that once lost, duplicated or mis-attributed data (found in review):
 * odd schemas, schema changes at runtime, scripts, and conflict clauses.
 */
import { describe, expect, it } from 'vitest';
import { ErrorKind } from '../lib/protocol/error-kind.js';
import { changes, openEngine, todoSchema } from './helpers/engine.js';

describe('odd schemas', () => {
  it('captures rows of a table with a column named rowid', async () => {
    const engine = await openEngine({}, 'CREATE TABLE odd (rowid TEXT, v TEXT)');
    engine.execute("INSERT INTO odd (rowid, v) VALUES (NULL, 'a'), ('x', 'b'), ('x', 'c')");
    const rows = engine.query('SELECT ps_global_id FROM odd');
    const recorded = changes(engine);
    expect(recorded.map((c) => c.operation)).toEqual(['insert', 'insert', 'insert']);
    expect(new Set(rows.map((r) => r.ps_global_id)).size).toBe(3);
    expect(recorded.map((c) => c.ps_global_id).sort()).toEqual(rows.map((r) => r.ps_global_id).sort());
  });

  it('handles identifiers that are keywords', async () => {
    const engine = await openEngine({}, `CREATE TABLE "order" ("select" TEXT, "group" INTEGER, "from" TEXT)`);
    const gid = engine.insert('order', { select: 'x', group: 1, from: 'y' });
    engine.update('order', { group: 2 }, { select: 'x' });
    const [insert, update] = changes(engine);
    expect(insert!.ps_global_id).toBe(gid);
    expect(JSON.parse(update!.payload)).toEqual({ row: { select: 'x', group: 2, from: 'y' }, changed: ['group'] });
  });

  it('refuses at open a synced table or column whose name the wire cannot carry, naming it (defect 2)', async () => {
    const long = 'x'.repeat(64);
    for (const [setup, name] of [
      ['CREATE TABLE "my-notes" (body TEXT)', 'my-notes'],
      ['CREATE TABLE people (name TEXT, "e-mail" TEXT)', 'e-mail'],
      ['CREATE TABLE "café" (v TEXT)', 'café'],
      [`CREATE TABLE ${long} (v TEXT)`, long],
      [`CREATE TABLE t (${long} TEXT)`, long],
    ] as const) {
      await expect(openEngine({}, setup)).rejects.toMatchObject({ kind: ErrorKind.Schema, message: expect.stringContaining(JSON.stringify(name)) });
    }
    await expect(openEngine({}, 'CREATE TABLE "my-notes" (body TEXT)')).rejects.toMatchObject({ message: expect.stringContaining('`tables` option') });
    // Left out of sync, the table is an ordinary local table.
    const engine = await openEngine({ tables: ['todos'] }, 'CREATE TABLE "my-notes" (body TEXT); CREATE TABLE todos (title TEXT)');
    expect(engine.insert('my-notes', { body: 'local' })).toBeNull();
    expect(engine.syncedTables).toEqual(['todos']);
  });

  it('refuses a ps_global_id from the typed API that the wire cannot carry (defect 2)', async () => {
    const engine = await openEngine({ schema: todoSchema });
    for (const bad of ['has space', 'x'.repeat(65), 'é', '']) {
      expect(() => engine.insert('todos', { title: 'x', ps_global_id: bad })).toThrow(expect.objectContaining({ kind: ErrorKind.Invalid }));
    }
    expect(engine.insert('todos', { title: 'x', ps_global_id: 'app_id-1' })).toBe('app_id-1');
    expect(changes(engine)).toHaveLength(1);
  });

  it('refuses a synced table created at runtime with a name the wire cannot carry, and undoes it', async () => {
    const engine = await openEngine({ schema: todoSchema });
    expect(() => engine.execute('CREATE TABLE "my-notes" (body TEXT)')).toThrow(expect.objectContaining({ kind: ErrorKind.Schema }));
    expect(engine.query("SELECT name FROM sqlite_schema WHERE name = 'my-notes'")).toEqual([]);
    engine.insert('todos', { title: 'still captured' });
    expect(changes(engine)).toHaveLength(1);
  });

  it('tests a column named sql in a where object as a column, not as SQL', async () => {
    const engine = await openEngine({}, 'CREATE TABLE snippets (sql TEXT, lang TEXT)');
    engine.insert('snippets', { sql: '1', lang: 'a' });
    engine.insert('snippets', { sql: '2', lang: 'b' });
    expect(engine.delete('snippets', { sql: '1' })).toBe(1);
    expect(engine.query('SELECT lang FROM snippets')).toEqual([{ lang: 'b' }]);
    expect(engine.delete('snippets', 'lang = ?', ['b'])).toBe(1);
  });

  it('returns the ps_global_id it stored when values carry ps_global_id: undefined', async () => {
    const engine = await openEngine({ schema: todoSchema });
    const gid = engine.insert('todos', { title: 'x', ps_global_id: undefined } as never);
    expect(engine.query('SELECT ps_global_id FROM todos')).toEqual([{ ps_global_id: gid }]);
  });

  it('refuses malformed where clauses with kind invalid', async () => {
    const engine = await openEngine({ schema: todoSchema });
    engine.insert('todos', { title: 'x' });
    expect(() => engine.delete('todos', null as never)).toThrow(expect.objectContaining({ kind: ErrorKind.Invalid }));
    expect(() => engine.delete('todos', { id: undefined } as never)).toThrow(expect.objectContaining({ kind: ErrorKind.Invalid }));
    expect(() => engine.delete('todos', '  ')).toThrow(expect.objectContaining({ kind: ErrorKind.Invalid }));
    expect(engine.query('SELECT count(*) AS n FROM todos')).toEqual([{ n: 1 }]);
  });
});

describe('conflict clauses', () => {
  it('records the delete an INSERT OR REPLACE performs', async () => {
    const engine = await openEngine({ schema: todoSchema });
    const first = engine.insert('todos', { id: 1, title: 'old' });
    engine.execute("INSERT OR REPLACE INTO todos (id, title) VALUES (1, 'new')");
    const recorded = changes(engine);
    expect(recorded.map((c) => c.operation)).toEqual(['insert', 'delete', 'insert']);
    expect(recorded[1]!.ps_global_id).toBe(first);
    expect(recorded[2]!.ps_global_id).not.toBe(first);
    expect(engine.query('SELECT title FROM todos')).toEqual([{ title: 'new' }]);
  });

  it('records an upsert that updates as an update', async () => {
    const engine = await openEngine({ schema: todoSchema });
    const gid = engine.insert('todos', { id: 1, title: 'old' });
    engine.execute("INSERT INTO todos (id, title) VALUES (1, 'new') ON CONFLICT (id) DO UPDATE SET title = excluded.title");
    const update = changes(engine)[1]!;
    expect(update).toMatchObject({ operation: 'update', ps_global_id: gid });
    expect(JSON.parse(update.payload).changed).toEqual(['title']);
  });
});

describe('schema changes at runtime', () => {
  it('keeps capturing after a runtime ALTER TABLE DROP COLUMN', async () => {
    const engine = await openEngine({}, 'CREATE TABLE t (a TEXT, b TEXT)');
    engine.execute("INSERT INTO t (a, b) VALUES ('1', '2')");
    engine.execute('ALTER TABLE t DROP COLUMN b');
    engine.execute("UPDATE t SET a = '3'");
    expect(JSON.parse(changes(engine).at(-1)!.payload)).toEqual({ row: { a: '3' }, changed: ['a'] });
  });

  it('undoes a DDL statement whose capture could not be installed, and keeps the triggers', async () => {
    const engine = await openEngine({}, 'CREATE TABLE a (x TEXT)');
    engine.execute("INSERT INTO a (x) VALUES ('1')");
    // b would have duplicate ps_global_ids, so its unique index cannot be built.
    expect(() => engine.execute('CREATE TABLE b AS SELECT ps_global_id FROM a UNION ALL SELECT ps_global_id FROM a')).toThrow(
      expect.objectContaining({ kind: ErrorKind.Database }),
    );
    expect(engine.query("SELECT count(*) AS n FROM sqlite_schema WHERE name = 'b'")).toEqual([{ n: 0 }]);
    engine.execute("INSERT INTO a (x) VALUES ('2')");
    expect(changes(engine)).toHaveLength(2);
  });

  it('restores table metadata when a transaction that dropped a table rolls back', async () => {
    const engine = await openEngine({}, 'CREATE TABLE a (x TEXT); CREATE TABLE c (y TEXT);');
    engine.insert('c', { y: '1' });
    engine.begin();
    engine.execute('DROP TABLE a');
    engine.rollback();
    engine.insert('a', { x: '1' });
    engine.insert('c', { y: '2' });
    const versions = changes(engine).map((c) => [c.table_name, c.version]);
    expect(versions).toEqual([['c', 1], ['a', 1], ['c', 2]]);
  });

  it('with a tables list, survives dropping a listed table and keeps accepting DDL', async () => {
    const engine = await openEngine({ tables: ['a', 'b'] }, 'CREATE TABLE a (x); CREATE TABLE b (y);');
    engine.execute('DROP TABLE b');
    engine.execute('CREATE TABLE c (z)');
    expect(engine.syncedTables).toEqual(['a']);
    engine.execute('INSERT INTO a (x) VALUES (1)');
    expect(changes(engine)).toHaveLength(1);
  });

  it('gives a table created under a renamed table’s old name its own unique index', async () => {
    const engine = await openEngine({}, 'CREATE TABLE t (x TEXT)');
    engine.execute('ALTER TABLE t RENAME TO t_old');
    engine.execute('CREATE TABLE t (x TEXT)');
    const gid = engine.insert('t', { x: '1' });
    expect(() => engine.insert('t', { x: '2', ps_global_id: gid })).toThrow(/UNIQUE constraint failed/);
    const indexes = engine.query("SELECT tbl_name FROM sqlite_schema WHERE type = 'index' AND name LIKE '\\_\\_pocketsync%' ESCAPE '\\' AND tbl_name NOT LIKE '\\_\\_pocketsync%' ESCAPE '\\' ORDER BY tbl_name");
    expect(indexes).toEqual([{ tbl_name: 't' }, { tbl_name: 't_old' }]);
    // The renamed table is captured under its new name.
    engine.insert('t_old', { x: 'y' });
    expect(changes(engine).at(-1)!.table_name).toBe('t_old');
  });

  it('reports tables written by a trigger created after a statement was cached', async () => {
    const engine = await openEngine({ schema: todoSchema }, 'CREATE TABLE audit (what TEXT)');
    engine.insert('todos', { title: 'a' });
    engine.takeChangedTables();
    engine.execute("CREATE TRIGGER todo_audit AFTER INSERT ON todos BEGIN INSERT INTO audit (what) VALUES ('insert'); END");
    engine.takeChangedTables();
    engine.insert('todos', { title: 'b' });
    expect(engine.takeChangedTables()).toEqual(expect.arrayContaining(['todos', 'audit']));
  });
});

describe('scripts', () => {
  it('runs a script that ends in a comment', async () => {
    const engine = await openEngine({ schema: todoSchema });
    engine.execute("INSERT INTO todos (title) VALUES ('a'); INSERT INTO todos (title) VALUES ('b'); -- two rows");
    expect(engine.query('SELECT count(*) AS n FROM todos')).toEqual([{ n: 2 }]);
  });

  it('runs a script atomically: a failing statement undoes the ones before it', async () => {
    const engine = await openEngine({ schema: todoSchema });
    expect(() => engine.execute("INSERT INTO todos (title) VALUES ('a'); INSERT INTO todos (title) VALUES (NULL);")).toThrow(
      expect.objectContaining({ kind: ErrorKind.Database }),
    );
    expect(engine.query('SELECT count(*) AS n FROM todos')).toEqual([{ n: 0 }]);
    expect(changes(engine)).toEqual([]);
  });

  it('keeps semicolons inside strings and trigger bodies within their statement', async () => {
    const engine = await openEngine({ schema: todoSchema }, 'CREATE TABLE log (m TEXT)');
    engine.execute("INSERT INTO todos (title) VALUES ('a;b'); CREATE TRIGGER t1 AFTER DELETE ON todos BEGIN INSERT INTO log (m) VALUES ('x;y'); END;");
    engine.delete('todos', { title: 'a;b' });
    expect(engine.query('SELECT m FROM log')).toEqual([{ m: 'x;y' }]);
  });

  it('refuses parameters with several statements instead of ignoring the rest', async () => {
    const engine = await openEngine({ schema: todoSchema });
    expect(() => engine.execute('INSERT INTO todos (title) VALUES (?); DELETE FROM todos', ['a'])).toThrow(
      expect.objectContaining({ kind: ErrorKind.Invalid }),
    );
    expect(engine.query('SELECT count(*) AS n FROM todos')).toEqual([{ n: 0 }]);
  });
});

describe('transaction statements from the app (defect 12)', () => {
  it('refuses BEGIN, COMMIT, ROLLBACK, END, SAVEPOINT and RELEASE with kind invalid, pointing to db.transaction()', async () => {
    const engine = await openEngine({ schema: todoSchema });
    for (const sql of ['BEGIN', 'begin immediate', 'BEGIN EXCLUSIVE TRANSACTION', 'COMMIT', 'END', 'ROLLBACK', 'SAVEPOINT s', 'RELEASE s', 'ROLLBACK TO s']) {
      expect(() => engine.execute(sql)).toThrow(expect.objectContaining({ kind: ErrorKind.Invalid, message: expect.stringContaining('db.transaction()') }));
      expect(engine.inTransaction).toBe(false);
    }
    expect(() => engine.query('  /* a comment */ BEGIN;')).toThrow(expect.objectContaining({ kind: ErrorKind.Invalid }));
    // In a script, the whole script is refused and nothing of it lands.
    expect(() => engine.execute("BEGIN; INSERT INTO todos (title) VALUES ('x'); COMMIT")).toThrow(expect.objectContaining({ kind: ErrorKind.Invalid }));
    expect(() => engine.execute("INSERT INTO todos (title) VALUES ('x'); SAVEPOINT a")).toThrow(expect.objectContaining({ kind: ErrorKind.Invalid }));
    expect(engine.inTransaction).toBe(false);
    expect(engine.query('SELECT count(*) AS n FROM todos')).toEqual([{ n: 0 }]);
    expect(changes(engine)).toEqual([]);
  });

  it("keeps the engine's own transactions working", async () => {
    const engine = await openEngine({ schema: todoSchema });
    engine.begin();
    expect(() => engine.execute('COMMIT')).toThrow(expect.objectContaining({ kind: ErrorKind.Invalid }));
    engine.insert('todos', { title: 'x' });
    expect(engine.inTransaction).toBe(true);
    engine.commit();
    engine.begin();
    engine.insert('todos', { title: 'y' });
    engine.rollback();
    expect(engine.query('SELECT title FROM todos')).toEqual([{ title: 'x' }]);
  });
});

describe('64-bit integers (defect 8)', () => {
  const big = 9007199254740993n;

  it('captures integers beyond ±(2^53 - 1) as {"$int": decimal} and those inside as numbers', async () => {
    const engine = await openEngine({}, 'CREATE TABLE n (a INTEGER, b INTEGER, c INTEGER, d INTEGER)');
    engine.insert('n', { a: big, b: -big, c: 9007199254740991, d: 9223372036854775807n });
    engine.execute('UPDATE n SET a = -9223372036854775808');
    engine.execute('DELETE FROM n');
    const [insert, update, remove] = changes(engine).map((c) => JSON.parse(c.payload) as Record<string, Record<string, unknown>>);
    expect(insert!.row).toEqual({ a: { $int: '9007199254740993' }, b: { $int: '-9007199254740993' }, c: 9007199254740991, d: { $int: '9223372036854775807' } });
    expect(update!.row!.a).toEqual({ $int: '-9223372036854775808' });
    expect(remove!.old!.d).toEqual({ $int: '9223372036854775807' });
  });

  it('round-trips 9007199254740993 exactly through the typed API and query()', async () => {
    const engine = await openEngine({}, 'CREATE TABLE n (k TEXT, v INTEGER)');
    engine.insert('n', { k: 'a', v: big });
    engine.execute('INSERT INTO n (k, v) VALUES (?, ?)', ['b', big]);
    engine.update('n', { v: big + 2n }, { k: 'b' });
    expect(engine.query('SELECT k, v FROM n ORDER BY k')).toEqual([{ k: 'a', v: big }, { k: 'b', v: big + 2n }]);
    expect(engine.query('SELECT k FROM n WHERE v = ?', [big])).toEqual([{ k: 'a' }]);
    expect(engine.query('SELECT v FROM n WHERE k = ?', ['a'])[0]!.v).toBe(big);
  });
});
