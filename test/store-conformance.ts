/**
 * The store contract (server/store/store.ts) as tests, run against every implementation by a
 * `*.test.ts` file that passes its factory. Each test gets a fresh, empty store.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { ClientChange } from '../lib/protocol/change.js';
import { scopesOf, type Store } from '../server/store/store.js';
import { formatClock } from '../worker/hlc.js';

let counter = 0;
const clock = (wall: number, device = 'dev-a') => formatClock({ wall, counter: 0, deviceId: device });
const id = () => `c${++counter}`;
const upsert = (row: string, wall: number, values: ClientChange['values'], table = 'todos', op: ClientChange['op'] = 'update'): ClientChange => ({
  id: id(), table, row, op, clock: clock(wall), values,
});
const remove = (row: string, wall: number, table = 'todos'): ClientChange => ({ id: id(), table, row, op: 'delete', clock: clock(wall) });

export function describeStore(name: string, open: () => Promise<Store>): void {
  describe(`store conformance: ${name}`, () => {
    let store: Store;
    const stores: Store[] = [];
    const fresh = async (shared: string[] = ['lists']) => {
      store = await open();
      stores.push(store);
      await store.createProject({ id: 'p1', secret: 's1', sharedTables: shared });
      await store.createProject({ id: 'p2', secret: 's2', sharedTables: shared });
      return store;
    };
    afterEach(async () => {
      await Promise.all(stores.splice(0).map((s) => s.close()));
    });
    const push = (changes: ClientChange[], user = 'alice', project = 'p1', deviceCursor = 0) =>
      store.push({ projectId: project, userId: user, deviceId: `${user}-device`, deviceCursor, changes });

    it('creates and reads projects', async () => {
      await fresh();
      expect(await store.getProject('p1')).toMatchObject({ id: 'p1', secret: 's1', strategy: 'column-lww', sharedTables: ['lists'] });
      expect(await store.getProject('nope')).toBeNull();
    });

    it('acknowledges each change with a seq that increases in push order', async () => {
      await fresh();
      const out = await push([upsert('r1', 1, { title: 'a' }, 'todos', 'insert'), upsert('r2', 2, { title: 'b' }, 'todos', 'insert')]);
      expect(out.results.map((r) => [r.outcome, r.seq])).toEqual([['applied', 1], ['applied', 2]]);
      expect(out.effective.map((c) => [c.row, c.seq])).toEqual([['r1', 1], ['r2', 2]]);
      expect(await store.currentSeq('p1')).toBe(2);
    });

    it('applies a duplicate push once', async () => {
      await fresh();
      const change = upsert('r1', 1, { title: 'a' }, 'todos', 'insert');
      await push([change]);
      const again = await push([change, { ...change, values: { title: 'changed under the same id' } }]);
      expect(again.results).toEqual([
        { id: change.id, outcome: 'duplicate', seq: 1 },
        { id: change.id, outcome: 'duplicate', seq: 1 },
      ]);
      expect(again.effective).toEqual([]);
      expect(await store.currentSeq('p1')).toBe(1);
      const pulled = await store.pull({ projectId: 'p1', scopes: scopesOf('alice'), cursor: 0, limit: 100 });
      expect(pulled.changes).toMatchObject([{ row: 'r1', values: { title: 'a' } }]);
    });

    it('gives a losing change no seq and records the conflict', async () => {
      await fresh();
      await push([upsert('r1', 10, { title: 'new' }, 'todos', 'insert')]);
      const out = await push([upsert('r1', 5, { title: 'old' })]);
      expect(out.results).toMatchObject([{ outcome: 'superseded', seq: null }]);
      expect(out.conflicts).toMatchObject([{ column: 'title', losing: { value: 'old' }, winning: { value: 'new' } }]);
    });

    it('catch-up after 1,000 updates to 10 rows returns 10 entries in seq order, with the right cursor', async () => {
      await fresh();
      const changes: ClientChange[] = [];
      for (let i = 0; i < 1000; i++) changes.push(upsert(`r${i % 10}`, i + 1, { n: i }));
      await push(changes);
      const pulled = await store.pull({ projectId: 'p1', scopes: scopesOf('alice'), cursor: 0, limit: 1000 });
      expect(pulled.changes).toHaveLength(10);
      expect(pulled.changes.map((c) => c.seq)).toEqual([991, 992, 993, 994, 995, 996, 997, 998, 999, 1000]);
      expect(pulled.changes.map((c) => c.values?.n)).toEqual([990, 991, 992, 993, 994, 995, 996, 997, 998, 999]);
      expect(pulled).toMatchObject({ cursor: 1000, hasMore: false, remaining: 0 });
    });

    it('pulls in batches: each row once, in seq order, with progress', async () => {
      await fresh();
      await push(Array.from({ length: 25 }, (_, i) => upsert(`r${i}`, i + 1, { n: i }, 'todos', 'insert')));
      const seen: number[] = [];
      let cursor = 0;
      const remaining: number[] = [];
      for (;;) {
        const batch = await store.pull({ projectId: 'p1', scopes: scopesOf('alice'), cursor, limit: 10 });
        seen.push(...batch.changes.map((c) => c.seq));
        remaining.push(batch.remaining);
        cursor = batch.cursor;
        if (!batch.hasMore) break;
      }
      expect(seen).toEqual(Array.from({ length: 25 }, (_, i) => i + 1));
      expect(remaining).toEqual([15, 5, 0]);
      expect(cursor).toBe(25);
    });

    it('sends deletes to a device that had the row, and nothing to a device starting from 0', async () => {
      await fresh();
      await push([upsert('r1', 1, { title: 'a' }, 'todos', 'insert'), upsert('r2', 2, { title: 'b' }, 'todos', 'insert')]);
      await push([remove('r1', 3)]);
      const fromZero = await store.pull({ projectId: 'p1', scopes: scopesOf('alice'), cursor: 0, limit: 100 });
      expect(fromZero.changes.map((c) => c.row)).toEqual(['r2']);
      const fromTwo = await store.pull({ projectId: 'p1', scopes: scopesOf('alice'), cursor: 2, limit: 100 });
      expect(fromTwo.changes).toEqual([{ seq: 3, table: 'todos', row: 'r1', deleted: true, deleteClock: clock(3) }]);
    });

    it('keeps private rows to their user and shares the shared tables', async () => {
      await fresh();
      await push([upsert('mine', 1, { title: 'alice only' }, 'todos', 'insert'), upsert('list', 2, { name: 'groceries' }, 'lists', 'insert')], 'alice');
      await push([upsert('bobs', 3, { title: 'bob only' }, 'todos', 'insert')], 'bob');
      const bob = await store.pull({ projectId: 'p1', scopes: scopesOf('bob'), cursor: 0, limit: 100 });
      expect(bob.changes.map((c) => c.row).sort()).toEqual(['bobs', 'list']);
      const alice = await store.pull({ projectId: 'p1', scopes: scopesOf('alice'), cursor: 0, limit: 100 });
      expect(alice.changes.map((c) => c.row).sort()).toEqual(['list', 'mine']);
      // The same row id pushed by two users to a private table stays two rows.
      await push([upsert('same', 4, { title: 'a' }, 'todos', 'insert')], 'alice');
      await push([upsert('same', 5, { title: 'b' }, 'todos', 'insert')], 'bob');
      const again = await store.pull({ projectId: 'p1', scopes: scopesOf('alice'), cursor: 3, limit: 100 });
      expect(again.changes).toMatchObject([{ row: 'same', values: { title: 'a' } }]);
    });

    it('never lets one project see another’s rows or seqs', async () => {
      await fresh();
      await push([upsert('r1', 1, { title: 'p1 row' }, 'todos', 'insert')], 'alice', 'p1');
      const other = await store.pull({ projectId: 'p2', scopes: scopesOf('alice'), cursor: 0, limit: 100 });
      expect(other.changes).toEqual([]);
      expect(await store.currentSeq('p2')).toBe(0);
      // The same change id in another project is a different change.
      const out = await push([{ ...upsert('r1', 1, { title: 'p2 row' }, 'todos', 'insert'), id: 'shared-id' }], 'alice', 'p2');
      expect(out.results).toMatchObject([{ outcome: 'applied', seq: 1 }]);
    });

    it('records devices on first contact and keeps them current', async () => {
      await fresh();
      await store.touchDevice({ projectId: 'p1', userId: 'alice', deviceId: 'd1', online: true });
      await store.touchDevice({ projectId: 'p1', userId: 'alice', deviceId: 'd1', cursor: 7 });
      const [device] = await store.listDevices('p1');
      expect(device).toMatchObject({ deviceId: 'd1', userId: 'alice', cursor: 7, online: true });
      await store.touchDevice({ projectId: 'p1', userId: 'alice', deviceId: 'd1', online: false });
      expect((await store.listDevices('p1'))[0]).toMatchObject({ online: false, cursor: 7 });
    });
  });
}
