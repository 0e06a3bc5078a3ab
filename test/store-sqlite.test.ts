import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
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
