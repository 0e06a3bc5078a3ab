/**
 * Device ids and storage (defect 11, client part): a device id names one copy of the data. The
 * IndexedDB that remembers ids in a browser is absent in Node, so these tests give the functions a
 * key-value store of their own (the same get/set/del that idb-keyval offers).
 */
import { describe, expect, it } from 'vitest';
import { forgetDeviceId, rememberDeviceId, rememberedDeviceId, type DeviceIdStore } from '../worker/device-id.js';

function keyValueStore(): DeviceIdStore & { readonly entries: Map<string, unknown> } {
  const entries = new Map<string, unknown>();
  return {
    entries,
    get: (key) => Promise.resolve(entries.get(key)),
    set: (key, value) => Promise.resolve(void entries.set(key, value)),
    del: (key) => Promise.resolve(void entries.delete(key)),
  };
}

/** What worker-api.ts does at open: take the remembered id (or a new one), then remember it. */
async function open(dbName: string, storage: 'memory' | 'opfs-sahpool', store: DeviceIdStore): Promise<string> {
  const id = await rememberedDeviceId(dbName, storage, store);
  await rememberDeviceId(dbName, id, storage, store);
  return id;
}

describe('device ids', () => {
  it('gives each open of a memory database its own id, remembered nowhere', async () => {
    const store = keyValueStore();
    const first = await open('app', 'memory', store);
    const second = await open('app', 'memory', store);
    expect(first).toMatch(/^[0-9a-f]{16}$/);
    expect(second).not.toBe(first);
    expect(store.entries.size).toBe(0);
  });

  it('keeps one id per persisted database across opens, until it is forgotten', async () => {
    const store = keyValueStore();
    const first = await open('app', 'opfs-sahpool', store);
    expect(await open('app', 'opfs-sahpool', store)).toBe(first);
    // A memory open of the same name neither takes nor disturbs the persisted database's id.
    expect(await open('app', 'memory', store)).not.toBe(first);
    await forgetDeviceId('app', 'memory', store);
    expect(await open('app', 'opfs-sahpool', store)).toBe(first);
    await forgetDeviceId('app', 'opfs-sahpool', store);
    expect(await open('app', 'opfs-sahpool', store)).not.toBe(first);
  });
});
