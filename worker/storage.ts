/**
 * Opening the database file: opfs-sahpool first (no COOP/COEP headers needed), then the opfs VFS
 * where the page is cross-origin isolated, then memory where OPFS is missing (private browsing,
 * Node). Memory is reported with a warning: its data is gone at reload.
 *
 * A database that is already open elsewhere (a second tab of the same profile) is not a reason to
 * fall back to memory, which would silently lose that tab's writes: it fails with kind 'storage'.
 * The pool is installed with preserveOnInitFailure, so a failed open never deletes the pool.
 */
import type { Database, SAHPoolUtil, Sqlite3Static } from '@sqlite.org/sqlite-wasm';
import { ErrorKind } from '../lib/protocol/error-kind.js';
import type { StorageKind } from '../lib/protocol/worker-api.js';
import { EngineError } from './engine-error.js';

export interface OpenedStorage {
  readonly db: Database;
  readonly storage: StorageKind;
  readonly warning?: string;
}

const POOL_NAME = 'pocketsync';
const MEMORY_WARNING = 'OPFS is not available here (private browsing or an old browser): data is kept in memory and lost when the page closes.';

/**
 * Settings for an opfs-sahpool database, measured in Chromium (bench/capture.ts and by hand):
 * - One connection holds a sahpool file anyway, so exclusive locking costs nothing and lets WAL work
 *   without shared memory: about 2.5× the commits per second of the default rollback journal, with
 *   the same durability (synchronous=FULL syncs the WAL at every commit).
 * - 16 KiB pages (new databases only; set before WAL): OPFS pays per write call, and a large
 *   transaction writes a quarter of the calls; 10,000 captured inserts in one transaction went from
 *   ~100 to ~70 µs a row.
 * - A 16 MiB page cache (the default is 2 MiB), so a large transaction does not spill to the WAL.
 */
const SAHPOOL_PRAGMAS = [
  'PRAGMA page_size = 16384',
  'PRAGMA locking_mode = EXCLUSIVE',
  'PRAGMA journal_mode = WAL',
  'PRAGMA synchronous = FULL',
  'PRAGMA cache_size = -16384',
].join(';');

let pool: Promise<SAHPoolUtil> | null = null;

function opfsAvailable(): boolean {
  return typeof navigator !== 'undefined' && typeof navigator.storage?.getDirectory === 'function';
}

function installPool(sqlite3: Sqlite3Static): Promise<SAHPoolUtil> {
  pool ??= sqlite3.installOpfsSAHPoolVfs({ name: POOL_NAME, preserveOnInitFailure: true }).catch((error: unknown) => {
    pool = null;
    throw error;
  });
  return pool;
}

export async function openStorage(sqlite3: Sqlite3Static, dbName: string, preferred?: StorageKind): Promise<OpenedStorage> {
  const path = dbName.startsWith('/') ? dbName : `/${dbName}`;
  if (preferred === 'memory' || (!opfsAvailable() && preferred === undefined)) {
    return { db: new sqlite3.oo1.DB(':memory:'), storage: 'memory', ...(preferred ? {} : { warning: MEMORY_WARNING }) };
  }
  if (preferred === undefined || preferred === 'opfs-sahpool') {
    let db: Database | null = null;
    try {
      const util = await installPool(sqlite3);
      db = new util.OpfsSAHPoolDb(path);
      db.exec(SAHPOOL_PRAGMAS);
      return { db, storage: 'opfs-sahpool' };
    } catch (error) {
      db?.close();
      const name = error instanceof Error ? error.name : '';
      if (name === 'NoModificationAllowedError' || /NoModificationAllowed|Access Handles cannot be created/.test(String(error))) {
        throw new EngineError(ErrorKind.Storage, `the database is open in another tab or worker of this browser profile (${String(error)})`);
      }
      // OPFS is there but the pool would not open: falling back to another file (opfs) or to
      // memory would make the user's data seem to vanish, so only an isolated page tries opfs.
      if (preferred === 'opfs-sahpool' || !('OpfsDb' in sqlite3.oo1)) {
        throw new EngineError(ErrorKind.Storage, `opfs-sahpool is not available: ${String(error)}`);
      }
    }
  }
  if (!('OpfsDb' in sqlite3.oo1)) {
    throw new EngineError(ErrorKind.Storage, 'the opfs VFS needs a cross-origin isolated page (COOP/COEP headers)');
  }
  try {
    return { db: new sqlite3.oo1.OpfsDb(path), storage: 'opfs' };
  } catch (error) {
    throw new EngineError(ErrorKind.Storage, `opfs is not available: ${String(error)}`);
  }
}

/** Deletes a closed database of the given storage kind (nothing to do for memory). */
export async function deleteDatabase(sqlite3: Sqlite3Static, dbName: string, storage: StorageKind): Promise<void> {
  if (storage === 'opfs-sahpool') await deleteStoredDatabase(sqlite3, dbName);
  else if (storage === 'opfs') {
    const root = await navigator.storage.getDirectory();
    for (const name of [dbName, `${dbName}-journal`, `${dbName}-wal`]) await root.removeEntry(name.replace(/^\//, '')).catch(() => undefined);
  }
}

/** Deletes a database file from the opfs-sahpool (after it was closed); true when it existed. */
export async function deleteStoredDatabase(sqlite3: Sqlite3Static, dbName: string): Promise<boolean> {
  if (!opfsAvailable()) return false;
  const util = await installPool(sqlite3);
  return util.unlink(dbName.startsWith('/') ? dbName : `/${dbName}`);
}
