/**
 * The store contract (server/store/store.ts) as tests, run against every implementation by a
 * `*.test.ts` file that passes its factory. Each test gets a fresh, empty store.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { ClientChange } from '../lib/protocol/change.js';
import { scopesOf, type OutcomeRecord, type Store } from '../server/store/store.js';
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
    describe('the operators’ reads and actions', () => {
      /** Resolves once the clock has moved past `after` (ms): stamps taken after it differ. */
      const past = async (after = Date.now()) => {
        while (Date.now() <= after) await new Promise((resolve) => setImmediate(resolve));
        return Date.now();
      };
      const touch = (userId: string, deviceId: string, extra: Partial<Parameters<Store['touchDevice']>[0]> = {}, projectId = 'p1') =>
        store.touchDevice({ projectId, userId, deviceId, ...extra });
      const activity = (minute: number, n: number, connections = 0, projectId = 'p1') => ({
        projectId, minute, pushes: n, changes: 2 * n, applied: n, conflicts: 3 * n, rejected: 4 * n, catchUpRows: 5 * n, connections,
      });

      it('lists, updates and deletes projects: a deletion takes its rows, devices and keys, and nothing of another project', async () => {
        await fresh();
        expect((await store.listProjects()).map((p) => p.id)).toEqual(['p1', 'p2']);
        expect(await store.updateProject('p1', { strategy: 'server-wins' })).toMatchObject({ id: 'p1', strategy: 'server-wins', sharedTables: ['lists'] });
        expect(await store.updateProject('p1', { sharedTables: ['lists', 'tags'] })).toMatchObject({ strategy: 'server-wins', sharedTables: ['lists', 'tags'] });
        expect(await store.getProject('p1')).toMatchObject({ strategy: 'server-wins', sharedTables: ['lists', 'tags'] });
        expect(await store.updateProject('nope', { strategy: 'client-wins' })).toBeNull();
        expect(await store.getProject('p2')).toMatchObject({ strategy: 'column-lww', sharedTables: ['lists'] });

        for (const project of ['p1', 'p2']) {
          await touch('alice', 'alice-device', {}, project);
          await push([upsert('r1', 1, { title: project }, 'todos', 'insert'), upsert('l1', 2, { name: project }, 'lists', 'insert')], 'alice', project);
          await store.createSigningKey(project, 'k1', `${project}-key`);
          await store.setBlocked(project, 'mallory', true);
          await store.createServiceKey({ id: `sk-${project}`, projectId: project, name: '', hash: `h-${project}` });
          await store.addActivity([activity(60_000, 1, 1, project)]);
        }
        expect(await store.deleteProject('p1')).toBe(true);
        expect(await store.deleteProject('p1')).toBe(false);
        expect(await store.deleteProject('nope')).toBe(false);

        expect(await store.getProject('p1')).toBeNull();
        expect((await store.listProjects()).map((p) => p.id)).toEqual(['p2']);
        expect(await store.listDevices('p1')).toEqual([]);
        expect(await store.signingKeys('p1')).toEqual([]);
        expect(await store.users('p1', { limit: 10 })).toEqual([]);
        expect(await store.isBlocked('p1', 'mallory')).toBe(false);
        expect(await store.listServiceKeys('p1')).toEqual([]);
        expect(await store.tables('p1')).toEqual([]);
        expect(await store.changes({ projectId: 'p1', limit: 10 })).toEqual([]);
        expect(await store.activity('p1', 0, 10 * 60_000)).toEqual([]);
        expect((await store.pull({ projectId: 'p1', scopes: scopesOf('alice'), cursor: 0, limit: 10 })).changes).toEqual([]);

        // The other project, whole.
        expect(await store.listDevices('p2')).toMatchObject([{ deviceId: 'alice-device', userId: 'alice' }]);
        expect((await store.signingKeys('p2')).map((k) => k.kid)).toEqual(['default', 'k1']);
        expect(await store.isBlocked('p2', 'mallory')).toBe(true);
        expect(await store.listServiceKeys('p2')).toMatchObject([{ id: 'sk-p2' }]);
        expect(await store.activity('p2', 0, 10 * 60_000)).toHaveLength(1);
        expect(await store.currentSeq('p2')).toBe(2);
        const p2Rows = await store.pull({ projectId: 'p2', scopes: scopesOf('alice'), cursor: 0, limit: 10 });
        expect(p2Rows.changes.map((c) => [c.row, c.values])).toEqual([['r1', { title: 'p2' }], ['l1', { name: 'p2' }]]);

        // A project made again under the same id starts empty, its device ids free.
        await store.createProject({ id: 'p1', secret: 'again' });
        expect(await store.currentSeq('p1')).toBe(0);
        expect(await store.touchDevice({ projectId: 'p1', userId: 'bob', deviceId: 'alice-device' })).toBe(true);
        expect((await store.getProject('p1'))?.keys).toEqual([{ kid: 'default', secret: 'again' }]);
      });

      it('keeps signing keys: the default one from the secret, new ones newest first, their last use, and revocation', async () => {
        await fresh();
        const created = (await store.signingKeys('p1'))[0]!.createdAt;
        expect(await store.signingKeys('p1')).toEqual([{ kid: 'default', createdAt: expect.any(Number), lastUsedAt: null, revokedAt: null }]);
        expect((await store.getProject('p1'))?.keys).toEqual([{ kid: 'default', secret: 's1' }]);

        await past(created);
        expect(await store.createSigningKey('p1', 'zz', 'secret-zz')).toEqual({ kid: 'zz', createdAt: expect.any(Number), lastUsedAt: null, revokedAt: null });
        // Made right after: newest first whatever the kids' order, even within the same millisecond.
        await store.createSigningKey('p1', 'aa', 'secret-aa');
        expect((await store.getProject('p1'))?.keys).toEqual([
          { kid: 'aa', secret: 'secret-aa' },
          { kid: 'zz', secret: 'secret-zz' },
          { kid: 'default', secret: 's1' },
        ]);
        expect((await store.signingKeys('p1')).map((k) => k.kid)).toEqual(['default', 'zz', 'aa']);

        // A use is written by the listing that follows it.
        const before = Date.now();
        store.signingKeyUsed('p1', 'zz');
        const listed = await store.signingKeys('p1');
        expect(listed.find((k) => k.kid === 'zz')?.lastUsedAt).toBeGreaterThanOrEqual(before);
        expect(listed.find((k) => k.kid === 'aa')?.lastUsedAt).toBeNull();
        expect(listed.find((k) => k.kid === 'default')?.lastUsedAt).toBeNull();

        expect(await store.revokeSigningKey('p2', 'zz')).toBe(false);
        expect(await store.revokeSigningKey('p1', 'nope')).toBe(false);
        expect(await store.revokeSigningKey('p1', 'aa')).toBe(true);
        expect(await store.revokeSigningKey('p1', 'aa')).toBe(false);
        expect((await store.getProject('p1'))?.keys.map((k) => k.kid)).toEqual(['zz', 'default']);
        expect(await store.revokeSigningKey('p1', 'default')).toBe(true);
        expect((await store.getProject('p1'))?.keys).toEqual([{ kid: 'zz', secret: 'secret-zz' }]);
        const keys = await store.signingKeys('p1');
        expect(keys.map((k) => [k.kid, k.revokedAt === null])).toEqual([['default', false], ['zz', true], ['aa', false]]);
        expect(keys.find((k) => k.kid === 'aa')?.revokedAt).toBeGreaterThanOrEqual(before);
        // The other project's keys are its own.
        expect((await store.getProject('p2'))?.keys).toEqual([{ kid: 'default', secret: 's2' }]);
      });

      it('pages users by id and prefix; a blocked user is listed even without devices', async () => {
        await fresh();
        await touch('alice', 'a1', { online: true });
        await touch('alice', 'a2');
        await touch('bob', 'b1');
        await touch('bobby', 'bb1');
        await touch('carol', 'c1');
        await touch('zed', 'z1', {}, 'p2');
        await store.setBlocked('p1', 'mallory', true);
        await store.setBlocked('p1', 'carol', true);

        const first = await store.users('p1', { limit: 2 });
        expect(first).toEqual([
          { userId: 'alice', devices: 2, online: 1, lastSeen: expect.any(Number), blocked: false },
          { userId: 'bob', devices: 1, online: 0, lastSeen: expect.any(Number), blocked: false },
        ]);
        expect(first[0]!.lastSeen).toBeGreaterThan(0);
        const second = await store.users('p1', { after: 'bob', limit: 2 });
        expect(second.map((u) => [u.userId, u.blocked])).toEqual([['bobby', false], ['carol', true]]);
        expect(await store.users('p1', { after: 'carol', limit: 2 })).toEqual([{ userId: 'mallory', devices: 0, online: 0, lastSeen: 0, blocked: true }]);
        expect(await store.users('p1', { after: 'mallory', limit: 2 })).toEqual([]);
        expect((await store.users('p1', { prefix: 'bob', limit: 10 })).map((u) => u.userId)).toEqual(['bob', 'bobby']);
        expect((await store.users('p1', { prefix: 'bob', after: 'bob', limit: 10 })).map((u) => u.userId)).toEqual(['bobby']);
        expect(await store.users('p1', { prefix: 'x', limit: 10 })).toEqual([]);
        expect((await store.users('p2', { limit: 10 })).map((u) => u.userId)).toEqual(['zed']);
      });

      it('blocks and unblocks a user, per project', async () => {
        await fresh();
        expect(await store.isBlocked('p1', 'alice')).toBe(false);
        await store.setBlocked('p1', 'alice', true);
        await store.setBlocked('p1', 'alice', true);
        expect(await store.isBlocked('p1', 'alice')).toBe(true);
        expect(await store.isBlocked('p2', 'alice')).toBe(false);
        expect(await store.isBlocked('p1', 'bob')).toBe(false);
        expect((await store.users('p1', { limit: 10 })).map((u) => [u.userId, u.blocked])).toEqual([['alice', true]]);
        await store.setBlocked('p1', 'alice', false);
        expect(await store.isBlocked('p1', 'alice')).toBe(false);
        expect(await store.users('p1', { limit: 10 })).toEqual([]);
      });

      it('lists devices with what they reported, by user, most recently seen first, at most a limit', async () => {
        await fresh();
        const status = { pending: 3, quarantined: 1, appVersion: '2.3.1', library: '0.1.0', protocolVersion: 2, userAgent: 'TestAgent/1' };
        await touch('alice', 'a1', { online: true, status });
        // A later report changes what it says and keeps the rest.
        await touch('alice', 'a1', { cursor: 5, status: { pending: 0 } });
        await touch('alice', 'a0');
        await touch('bob', 'b1', { status: { pending: 7, protocolVersion: 2 } });
        await touch('alice', 'other', {}, 'p2');

        const alice = await store.listDevices('p1', { userId: 'alice' });
        expect(alice.map((d) => d.deviceId).sort()).toEqual(['a0', 'a1']);
        expect(alice.find((d) => d.deviceId === 'a1')).toEqual({
          projectId: 'p1', userId: 'alice', deviceId: 'a1', cursor: 5, online: true, firstSeen: expect.any(Number), lastSeen: expect.any(Number),
          pending: 0, quarantined: 1, appVersion: '2.3.1', library: '0.1.0', protocolVersion: 2, userAgent: 'TestAgent/1',
        });
        // A device that never reported (protocol 1).
        expect(alice.find((d) => d.deviceId === 'a0')).toMatchObject({ pending: null, quarantined: null, appVersion: null, library: null, protocolVersion: null, userAgent: null });
        expect(await store.listDevices('p1', { userId: 'bob' })).toMatchObject([{ deviceId: 'b1', pending: 7, quarantined: null, protocolVersion: 2 }]);
        expect(await store.listDevices('p1', { userId: 'nobody' })).toEqual([]);

        const all = await store.listDevices('p1');
        expect(all.map((d) => d.deviceId).sort()).toEqual(['a0', 'a1', 'b1']);
        const seen = all.map((d) => d.lastSeen);
        expect(seen).toEqual([...seen].sort((x, y) => y - x));
        expect(await store.listDevices('p1', { limit: 2 })).toEqual(all.slice(0, 2));
        expect(await store.listDevices('p1', { userId: 'alice', limit: 1 })).toEqual([alice[0]]);
        // The most recently seen comes first.
        await past(Math.max(...seen));
        await touch('alice', 'a0', { cursor: 9 });
        expect((await store.listDevices('p1', { limit: 1 })).map((d) => [d.deviceId, d.cursor])).toEqual([['a0', 9]]);
      });

      it('deletes a user’s data as a commit of its own: a cursor below it re-syncs, other users and shared rows stay', async () => {
        await fresh();
        await touch('alice', 'alice-device');
        await touch('alice', 'alice-phone');
        await touch('bob', 'bob-device');
        await push([upsert('a1', 10, { title: 'mine' }, 'todos', 'insert'), upsert('a2', 11, { title: 'also mine' }, 'todos', 'insert'), upsert('l1', 12, { name: 'ours' }, 'lists', 'insert')], 'alice');
        expect((await push([upsert('a1', 5, { title: 'old' })], 'alice')).conflicts).toHaveLength(1);
        await push([upsert('b1', 20, { title: 'bob’s' }, 'todos', 'insert')], 'bob');
        expect((await push([upsert('l1', 6, { name: 'bob’s old name' }, 'lists')], 'bob')).conflicts).toHaveLength(1);
        await push([upsert('r1', 1, { title: 'p2' }, 'todos', 'insert')], 'alice', 'p2');
        const seq = await store.currentSeq('p1');
        expect(seq).toBe(4);

        expect(await store.deleteUserData('p1', 'alice')).toEqual({ rows: 2, changes: 4, conflicts: 1, devices: 2 });
        expect(await store.currentSeq('p1')).toBe(seq + 1);

        // Alice's device, at the cursor it had: a re-sync that no longer holds her rows.
        const resync = await store.pull({ projectId: 'p1', scopes: scopesOf('alice'), cursor: seq, limit: 100 });
        expect(resync.resync).toBe(true);
        expect(resync.changes.map((c) => [c.row, c.values])).toEqual([['l1', { name: 'ours' }]]);
        expect(resync.cursor).toBe(seq + 1);
        expect((await store.pull({ projectId: 'p1', scopes: scopesOf('alice'), cursor: 0, limit: 100 })).resync).toBe(true);
        // At the deletion's seq or above: an ordinary catch-up.
        const after = await store.pull({ projectId: 'p1', scopes: scopesOf('alice'), cursor: seq + 1, limit: 100 });
        expect(after.resync).toBeUndefined();
        expect(after.changes).toEqual([]);
        // Bob's scopes did not change: no re-sync for him.
        const bob = await store.pull({ projectId: 'p1', scopes: scopesOf('bob'), cursor: seq, limit: 100 });
        expect(bob.resync).toBeUndefined();
        expect((await store.pull({ projectId: 'p1', scopes: scopesOf('bob'), cursor: 0, limit: 100 })).changes.map((c) => c.row)).toEqual(['l1', 'b1']);

        expect((await store.rows({ projectId: 'p1', scope: 'user:alice', table: 'todos', limit: 10, includeDeleted: true })).rows).toEqual([]);
        expect((await store.rows({ projectId: 'p1', scope: 'user:bob', table: 'todos', limit: 10 })).rows.map((r) => r.row)).toEqual(['b1']);
        expect(await store.changes({ projectId: 'p1', userId: 'alice', limit: 100 })).toEqual([]);
        expect((await store.changes({ projectId: 'p1', limit: 100 })).map((c) => c.userId)).toEqual(['bob', 'bob']);
        expect(await store.conflicts({ projectId: 'p1', limit: 100 })).toMatchObject([{ row: 'l1', userId: 'bob' }]);
        expect((await store.listDevices('p1')).map((d) => d.deviceId)).toEqual(['bob-device']);
        // The device ids' bindings went with their records: what the store answers is what it holds.
        expect(await store.touchDevice({ projectId: 'p1', userId: 'alice', deviceId: 'alice-device' })).toBe(true);
        expect(await store.touchDevice({ projectId: 'p1', userId: 'bob', deviceId: 'alice-phone' })).toBe(true);
        expect((await store.listDevices('p1', { userId: 'bob' })).map((d) => d.deviceId).sort()).toEqual(['alice-phone', 'bob-device']);
        await store.touchDevice({ projectId: 'p1', userId: 'alice', deviceId: 'alice-device', online: false });
        expect(await store.deleteUserData('p1', 'alice')).toEqual({ rows: 0, changes: 0, conflicts: 0, devices: 1 });
        expect(await store.currentSeq('p1')).toBe(seq + 2);
        expect(await store.tables('p1')).toEqual([{ table: 'lists', rows: 1, deleted: 0 }, { table: 'todos', rows: 1, deleted: 0 }]);
        // Another project's data of the same user stays.
        expect(await store.currentSeq('p2')).toBe(1);
        expect((await store.pull({ projectId: 'p2', scopes: scopesOf('alice'), cursor: 0, limit: 100 })).changes.map((c) => c.row)).toEqual(['r1']);
        // Nothing left to delete: still a commit of its own.
        expect(await store.deleteUserData('p1', 'alice')).toEqual({ rows: 0, changes: 0, conflicts: 0, devices: 0 });
        expect(await store.currentSeq('p1')).toBe(seq + 3);
      });

      it('sums reported counts past 2^63 without failing (the stats of a project stay readable)', async () => {
        await fresh();
        for (const device of ['d1', 'd2', 'd3']) await store.touchDevice({ projectId: 'p1', userId: 'alice', deviceId: device, status: { pending: 2 ** 62 } });
        const stats = await store.stats('p1', 0);
        expect(stats.devices).toBe(3);
        expect(stats.pending).toBeGreaterThan(2 ** 62);
      });

      it('counts a project: users, active users, devices, online, reported counts summed, seq, and the day’s activity', async () => {
        await fresh();
        await touch('alice', 'a1', { online: true, status: { pending: 2, quarantined: 1 } });
        await touch('alice', 'a2', { status: { pending: 3 } });
        const dayStart = await past();
        await touch('bob', 'b1');
        await touch('carol', 'c1', {}, 'p2');
        await push([upsert('r1', 1, { a: 1 }, 'todos', 'insert'), upsert('r2', 2, { a: 2 }, 'todos', 'insert'), upsert('r3', 3, { a: 3 }, 'todos', 'insert')]);
        const minute = Math.floor(dayStart / 60_000) * 60_000;
        await store.addActivity([activity(minute - 60_000, 100), activity(minute, 1), activity(minute + 60_000, 2), activity(minute, 1000, 0, 'p2')]);

        expect(await store.stats('p1', minute)).toEqual({
          projectId: 'p1', users: 2, activeUsers: 2, devices: 3, online: 1, pending: 5, quarantined: 1, seq: 3,
          changesToday: 2 * 3, conflictsToday: 3 * 3, rejectedToday: 4 * 3,
        });
        // Bob alone was seen since dayStart; the minute before it does not count.
        expect(await store.stats('p1', dayStart)).toMatchObject({ users: 2, activeUsers: 1, changesToday: 2 * 2, conflictsToday: 3 * 2, rejectedToday: 4 * 2 });
        expect(await store.stats('p1', minute - 60_000)).toMatchObject({ changesToday: 2 * 103, conflictsToday: 3 * 103, rejectedToday: 4 * 103 });
        expect(await store.stats('p1', minute + 3_600_000)).toMatchObject({ users: 2, activeUsers: 0, devices: 3, changesToday: 0, conflictsToday: 0, rejectedToday: 0 });
        expect(await store.stats('p2', minute)).toEqual({
          projectId: 'p2', users: 1, activeUsers: 1, devices: 1, online: 0, pending: 0, quarantined: 0, seq: 0,
          changesToday: 2000, conflictsToday: 3000, rejectedToday: 4000,
        });
      });

      it('adds activity to its minute (connections: the larger), and reads [from, to) in buckets', async () => {
        await fresh();
        const base = 28_000_000 * 60_000; // a multiple of ten minutes
        const m = (i: number) => base + i * 60_000;
        await store.addActivity([activity(m(0), 1, 5), activity(m(0), 2, 3)]);
        await store.addActivity([activity(m(0), 4, 4), activity(m(1), 8, 9), activity(m(9), 16, 1), activity(m(10), 32, 2), activity(m(15), 64, 7)]);
        await store.addActivity([activity(m(1), 1000, 1, 'p2')]);
        await store.addActivity([]);

        /** The sample of `minute` whose counts sum to those of n (pushes), with the most connections. */
        const sum = (n: number, minute: number, connections: number) => activity(minute, n, connections);
        const minutes = await store.activity('p1', m(0), m(20));
        expect(minutes).toEqual([sum(7, m(0), 5), sum(8, m(1), 9), sum(16, m(9), 1), sum(32, m(10), 2), sum(64, m(15), 7)]);
        // From inclusive, to exclusive.
        expect((await store.activity('p1', m(1), m(10))).map((s) => s.minute)).toEqual([m(1), m(9)]);
        expect((await store.activity('p1', m(1) + 1, m(10) + 1)).map((s) => s.minute)).toEqual([m(9), m(10)]);
        expect(await store.activity('p1', m(2), m(9))).toEqual([]);
        // Ten-minute buckets sum their minutes and keep the most connections.
        expect(await store.activity('p1', m(0), m(20), 10)).toEqual([sum(7 + 8 + 16, m(0), 9), sum(32 + 64, m(10), 7)]);
        expect(await store.activity('p2', m(0), m(20), 10)).toEqual([activity(m(0), 1000, 1, 'p2')]);
      });

      it('reads the change log with filters, newest first or oldest first, in pages that give each change once', async () => {
        await fresh();
        await touch('alice', 'alice-device');
        await touch('bob', 'bob-device');
        await push([upsert('r1', 10, { title: 'a' }, 'todos', 'insert'), upsert('r2', 11, { title: 'b' }, 'todos', 'insert'), upsert('l1', 12, { name: 'l' }, 'lists', 'insert')], 'alice');
        await past();
        await push([upsert('b1', 13, { title: 'bob' }, 'todos', 'insert')], 'bob');
        await past();
        await push([upsert('l1', 5, { name: 'older' }, 'lists')], 'bob');
        await past();
        const last = remove('r1', 20);
        await push([last], 'alice');
        await push([upsert('x', 1, { a: 1 }, 'todos', 'insert')], 'alice', 'p2');

        const all = await store.changes({ projectId: 'p1', limit: 100 });
        expect(all).toHaveLength(6);
        expect(all[0]).toEqual({
          changeId: last.id, deviceId: 'alice-device', userId: 'alice', table: 'todos', row: 'r1', op: 'delete', values: null,
          clock: last.clock, outcome: 'applied', seq: 5, receivedAt: expect.any(Number), message: null,
        });
        expect(all.find((c) => c.values?.name === 'older')).toMatchObject({ userId: 'bob', table: 'lists', outcome: 'superseded', seq: null });
        expect(all.find((c) => c.row === 'r2')).toMatchObject({ op: 'insert', values: { title: 'b' }, outcome: 'applied', seq: 2 });
        const times = all.map((c) => c.receivedAt);
        expect(times).toEqual([...times].sort((x, y) => y - x));
        expect(new Set(times).size).toBe(4);

        const ids = (list: readonly { changeId: string }[]) => list.map((c) => c.changeId);
        const query = (q: Partial<Parameters<Store['changes']>[0]>) => store.changes({ projectId: 'p1', limit: 100, ...q });
        expect(ids(await query({ table: 'lists' }))).toEqual(ids(all.filter((c) => c.table === 'lists')));
        expect(ids(await query({ row: 'r1' }))).toEqual(ids(all.filter((c) => c.row === 'r1')));
        expect(await query({ row: 'r1' })).toHaveLength(2);
        expect(ids(await query({ userId: 'bob' }))).toEqual(ids(all.filter((c) => c.userId === 'bob')));
        expect(await query({ userId: 'bob' })).toHaveLength(2);
        expect(ids(await query({ deviceId: 'alice-device' }))).toEqual(ids(all.filter((c) => c.deviceId === 'alice-device')));
        expect(ids(await query({ op: 'delete' }))).toEqual([last.id]);
        expect(ids(await query({ table: 'todos', userId: 'alice', op: 'insert' }))).toEqual(ids(all.filter((c) => c.table === 'todos' && c.userId === 'alice' && c.op === 'insert')));
        const middle = times[2]!;
        expect(ids(await query({ from: middle }))).toEqual(ids(all.filter((c) => c.receivedAt >= middle)));
        expect(ids(await query({ to: middle }))).toEqual(ids(all.filter((c) => c.receivedAt <= middle)));
        expect(ids(await query({ from: middle, to: middle }))).toEqual(ids(all.filter((c) => c.receivedAt === middle)));
        expect(await query({ from: times[0]! + 1 })).toEqual([]);
        expect(await query({ limit: 2 })).toEqual(all.slice(0, 2));
        expect(await query({ table: 'nope' })).toEqual([]);

        // Oldest first: the same changes the other way round.
        const ascending = await query({ ascending: true });
        expect(ids(ascending)).toEqual(ids(all).reverse());

        // Pages of two (the first push's three changes share their time): each change exactly once.
        for (const ascendingPages of [false, true]) {
          const pages: string[][] = [];
          let before: Parameters<Store['changes']>[0]['before'];
          for (;;) {
            const page = await query({ limit: 2, ascending: ascendingPages, ...(before ? { before } : {}) });
            if (page.length === 0) break;
            pages.push(ids(page));
            const end = page.at(-1)!;
            before = { receivedAt: end.receivedAt, deviceId: end.deviceId, changeId: end.changeId };
          }
          expect(pages.flat()).toEqual(ids(ascendingPages ? ascending : all));
          expect(pages).toHaveLength(3);
        }
        expect(ids(await store.changes({ projectId: 'p2', limit: 100 }))).toHaveLength(1);
      });

      it('lists the duplicates and rejections kept with logOutcomes among the changes, by outcome, in pages, until compacted', async () => {
        await fresh();
        const first = upsert('r1', 10, { title: 'a' }, 'todos', 'insert');
        await push([first], 'alice');
        await past();
        const outcome = (o: Partial<OutcomeRecord>): OutcomeRecord => ({
          projectId: 'p1', userId: 'alice', deviceId: 'alice-device', changeId: first.id, table: 'todos', row: 'r1', op: 'insert', clock: first.clock,
          outcome: 'duplicate', seq: 1, message: null, ...o,
        });
        await store.logOutcomes([outcome({}), outcome({ changeId: 'bad', row: 'r9', op: 'update', clock: '', outcome: 'rejected', seq: null, message: 'values: must be an object' })]);
        await store.logOutcomes([outcome({ projectId: 'p2' })]);
        await store.logOutcomes([]);
        const all = await store.changes({ projectId: 'p1', limit: 100 });
        expect(all.map((c) => [c.changeId, c.outcome, c.seq])).toEqual(expect.arrayContaining([[first.id, 'applied', 1], [first.id, 'duplicate', 1], ['bad', 'rejected', null]]));
        expect(all).toHaveLength(3);
        expect(all.at(-1)).toMatchObject({ changeId: first.id, outcome: 'applied', values: { title: 'a' } });
        expect(await store.changes({ projectId: 'p1', outcome: 'rejected', limit: 100 })).toEqual([{
          changeId: 'bad', deviceId: 'alice-device', userId: 'alice', table: 'todos', row: 'r9', op: 'update', values: null, clock: '',
          outcome: 'rejected', seq: null, receivedAt: expect.any(Number), message: 'values: must be an object',
        }]);
        expect((await store.changes({ projectId: 'p1', row: 'r1', limit: 100 })).map((c) => c.outcome).sort()).toEqual(['applied', 'duplicate']);
        // Paged one at a time, across both logs: each once.
        const seen: string[] = [];
        let before: Parameters<Store['changes']>[0]['before'];
        for (;;) {
          const [page] = await store.changes({ projectId: 'p1', limit: 1, ...(before ? { before } : {}) });
          if (!page) break;
          seen.push(`${page.changeId}:${page.outcome}`);
          before = { receivedAt: page.receivedAt, deviceId: page.deviceId, changeId: page.changeId };
        }
        expect(seen.sort()).toEqual(all.map((c) => `${c.changeId}:${c.outcome}`).sort());
        expect(await store.changes({ projectId: 'p2', limit: 100 })).toHaveLength(1);
        // Gone with the user's data, and with compaction.
        await store.logOutcomes([outcome({ userId: 'bob', deviceId: 'bob-device', changeId: 'b' })]);
        await store.deleteUserData('p1', 'bob');
        expect((await store.changes({ projectId: 'p1', limit: 100 })).map((c) => c.userId)).not.toContain('bob');
        await store.compact({ changeLogMs: 0, conflictsMs: 0, tombstonesMs: 0, compactEveryMs: 60_000 }, Date.now() + 1000);
        expect(await store.changes({ projectId: 'p1', limit: 100 })).toEqual([]);
      });

      it('reads conflicts newest first, by table and row, in pages, with the user of the device that met them', async () => {
        await fresh();
        await touch('alice', 'alice-device');
        await touch('bob', 'bob-device');
        await push([upsert('r1', 10, { title: 'new' }, 'todos', 'insert'), upsert('l1', 11, { name: 'list' }, 'lists', 'insert')], 'alice');
        const losing = upsert('r1', 5, { title: 'old' });
        await push([losing], 'alice');
        await push([upsert('b1', 20, { title: 'bob' }, 'todos', 'insert')], 'bob');
        await push([upsert('b1', 6, { title: 'bob old' })], 'bob');
        const onShared = upsert('l1', 7, { name: 'bob’s' }, 'lists');
        await push([onShared], 'bob');
        // A device the store never saw (no user to join).
        await store.push({ projectId: 'p1', userId: 'carol', deviceId: 'unknown-device', deviceCursor: 0, changes: [upsert('l1', 8, { name: 'carol’s' }, 'lists')] });
        await push([upsert('r1', 1, { title: 'p2 new' }, 'todos', 'insert')], 'alice', 'p2');
        await push([upsert('r1', 0, { title: 'p2 old' })], 'alice', 'p2');

        const all = await store.conflicts({ projectId: 'p1', limit: 100 });
        expect(all.map((c) => [c.table, c.row, c.userId, c.deviceId])).toEqual([
          ['lists', 'l1', null, 'unknown-device'],
          ['lists', 'l1', 'bob', 'bob-device'],
          ['todos', 'b1', 'bob', 'bob-device'],
          ['todos', 'r1', 'alice', 'alice-device'],
        ]);
        const idsOf = (list: readonly { id: number }[]) => list.map((c) => c.id);
        expect(idsOf(all)).toEqual([...idsOf(all)].sort((x, y) => y - x));
        expect(all[3]).toEqual({
          id: expect.any(Number), at: expect.any(Number), changeId: losing.id, deviceId: 'alice-device', userId: 'alice',
          table: 'todos', row: 'r1', column: 'title', rule: 'column-lww',
          losing: { op: 'update', clock: losing.clock, value: 'old' }, winning: { op: 'current', clock: clock(10), value: 'new' },
        });
        expect(all[1]).toMatchObject({ changeId: onShared.id, column: 'name', losing: { value: 'bob’s' } });

        const query = (q: Partial<Parameters<Store['conflicts']>[0]>) => store.conflicts({ projectId: 'p1', limit: 100, ...q });
        expect(idsOf(await query({ table: 'lists' }))).toEqual(idsOf(all.slice(0, 2)));
        expect(idsOf(await query({ table: 'todos', row: 'b1' }))).toEqual([all[2]!.id]);
        expect(idsOf(await query({ row: 'r1' }))).toEqual([all[3]!.id]);
        expect(idsOf(await query({ changeId: onShared.id }))).toEqual([all[1]!.id]);
        expect(await query({ row: 'nope' })).toEqual([]);
        const at = all[2]!.at;
        expect(idsOf(await query({ from: at }))).toEqual(idsOf(all.filter((c) => c.at >= at)));
        expect(idsOf(await query({ to: at }))).toEqual(idsOf(all.filter((c) => c.at <= at)));
        expect(idsOf(await query({ before: all[1]!.id }))).toEqual(idsOf(all.slice(2)));

        const pages: number[][] = [];
        let before: number | undefined;
        for (;;) {
          const page = await query({ limit: 3, ...(before !== undefined ? { before } : {}) });
          if (page.length === 0) break;
          pages.push(idsOf(page));
          before = page.at(-1)!.id;
        }
        expect(pages).toEqual([idsOf(all.slice(0, 3)), idsOf(all.slice(3))]);
        expect(await store.conflicts({ projectId: 'p2', limit: 100 })).toMatchObject([{ row: 'r1', losing: { value: 'p2 old' } }]);
      });

      it('counts the tables a project has rows in, deleted rows included', async () => {
        await fresh();
        expect(await store.tables('p1')).toEqual([]);
        await push([upsert('r1', 1, { a: 1 }, 'todos', 'insert'), upsert('r2', 2, { a: 2 }, 'todos', 'insert'), upsert('l1', 3, { a: 3 }, 'lists', 'insert')], 'alice');
        await push([upsert('r1', 4, { a: 4 }, 'todos', 'insert')], 'bob');
        await push([remove('r2', 5)], 'alice');
        await push([upsert('t1', 6, { a: 6 }, 'tags', 'insert')], 'alice', 'p2');
        expect(await store.tables('p1')).toEqual([{ table: 'lists', rows: 1, deleted: 0 }, { table: 'todos', rows: 3, deleted: 1 }]);
        expect(await store.tables('p2')).toEqual([{ table: 'tags', rows: 1, deleted: 0 }]);
      });

      it('reads rows whose column holds a value, a text or a number', async () => {
        await fresh();
        await push([
          upsert('r1', 1, { title: 'milk', n: 3, code: '3' }, 'todos', 'insert'),
          upsert('r2', 2, { title: 'bread', n: 2, code: '2' }, 'todos', 'insert'),
          upsert('r3', 3, { title: 'milk', n: 2, code: '2' }, 'todos', 'insert'),
          upsert('r4', 4, { title: 'milk', n: 3, code: '3' }, 'todos', 'insert'),
        ]);
        await push([remove('r4', 5)]);
        await push([upsert('x1', 6, { title: 'milk', n: 3 }, 'todos', 'insert')], 'bob');
        const rows = (where: { column: string; value: string | number }, extra: Partial<Parameters<Store['rows']>[0]> = {}) =>
          store.rows({ projectId: 'p1', scope: 'user:alice', table: 'todos', limit: 10, where, ...extra });
        const names = async (where: { column: string; value: string | number }, extra: Partial<Parameters<Store['rows']>[0]> = {}) => (await rows(where, extra)).rows.map((r) => r.row);
        expect(await names({ column: 'title', value: 'milk' })).toEqual(['r1', 'r3']);
        expect(await names({ column: 'title', value: 'milk' }, { includeDeleted: true })).toEqual(['r1', 'r3', 'r4']);
        expect(await names({ column: 'n', value: 3 })).toEqual(['r1']);
        expect(await names({ column: 'n', value: 2 })).toEqual(['r2', 'r3']);
        // A number is not the text of it, nor the other way round.
        expect(await names({ column: 'n', value: '2' })).toEqual([]);
        expect(await names({ column: 'code', value: '2' })).toEqual(['r2', 'r3']);
        expect(await names({ column: 'code', value: 2 })).toEqual([]);
        expect(await names({ column: 'title', value: 'nothing' })).toEqual([]);
        expect(await names({ column: 'missing', value: 'milk' })).toEqual([]);
        const page = await rows({ column: 'n', value: 2 }, { limit: 1 });
        expect([page.rows.map((r) => r.row), page.hasMore]).toEqual([['r2'], true]);
        expect(await names({ column: 'n', value: 2 }, { after: 'r2' })).toEqual(['r3']);
        expect((await rows({ column: 'title', value: 'milk' })).rows[0]).toMatchObject({ row: 'r1', values: { title: 'milk', n: 3, code: '3' } });
      });
    });
  });
}
