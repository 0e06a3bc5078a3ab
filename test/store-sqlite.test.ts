import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import type { ClientChange } from '../lib/protocol/change.js';
import { SqliteStore } from '../server/store/sqlite-store.js';
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
