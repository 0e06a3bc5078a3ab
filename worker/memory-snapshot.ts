/**
 * The memory fallback's copy in IndexedDB. Where OPFS is missing (a private window, an old browser)
 * the database lives in memory; a serialized copy of it is kept under `pocketsync:snapshot:<dbName>`
 * (idb-keyval's default store, beside the remembered device ids) and read back into memory when the
 * database is next opened, so its data, and its sync state with it, survive a reload.
 *
 * Design notes:
 * - One writer per database. Only the tab that holds the database's Web Lock opens it
 *   (worker/tabs.ts); the other tabs relay to it, so one worker at a time reads and writes a
 *   database's copy, and a tab that takes over restores the copy its predecessor left (a leader
 *   that closes saves before it lets go of the lock). Where tabs cannot coordinate (no Web Locks),
 *   each tab would hold a database of its own and overwrite the other's copy: the worker is then
 *   given no store (worker.ts) and the database is memory only. An explicit `storage: 'memory'`
 *   is an app asking for a throwaway database private to its tab: never copied.
 * - When. After each committed write, from the worker's change notification (worker-api.ts
 *   notify: the same place the page and the sync loop hear of commits), debounced: SAVE_DELAY_MS
 *   after the last commit, and no later than MAX_DELAY_MS after the first unsaved one under a steady
 *   stream. One write in flight at a time; commits made meanwhile go into the next one. close()
 *   saves what is unsaved and waits for it. The page's pagehide asks for the save at once (flush),
 *   which lands if the worker stores it before the browser stops it: a write just before a reload
 *   of the demo in Chromium survived 15 times in 20 so, never without. Otherwise a reload or a
 *   crash loses the commits of at most the last MAX_DELAY_MS (usually SAVE_DELAY_MS), as one
 *   consistent step back in time: the copy holds the rows, change log and cursor of one moment, so
 *   sync resends or refetches what was lost, and only writes never pushed are gone.
 * - Consistency. The copy is sqlite3_serialize of the whole database, taken synchronously between
 *   the worker's calls and never while a transaction is open (its pages may be half written): a
 *   save that finds one open tries again a little later.
 * - Failure. A save that fails (the quota, say) changes the instance's warning to say that the
 *   latest writes are only in memory, and is tried again at the next commit and at close; the next
 *   save that succeeds restores the warning. A copy that cannot be read back (not a database, or
 *   corrupt) is deleted, and the database starts empty with a warning saying so.
 * - reset() deletes the copy once the write in flight, if any, has landed, so none brings it back.
 */
import type { Database, Sqlite3Static } from '@sqlite.org/sqlite-wasm';
import { createStore, del, get, promisifyRequest } from 'idb-keyval';
import { ErrorKind } from '../lib/protocol/error-kind.js';
import { EngineError } from './engine-error.js';

/** Where copies are kept: IndexedDB through idb-keyval in a browser; tests may give their own. */
export interface SnapshotStore {
  get(key: string): Promise<unknown>;
  set(key: string, value: Uint8Array): Promise<void>;
  del(key: string): Promise<void>;
}

/**
 * idb-keyval's default store, or null where there is no IndexedDB (Node). A save commits its
 * transaction at once instead of when it goes idle: a reload stops the worker a few milliseconds
 * after pagehide, and a commit already asked for still lands (in a bare Chromium worker, a write
 * sent at pagehide landed 19 times in 19 with the explicit commit, once without).
 */
export function indexedDbSnapshotStore(): SnapshotStore | null {
  if (typeof indexedDB === 'undefined') return null;
  // The same database and object store as idb-keyval's own get and del.
  const keyval = createStore('keyval-store', 'keyval');
  const set = (key: string, value: Uint8Array) =>
    keyval('readwrite', (store) => {
      store.put(value, key);
      store.transaction.commit?.();
      return promisifyRequest(store.transaction);
    });
  return { get, set, del };
}

export const snapshotKey = (dbName: string): string => `pocketsync:snapshot:${dbName}`;

/** A save starts this long after the last commit... */
const SAVE_DELAY_MS = 250;
/** ...and no later than this after the first commit it saves, however steady the stream. */
const MAX_DELAY_MS = 2_000;

const OPFS_MISSING = 'OPFS is not available here (a private window, or an old browser): data is kept in memory';
/** The memory fallback without a copy. */
export const MEMORY_ONLY_WARNING = `${OPFS_MISSING} only, and lost when the page closes or reloads.`;
/** The memory fallback with a copy in IndexedDB. */
export const SNAPSHOT_WARNING =
  `${OPFS_MISSING} and saved to IndexedDB after each write, so it survives a reload; but a private window's ` +
  'storage is discarded when the window closes, and the browser may evict it when space runs low.';

export interface SnapshotOptions {
  readonly store: SnapshotStore;
  /** Called with the whole warning whenever it changes (a save failed, or works again). */
  readonly onWarning: (warning: string) => void;
}

export interface MemoryDatabase {
  readonly db: Database;
  readonly warning: string;
  /** Null when IndexedDB could not be read: the database is memory only. */
  readonly snapshot: MemorySnapshot | null;
}

/**
 * Opens the memory fallback for `dbName`: the saved copy read back into memory when there is one
 * (an unreadable one is deleted, and the database starts empty), else an empty database.
 */
