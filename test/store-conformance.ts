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

    it('sends deletes to every device but a fresh one starting from 0', async () => {
      await fresh();
      await push([upsert('r1', 1, { title: 'a' }, 'todos', 'insert'), upsert('r2', 2, { title: 'b' }, 'todos', 'insert')]);
      await push([remove('r1', 3)]);
      const deleted = { seq: 3, table: 'todos', row: 'r1', deleted: true, deleteClock: clock(3) };
      const freshFromZero = await store.pull({ projectId: 'p1', scopes: scopesOf('alice'), cursor: 0, limit: 100, fresh: true });
      expect(freshFromZero.changes.map((c) => c.row)).toEqual(['r2']);
      // A device that only pushed still has cursor 0, and holds r1: it must hear of the delete.
      const fromZero = await store.pull({ projectId: 'p1', scopes: scopesOf('alice'), cursor: 0, limit: 100 });
      expect(fromZero.changes).toEqual([expect.objectContaining({ row: 'r2' }), deleted]);
      const fromTwo = await store.pull({ projectId: 'p1', scopes: scopesOf('alice'), cursor: 2, limit: 100 });
      expect(fromTwo.changes).toEqual([deleted]);
    });

    it.each([
      [true, false],
      [false, false],
      [true, true],
      [false, true],
    ])('counts the same total on every page of a catch-up with deletes (fresh: %s, counting down from the last page: %s)', async (isFresh, countDown) => {
      await fresh();
      await push(Array.from({ length: 30 }, (_, i) => upsert(`r${i}`, i + 1, { n: i }, 'todos', 'insert')));
      // Deletes both inside the first page and beyond it.
      await push([remove('r2', 100), remove('r25', 101), remove('r5', 102), remove('r27', 103)]);
      let cursor = 0;
      let done = 0;
      let remaining: number | undefined;
      const totals: number[] = [];
      for (let page = 0; ; page++) {
        const batch = await store.pull({
          projectId: 'p1',
          scopes: scopesOf('alice'),
          cursor,
          limit: 7,
          ...(page === 0 && isFresh ? { fresh: true } : {}),
          ...(countDown && remaining !== undefined ? { remaining } : {}),
        });
        remaining = batch.remaining;
        done += batch.changes.length;
        totals.push(done + batch.remaining);
        cursor = batch.cursor;
        if (!batch.hasMore) break;
      }
      expect(new Set(totals).size).toBe(1);
      expect(totals[0]).toBe(done);
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

    describe('the ack carries the server row wherever the device cannot derive it', () => {
      const at = (wall: number, device: string) => formatClock({ wall, counter: 0, deviceId: device });
      const write = (row: string, wall: number, device: string, values: ClientChange['values'], extra: Partial<ClientChange> = {}): ClientChange => ({
        id: id(), table: 'todos', row, op: 'update', clock: at(wall, device), values, ...extra,
      });
      const by = (device: string, changes: ClientChange[], projectId = 'p1', deviceCursor = 0) =>
        store.push({ projectId, userId: 'alice', deviceId: device, deviceCursor, changes });

      it('nothing extra on the common path: a new row, or one unchanged since the device’s base', async () => {
        await fresh();
        const first = await by('a', [write('r1', 10, 'a', { title: 'x', done: 0 }, { op: 'insert' })]);
        expect(first.rows).toEqual([]);
        const second = await by('b', [write('r1', 20, 'b', { done: 1 }, { base: 1 })]);
        expect(second.rows).toEqual([]);
        expect(second.conflicts).toEqual([]);
      });

      it('a re-push brings back the conflicts of its own first merge, not those of later writes that lost to it', async () => {
        await fresh();
        const c1 = write('r1', 10, 'a', { title: 'x' }, { op: 'insert' });
        expect((await by('a', [c1])).conflicts).toEqual([]);
        // b's older write, made offline, loses to c1: that conflict is b's, recorded by b's merge.
        expect((await by('b', [write('r1', 5, 'b', { title: 'from b' }, { base: 0 })])).conflicts).toHaveLength(1);
        const again = await by('a', [c1]);
        expect(again.results).toMatchObject([{ outcome: 'duplicate' }]);
        expect(again.conflicts).toEqual([]);
      });

      it('a row another device changed since the device’s base comes back whole', async () => {
        await fresh();
        await by('a', [write('r1', 10, 'a', { title: 'x', done: 0 }, { op: 'insert' })]);
        await by('b', [write('r1', 20, 'b', { done: 1 }, { base: 1 })]);
        const out = await by('a', [write('r1', 30, 'a', { title: 'y' }, { base: 1 })]);
        expect(out.rows).toMatchObject([{ row: 'r1', seq: 3, values: { title: 'y', done: 1 } }]);
      });

      it('a re-push after a lost ack is a duplicate that carries the current row', async () => {
        await fresh();
        await by('a', [write('r1', 10, 'a', { title: 'x' }, { op: 'insert' })]);
        await by('b', [write('r1', 50, 'b', { title: 'newer' }, { base: 1 })]);
        const lost = write('r1', 30, 'a', { title: 'older' }, { base: 1 });
        const original = await by('a', [lost]);
        expect(original.results).toMatchObject([{ outcome: 'superseded' }]);
        const again = await by('a', [lost]);
        expect(again.results).toMatchObject([{ outcome: 'duplicate' }]);
        expect(again.rows).toMatchObject([{ row: 'r1', values: { title: 'newer' } }]);
      });

      it('server-wins judges an edit by the cursor when it was made, and sends the row back', async () => {
        await fresh();
        await store.createProject({ id: 'sw', secret: 's', strategy: 'server-wins' });
        await by('a', [write('r1', 10, 'a', { title: 'x' }, { op: 'insert' })], 'sw');
        await by('b', [write('r1', 20, 'b', { title: 'server' }, { base: 1 })], 'sw');
        // a edited offline at base 1, then caught up to seq 2 and pushed with cursor 2.
        const out = await by('a', [write('r1', 90, 'a', { title: 'offline edit' }, { base: 1 })], 'sw', 2);
        expect(out.results).toMatchObject([{ outcome: 'superseded' }]);
        expect(out.conflicts).toMatchObject([{ column: 'title', rule: 'server-wins', losing: { value: 'offline edit' } }]);
        expect(out.rows).toMatchObject([{ row: 'r1', values: { title: 'server' } }]);
        // Any pushed row comes back under a rule other than clock order, even one new to the server.
        const other = await by('a', [write('r2', 91, 'a', { title: 'new' }, { op: 'insert', base: 2 })], 'sw', 2);
        expect(other.rows).toMatchObject([{ row: 'r2', values: { title: 'new' } }]);
      });

      it('client-wins sends every pushed row back', async () => {
        await fresh();
        await store.createProject({ id: 'cw', secret: 's', strategy: 'client-wins' });
        const out = await by('a', [write('r1', 10, 'a', { title: 'x' }, { op: 'insert' })], 'cw');
        expect(out.rows).toMatchObject([{ row: 'r1', values: { title: 'x' } }]);
      });

      it('a resolver sends every pushed row back, even one it left to the strategy', async () => {
        await fresh();
        const out = await store.push({ projectId: 'p1', userId: 'alice', deviceId: 'a', deviceCursor: 0, changes: [write('r1', 10, 'a', { title: 'x' }, { op: 'insert' })], resolver: () => undefined });
        expect(out.rows).toMatchObject([{ row: 'r1', values: { title: 'x' } }]);
      });

      it('an edit that brings back a row deleted elsewhere records the lost delete and returns the whole row', async () => {
        await fresh();
        await by('a', [write('r1', 10, 'a', { y: 'y0', z: 'z0' }, { op: 'insert' })]);
        await by('b', [write('r1', 20, 'b', { z: 'z1' }, { base: 1 }), { id: id(), table: 'todos', row: 'r1', op: 'delete', clock: at(30, 'b'), base: 1 }]);
        const out = await by('a', [write('r1', 40, 'a', { y: 'y1' }, { base: 1 })]);
        expect(out.results).toMatchObject([{ outcome: 'applied' }]);
        expect(out.conflicts).toEqual([
          { table: 'todos', row: 'r1', column: null, rule: 'column-lww', losing: { op: 'delete', clock: at(30, 'b') }, winning: { op: 'update', clock: at(40, 'a') } },
        ]);
        expect(out.rows).toMatchObject([{ row: 'r1', deleted: false, values: { y: 'y1', z: 'z1' } }]);
      });

      it('records the discarded value when the incoming write wins over one the device had not seen', async () => {
        await fresh();
        await by('a', [write('r1', 10, 'a', { title: 'x' }, { op: 'insert' })]);
        await by('b', [write('r1', 20, 'b', { title: 'from b' }, { base: 1 })]);
        const out = await by('c', [write('r1', 30, 'c', { title: 'from c' }, { base: 1 })]);
        expect(out.conflicts).toEqual([
          {
            table: 'todos', row: 'r1', column: 'title', rule: 'column-lww',
            losing: { op: 'current', clock: at(20, 'b'), value: 'from b' },
            winning: { op: 'update', clock: at(30, 'c'), value: 'from c' },
          },
        ]);
      });
    });

    it('binds a device id to the user who first used it', async () => {
      await fresh();
      expect(await store.touchDevice({ projectId: 'p1', userId: 'alice', deviceId: 'd1' })).toBe(true);
      expect(await store.touchDevice({ projectId: 'p1', userId: 'bob', deviceId: 'd1', cursor: 9 })).toBe(false);
      expect(await store.touchDevice({ projectId: 'p2', userId: 'bob', deviceId: 'd1' })).toBe(true);
      expect(await store.listDevices('p1')).toMatchObject([{ deviceId: 'd1', userId: 'alice', cursor: 0 }]);
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

    describe('retention', () => {
      const all = { changeLogMs: 0, conflictsMs: 0, tombstonesMs: 0, compactEveryMs: 60_000 };
      const none = { changeLogMs: 3_600_000, conflictsMs: 3_600_000, tombstonesMs: 3_600_000, compactEveryMs: 60_000 };
      const later = () => Date.now() + 1000;
      const pull = (cursor: number, extra: { limit?: number; fresh?: boolean; continuing?: boolean; since?: number } = {}) =>
        store.pull({ projectId: 'p1', scopes: scopesOf('alice'), cursor, limit: extra.limit ?? 100, ...extra });

      it('keeps everything within its retention', async () => {
        await fresh();
        await push([upsert('r1', 1, { a: 1 }, 'todos', 'insert'), upsert('r2', 2, { a: 2 }, 'todos', 'insert')]);
        await push([remove('r2', 3)]);
        expect(await store.compact(none)).toEqual({ changes: 0, conflicts: 0, tombstones: 0 });
        const page = await pull(1);
        expect(page.resync).toBeUndefined();
        expect(page.changes.map((c) => [c.row, c.deleted])).toEqual([['r2', true]]);
      });

      it('forgets tombstones past their retention; a cursor below the horizon re-syncs from 0', async () => {
        await fresh();
        await push([upsert('r1', 1, { a: 1 }, 'todos', 'insert'), upsert('r2', 2, { a: 2 }, 'todos', 'insert'), upsert('r3', 3, { a: 3 }, 'todos', 'insert')]);
        await push([remove('r2', 4), remove('r3', 5)]);
        await push([upsert('r4', 6, { a: 4 }, 'todos', 'insert')]);
        expect((await store.compact(all, later())).tombstones).toBe(2);
        // Below the horizon (seq 5): a re-sync, whole (the forgotten deletes cannot be sent).
        const resync = await pull(2);
        expect(resync).toMatchObject({ resync: true, hasMore: false, cursor: 6 });
        expect(resync.changes.map((c) => c.row)).toEqual(['r1', 'r4']);
        // At the horizon or above, or fresh at 0: an ordinary catch-up.
        expect((await pull(5)).resync).toBeUndefined();
        expect((await pull(5)).changes.map((c) => c.row)).toEqual(['r4']);
        expect((await pull(0, { fresh: true })).resync).toBeUndefined();
        // Another project's horizon is its own.
        expect((await store.pull({ projectId: 'p2', scopes: scopesOf('alice'), cursor: 0, limit: 10 })).resync).toBeUndefined();
      });

      it('a re-sync over several pages: only the first says so, and a delete made during it is sent', async () => {
        await fresh();
        await push([1, 2, 3, 4, 5].map((i) => upsert(`r${i}`, i, { i }, 'todos', 'insert')));
        await push([remove('r1', 10)]);
        await store.compact(all, later());
        const pages = [await pull(0, { limit: 2 })];
        // r2, sent on the first page, is deleted before the next.
        await push([remove('r2', 11)]);
        while (pages.at(-1)?.hasMore) pages.push(await pull(pages.at(-1)!.cursor, { limit: 2, continuing: true }));
        expect(pages.map((p) => p.resync ?? false)).toEqual([true, false, false]);
        expect(pages.flatMap((p) => p.changes.map((c) => [c.row, c.deleted]))).toEqual([['r2', false], ['r3', false], ['r4', false], ['r5', false], ['r2', true]]);
      });

      it('a compaction during a catch-up that forgets deletes of rows the device held makes its next page a re-sync', async () => {
        await fresh();
        await push([1, 2, 3].map((i) => upsert(`r${i}`, i, { i }, 'todos', 'insert')));
        // The device holds r1-r3 (cursor 3). Later: more rows, and r1 deleted.
        await push([4, 5, 6, 7].map((i) => upsert(`r${i}`, i, { i }, 'todos', 'insert')));
        await push([remove('r1', 8)]);
        const first = await pull(3, { limit: 2 });
        expect(first.resync).toBeUndefined();
        // The delete of r1 (seq 8) is forgotten before the page that would have sent it.
        expect((await store.compact(all, later())).tombstones).toBe(1);
        const next = await pull(first.cursor, { limit: 100, continuing: true, since: 3 });
        expect(next.resync).toBe(true);
        expect(next.changes.map((c) => c.row)).toEqual(['r2', 'r3', 'r4', 'r5', 'r6', 'r7']);
        // Without a since (a fresh device's catch-up, or a re-sync), no start over.
        expect((await pull(first.cursor, { limit: 100, continuing: true })).resync).toBeUndefined();
      });

      it('a later page of a catch-up is not checked against the horizon again: a fresh device does not start over', async () => {
        await fresh();
        await push([1, 2, 3].map((i) => upsert(`r${i}`, i, { i }, 'todos', 'insert')));
        await push([remove('r3', 4)]);
        await store.compact(all, later());
        await push([4, 5, 6].map((i) => upsert(`r${i}`, 10 + i, { i }, 'todos', 'insert')));
        // Horizon 4: the fresh first page ends at a cursor below it.
        const first = await pull(0, { limit: 2, fresh: true });
        expect(first.cursor).toBeLessThan(4);
        const pages = [first];
        while (pages.at(-1)?.hasMore) pages.push(await pull(pages.at(-1)!.cursor, { limit: 2, continuing: true }));
        expect(pages.some((p) => p.resync)).toBe(false);
        expect(pages.flatMap((p) => p.changes.map((c) => c.row))).toEqual(['r1', 'r2', 'r4', 'r5', 'r6']);
        expect(first.changes.length + first.remaining).toBe(5);
      });

      it('forgets change-log entries and conflicts past their retention: a change id older than that is merged again', async () => {
        await fresh();
        const first = upsert('r1', 5, { a: 1 }, 'todos', 'insert');
        await push([first]);
        await push([upsert('r1', 4, { a: 0 })]); // loses: a conflict recorded
        expect(await store.compact(all, later())).toMatchObject({ changes: 2, conflicts: 1 });
        expect((await push([first])).results).toEqual([{ id: first.id, outcome: 'superseded', seq: null }]);
      });

      it('deduplicates change ids per device, not per project', async () => {
        await fresh();
        const change = upsert('r1', 1, { a: 1 }, 'todos', 'insert');
        expect((await push([change], 'alice')).results[0]?.outcome).toBe('applied');
        expect((await push([{ ...change, row: 'r2' }], 'bob')).results[0]?.outcome).toBe('applied');
        expect((await push([change], 'alice')).results[0]?.outcome).toBe('duplicate');
      });
    });

    it('reads one table’s rows in one scope by id, in pages, deleted rows only when asked', async () => {
      await fresh();
      await push(['r3', 'r1', 'r5', 'r2', 'r4'].map((row, i) => upsert(row, 10 + i, { title: row }, 'todos', 'insert')));
      await push([upsert('x1', 20, { title: 'bob' }, 'todos', 'insert')], 'bob');
      await push([upsert('l1', 21, { name: 'shared' }, 'lists', 'insert')]);
      await push([remove('r2', 30)]);
      const rows = (input: Partial<Parameters<Store['rows']>[0]>) => store.rows({ projectId: 'p1', scope: 'user:alice', table: 'todos', limit: 10, ...input });
      const first = await rows({ limit: 2 });
      expect(first.rows.map((r) => r.row)).toEqual(['r1', 'r3']);
      expect(first.hasMore).toBe(true);
      const rest = await rows({ after: 'r3', limit: 2 });
      expect([rest.rows.map((r) => r.row), rest.hasMore]).toEqual([['r4', 'r5'], false]);
      expect((await rows({ includeDeleted: true })).rows.map((r) => [r.row, r.deleted])).toEqual([['r1', false], ['r2', true], ['r3', false], ['r4', false], ['r5', false]]);
      expect((await rows({ ids: ['r5', 'r2', 'x1', 'nope'] })).rows.map((r) => r.row)).toEqual(['r5']);
      expect((await rows({ ids: ['r2'], includeDeleted: true })).rows).toMatchObject([{ row: 'r2', deleted: true, deleteClock: clock(30) }]);
      expect((await rows({ ids: ['r1'] })).rows).toMatchObject([{ row: 'r1', values: { title: 'r1' }, clocks: { title: clock(10 + 1) } }]);
      expect((await store.rows({ projectId: 'p1', scope: 'shared', table: 'lists', limit: 10 })).rows.map((r) => r.row)).toEqual(['l1']);
      expect((await store.rows({ projectId: 'p2', scope: 'user:alice', table: 'todos', limit: 10 })).rows).toEqual([]);
    });

    it('keeps service keys per project, by hash, until deleted', async () => {
      await fresh();
      const key = await store.createServiceKey({ id: 'k1', projectId: 'p1', name: 'jobs', hash: 'h1' });
      expect(key).toEqual({ id: 'k1', projectId: 'p1', name: 'jobs', createdAt: expect.any(Number) });
      await store.createServiceKey({ id: 'k2', projectId: 'p2', name: '', hash: 'h2' });
      expect(await store.serviceKey('k1')).toEqual({ ...key, hash: 'h1' });
      expect(await store.listServiceKeys('p1')).toEqual([key]);
      expect(await store.deleteServiceKey('p2', 'k1')).toBe(false);
      expect(await store.deleteServiceKey('p1', 'k1')).toBe(true);
      expect(await store.serviceKey('k1')).toBeNull();
      expect(await store.listServiceKeys('p1')).toEqual([]);
      expect((await store.serviceKey('k2'))?.projectId).toBe('p2');
    });
  });
}
