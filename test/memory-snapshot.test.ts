/**
 * The memory fallback's copy (worker/memory-snapshot.ts), through the real client and WorkerApi.
 * Node has no OPFS, so a database opened without `storage` falls back to memory, as in a private
 * window; the IndexedDB that holds copies in a browser is absent, so each test gives the worker a
 * key-value store of its own (idb-keyval's get/set/del). e2e/memory-fallback.test.ts does the
 * same in Chromium with its IndexedDB.
 */
import { expose } from 'comlink';
import { afterEach, describe, expect, it } from 'vitest';
import { PocketSync, type PocketSyncOptions } from '../lib/index.js';
import { MemorySnapshot, SNAPSHOT_WARNING, snapshotKey, type SnapshotStore } from '../worker/memory-snapshot.js';
import { createWorkerApi } from '../worker/worker-api.js';
import { loadSqlite, todoSchema } from './helpers/engine.js';
import { waitFor } from './helpers/instance.js';

interface TestStore extends SnapshotStore {
  readonly entries: Map<string, unknown>;
  /** Resolved sets, and the most that were in flight at once. */
  readonly stats: { sets: number; inFlight: number; maxInFlight: number };
  /** When set, the next sets fail with it. */
  failWith: Error | null;
  /** When set, sets wait for it before they store. */
  gate: Promise<void> | null;
}

function testStore(): TestStore {
  const entries = new Map<string, unknown>();
  const store: TestStore = {
    entries,
    stats: { sets: 0, inFlight: 0, maxInFlight: 0 },
    failWith: null,
    gate: null,
    get: (key) => Promise.resolve(entries.get(key)),
    async set(key, value) {
      store.stats.inFlight++;
      store.stats.maxInFlight = Math.max(store.stats.maxInFlight, store.stats.inFlight);
      try {
        await store.gate;
        if (store.failWith) throw store.failWith;
        entries.set(key, value.slice());
        store.stats.sets++;
      } finally {
        store.stats.inFlight--;
      }
    },
    del: (key) => Promise.resolve(void entries.delete(key)),
  };
  return store;
}

const open: PocketSync[] = [];
let counter = 0;

afterEach(async () => {
  await Promise.all(open.splice(0).map((instance) => instance.close().catch(() => undefined)));
});

function newName(): string {
  return `snapshot-${process.pid}-${++counter}`;
}

/** One page load: a worker with `store` as its IndexedDB, and the client on it. */
async function load(dbName: string, store: SnapshotStore, options: Partial<PocketSyncOptions> = {}): Promise<PocketSync> {
  const { port1, port2 } = new MessageChannel();
  expose(createWorkerApi({ snapshots: store }), port1);
  const instance = await PocketSync.initialize({ dbName, schema: todoSchema, worker: port2, ...options });
  open.push(instance);
  return instance;
}

async function titles(ps: PocketSync): Promise<unknown[]> {
  return (await ps.database.query('SELECT title FROM todos ORDER BY id')).map((row) => row.title);
}

