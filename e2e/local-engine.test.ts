/**
 * The local engine in real Chromium: OPFS persistence across reloads, watch driving the page, and a
 * second tab of the same profile that shares the first tab's data (e2e/tabs.test.ts goes further).
 */
import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import type { PocketSync, Row } from '../lib/index.js';
import { demoUrl, haveBrowser, newDevice, pageErrors, screenshot, useBrowser } from './helpers/browser.js';

useBrowser();

type DemoWindow = Window & { pocketSync: PocketSync };

/** The demo without a server (`?local`): the private list is the engine's `todos` table. */
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

function query(page: Page, sql: string): Promise<Row[]> {
  return page.evaluate((statement) => (window as unknown as DemoWindow).pocketSync.database.query(statement), sql);
}

async function listedTitles(page: Page): Promise<string[]> {
  return privateList(page).getByRole('listitem').locator('label').allTextContents();
}

describe.skipIf(!haveBrowser)('local engine in Chromium', () => {
  it('persists rows written through the public API in OPFS across a reload', async () => {
    const page = await (await newDevice()).newPage();
    const errors = pageErrors(page);
    await openDemo(page);
    expect(await page.locator('#storage').textContent()).toBe('opfs-sahpool (persisted)');
    expect(await page.getByRole('status').textContent()).toMatch(/^Local only/);

    for (const title of ['milk', 'bread', 'eggs']) await addTodo(page, title);
    await page.getByRole('checkbox', { name: 'bread' }).check();
    await page.waitForFunction(() => document.querySelector('li.done') !== null);
    await screenshot(page, 'local-1-three-todos');
    const deviceId = await page.evaluate(() => (window as unknown as DemoWindow).pocketSync.deviceId);
    expect(deviceId).toMatch(/^[0-9a-f]{16}$/);

    await page.reload();
    await privateList(page).getByRole('listitem').nth(2).waitFor();
    expect(await listedTitles(page)).toEqual(['milk', 'bread', 'eggs']);
    expect(await page.getByRole('checkbox', { name: 'bread' }).isChecked()).toBe(true);
    const rows = await query(page, 'SELECT title, done, ps_global_id FROM todos ORDER BY id');
    expect(rows.map((r) => [r.title, r.done])).toEqual([['milk', 0], ['bread', 1], ['eggs', 0]]);
    expect(rows.every((r) => typeof r.ps_global_id === 'string' && r.ps_global_id.length === 32)).toBe(true);
    // The device keeps its identity across reloads (and another profile gets another one).
    expect(await page.evaluate(() => (window as unknown as DemoWindow).pocketSync.deviceId)).toBe(deviceId);
    const other = await (await newDevice()).newPage();
    await openDemo(other);
    expect(await other.evaluate(() => (window as unknown as DemoWindow).pocketSync.deviceId)).not.toBe(deviceId);
    const ops = await query(page, 'SELECT operation FROM __pocketsync_changes ORDER BY id');
    expect(ops.map((r) => r.operation)).toEqual(['insert', 'insert', 'insert', 'update']);
    await screenshot(page, 'local-2-after-reload');
    expect(errors).toEqual([]);
  });

  it('updates the page through watch when data changes by any path', async () => {
    const page = await (await newDevice()).newPage();
    await openDemo(page);
    // A write that does not go through the page's form: raw SQL from the console.
    await page.evaluate(() =>
      (window as unknown as DemoWindow).pocketSync.database.execute(
        "INSERT INTO todos (title, created_at) VALUES ('from sql', '2026-01-01'), ('also from sql', '2026-01-02')",
      ),
    );
    await privateList(page).getByRole('listitem').filter({ hasText: 'also from sql' }).waitFor();
    expect(await listedTitles(page)).toEqual(['from sql', 'also from sql']);
    await page.evaluate(() =>
      (window as unknown as DemoWindow).pocketSync.database.transaction(async (tx) => {
        await tx.update('todos', { done: 1 }, { title: 'from sql' });
        await tx.delete('todos', { title: 'also from sql' });
      }),
    );
    await page.waitForFunction(() => document.querySelectorAll('li').length === 1 && document.querySelector('li.done') !== null);
    await page.getByRole('button', { name: 'Delete from sql' }).click();
    await page.waitForFunction(() => document.querySelectorAll('li').length === 0);
  });

  it('a second tab of the same profile shares the database, and keeps it when the first closes', async () => {
    const device = await newDevice();
    const first = await device.newPage();
    await openDemo(first);
    for (const title of ['one', 'two']) await addTodo(first, title);

    // Only one connection can hold an opfs-sahpool file: the second tab works through the first.
    const second = await device.newPage();
    const errors = pageErrors(second);
    await openDemo(second);
    expect(await second.locator('#storage').textContent()).toBe('opfs-sahpool (persisted)');
    await privateList(second).getByRole('listitem').nth(1).waitFor();
    await addTodo(second, 'three');
    await privateList(first).getByRole('listitem').filter({ hasText: 'three' }).waitFor();
    await screenshot(second, 'local-3-second-tab');
    expect(await query(first, 'PRAGMA integrity_check')).toEqual([{ integrity_check: 'ok' }]);

    // Once the first tab is gone, the second opens the same, intact data itself and goes on.
    await first.close();
    await addTodo(second, 'four');
    expect(await listedTitles(second)).toEqual(['one', 'two', 'three', 'four']);
    expect(await query(second, 'PRAGMA integrity_check')).toEqual([{ integrity_check: 'ok' }]);
    expect(await query(second, 'SELECT count(*) AS n FROM __pocketsync_changes')).toEqual([{ n: 4 }]);
    expect(errors).toEqual([]);
  });

  it('opens two different databases in two tabs of one profile, each in its own storage pool', async () => {
    const device = await newDevice();
    const local = await device.newPage();
    const errors = pageErrors(local);
    await openDemo(local);
    await addTodo(local, 'in the local database');
    const signedIn = await device.newPage();
    errors.push(...pageErrors(signedIn));
    await signedIn.goto(`${demoUrl}?user=pool-${Date.now().toString(36)}`);
    await signedIn.getByRole('status').filter({ hasText: 'Live' }).waitFor();
    await addTodo(signedIn, 'in the signed-in database');
    expect(await signedIn.locator('#storage').textContent()).toBe('opfs-sahpool (persisted)');
    // Both keep working, side by side, and keep their own rows.
    await addTodo(local, 'local again');
    expect(await listedTitles(local)).toEqual(['in the local database', 'local again']);
    expect(await listedTitles(signedIn)).toEqual(['in the signed-in database']);
    await signedIn.reload();
    await privateList(signedIn).getByRole('listitem').first().waitFor();
    expect(await listedTitles(signedIn)).toEqual(['in the signed-in database']);
    expect(errors).toEqual([]);
  });
});
