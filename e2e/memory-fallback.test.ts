/**
 * The memory fallback in real Chromium with OPFS unavailable, as in a private window: the database
 * lives in the worker's memory, is saved to IndexedDB (idb-keyval's store) after writes and read
 * back at the next open. Init scripts do not run in workers, so OPFS is taken away by serving the
 * demo's worker script with a line in front that removes StorageManager.getDirectory, which is
 * what worker/storage.ts tests. The service worker is blocked, so that every load of the worker
 * script goes through that route.
 */
import type { BrowserContext, Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import type { PocketSync, Row } from '../lib/index.js';
import { demoUrl, haveBrowser, newDevice, pageErrors, useBrowser } from './helpers/browser.js';

useBrowser();

type DemoWindow = Window & { pocketSync: PocketSync };

/** The demo at `?local` opens this database; its copy is under this key. */
const SNAPSHOT_KEY = 'pocketsync:snapshot:pocketsync-demo.sqlite3';
const NO_OPFS = 'delete StorageManager.prototype.getDirectory;\n';

/** A browser profile whose workers have no OPFS. */
async function deviceWithoutOpfs(): Promise<BrowserContext> {
  const device = await newDevice({ serviceWorkers: 'block' });
  await device.route(/\/assets\/worker-[^/]*\.js$/, async (route) => {
    const response = await route.fetch();
    await route.fulfill({ response, body: NO_OPFS + (await response.text()) });
  });
  return device;
}

async function openDemo(page: Page): Promise<void> {
  await page.goto(`${demoUrl}?local`);
  await page.locator('#connection[data-state="local"], #problem:not([hidden])').waitFor();
}

function privateList(page: Page) {
  return page.getByRole('region', { name: 'Private' });
}

async function addTodo(page: Page, title: string): Promise<void> {
  await privateList(page).getByRole('textbox', { name: 'New todo' }).fill(title);
  await privateList(page).getByRole('button', { name: 'Add' }).click();
  await privateList(page).getByRole('listitem').filter({ hasText: title }).waitFor();
}

function insertTodo(page: Page, title: string): Promise<unknown> {
  return page.evaluate((t) => (window as unknown as DemoWindow).pocketSync.database.insert('todos', { title: t, created_at: '2026-01-01' }), title);
}

function query(page: Page, sql: string): Promise<Row[]> {
  return page.evaluate((statement) => (window as unknown as DemoWindow).pocketSync.database.query(statement), sql);
}

async function titles(page: Page): Promise<unknown[]> {
  return (await query(page, 'SELECT title FROM todos ORDER BY id')).map((row) => row.title);
}

function pocketSyncOf(page: Page): Promise<{ storage: string; warning: string | undefined; deviceId: string }> {
  return page.evaluate(() => {
    const { storage, warning, deviceId } = (window as unknown as DemoWindow).pocketSync;
    return { storage, warning, deviceId };
  });
}

/** What idb-keyval stores under the copy's key, read with IndexedDB itself: its bytes as text, or its type. */
function storedCopy(page: Page): Promise<{ bytes: string | null; type: string }> {
  return page.evaluate(async (key) => {
    const db = await new Promise<IDBDatabase>((resolve, reject) => {
      const request = indexedDB.open('keyval-store');
      request.onupgradeneeded = () => request.result.createObjectStore('keyval');
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error ?? new Error('indexedDB.open failed'));
    });
    try {
      const value = await new Promise<unknown>((resolve, reject) => {
        const request = db.transaction('keyval').objectStore('keyval').get(key);
        request.onsuccess = () => resolve(request.result);
        request.onerror = () => reject(request.error ?? new Error('get failed'));
      });
      // SQLite keeps short text as it is in its pages: the title's characters show in the bytes.
      return value instanceof Uint8Array ? { bytes: new TextDecoder('latin1').decode(value), type: 'bytes' } : { bytes: null, type: typeof value };
    } finally {
      db.close();
    }
  }, SNAPSHOT_KEY);
}

/** Polls IndexedDB until the saved copy holds `title` (the signal that a write was saved). */
async function saved(page: Page, title: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await storedCopy(page)).bytes?.includes(title)) {
    if (Date.now() > deadline) throw new Error(`the copy in IndexedDB never held ${title}`);
    await page.waitForTimeout(25);
  }
}

/** Writes garbage under the copy's key, as idb-keyval stores values (key out of line, in 'keyval'). */
function writeGarbage(page: Page): Promise<void> {
  return page.evaluate(async (key) => {
    const db = await new Promise<IDBDatabase>((resolve, reject) => {
      const request = indexedDB.open('keyval-store');
      request.onupgradeneeded = () => request.result.createObjectStore('keyval');
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error ?? new Error('indexedDB.open failed'));
    });
    const tx = db.transaction('keyval', 'readwrite');
    tx.objectStore('keyval').put(crypto.getRandomValues(new Uint8Array(8192)), key);
    await new Promise((resolve, reject) => {
      tx.oncomplete = resolve;
      tx.onerror = () => reject(tx.error ?? new Error('put failed'));
    });
    db.close();
  }, SNAPSHOT_KEY);
}

