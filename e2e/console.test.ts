/**
 * The operators' console in Chromium, as an operator meets it: sign in (a wrong key first), create
 * a project, make a signing key and a test token, connect two devices of the demo to the project,
 * watch them come online and the chart move while they write, see a conflict with both sides, a
 * row's history, block the user and see the devices go offline, revoke the key and see its token
 * refused, delete the user's data. Every page is checked with axe-core (no serious or critical
 * violations) and photographed to e2e/artifacts/console-*.png.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AxeBuilder } from '@axe-core/playwright';
import type { BrowserContext, Locator, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type RunningServer } from '../server/server.js';
import { haveBrowser, newDevice, pageErrors, screenshot, useBrowser } from './helpers/browser.js';

useBrowser();

const ADMIN_KEY = 'console-e2e-admin-key';
const work = mkdtempSync(join(tmpdir(), 'pocketsync-console-'));
let server: RunningServer;
let base: string;

beforeAll(async () => {
  if (!haveBrowser) return;
  server = await createServer({
    dataDir: join(work, 'data'),
    adminKey: ADMIN_KEY,
    staticDir: fileURLToPath(new URL('../demo/dist', import.meta.url)),
    consoleDir: fileURLToPath(new URL('../packages/pocketsync-server/dist/console-ui', import.meta.url)),
    log: null,
  });
  base = server.url.replace(/\/$/, '');
});

afterAll(async () => {
  await server?.close();
  rmSync(work, { recursive: true, force: true });
});

/** No serious or critical accessibility violation on the page as it stands. */
async function accessible(page: Page, name: string): Promise<void> {
  const result = await new AxeBuilder({ page }).analyze();
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  expect(bad.map((v) => `${name}: ${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`)).toEqual([]);
}

async function page(console_: Page, name: string): Promise<void> {
  await console_.getByRole('navigation', { name: 'Project' }).getByRole('link', { name }).click();
  await console_.getByRole('heading', { level: 1, name }).waitFor();
}

interface Device {
  readonly context: BrowserContext;
  readonly page: Page;
}

async function device(url: string): Promise<Device> {
  const context = await newDevice();
  const tab = await context.newPage();
  await tab.goto(url);
  return { context, page: tab };
}

const status = (tab: Page): Locator => tab.locator('#connection');
const list = (tab: Page): Locator => tab.getByRole('region', { name: 'Private' });

async function add(tab: Page, title: string): Promise<void> {
  await list(tab).getByRole('textbox', { name: 'New todo' }).fill(title);
  await list(tab).getByRole('button', { name: 'Add' }).click();
  await list(tab).getByRole('listitem').filter({ hasText: title }).waitFor();
}

async function rename(tab: Page, from: string, to: string): Promise<void> {
  await tab.getByRole('button', { name: `Edit ${from}` }).click();
  await tab.getByRole('textbox', { name: `Edit ${from}` }).fill(to);
  await tab.keyboard.press('Enter');
  await tab.getByRole('checkbox', { name: to }).waitFor();
}

