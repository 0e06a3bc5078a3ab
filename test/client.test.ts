import { describe, expect, it } from 'vitest';
import { ErrorKind, PocketSyncError, type Row } from '../lib/index.js';
import { todoSchema } from './helpers/engine.js';
import { openInstance, waitFor } from './helpers/instance.js';

const schema = {
  version: 1,
  migrations: [{ version: 1, sql: [...todoSchema.migrations[0]!.sql, 'CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)'] }],
};

describe('PocketSync.initialize', () => {
  it('opens the database through the worker API and reports storage, device and schema', async () => {
    const ps = await openInstance({ schema });
    expect(ps.storage).toBe('memory');
    expect(ps.deviceId).toMatch(/^[0-9a-f]{16}$/);
    expect(ps.schemaVersion).toBe(1);
    expect([...ps.syncedTables].sort()).toEqual(['notes', 'todos']);
  });

  it('gives each new database its own random device id', async () => {
    const [a, b] = await Promise.all([openInstance({ schema }), openInstance({ schema })]);
    expect(a.deviceId).not.toBe(b.deviceId);
    expect(await a.database.query('SELECT device_id FROM __pocketsync_device_state')).toEqual([{ device_id: a.deviceId }]);
  });

  it('fails with kind schema when a migration fails, and with kind invalid without a dbName', async () => {
    const bad = { version: 1, migrations: [{ version: 1, sql: ['CREATE TABLE broken ('] }] };
    await expect(openInstance({ schema: bad })).rejects.toMatchObject({ kind: ErrorKind.Schema, message: expect.stringContaining('incomplete input') });
    await expect(openInstance({ dbName: '' })).rejects.toMatchObject({ kind: ErrorKind.Invalid });
  });
});