describe.skipIf(!haveBrowser)('memory fallback in Chromium without OPFS', () => {
  it('keeps rows, device id and pending changes across reloads, with a warning that says how', async () => {
    const page = await (await deviceWithoutOpfs()).newPage();
    const errors = pageErrors(page);
    await openDemo(page);
    const opened = await pocketSyncOf(page);
    expect(opened.storage).toBe('memory');
    expect(opened.warning).toMatch(/^OPFS is not available here .*kept in memory and saved to IndexedDB after each write, so it survives a reload; but a private window's storage is discarded when the window closes, and the browser may evict it/);
    expect(await page.locator('#storage').textContent()).toBe('memory');
    expect(await page.locator('#storage-warning').textContent()).toBe(opened.warning);

    for (const title of ['milk', 'bread']) await addTodo(page, title);
    await page.getByRole('checkbox', { name: 'bread' }).check();
    await page.waitForFunction(() => document.querySelector('li.done') !== null);
    await saved(page, 'bread');
    await page.reload();
    await privateList(page).getByRole('listitem').nth(1).waitFor();
    expect(await titles(page)).toEqual(['milk', 'bread']);
    expect(await page.getByRole('checkbox', { name: 'bread' }).isChecked()).toBe(true);
    // The same device, with its unsynced changes still to push.
    const reloaded = await pocketSyncOf(page);
    expect(reloaded.deviceId).toBe(opened.deviceId);
    expect(await query(page, 'SELECT device_id FROM __pocketsync_device_state')).toEqual([{ device_id: opened.deviceId }]);
    const operations = (await query(page, 'SELECT operation FROM __pocketsync_changes ORDER BY id')).map((row) => row.operation);
    expect(operations).toEqual(['insert', 'insert', 'update']);

    // A write just before a reload. The page's pagehide asks the worker to save at once, which
    // mostly lands, but the browser may stop the worker first: the test waits for the save (250 ms
    // after the last commit), which is what an app can count on.
    await insertTodo(page, 'just before the reload');
    await saved(page, 'just before the reload');
    await page.reload();
    await privateList(page).getByRole('listitem').nth(2).waitFor();
    expect(await titles(page)).toEqual(['milk', 'bread', 'just before the reload']);
    expect((await pocketSyncOf(page)).deviceId).toBe(opened.deviceId);
    expect(await query(page, 'PRAGMA integrity_check')).toEqual([{ integrity_check: 'ok' }]);
    expect(errors).toEqual([]);
  });

  it('a second tab works through the first, and takes over from its copy when the first closes', async () => {
    const device = await deviceWithoutOpfs();
    const first = await device.newPage();
    await openDemo(first);
    await addTodo(first, 'one');
    const second = await device.newPage();
    const errors = pageErrors(second);
    await openDemo(second);
    // One tab holds the memory database; the other relays to it (not a database of its own).
    expect((await pocketSyncOf(second)).deviceId).toBe((await pocketSyncOf(first)).deviceId);
    await privateList(second).getByRole('listitem').filter({ hasText: 'one' }).waitFor();
    await addTodo(second, 'two');
    await privateList(first).getByRole('listitem').filter({ hasText: 'two' }).waitFor();
    const deviceId = (await pocketSyncOf(first)).deviceId;
    await saved(second, 'two');

    await first.close();
    await addTodo(second, 'three');
    expect(await titles(second)).toEqual(['one', 'two', 'three']);
    expect(await query(second, 'SELECT device_id FROM __pocketsync_device_state')).toEqual([{ device_id: deviceId }]);
    expect(await query(second, 'SELECT count(*) AS n FROM __pocketsync_changes')).toEqual([{ n: 3 }]);
    expect(errors).toEqual([]);
  });

  it('reset() deletes the copy: a reload after it starts empty', async () => {
    const page = await (await deviceWithoutOpfs()).newPage();
    await openDemo(page);
    await addTodo(page, 'before the reset');
    await saved(page, 'before the reset');
    const before = (await pocketSyncOf(page)).deviceId;
    await page.evaluate(() => (window as unknown as DemoWindow).pocketSync.reset());
    expect((await storedCopy(page)).bytes ?? '').not.toContain('before the reset');
    const after = (await pocketSyncOf(page)).deviceId;
    expect(after).not.toBe(before);

    await page.reload();
    await page.locator('#connection[data-state="local"]').waitFor();
    expect(await titles(page)).toEqual([]);
    expect(await query(page, 'SELECT count(*) AS n FROM __pocketsync_changes')).toEqual([{ n: 0 }]);
    expect((await pocketSyncOf(page)).deviceId).toBe(after);
  });

  it('opens empty with a clear warning over a corrupt copy, and does not keep it', async () => {
    const page = await (await deviceWithoutOpfs()).newPage();
    const errors = pageErrors(page);
    await openDemo(page);
    await addTodo(page, 'lost with the copy');
    // close() saves and stops the worker: nothing writes the copy after the garbage.
    await page.evaluate(() => (window as unknown as DemoWindow).pocketSync.close());
    await writeGarbage(page);

    await page.reload();
    await page.locator('#connection[data-state="local"]').waitFor();
    const opened = await pocketSyncOf(page);
    expect(opened.storage).toBe('memory');
    expect(opened.warning).toMatch(/The copy saved in IndexedDB could not be read \(.*file is not a database.*\): it was deleted, and the database started empty\.$/);
    expect(await page.locator('#storage-warning').textContent()).toBe(opened.warning);
    expect(await titles(page)).toEqual([]);
    const copy = await storedCopy(page);
    expect(copy.type === 'undefined' || copy.bytes?.startsWith('SQLite format 3\0')).toBe(true);
    // The app goes on, and its copy replaces the garbage.
    await addTodo(page, 'after the garbage');
    await saved(page, 'after the garbage');
    await page.reload();
    await privateList(page).getByRole('listitem').first().waitFor();
    expect(await titles(page)).toEqual(['after the garbage']);
    expect((await pocketSyncOf(page)).warning).not.toMatch(/could not be read/);
    expect(errors).toEqual([]);
  });
});
