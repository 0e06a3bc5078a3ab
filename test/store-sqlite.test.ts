import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { ClientChange } from '../lib/protocol/change.js';
import { SCHEMA_VERSION, SqliteStore } from '../server/store/sqlite-store.js';
import { describeStore } from './store-conformance.js';

describeStore('sqlite (memory)', () => Promise.resolve(new SqliteStore(':memory:')));

const dir = mkdtempSync(join(tmpdir(), 'pocketsync-store-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
describeStore('sqlite (file)', () => Promise.resolve(new SqliteStore(join(dir, `store-${Math.random().toString(36).slice(2)}.db`))));

it('keeps what it acknowledged across a reopen of the same file', async () => {
  const file = join(dir, 'reopen.db');
  const first = new SqliteStore(file);
  await first.createProject({ id: 'p', secret: 's' });
  await first.push({
    projectId: 'p', userId: 'u', deviceId: 'd', deviceCursor: 0,
    changes: [{ id: 'c1', table: 'todos', row: 'r1', op: 'insert', clock: '000000000000000001024-d', values: { title: 'kept' } }],
  });
  await first.close();
  const second = new SqliteStore(file);
  const pulled = await second.pull({ projectId: 'p', scopes: ['shared', 'user:u'], cursor: 0, limit: 10 });
  expect(pulled.changes).toMatchObject([{ row: 'r1', values: { title: 'kept' } }]);
  await second.close();
});

it('stores the conflict of an edit that brings back a row deleted elsewhere', async () => {
  const file = join(dir, 'conflicts.db');
  const store = new SqliteStore(file);
  await store.createProject({ id: 'p', secret: 's' });
  const at = (wall: number, device: string) => `${String(wall).padStart(21, '0')}-${device}`;
  const push = (deviceId: string, changes: ClientChange[]) => store.push({ projectId: 'p', userId: 'u', deviceId, deviceCursor: 0, changes });
  await push('a', [{ id: 'c1', table: 'todos', row: 'r1', op: 'insert', clock: at(10, 'a'), values: { y: 'y0' } }]);
  await push('b', [{ id: 'c2', table: 'todos', row: 'r1', op: 'delete', clock: at(20, 'b'), base: 1 }]);
  await push('a', [{ id: 'c3', table: 'todos', row: 'r1', op: 'update', clock: at(30, 'a'), values: { y: 'y1' }, base: 1 }]);
  await store.close();
  const db = new Database(file, { readonly: true });
  const stored = db.prepare('SELECT row_id, column_name, losing, winning FROM conflicts').all() as Array<Record<string, string | null>>;
  db.close();
  expect(stored).toEqual([{ row_id: 'r1', column_name: null, losing: JSON.stringify({ op: 'delete', clock: at(20, 'b') }), winning: JSON.stringify({ op: 'update', clock: at(30, 'a') }) }]);
});

describe('schema versions', () => {
  it('a new store is at the current schema version', async () => {
    const file = join(dir, 'version-new.db');
    await new SqliteStore(file).close();
    const db = new Database(file);
    expect(db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    db.close();
  });

  it('migrates a store of the first shape (before versions were kept), keeping its data', async () => {
    const file = join(dir, 'version-0.db');
    const db = new Database(file);
    // The tables as the first server made them.
    db.exec(`
      CREATE TABLE projects (id TEXT PRIMARY KEY, secret TEXT NOT NULL, strategy TEXT NOT NULL, shared_tables TEXT NOT NULL, last_seq INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL);
      CREATE TABLE devices (project_id TEXT NOT NULL, device_id TEXT NOT NULL, user_id TEXT NOT NULL, cursor INTEGER NOT NULL DEFAULT 0, online INTEGER NOT NULL DEFAULT 0, first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL, PRIMARY KEY (project_id, device_id));
      CREATE TABLE change_log (project_id TEXT NOT NULL, change_id TEXT NOT NULL, device_id TEXT NOT NULL, user_id TEXT NOT NULL, table_name TEXT NOT NULL, row_id TEXT NOT NULL, op TEXT NOT NULL, payload TEXT, clock TEXT NOT NULL, outcome TEXT NOT NULL, seq INTEGER, received_at INTEGER NOT NULL, PRIMARY KEY (project_id, change_id)) WITHOUT ROWID;
      CREATE TABLE row_state (project_id TEXT NOT NULL, scope TEXT NOT NULL, table_name TEXT NOT NULL, row_id TEXT NOT NULL, vals TEXT NOT NULL, clocks TEXT NOT NULL, seqs TEXT NOT NULL, deleted INTEGER NOT NULL, delete_clock TEXT, last_seq INTEGER NOT NULL, PRIMARY KEY (project_id, scope, table_name, row_id)) WITHOUT ROWID;
      CREATE TABLE conflicts (id INTEGER PRIMARY KEY, project_id TEXT NOT NULL, table_name TEXT NOT NULL, row_id TEXT NOT NULL, column_name TEXT, rule TEXT NOT NULL, losing TEXT NOT NULL, winning TEXT NOT NULL, at INTEGER NOT NULL);
      INSERT INTO projects VALUES ('p', 'old-secret-old-secret-old-secret-00', 'column-lww', '[]', 1, 1);
      INSERT INTO devices VALUES ('p', 'd', 'u', 1, 1, 1, 1);
      INSERT INTO change_log VALUES ('p', 'c1', 'd', 'u', 'todos', 'r1', 'insert', '{"title":"kept"}', '000000000000000001024-d', 'applied', 1, 1);
      INSERT INTO row_state VALUES ('p', 'user:u', 'todos', 'r1', '{"title":"kept"}', '{"title":"000000000000000001024-d"}', '{"title":1}', 0, NULL, 1);
    `);
    db.close();
    const store = new SqliteStore(file);
    const pulled = await store.pull({ projectId: 'p', scopes: ['shared', 'user:u'], cursor: 0, limit: 10 });
    expect(pulled.changes).toMatchObject([{ row: 'r1', values: { title: 'kept' } }]);
    // Its secret is its first signing key; its device was not left online; its log answers duplicates.
    expect((await store.getProject('p'))?.keys).toEqual([{ kid: 'default', secret: 'old-secret-old-secret-old-secret-00' }]);
    expect((await store.listDevices('p'))[0]).toMatchObject({ deviceId: 'd', online: false, pending: null });
    const again = await store.push({ projectId: 'p', userId: 'u', deviceId: 'd', deviceCursor: 1, changes: [{ id: 'c1', table: 'todos', row: 'r1', op: 'insert', clock: '000000000000000001024-d', values: { title: 'kept' } }] });
    expect(again.results).toEqual([{ id: 'c1', outcome: 'duplicate', seq: 1 }]);
    await store.close();
    const reopened = new Database(file);
    expect(reopened.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    reopened.close();
  });

  it('refuses a store of a newer schema version, changing nothing', () => {
    const file = join(dir, 'version-future.db');
    const db = new Database(file);
    db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    db.close();
    expect(() => new SqliteStore(file)).toThrow(/newer than this pocketsync-server/);
    const after = new Database(file);
    expect(after.prepare("SELECT count(*) FROM sqlite_master WHERE type = 'table'").pluck().get()).toBe(0);
    after.close();
  });
});
