/** Two devices of one user (two browser profiles, each with its own OPFS) syncing through the real server. */
import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { demoUrl, haveBrowser, newDevice, screenshot, useBrowser } from './helpers/browser.js';

useBrowser();

async function openAs(user: string): Promise<Page> {
  const page = await (await newDevice()).newPage();
  await page.goto(`${demoUrl}?user=${user}`);
  await page.getByRole('status').filter({ hasText: 'Live' }).waitFor();
  return page;
}

describe.skipIf(!haveBrowser)('sync between two browser profiles', () => {
  it('a todo added on one device appears on the other', async () => {
    const a = await openAs('erin');
    const b = await openAs('erin');
    await a.getByRole('region', { name: 'Private' }).getByRole('textbox', { name: 'New todo' }).fill('from device a');
    await a.getByRole('region', { name: 'Private' }).getByRole('button', { name: 'Add' }).click();
    await b.getByRole('listitem').filter({ hasText: 'from device a' }).waitFor();
    await b.getByRole('checkbox', { name: 'from device a' }).check();
    await a.waitForFunction(() => document.querySelector('li.done') !== null);
    await screenshot(b, 'sync-1-device-b');
    expect(await a.getByRole('checkbox', { name: 'from device a' }).isChecked()).toBe(true);
  });
});