describe('the memory fallback, saved to a copy', () => {
  it('comes back at the next open with its rows, its device id and its pending changes', async () => {
    const store = testStore();
    const name = newName();
    const first = await load(name, store);
    expect(first.storage).toBe('memory');
    expect(first.warning).toBe(SNAPSHOT_WARNING);
    await first.database.insert('todos', { title: 'milk' });
    await first.database.transaction(async (tx) => {
      await tx.insert('todos', { title: 'bread' });
      await tx.update('todos', { done: 1 }, { title: 'milk' });
    });
    const deviceId = first.deviceId;
    // close() saves what is unsaved and waits for it.
    await first.close();
    expect(store.entries.get(snapshotKey(name))).toBeInstanceOf(Uint8Array);

    const second = await load(name, store);
    expect(await titles(second)).toEqual(['milk', 'bread']);
    expect(second.deviceId).toBe(deviceId);
    const changes = await second.database.query('SELECT operation FROM __pocketsync_changes ORDER BY id');
    expect(changes.map((row) => row.operation)).toEqual(['insert', 'insert', 'update']);
    expect(await second.database.query('PRAGMA integrity_check')).toEqual([{ integrity_check: 'ok' }]);
    // The restored database grows like any other.
    await second.database.insert('todos', { title: 'eggs' });
    await second.close();
    expect(await titles(await load(name, store))).toEqual(['milk', 'bread', 'eggs']);
  });

  it('saves soon after a commit without a close, coalescing a burst into few writes, one at a time', async () => {
    const store = testStore();
    const name = newName();
    const ps = await load(name, store);
    await waitFor(() => store.stats.sets >= 1, 5_000, 'the save after the open');
    let release!: () => void;
    store.gate = new Promise<void>((resolve) => (release = resolve));
    const before = store.stats.sets;
    await ps.database.insert('todos', { title: 'first' });
    await waitFor(() => store.stats.inFlight === 1, 5_000, 'a save in flight');
    // Commits while that save is held up: none starts a second write beside it.
    for (let i = 0; i < 50; i++) await ps.database.insert('todos', { title: `burst ${i}` });
    store.gate = null;
    release();
    await waitFor(() => store.stats.sets >= before + 2 && store.stats.inFlight === 0, 5_000, 'the burst saved');
    expect(store.stats.maxInFlight).toBe(1);
    expect(store.stats.sets - before).toBeLessThan(10);

    // What is stored is the last commit (read back by a second load, the worker's next page load).
    const reloaded = await load(name, store);
    expect((await titles(reloaded)).length).toBe(51);
  });

  it('reports a save that fails on the warning, and clears that once a save succeeds', async () => {
    const store = testStore();
    const ps = await load(newName(), store);
    const warnings: string[] = [];
    ps.onWarning((warning) => warnings.push(warning));
    store.failWith = Object.assign(new Error('the quota is exceeded'), { name: 'QuotaExceededError' });
    await ps.database.insert('todos', { title: 'not saved' });
    await waitFor(() => warnings.length === 1, 5_000, 'the failure reported');
    expect(ps.warning).toBe(warnings[0]);
    expect(warnings[0]).toContain(SNAPSHOT_WARNING);
    expect(warnings[0]).toContain('QuotaExceededError: the quota is exceeded');
    expect(warnings[0]).toContain('only in memory');
    store.failWith = null;
    await ps.database.insert('todos', { title: 'saved' });
    await waitFor(() => warnings.length === 2, 5_000, 'the recovery reported');
    expect(ps.warning).toBe(SNAPSHOT_WARNING);
  });

  it('opens empty with a warning when the copy cannot be read, and deletes it', async () => {
    for (const garbage of [crypto.getRandomValues(new Uint8Array(4096)), 'not bytes at all']) {
      const store = testStore();
      const name = newName();
      store.entries.set(snapshotKey(name), garbage);
      let gateOpen!: () => void;
      // Hold the first save back, to see that the garbage was deleted rather than overwritten.
      store.gate = new Promise<void>((resolve) => (gateOpen = resolve));
      const ps = await load(name, store);
      expect(ps.storage).toBe('memory');
      expect(ps.warning).toContain(SNAPSHOT_WARNING);
      expect(ps.warning).toMatch(/could not be read \(.+\): it was deleted, and the database started empty/);
      expect(store.entries.has(snapshotKey(name))).toBe(false);
      expect(await titles(ps)).toEqual([]);
      await ps.database.insert('todos', { title: 'after the garbage' });
      store.gate = null;
      gateOpen();
      await ps.close();
      const again = await load(name, store);
      expect(again.warning).toBe(SNAPSHOT_WARNING);
      expect(await titles(again)).toEqual(['after the garbage']);
    }
  });

  it('reset() deletes the copy: the next open starts empty, with a new device id', async () => {
    const store = testStore();
    const name = newName();
    const ps = await load(name, store);
    await ps.database.insert('todos', { title: 'private' });
    await waitFor(() => store.stats.sets >= 1 && store.stats.inFlight === 0, 5_000, 'a save');
    const oldId = ps.deviceId;
    // The new database's saves are held back, so that what is seen is the delete.
    let release!: () => void;
    store.gate = new Promise<void>((resolve) => (release = resolve));
    await ps.reset();
    expect(store.entries.has(snapshotKey(name))).toBe(false);
    store.gate = null;
    release();
    const newId = ps.deviceId;
    expect(newId).not.toBe(oldId);
    await ps.close();
    const again = await load(name, store);
    expect(await titles(again)).toEqual([]);
    expect(again.deviceId).toBe(newId);
  });

  it('keeps no copy of an explicit storage: "memory" database, nor without an IndexedDB', async () => {
    const store = testStore();
    const name = newName();
    const explicit = await load(name, store, { storage: 'memory' });
    expect(explicit.warning).toBeUndefined();
    await explicit.database.insert('todos', { title: 'throwaway' });
    await explicit.close();
    expect(store.entries.size).toBe(0);

    const broken: SnapshotStore = { ...store, get: () => Promise.reject(new Error('IndexedDB is disabled')) };
    const withoutIdb = await load(name, broken);
    expect(withoutIdb.warning).toMatch(/kept in memory only, and lost when the page closes or reloads\. IndexedDB could not be used either \(Error: IndexedDB is disabled\)/);
    await withoutIdb.database.insert('todos', { title: 'lost' });
    await withoutIdb.close();
    expect(store.entries.size).toBe(0);
  });

  it('flush() (the page going away) saves at once rather than after the debounce', async () => {
    const store = testStore();
    const api = createWorkerApi({ snapshots: store });
    const port = { postMessage: () => undefined, close: () => undefined };
    const name = newName();
    expect((await api.open({ dbName: name, schema: todoSchema }, port)).ok).toBe(true);
    expect((await api.insert('todos', { title: 'just before the reload' })).ok).toBe(true);
    expect(await api.flush()).toEqual({ ok: true, value: undefined });
    expect(new TextDecoder().decode(store.entries.get(snapshotKey(name)) as Uint8Array)).toContain('just before the reload');
    await api.close();
  });

  it('writes one save at a time: saves asked for meanwhile make one more, of the latest state', async () => {
    const sqlite3 = await loadSqlite();
    const db = new sqlite3.oo1.DB(':memory:');
    const store = testStore();
    const snapshot = new MemorySnapshot(sqlite3, db, 'k', { store, onWarning: () => undefined });
    let release!: () => void;
    store.gate = new Promise<void>((resolve) => (release = resolve));
    db.exec("CREATE TABLE t (x); INSERT INTO t VALUES ('first')");
    snapshot.changed();
    const first = snapshot.save();
    db.exec("INSERT INTO t VALUES ('second')");
    snapshot.changed();
    const waiting = [snapshot.save(), snapshot.save(), snapshot.save()];
    expect(store.stats.inFlight).toBe(1);
    store.gate = null;
    release();
    await Promise.all([first, ...waiting]);
    expect(store.stats).toMatchObject({ sets: 2, maxInFlight: 1 });
    expect(new TextDecoder().decode(store.entries.get('k') as Uint8Array)).toContain('second');
    await snapshot.close();
    db.close();
  });

  it('deletes the copy only after the save in flight, which would otherwise bring it back', async () => {
    const sqlite3 = await loadSqlite();
    const db = new sqlite3.oo1.DB(':memory:');
    const store = testStore();
    const snapshot = new MemorySnapshot(sqlite3, db, 'k', { store, onWarning: () => undefined });
    let release!: () => void;
    store.gate = new Promise<void>((resolve) => (release = resolve));
    db.exec('CREATE TABLE t (x)');
    snapshot.changed();
    const saving = snapshot.save();
    expect(store.stats.inFlight).toBe(1);
    const discarding = snapshot.discard();
    release();
    await Promise.all([saving, discarding]);
    expect(store.stats.sets).toBe(1);
    expect(store.entries.has('k')).toBe(false);
    // Nothing is saved after a discard.
    snapshot.changed();
    await snapshot.save();
    expect(store.stats.sets).toBe(1);
    db.close();
  });

  it('never saves while a transaction is open', async () => {
    const sqlite3 = await loadSqlite();
    const db = new sqlite3.oo1.DB(':memory:');
    const store = testStore();
    const snapshot = new MemorySnapshot(sqlite3, db, 'k', { store, onWarning: () => undefined });
    db.exec("CREATE TABLE t (x); BEGIN; INSERT INTO t VALUES ('uncommitted')");
    snapshot.changed();
    await snapshot.save();
    expect(store.stats.sets).toBe(0);
    db.exec('COMMIT');
    await snapshot.save();
    const saved = store.entries.get('k') as Uint8Array;
    expect(new TextDecoder().decode(saved)).toContain('uncommitted');
    await snapshot.close();
    db.close();
  });
});