export async function openMemoryDatabase(sqlite3: Sqlite3Static, dbName: string, options: SnapshotOptions): Promise<MemoryDatabase> {
  const key = snapshotKey(dbName);
  let saved: unknown;
  try {
    saved = await options.store.get(key);
  } catch (error) {
    return { db: new sqlite3.oo1.DB(':memory:'), warning: `${MEMORY_ONLY_WARNING} IndexedDB could not be used either (${describe(error)}).`, snapshot: null };
  }
  let db = new sqlite3.oo1.DB(':memory:');
  let discarded: string | null = null;
  if (saved !== undefined) {
    try {
      if (!(saved instanceof Uint8Array)) throw new Error(`it holds ${saved === null ? 'null' : typeof saved}, not a database`);
      deserialize(sqlite3, db, saved);
    } catch (error) {
      db.close();
      db = new sqlite3.oo1.DB(':memory:');
      discarded = `The copy saved in IndexedDB could not be read (${describe(error)}): it was deleted, and the database started empty.`;
      try {
        await options.store.del(key);
      } catch (deleteError) {
        discarded += ` Deleting it failed (${describe(deleteError)}); the next save replaces it.`;
      }
    }
  }
  const snapshot = new MemorySnapshot(sqlite3, db, key, options);
  return { db, warning: discarded ? `${SNAPSHOT_WARNING} ${discarded}` : SNAPSHOT_WARNING, snapshot };
}

/** Reads `bytes` into `db` (an empty memory database), checking that they make a sound database. */
function deserialize(sqlite3: Sqlite3Static, db: Database, bytes: Uint8Array): void {
  const { capi, wasm } = sqlite3;
  // sqlite3_malloc'd (allocFromTypedArray), so SQLite may own, grow and free it.
  const pointer = wasm.allocFromTypedArray(bytes);
  const flags = capi.SQLITE_DESERIALIZE_FREEONCLOSE | capi.SQLITE_DESERIALIZE_RESIZEABLE;
  // On failure SQLite frees the buffer itself (FREEONCLOSE).
  db.checkRc(capi.sqlite3_deserialize(db, 'main', pointer, bytes.byteLength, bytes.byteLength, flags));
  // Garbage fails here with SQLITE_NOTADB, a damaged copy with a list of problems.
  const problems = db.selectValues('PRAGMA quick_check');
  if (problems.length !== 1 || problems[0] !== 'ok') throw new Error(`quick_check: ${problems.slice(0, 3).map(String).join('; ')}`);
}

/** Saves one memory database to its copy, debounced (see the notes at the top). */
export class MemorySnapshot {
  readonly #sqlite3: Sqlite3Static;
  readonly #db: Database;
  readonly #key: string;
  readonly #options: SnapshotOptions;
  /** When the oldest commit not yet saved was made; null when everything is saved. */
  #unsavedSince: number | null = null;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #writing: Promise<void> | null = null;
  /** Why the last save failed; null once one succeeds. */
  #failure: string | null = null;
  /** Closed or discarded: nothing more is saved. */
  #ended = false;

  constructor(sqlite3: Sqlite3Static, db: Database, key: string, options: SnapshotOptions) {
    this.#sqlite3 = sqlite3;
    this.#db = db;
    this.#key = key;
    this.#options = options;
  }

  /** The database changed (a commit, or the open): save it soon. */
  changed(): void {
    if (this.#ended) return;
    const now = Date.now();
    this.#unsavedSince ??= now;
    this.#arm(Math.min(SAVE_DELAY_MS, this.#unsavedSince + MAX_DELAY_MS - now));
  }

  /** Saves what is unsaved, after the write in flight; resolves once stored or failed (and reported). */
  async save(): Promise<void> {
    while (this.#writing) await this.#writing;
    if (this.#unsavedSince === null || this.#ended) return;
    this.#disarm();
    if (this.#sqlite3.capi.sqlite3_get_autocommit(this.#db) === 0) {
      // Mid-transaction: its commit calls changed() again, a rollback leaves this retry.
      this.#arm(SAVE_DELAY_MS);
      return;
    }
    const bytes = this.#sqlite3.capi.sqlite3_js_db_export(this.#db);
    this.#unsavedSince = null;
    this.#writing = this.#write(bytes).finally(() => {
      this.#writing = null;
    });
    await this.#writing;
  }

  /** Saves what is unsaved and stops: the next open finds every committed write. Never throws. */
  async close(): Promise<void> {
    await this.save();
    this.#ended = true;
    this.#disarm();
  }

  /** Deletes the copy (reset), after the write in flight, which would otherwise bring it back. */
  async discard(): Promise<void> {
    this.#ended = true;
    this.#disarm();
    while (this.#writing) await this.#writing;
    try {
      await this.#options.store.del(this.#key);
    } catch (error) {
      // Still the live database's copy: go on saving it.
      this.#ended = false;
      this.changed();
      throw new EngineError(ErrorKind.Storage, `could not delete the database's copy in IndexedDB: ${describe(error)}`);
    }
  }

  async #write(bytes: Uint8Array): Promise<void> {
    try {
      await this.#options.store.set(this.#key, bytes);
      if (this.#failure !== null) {
        this.#failure = null;
        this.#options.onWarning(SNAPSHOT_WARNING);
      }
    } catch (error) {
      // Tried again at the next commit, or at close.
      this.#unsavedSince ??= Date.now();
      const failure = `Saving it to IndexedDB failed (${describe(error)}): the latest writes are only in memory, and lost at reload, until a save succeeds.`;
      if (failure !== this.#failure) {
        this.#failure = failure;
        this.#options.onWarning(`${SNAPSHOT_WARNING} ${failure}`);
      }
    }
  }

  #arm(delayMs: number): void {
    this.#disarm();
    this.#timer = setTimeout(() => {
      this.#timer = null;
      void this.save();
    }, Math.max(0, delayMs));
  }

  #disarm(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
