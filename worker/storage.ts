/**
 * Opening the database file: opfs-sahpool first (no COOP/COEP headers needed), then the opfs VFS
 * where the page is cross-origin isolated, then memory where OPFS is missing (private browsing,
 * Node). Memory is reported with a warning; where the worker has IndexedDB, the memory database is
 * read from and saved to a copy there (memory-snapshot.ts), so that it survives a reload.
 *
 * A database that is already open elsewhere is not a reason to fall back to memory, which would
 * silently lose that tab's writes. Tabs take turns through worker/tabs.ts, so a busy pool means the
 * previous holder is still letting go (a closed or crashed tab's worker releases its access handles
 * as it terminates, possibly a little after its lock): the open retries until HANDOVER_DEADLINE_MS,
 * then fails with kind 'storage'. The pool is installed with preserveOnInitFailure, so a failed
 * open never deletes the pool, and retried with forceReinitIfPreviouslyFailed.
 */
import type { Database, SAHPoolUtil, Sqlite3Static } from '@sqlite.org/sqlite-wasm';
import { ErrorKind } from '../lib/protocol/error-kind.js';
import type { StorageKind } from '../lib/protocol/worker-api.js';
import { EngineError } from './engine-error.js';
import { MEMORY_ONLY_WARNING, openMemoryDatabase, type MemorySnapshot, type SnapshotOptions } from './memory-snapshot.js';

export interface OpenedStorage {
  readonly db: Database;
  readonly storage: StorageKind;
  readonly warning?: string;
  /** The memory fallback's copy in IndexedDB, to tell of every commit and to close with the database. */
  readonly snapshot?: MemorySnapshot;
}

/**
 * Each database has a pool of its own. A pool's worker holds all of the pool's access handles, so
 * with one shared pool two tabs with different databases (two signed-in users, say) would shut each
 * other out. The name keeps the database's name readable and adds a hash, since the name must be a
 * plain VFS and directory name.
 */
export function poolName(dbName: string): string {
  const path = dbName.replace(/^\//, '');
  let hash = 0x811c9dc5;
  for (let i = 0; i < path.length; i++) hash = Math.imul(hash ^ path.charCodeAt(i), 0x01000193) >>> 0;
  return `pocketsync-${path.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 40)}-${hash.toString(16).padStart(8, '0')}`;
}

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

/** How long an open waits for another tab's worker to release the pool. */
const HANDOVER_DEADLINE_MS = 10_000;
const HANDOVER_RETRY_MS = 20;

/** This worker's pool (a worker opens one database) and its name. */
let pool: { readonly name: string; readonly util: Promise<SAHPoolUtil> } | null = null;

function opfsAvailable(): boolean {
  return typeof navigator !== 'undefined' && typeof navigator.storage?.getDirectory === 'function';
}

function installPool(sqlite3: Sqlite3Static, dbName: string): Promise<SAHPoolUtil> {
  const name = poolName(dbName);
  if (pool?.name !== name) {
    const util = installWhenReleased(sqlite3, name).catch((error: unknown) => {
      if (pool?.util === util) pool = null;
      throw error;
    });
    pool = { name, util };
  }
  return pool.util;
}

/** Installs (or, after releaseStorage, resumes) the pool, waiting out another holder's release. */
async function installWhenReleased(sqlite3: Sqlite3Static, name: string): Promise<SAHPoolUtil> {
  const deadline = Date.now() + HANDOVER_DEADLINE_MS;
  // forceReinitIfPreviouslyFailed retries a failed install instead of returning its cached failure
  // (the option exists at run time; the bundled type declarations lack it).
  const options = { name, preserveOnInitFailure: true, forceReinitIfPreviouslyFailed: true };
  for (;;) {
    try {
      const util = await sqlite3.installOpfsSAHPoolVfs(options);
      return util.isPaused() ? await util.unpauseVfs() : util;
    } catch (error) {
      if (!isBusy(error) || Date.now() >= deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, HANDOVER_RETRY_MS));
    }
  }
}

function isBusy(error: unknown): boolean {
  const name = error instanceof Error ? error.name : '';
  return name === 'NoModificationAllowedError' || /NoModificationAllowed|Access Handles cannot be created/.test(String(error));
}

/**
 * Lets go of the pool's access handles (its databases must be closed), so that another tab's worker
 * can open it now rather than when this worker terminates.
 */
export async function releaseStorage(): Promise<void> {
  const util = await pool?.util.catch(() => null);
  pool = null;
  if (util && !util.isPaused()) util.pauseVfs();
}

/**
 * Opens `dbName` in the preferred storage, or the best available one. `snapshots` keeps a fallback
 * to memory (not an explicit `storage: 'memory'`, which is a throwaway database) in IndexedDB.
 */
export async function openStorage(sqlite3: Sqlite3Static, dbName: string, preferred?: StorageKind, snapshots?: SnapshotOptions): Promise<OpenedStorage> {
  const path = dbName.startsWith('/') ? dbName : `/${dbName}`;
  if (preferred === 'memory') return { db: new sqlite3.oo1.DB(':memory:'), storage: 'memory' };
  if (!opfsAvailable() && preferred === undefined) {
    if (!snapshots) return { db: new sqlite3.oo1.DB(':memory:'), storage: 'memory', warning: MEMORY_ONLY_WARNING };
    const { db, warning, snapshot } = await openMemoryDatabase(sqlite3, dbName, snapshots);
    return { db, storage: 'memory', warning, ...(snapshot ? { snapshot } : {}) };
  }
  if (preferred === undefined || preferred === 'opfs-sahpool') {
    let db: Database | null = null;
    try {
      const util = await installPool(sqlite3, dbName);
      db = new util.OpfsSAHPoolDb(path);
      db.exec(SAHPOOL_PRAGMAS);
      return { db, storage: 'opfs-sahpool' };
    } catch (error) {
      db?.close();
      if (isBusy(error)) {
        throw new EngineError(ErrorKind.Storage, `the database is held by another tab or worker of this browser profile, which did not let go within ${HANDOVER_DEADLINE_MS / 1000} s (${String(error)})`);
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

/** Deletes a closed database of the given storage kind (a memory database's copy: MemorySnapshot.discard). */
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
  const util = await installPool(sqlite3, dbName);
  return util.unlink(dbName.startsWith('/') ? dbName : `/${dbName}`);
}