describe.skipIf(!haveBrowser)('the operators’ console', () => {
  it('an operator signs in, sets up a project, watches two devices, and acts on a user', { timeout: 180_000 }, async () => {
    const run = Date.now().toString(36);
    const project = `ops-${run}`;
    const user = `olga-${run}`;
    const context = await newDevice({ viewport: { width: 1360, height: 900 } });
    const op = await context.newPage();
    const errors = pageErrors(op);

    // 1. Sign in: a wrong key is refused with the server's reason, the right one opens the console.
    await op.goto(`${base}/console/`);
    await op.getByRole('textbox', { name: 'Admin key' }).fill('not-the-key');
    await op.getByRole('button', { name: 'Sign in' }).click();
    await op.getByRole('alert').filter({ hasText: 'auth: that is not the admin key' }).waitFor();
    await accessible(op, 'sign-in');
    await screenshot(op, 'console-0-sign-in-refused');
    await op.getByRole('textbox', { name: 'Admin key' }).fill(ADMIN_KEY);
    await op.getByRole('button', { name: 'Sign in' }).click();
    await op.getByRole('heading', { level: 1, name: 'Projects' }).waitFor();
    await accessible(op, 'projects');
    const cookies = await context.cookies();
    expect(cookies.find((c) => c.name === 'pocketsync_admin')).toMatchObject({ httpOnly: true, sameSite: 'Strict' });

    // 2. Create a project; the console opens its integration page.
    await op.getByRole('textbox', { name: 'Project id' }).fill(project);
    await op.getByRole('textbox', { name: /Shared tables/ }).fill('shared_todos');
    await screenshot(op, 'console-1-projects');
    await op.getByRole('button', { name: 'Create project' }).click();
    await op.getByRole('heading', { level: 1, name: 'Integration' }).waitFor();

    // 3. A signing key of its own (shown once), then a test token for the user, signed with it.
    await page(op, 'Keys and settings');
    await op.getByRole('button', { name: 'Create a signing key' }).click();
    const kid = (await op.getByRole('region', { name: 'New key' }).locator('p code').textContent())!;
    expect(kid).toMatch(/^k[0-9a-f]{12}$/);
    await op.getByRole('row').filter({ hasText: kid }).getByText('active').waitFor();
    await accessible(op, 'keys');
    await screenshot(op, 'console-2-keys');
    await page(op, 'Integration');
    await expect.poll(() => op.locator('pre').first().textContent()).toContain(`projectId: '${project}'`);
    await op.getByRole('textbox', { name: 'User id' }).fill(user);
    await op.getByRole('button', { name: 'Mint a test token' }).click();
    const token = (await op.locator('[data-token]').textContent())!;
    await op.getByRole('region', { name: 'Test token' }).getByText(kid).waitFor();
    await accessible(op, 'integration');
    await screenshot(op, 'console-3-integration');

    // 4. Two devices of the demo, on the project with that token.
    const demo = `${base}/?project=${encodeURIComponent(project)}&token=${encodeURIComponent(token)}`;
    const laptop = await device(demo);
    const phone = await device(demo);
    for (const d of [laptop, phone]) await status(d.page).filter({ hasText: /^Live$/ }).waitFor();

    // 5. The overview: both online, and the live chart moving as they write.
    await page(op, 'Overview');
    await expect.poll(() => op.locator('[data-stat="Devices"]').textContent(), { timeout: 20_000 }).toBe('2');
    await expect.poll(async () => (await op.locator('.card').filter({ has: op.getByRole('heading', { name: 'Devices', exact: true }) }).textContent()) ?? '').toContain('2 online now');
    for (let i = 0; i < 5; i++) await add(laptop.page, `Todo ${i}`);
    await expect.poll(() => op.locator('[data-live]').textContent(), { timeout: 20_000 }).toMatch(/^[1-9]\d* changes/);
    await accessible(op, 'overview');
    await screenshot(op, 'console-4-overview');

    // 6. Users and devices: the user's two devices online, with what they report.
    await page(op, 'Users and devices');
    await op.getByRole('button', { name: user }).click();
    const devices = op.getByRole('table', { name: /Devices of/ });
    await expect.poll(() => devices.getByText('online', { exact: true }).count(), { timeout: 20_000 }).toBe(2);
    await devices.getByText('demo 0.1.0 / 0.1.0 / v2').first().waitFor();
    await accessible(op, 'users');
    await screenshot(op, 'console-5-users');

    // 7. A conflict: the phone renames offline (earlier), the laptop renames online (later); the
    // phone's rename, pushed when it is back, loses.
    await phone.context.setOffline(true);
    await status(phone.page).filter({ hasText: /^Offline$/ }).waitFor();
    await rename(phone.page, 'Todo 0', 'Todo zero (phone)');
    await rename(laptop.page, 'Todo 0', 'Todo zero (laptop)');
    await phone.context.setOffline(false);
    await status(phone.page).filter({ hasText: /^Live$/ }).waitFor();
    await page(op, 'Conflicts');
    const conflict = op.getByRole('table', { name: /Writes that lost/ }).getByRole('row').filter({ hasText: 'Todo zero (phone)' });
    await conflict.waitFor({ timeout: 20_000 });
    expect(await conflict.textContent()).toContain('Todo zero (laptop)');
    expect(await conflict.textContent()).toContain('column-lww');
    await accessible(op, 'conflicts');
    await screenshot(op, 'console-6-conflicts');

    // 8. The row's history, from the conflict: both writes, and which side won.
    await conflict.getByRole('link').click();
    await op.getByRole('heading', { level: 1, name: 'Rows' }).waitFor();
    const history = op.getByRole('region', { name: /History of todos/ });
    await history.getByText(/this write lost to "Todo zero \(laptop\)"/).waitFor();
    await op.getByRole('textbox', { name: /User/ }).fill(user);
    await op.getByRole('textbox', { name: 'ps_global_id' }).fill('');
    await op.getByRole('button', { name: 'Show rows' }).click();
    await op.getByRole('button', { name: /^History of / }).first().waitFor();
    await accessible(op, 'rows');
    await screenshot(op, 'console-7-rows-history');
    await page(op, 'Changes');
    await op.getByRole('table', { name: /Recent changes/ }).getByText('Todo zero (phone)').waitFor();
    await accessible(op, 'changes');
    await screenshot(op, 'console-8-changes');

    // 9. Block the user: both devices go offline, and stay refused.
    await page(op, 'Users and devices');
    await op.getByRole('button', { name: user }).click();
    await op.getByRole('button', { name: `Block ${user}` }).click();
    await op.getByRole('status').filter({ hasText: `Blocked ${user}: 2 socket(s) closed.` }).waitFor();
    await expect.poll(() => devices.getByText('online', { exact: true }).count(), { timeout: 20_000 }).toBe(0);
    for (const d of [laptop, phone]) await status(d.page).filter({ hasText: /blocked/ }).waitFor({ timeout: 20_000 });
    await screenshot(op, 'console-9-blocked');
    await op.getByRole('button', { name: `Unblock ${user}` }).click();
    await op.getByRole('button', { name: `Block ${user}` }).waitFor();

    // 10. Revoke the key: the laptop, started again, is live; then its token is refused.
    await laptop.page.reload();
    await status(laptop.page).filter({ hasText: /^Live$/ }).waitFor();
    await page(op, 'Keys and settings');
    await op.getByRole('button', { name: `Revoke key ${kid}` }).click();
    await op.getByRole('status').filter({ hasText: `Revoked ${kid}` }).waitFor();
    await status(laptop.page).filter({ hasText: /revoked/ }).waitFor({ timeout: 20_000 });
    const refused = await fetch(`${base}/v1/projects/${project}/pull?cursor=0`, { headers: { Authorization: `Bearer ${token}` } });
    expect([refused.status, ((await refused.json()) as { kind: string }).kind]).toEqual([401, 'auth']);

    // 11. Delete the user's data (typed confirmation).
    await page(op, 'Users and devices');
    await op.getByRole('button', { name: user }).click();
    const remove = op.getByRole('button', { name: `Delete data of ${user}` });
    expect(await remove.isDisabled()).toBe(true);
    await op.getByRole('textbox', { name: /to confirm/ }).fill(user);
    await remove.click();
    await op.getByRole('status').filter({ hasText: new RegExp(`Deleted ${user}'s data: 5 rows`) }).waitFor();
    expect((await server.store.rows({ projectId: project, scope: `user:${user}`, table: 'todos', limit: 10 })).rows).toEqual([]);
    await screenshot(op, 'console-10-user-deleted');

    // 12. The console opened in a profile the demo's service worker controls is the console, and
    // the demo's offline copy stays the demo.
    await laptop.page.waitForFunction(() => navigator.serviceWorker.controller !== null, undefined, { timeout: 30_000 });
    await laptop.page.goto(`${base}/console/`);
    await laptop.page.getByRole('textbox', { name: 'Admin key' }).waitFor();
    await laptop.context.setOffline(true);
    await laptop.page.goto(demo);
    await list(laptop.page).waitFor();
    await laptop.context.setOffline(false);

    // 13. Signed out, the console asks for the key again.
    await op.getByRole('button', { name: 'Sign out' }).click();
    await op.getByRole('textbox', { name: 'Admin key' }).waitFor();
    expect(errors.filter((e) => !/401|Unauthorized/.test(e))).toEqual([]);
  });
});
