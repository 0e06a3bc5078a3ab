/**
 * A table rebuilt by a migration keeps its rows' identity (issue 10, defect 10): the usual
 * create-new / INSERT ... SELECT / drop / rename gives other devices no duplicates and records
 * nothing for rows that were already there.
 */
import { describe, expect, it } from 'vitest';
import type { Schema } from '../lib/protocol/worker-api.js';
import { Engine } from '../worker/engine.js';
import { changes, loadSqlite } from './helpers/engine.js';

/**
 * Opens v1 on a fresh database, runs `write`, then reopens the same database at `v2`; returns the ids
 * v1 recorded, in order, and the v2 engine.
 */
async function upgrade(v1: Schema, write: (engine: Engine) => void, v2: Schema): Promise<{ idsBefore: string[]; after: Engine }> {
  const sqlite3 = await loadSqlite();
  const db = new sqlite3.oo1.DB(':memory:');
  const before = Engine.open(sqlite3, db, { deviceId: 'd', schema: v1 });
  write(before);
  const idsBefore = changes(before).map((c) => c.ps_global_id);
  return { idsBefore, after: Engine.open(sqlite3, db, { deviceId: 'd', schema: v2 }) };
}

const rebuild = (table: string, create: string, copy: string): string[] => [
  create.replace(table, `${table}_new`),
  copy,
  `DROP TABLE ${table}`,
  `ALTER TABLE ${table}_new RENAME TO ${table}`,
];

describe('a table rebuilt by a migration', () => {
  it('keeps the ids of an INTEGER PRIMARY KEY table and records nothing new', async () => {
    const v1 = { version: 1, migrations: [{ version: 1, sql: ['CREATE TABLE todos (id INTEGER PRIMARY KEY, title TEXT)'] }] };
    const v2 = {
      version: 2,
      migrations: [
        ...v1.migrations,
        { version: 2, sql: rebuild('todos', 'CREATE TABLE todos (id INTEGER PRIMARY KEY, title TEXT NOT NULL, done INTEGER NOT NULL DEFAULT 0)', "INSERT INTO todos_new (id, title) SELECT id, coalesce(title, '') FROM todos") },
      ],
    };
    const { idsBefore, after } = await upgrade(v1, (e) => {
      e.insert('todos', { id: 5, title: 'a' });
      e.insert('todos', { id: 9, title: 'b' });
    }, v2);
    expect(after.query('SELECT id, ps_global_id FROM todos ORDER BY id')).toEqual([
      { id: 5, ps_global_id: idsBefore[0] },
      { id: 9, ps_global_id: idsBefore[1] },
    ]);
    expect(changes(after).map((c) => [c.operation, c.ps_global_id])).toEqual([['insert', idsBefore[0]], ['insert', idsBefore[1]]]);
    // Capture goes on on the rebuilt table.
    after.update('todos', { done: 1 }, { id: 5 });
    expect(changes(after).at(-1)).toMatchObject({ operation: 'update', ps_global_id: idsBefore[0] });
    after.close();
  });

  it('keeps the ids of a keyless table by the columns both versions share, pairing identical rows one to one', async () => {
    const v1 = { version: 1, migrations: [{ version: 1, sql: ['CREATE TABLE notes (body TEXT, tag TEXT)'] }] };
    const v2 = {
      version: 2,
      migrations: [
        ...v1.migrations,
        { version: 2, sql: [...rebuild('notes', 'CREATE TABLE notes (body TEXT, pinned INTEGER DEFAULT 0)', 'INSERT INTO notes_new (body) SELECT body FROM notes'), "INSERT INTO notes (body) VALUES ('added by the migration')"] },
      ],
    };
    const { idsBefore, after } = await upgrade(v1, (e) => {
      e.execute("INSERT INTO notes (body, tag) VALUES ('same', 'a'), ('same', 'b'), ('other', NULL), (NULL, 'c')");
    }, v2);
    const rows = after.query('SELECT body, ps_global_id FROM notes ORDER BY rowid');
    expect(rows).toHaveLength(5);
    expect(new Set(rows.map((r) => r.ps_global_id)).size).toBe(5);
    expect(rows.slice(0, 4).map((r) => r.ps_global_id).sort()).toEqual([...idsBefore].sort());
    expect(rows.find((r) => r.body === 'other')!.ps_global_id).toBe(idsBefore[2]);
    expect(rows.find((r) => r.body === null)!.ps_global_id).toBe(idsBefore[3]);
    // Only the row the migration added is new.
    const recorded = changes(after);
    expect(recorded).toHaveLength(5);
    expect(recorded.at(-1)).toMatchObject({ operation: 'insert', ps_global_id: rows[4]!.ps_global_id });
    after.close();
  });

  it('keeps the ids of a keyed table and records nothing new for its rows', async () => {
    const v1 = { version: 1, migrations: [{ version: 1, sql: ['CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT)'] }] };
    const v2 = {
      version: 2,
      migrations: [
        ...v1.migrations,
        { version: 2, sql: rebuild('settings', 'CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL DEFAULT \'\') WITHOUT ROWID', "INSERT INTO settings_new SELECT key, coalesce(value, '') FROM settings") },
      ],
    };
    const { idsBefore, after } = await upgrade(v1, (e) => {
      e.insert('settings', { key: 'theme', value: 'dark' });
      e.insert('settings', { key: 'lang', value: null });
    }, v2);
    expect(after.query('SELECT key, ps_global_id FROM settings ORDER BY key')).toEqual([
      { key: 'lang', ps_global_id: idsBefore[1] },
      { key: 'theme', ps_global_id: idsBefore[0] },
    ]);
    expect(changes(after)).toHaveLength(2);
    after.close();
  });
});