describe('database', () => {
  it('inserts, updates, deletes and queries through the typed API', async () => {
    const { database: db } = await openInstance({ schema });
    const gid = await db.insert('todos', { title: 'milk' });
    expect(gid).toMatch(/^[0-9a-f]{32}$/);
    expect(await db.update('todos', { done: 1 }, { ps_global_id: gid })).toBe(1);
    expect(await db.query('SELECT title, done FROM todos')).toEqual([{ title: 'milk', done: 1 }]);
    expect(await db.update('todos', { title: 'oat milk' }, 'done = ?', [1])).toBe(1);
    expect(await db.delete('todos', { title: 'oat milk' })).toBe(1);
    expect(await db.query('SELECT count(*) AS n FROM todos')).toEqual([{ n: 0 }]);
    const ops = await db.query('SELECT operation FROM __pocketsync_changes ORDER BY id');
    expect(ops.map((r) => r.operation)).toEqual(['insert', 'update', 'update', 'delete']);
  });

  it('executes raw SQL with params and returns changes, rowid and RETURNING rows', async () => {
    const { database: db } = await openInstance({ schema });
    const result = await db.execute('INSERT INTO notes (body) VALUES (?), (?) RETURNING id, body', ['a', 'b']);
    expect(result.rows).toEqual([{ id: 1, body: 'a' }, { id: 2, body: 'b' }]);
    expect(result.changes).toBe(2);
    expect(result.lastInsertRowid).toBe(2);
    const named = await db.query('SELECT body FROM notes WHERE id = $id', { $id: 2 });
    expect(named).toEqual([{ body: 'b' }]);
  });

  it('bad SQL rejects with a PocketSyncError of kind database carrying SQLite’s message', async () => {
    const { database: db } = await openInstance({ schema });
    const error = await db.query('SELECT * FROM nowhere').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PocketSyncError);
    expect(error).toMatchObject({ kind: ErrorKind.Database, message: 'no such table: nowhere' });
    await expect(db.insert('todos', { nope: 1 })).rejects.toMatchObject({ kind: ErrorKind.Invalid });
  });

  it('transaction commits atomically', async () => {
    const { database: db } = await openInstance({ schema });
    const result = await db.transaction(async (tx) => {
      await tx.insert('todos', { title: 'a' });
      await tx.execute("INSERT INTO todos (title) VALUES ('b')");
      return tx.query('SELECT count(*) AS n FROM todos');
    });
    expect(result).toEqual([{ n: 2 }]);
    expect(await db.query('SELECT count(*) AS n FROM __pocketsync_changes')).toEqual([{ n: 2 }]);
  });

  it('a failed statement inside transaction() rolls everything back and leaves no change rows', async () => {
    const { database: db } = await openInstance({ schema });
    await db.insert('todos', { title: 'kept' });
    const error = await db
      .transaction(async (tx) => {
        await tx.insert('todos', { title: 'gone 1' });
        await tx.update('todos', { done: 1 }, { title: 'kept' });
        await tx.insert('todos', { title: null }); // NOT NULL constraint
      })
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ kind: ErrorKind.Database, message: expect.stringContaining('NOT NULL') });
    expect(await db.query('SELECT title, done FROM todos')).toEqual([{ title: 'kept', done: 0 }]);
    expect(await db.query('SELECT operation FROM __pocketsync_changes')).toEqual([{ operation: 'insert' }]);
  });

  it('an exception thrown by the callback rolls back too, and the handle is dead afterwards', async () => {
    const { database: db } = await openInstance({ schema });
    let handle: { insert: (t: string, v: Row) => Promise<unknown> } | undefined;
    await expect(
      db.transaction(async (tx) => {
        handle = tx;
        await tx.insert('todos', { title: 'x' });
        throw new Error('app changed its mind');
      }),
    ).rejects.toThrow('app changed its mind');
    expect(await db.query('SELECT count(*) AS n FROM todos')).toEqual([{ n: 0 }]);
    await expect(handle!.insert('todos', { title: 'late' })).rejects.toMatchObject({ kind: ErrorKind.Closed });
  });

  it('calls from outside a transaction wait until it ends and do not see its rows', async () => {
    const { database: db } = await openInstance({ schema });
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let inside!: () => void;
    const started = new Promise<void>((resolve) => (inside = resolve));
    let handle!: { query: (sql: string) => Promise<unknown> };
    const tx = db.transaction(async (t) => {
      handle = t;
      await t.insert('todos', { title: 'pending' });
      inside();
      await gate;
    });
    await started;
    const outside = db.query('SELECT count(*) AS n FROM todos');
    let settled = false;
    void outside.then(() => (settled = true));
    // The outside call reached the worker before this one, which still gets through first.
    await handle.query('SELECT 1');
    expect(settled).toBe(false);
    release();
    await tx;
    expect(await outside).toEqual([{ n: 1 }]);
  });

  it('a transaction SQLite rolled back on its own does not go on piecemeal in autocommit', async () => {
    const { database: db } = await openInstance({ schema });
    await db.execute("CREATE TRIGGER no_bad BEFORE INSERT ON notes WHEN NEW.body = 'bad' BEGIN SELECT RAISE(ROLLBACK, 'bad note'); END");
    const error = await db
      .transaction(async (tx) => {
        await tx.insert('notes', { body: 'first' });
        await tx.insert('notes', { body: 'bad' }).catch(() => undefined); // the app swallows it...
        await tx.insert('notes', { body: 'after' }); // ...and carries on
      })
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ kind: ErrorKind.Closed });
    expect(await db.query('SELECT body FROM notes')).toEqual([]);
    expect(await db.query('SELECT count(*) AS n FROM __pocketsync_changes')).toEqual([{ n: 0 }]);
  });

  it('close() during an open transaction rolls it back and resolves', async () => {
    const ps = await openInstance({ schema });
    let inside!: () => void;
    const started = new Promise<void>((resolve) => (inside = resolve));
    const never = new Promise<void>(() => undefined);
    void ps.database
      .transaction(async (tx) => {
        await tx.insert('notes', { body: 'x' });
        inside();
        await never;
      })
      .catch(() => undefined);
    await started;
    await ps.close();
    await expect(ps.database.query('SELECT 1')).rejects.toMatchObject({ kind: ErrorKind.Closed });
  });

  it('rejects calls after close with kind closed', async () => {
    const ps = await openInstance({ schema });
    await ps.close();
    await expect(ps.database.query('SELECT 1')).rejects.toMatchObject({ kind: ErrorKind.Closed });
  });
});

