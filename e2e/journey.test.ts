/**
 * A new user's journey through the demo, as people and screen readers see it (roles and names):
 * two devices of one user (two browser profiles) and a third profile of another user, against the
 * real server. Screenshots of each step go to e2e/artifacts/journey-*.png.
 */
import type { BrowserContext, Locator, Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import type { PocketSync } from '../lib/index.js';
import { demoUrl, haveBrowser, newDevice, pageErrors, screenshot, useBrowser } from './helpers/browser.js';

useBrowser();

interface Device {
  readonly context: BrowserContext;
  readonly page: Page;
  readonly errors: string[];
}

async function device(url: string): Promise<Device> {
  const context = await newDevice();
  const page = await context.newPage();
  const errors = pageErrors(page);
  await page.goto(url);
  return { context, page, errors };
}

const list = (page: Page, name: 'Private' | 'Shared'): Locator => page.getByRole('region', { name });
const todo = (page: Page, name: 'Private' | 'Shared', title: string): Locator => list(page, name).getByRole('listitem').filter({ hasText: title });
const connection = (page: Page): Locator => page.getByRole('status');

async function add(page: Page, name: 'Private' | 'Shared', title: string): Promise<void> {
  await list(page, name).getByRole('textbox', { name: 'New todo' }).fill(title);
  await list(page, name).getByRole('button', { name: 'Add' }).click();
  await todo(page, name, title).waitFor();
}

/** Edits a todo's text the way a person does: Edit, type, Enter. */
async function rename(page: Page, from: string, to: string): Promise<void> {
  await page.getByRole('button', { name: `Edit ${from}` }).click();
  await page.getByRole('textbox', { name: `Edit ${from}` }).fill(to);
  await page.keyboard.press('Enter');
  await page.getByRole('checkbox', { name: to }).waitFor();
}

async function live(page: Page): Promise<void> {
  await connection(page).filter({ hasText: /^Live$/ }).waitFor();
}

describe.skipIf(!haveBrowser)('the demo, as new users meet it', () => {
  it('two devices of one user and another user: private and shared lists, offline, reload offline, converge', async () => {
    const run = Date.now().toString(36);
    const ana = `ana-${run}`;
    const ben = `ben-${run}`;

    // 1. Ana signs in with the form on her laptop.
    const laptop = await device(demoUrl);
    await laptop.page.getByRole('textbox', { name: 'Your name' }).fill(ana);
    await screenshot(laptop.page, 'journey-1-sign-in');
    await laptop.page.getByRole('button', { name: 'Sign in' }).click();
    await live(laptop.page);
    expect(await laptop.page.getByText(`Signed in as ${ana}`).isVisible()).toBe(true);

    // 2. Her phone signs in by link; Ben signs in on his own computer.
    const phone = await device(`${demoUrl}?user=${ana}`);
    const bens = await device(`${demoUrl}?user=${ben}`);
    await live(phone.page);
    await live(bens.page);

    // 3. A private todo reaches Ana's other device, and one added there comes back.
    await add(laptop.page, 'Private', 'Buy milk');
    await todo(phone.page, 'Private', 'Buy milk').waitFor();
    await add(phone.page, 'Private', 'Call mom');
    await todo(laptop.page, 'Private', 'Call mom').waitFor();
    await screenshot(phone.page, 'journey-2-private-on-phone');

    // 4. A shared todo reaches Ben too; the private one, written before it, never does.
    await add(laptop.page, 'Shared', 'Team lunch on Friday');
    await todo(bens.page, 'Shared', 'Team lunch on Friday').waitFor();
    await todo(phone.page, 'Shared', 'Team lunch on Friday').waitFor();
    expect(await todo(bens.page, 'Shared', 'Team lunch on Friday').textContent()).toContain(`by ${ana}`);
    expect(await list(bens.page, 'Private').getByRole('listitem').count()).toBe(0);
    await screenshot(bens.page, 'journey-3-shared-on-bens');

    // 5. The phone goes offline (once its service worker holds the app) and adds a todo; it waits
    // as a pending change.
    await phone.page.waitForFunction(() => navigator.serviceWorker.controller !== null, undefined, { timeout: 30_000 });
    await phone.context.setOffline(true);
    await connection(phone.page).filter({ hasText: /^Offline$/ }).waitFor();
    await add(phone.page, 'Private', 'Written offline');
    await rename(phone.page, 'Buy milk', 'Buy whole milk');
    await expect.poll(() => phone.page.locator('#pending').textContent(), { timeout: 20_000 }).toBe('2');

    // 6. Reloaded with the network off, the app still loads (service worker) with the todo.
    await phone.page.reload();
    await todo(phone.page, 'Private', 'Written offline').waitFor();
    await todo(phone.page, 'Private', 'Buy whole milk').waitFor();
    expect(await connection(phone.page).textContent()).not.toBe('Live');
    expect(await phone.page.locator('#last-synced').textContent()).not.toBe('never');
    await screenshot(phone.page, 'journey-4-phone-reloaded-offline');

    // 7. Meanwhile (later, so with newer clocks) the laptop completes the milk and renames it too,
    // and renames the lunch.
    await laptop.page.getByRole('checkbox', { name: 'Buy milk' }).check();
    await rename(laptop.page, 'Buy milk', 'Buy oat milk');
    await rename(laptop.page, 'Team lunch on Friday', 'Team lunch on Thursday');
    await todo(bens.page, 'Shared', 'Team lunch on Thursday').waitFor();
    expect(await todo(laptop.page, 'Private', 'Written offline').count()).toBe(0);

    // 8. Back online, both devices converge, and the phone tells its user that its rename lost.
    await phone.context.setOffline(false);
    await live(phone.page);
    await todo(laptop.page, 'Private', 'Written offline').waitFor();
    await todo(phone.page, 'Shared', 'Team lunch on Thursday').waitFor();
    await todo(phone.page, 'Private', 'Buy oat milk').waitFor();
    await expect.poll(() => phone.page.getByRole('checkbox', { name: 'Buy oat milk' }).isChecked(), { timeout: 20_000 }).toBe(true);
    const conflicts = phone.page.getByRole('region', { name: 'Conflicts' });
    await conflicts.getByRole('listitem').first().waitFor();
    expect(await conflicts.getByRole('listitem').allTextContents()).toEqual([expect.stringMatching(/todos\.title: this device wrote "Buy whole milk", another device's "Buy oat milk" won/)]);
    await expect.poll(() => phone.page.locator('#pending').textContent(), { timeout: 20_000 }).toBe('0');
    await screenshot(phone.page, 'journey-5-phone-back-online');
    await screenshot(laptop.page, 'journey-6-laptop-converged');

    const titles = (page: Page, name: 'Private' | 'Shared') => list(page, name).getByRole('listitem').locator('label').allTextContents();
    for (const name of ['Private', 'Shared'] as const) expect(await titles(phone.page, name)).toEqual(await titles(laptop.page, name));
    expect(await titles(laptop.page, 'Private')).toEqual(['Buy oat milk', 'Call mom', 'Written offline']);
    expect(await titles(bens.page, 'Shared')).toEqual(['Team lunch on Thursday']);
    for (const d of [laptop, phone, bens]) expect(d.errors.filter((e) => !/ERR_INTERNET_DISCONNECTED|Failed to fetch|WebSocket/.test(e))).toEqual([]);
  });

  it('shows a progress bar while a new device catches up', async () => {
    const user = `carl-${Date.now().toString(36)}`;
    const first = await device(`${demoUrl}?user=${user}`);
    await live(first.page);
    await first.page.evaluate(async () => {
      const { pocketSync } = window as unknown as { pocketSync: PocketSync };
      await pocketSync.database.transaction(async (tx) => {
        for (let i = 0; i < 3000; i++) await tx.insert('todos', { title: `todo ${i}`, created_at: new Date().toISOString() });
      });
    });
    await expect.poll(() => first.page.locator('#pending').textContent(), { timeout: 30_000 }).toBe('0');

    // A second device starts from nothing: its catch-up comes in batches, and the bar shows each.
    const context = await newDevice();
    const page = await context.newPage();
    await page.addInitScript(() => {
      const seen: Array<{ value: number; max: number }> = [];
      Object.assign(window, { progressSeen: seen });
      new MutationObserver(() => {
        const bar = document.querySelector<HTMLProgressElement>('#catch-up');
        if (bar && !bar.hidden) seen.push({ value: bar.value, max: bar.max });
      }).observe(document, { subtree: true, attributes: true, attributeFilter: ['hidden', 'max', 'value', 'aria-valuetext'] });
    });
    await page.goto(`${demoUrl}?user=${user}`);
    await live(page);
    await list(page, 'Private').getByRole('listitem').nth(2999).waitFor();
    const seen = await page.evaluate(() => (window as unknown as { progressSeen: Array<{ value: number; max: number }> }).progressSeen);
    expect(seen.some(({ value, max }) => value > 0 && value < max && max >= 3000)).toBe(true);
    expect(await page.getByRole('progressbar', { name: 'Catch-up progress' }).isHidden()).toBe(true);
  });

  it('signs out: the local copy goes, and signing in again brings the todos back from the server', async () => {
    const user = `dora-${Date.now().toString(36)}`;
    const { page } = await device(demoUrl);
    await page.getByRole('textbox', { name: 'Your name' }).fill(user);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await live(page);
    await add(page, 'Private', 'Kept by the server');
    await expect.poll(() => page.locator('#pending').textContent(), { timeout: 20_000 }).toBe('0');

    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('textbox', { name: 'Your name' }).waitFor();
    await screenshot(page, 'journey-7-signed-out');

    // Signed in again with the network off, the list is empty: nothing was left in this browser.
    await page.context().setOffline(true);
    await page.getByRole('textbox', { name: 'Your name' }).fill(user);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await connection(page).filter({ hasText: /^Offline$/ }).waitFor();
    expect(await list(page, 'Private').getByText('Nothing here yet.').isVisible()).toBe(true);
    expect(await list(page, 'Private').getByRole('listitem').count()).toBe(0);
    // Back online, the server's copy comes back.
    await page.context().setOffline(false);
    await todo(page, 'Private', 'Kept by the server').waitFor();
    await live(page);
  });

  it('is an installable app: a manifest, and a service worker that controls the page', async () => {
    const { page } = await device(`${demoUrl}?local`);
    const manifest = await page.evaluate(async () => {
      const link = document.querySelector<HTMLLinkElement>('link[rel="manifest"]');
      return link ? ((await (await fetch(link.href)).json()) as { name: string; display: string; icons: unknown[] }) : null;
    });
    expect(manifest).toMatchObject({ name: 'PocketSync demo', display: 'standalone' });
    expect(manifest?.icons.length).toBeGreaterThan(0);
    await page.waitForFunction(() => navigator.serviceWorker.controller !== null, undefined, { timeout: 30_000 });
  });
});
