/**
 * The device id: random, generated once per browser profile and database, never derived from the
 * user agent. It lives in the database's __pocketsync_device_state and, so that it survives the
 * database file being deleted, in IndexedDB (through idb-keyval) where IndexedDB exists.
 *
 * A device id names one copy of the data. An in-memory database is a copy of its own in every tab
 * or instance that opens it, so it gets a new id at each open, never remembered here: two memory
 * tabs of one profile sharing an id would each be skipped by the server's fan-out of the other's
 * writes, and each miss them. The memory fallback saved to IndexedDB (memory-snapshot.ts) keeps its
 * id all the same: the id is in the database, and the copy read back at open brings it along (one
 * tab at a time holds that database, as with OPFS).
 */
import { del, get, set } from 'idb-keyval';
import type { StorageKind } from '../lib/protocol/worker-api.js';
import { randomHex } from './random.js';

/** Where remembered ids are kept: IndexedDB in a browser; tests may give their own. */
export interface DeviceIdStore {
  get(key: string): Promise<unknown>;
  set(key: string, value: string): Promise<void>;
  del(key: string): Promise<void>;
}

const key = (dbName: string) => `pocketsync:device-id:${dbName}`;

/** idb-keyval's default store, or null where there is no IndexedDB (Node). */
function indexedDbStore(): DeviceIdStore | null {
  return typeof indexedDB === 'undefined' ? null : { get, set, del };
}

const persisted = (storage: StorageKind) => storage !== 'memory';

/** The id remembered for this database, or a new random one (always a new one for memory storage). */
export async function rememberedDeviceId(dbName: string, storage: StorageKind, store = indexedDbStore()): Promise<string> {
  if (store !== null && persisted(storage)) {
    try {
      const stored = await store.get(key(dbName));
      if (typeof stored === 'string' && stored.length > 0) return stored;
    } catch {
      // IndexedDB can be unusable (some private modes); the database's own copy still holds.
    }
  }
  return randomHex(8);
}

export async function rememberDeviceId(dbName: string, deviceId: string, storage: StorageKind, store = indexedDbStore()): Promise<void> {
  if (store === null || !persisted(storage)) return;
  try {
    await store.set(key(dbName), deviceId);
  } catch {
    // See above.
  }
}

/** Forgets the remembered id (after a reset, the database gets a new one). */
export async function forgetDeviceId(dbName: string, storage: StorageKind, store = indexedDbStore()): Promise<void> {
  if (store === null || !persisted(storage)) return;
  try {
    await store.del(key(dbName));
  } catch {
    // See above.
  }
}