describe('watch', () => {
  it('runs at once, then again after a write to a table it reads', async () => {
    const { database: db } = await openInstance({ schema });
    const seen: Row[][] = [];
    const stop = db.watch('SELECT title FROM todos ORDER BY id', [], (rows) => seen.push(rows));
    await waitFor(() => seen.length === 1, 5_000, 'the first run');
    expect(seen[0]).toEqual([]);
    await db.insert('todos', { title: 'a' });
    await waitFor(() => seen.length === 2, 5_000, 'the re-run');
    expect(seen[1]).toEqual([{ title: 'a' }]);
    stop();
    await db.insert('todos', { title: 'b' });
    await db.query('SELECT 1'); // a round trip after which a (wrong) re-run would have been scheduled
    expect(seen).toHaveLength(2);
  });

  it('coalesces a burst of writes into one callback', async () => {
    const { database: db } = await openInstance({ schema });
    const seen: Row[][] = [];
    db.watch('SELECT count(*) AS n FROM todos', undefined, (rows) => seen.push(rows));
    await waitFor(() => seen.length === 1);
    await Promise.all(Array.from({ length: 50 }, (_, i) => db.insert('todos', { title: `t${i}` })));
    await waitFor(() => seen.at(-1)?.[0]?.n === 50, 5_000, 'the burst to show');
    // One more round trip: any late re-run would be queued by now.
    await db.query('SELECT 1');
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(seen).toHaveLength(2);
  });

  it('does not fire for writes to tables it does not read', async () => {
    const { database: db } = await openInstance({ schema });
    const seenTodos: Row[][] = [];
    const seenNotes: Row[][] = [];
    db.watch('SELECT * FROM todos', [], (rows) => seenTodos.push(rows));
    db.watch('SELECT * FROM notes', [], (rows) => seenNotes.push(rows));
    await waitFor(() => seenTodos.length === 1 && seenNotes.length === 1);
    await db.insert('notes', { body: 'x' });
    await waitFor(() => seenNotes.length === 2, 5_000, 'the notes watch');
    await db.query('SELECT 1');
    expect(seenTodos).toHaveLength(1);
  });

  it('fires once for a whole transaction, at commit, and not for a rolled-back one', async () => {
    const { database: db } = await openInstance({ schema });
    const seen: Row[][] = [];
    db.watch('SELECT count(*) AS n FROM todos', [], (rows) => seen.push(rows));
    await waitFor(() => seen.length === 1);
    await db.transaction(async (tx) => {
      for (let i = 0; i < 10; i++) await tx.insert('todos', { title: `t${i}` });
    });
    await waitFor(() => seen.length === 2);
    expect(seen[1]).toEqual([{ n: 10 }]);
    await db.transaction(async (tx) => tx.insert('todos', { title: 'x' })).then(() => undefined);
    await waitFor(() => seen.length === 3);
    await db.transaction(async (tx) => {
      await tx.insert('todos', { title: 'y' });
      throw new Error('no');
    }).catch(() => undefined);
    await db.query('SELECT 1');
    expect(seen).toHaveLength(3);
  });

  it('reports a failing query to onError', async () => {
    const { database: db } = await openInstance({ schema });
    const errors: unknown[] = [];
    db.watch('SELECT * FROM missing', [], () => undefined, { onError: (e) => errors.push(e) });
    await waitFor(() => errors.length === 1);
    expect(errors[0]).toMatchObject({ kind: ErrorKind.Database });
  });

  it('exposes the changed tables of each committed write', async () => {
    const ps = await openInstance({ schema });
    const batches: string[][] = [];
    ps.onTablesChanged((tables) => batches.push([...tables].sort()));
    await ps.database.insert('notes', { body: 'x' });
    await waitFor(() => batches.length === 1);
    expect(batches[0]).toEqual(['__pocketsync_changes', 'notes']);
  });
});
