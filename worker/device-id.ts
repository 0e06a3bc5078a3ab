/**
 * The device id: random, generated once per browser profile and database, never derived from the
 * user agent. It lives in the database's __pocketsync_device_state and, so that it survives the
 * database file being deleted, in IndexedDB (through idb-keyval) where IndexedDB exists.
 */
import { del, get, set } from 'idb-keyval';
import { randomHex } from './random.js';

const key = (dbName: string) => `pocketsync:device-id:${dbName}`;
const hasIndexedDb = () => typeof indexedDB !== 'undefined';

/** The id remembered for this database, or a new random one. */
export async function rememberedDeviceId(dbName: string): Promise<string> {
  if (hasIndexedDb()) {
    try {
      const stored = await get<string>(key(dbName));
      if (typeof stored === 'string' && stored.length > 0) return stored;
    } catch {
      // IndexedDB can be unusable (some private modes); the database's own copy still holds.
    }
  }
  return randomHex(8);
}

export async function rememberDeviceId(dbName: string, deviceId: string): Promise<void> {
  if (!hasIndexedDb()) return;
  try {
    await set(key(dbName), deviceId);
  } catch {
    // See above.
  }
}

/** Forgets the remembered id (after a reset, the database gets a new one). */
export async function forgetDeviceId(dbName: string): Promise<void> {
  if (!hasIndexedDb()) return;
  try {
    await del(key(dbName));
  } catch {
    // See above.
  }
}
