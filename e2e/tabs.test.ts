/**
 * Several tabs of one browser profile on one database: the first tab leads (it holds the database
 * and the socket), the others relay to it, and when it goes away another takes over without losing
 * or doubling a write. Pages are driven through `window.pocketSync` on the demo at ?user=NAME.
 */
import type { BrowserContext, Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import type { PocketSync } from '../lib/index.js';
import { demoUrl, haveBrowser, newDevice, pageErrors, useBrowser } from './helpers/browser.js';

useBrowser();

interface TabWindow extends Window {
  pocketSync: PocketSync;
  /** Titles in the page's watch of todos. */
  titles: string[];
  writes: { resolved: string[]; closed: string[]; other: string[]; stop: boolean; done: boolean };
}

/** WebSockets each page opened, its worker's included (sync runs in the leader's worker only). */
const sockets = new Map<Page, number>();

/** Opens the demo as `user` in `device`, watching its todos' titles. */
async function openTab(device: BrowserContext, user: string): Promise<Page> {
  const page = await device.newPage();
  page.on('websocket', () => sockets.set(page, (sockets.get(page) ?? 0) + 1));
  await page.goto(`${demoUrl}?user=${user}`);
  await watchTitles(page);
  return page;
}

/** Keeps window.titles equal to the titles of the page's todos, through a watch. */
async function watchTitles(page: Page): Promise<void> {
  await page.waitForFunction(() => (window as unknown as TabWindow).pocketSync !== undefined);
  await page.evaluate(() => {
    const w = window as unknown as TabWindow;
    w.titles = [];
    w.pocketSync.database.watch<{ title: string }>('SELECT title FROM todos ORDER BY title', [], (rows) => {
      w.titles = rows.map((row) => row.title);
    });
  });
}

function insert(page: Page, title: string): Promise<unknown> {
  return page.evaluate((t) => (window as unknown as TabWindow).pocketSync.database.insert('todos', { title: t, created_at: new Date().toISOString() }), title);
}

async function seesAll(page: Page, titles: readonly string[]): Promise<void> {
  await page.waitForFunction((want) => want.every((t) => (window as unknown as TabWindow).titles.includes(t)), titles, { timeout: 20_000 });
}

/** How a leading tab goes away: closed by the user, or its renderer crashing. */
const endings = {
  closes: (page: Page) => page.close(),
  crashes: async (page: Page) => {
    const cdp = await page.context().newCDPSession(page);
    const crashed = new Promise((resolve) => page.once('crash', resolve));
    void cdp.send('Page.crash').catch(() => undefined); // never answered: the session dies with the page
    await crashed;
  },
};

describe.skipIf(!haveBrowser)('several tabs of one profile', () => {
  it("shows every tab's writes, transactions included, in every tab's watch", async () => {
    const device = await newDevice();
    const tabs = [];
    for (let i = 0; i < 3; i++) tabs.push(await openTab(device, 'tabs-ivy'));
    const errors = tabs.map((tab) => pageErrors(tab));
    await Promise.all(tabs.map((tab, i) => insert(tab, `from tab ${i}`)));
    // A follower's transaction runs on the leader, and commits once.
    await tabs[2]!.evaluate(() =>
      (window as unknown as TabWindow).pocketSync.database.transaction(async (tx) => {
        await tx.insert('todos', { title: 'tx a', created_at: '2026-01-01' });
        await tx.insert('todos', { title: 'tx b', created_at: '2026-01-01' });
      }),
    );
    for (const tab of tabs) await seesAll(tab, ['from tab 0', 'from tab 1', 'from tab 2', 'tx a', 'tx b']);
    // Once each: the rows in the database, and the list each tab's watch shows.
    const counted = await tabs[1]!.evaluate(() =>
      (window as unknown as TabWindow).pocketSync.database.query('SELECT title, count(*) AS n FROM todos GROUP BY title ORDER BY title'),
    );
    expect(counted).toEqual(['from tab 0', 'from tab 1', 'from tab 2', 'tx a', 'tx b'].map((title) => ({ title, n: 1 })));
    for (const tab of tabs) expect((await tab.evaluate(() => (window as unknown as TabWindow).titles)).length).toBe(5);
    // One database, one device: every tab reports the leader's device id and its sync status.
    const ids = await Promise.all(tabs.map((tab) => tab.evaluate(() => (window as unknown as TabWindow).pocketSync.deviceId)));
    expect(new Set(ids).size).toBe(1);
    for (const tab of tabs) await tab.waitForFunction(() => (window as unknown as TabWindow).pocketSync.sync.status.state === 'live');
    // Sync runs in the first tab's worker only (one socket, unless it had to reconnect).
    const [leaderSockets, ...followerSockets] = tabs.map((tab) => sockets.get(tab) ?? 0);
    expect(leaderSockets).toBeGreaterThan(0);
    expect(followerSockets).toEqual([0, 0]);
    expect(errors.flat()).toEqual([]);
  });

  it("rolls back a follower's transaction when its tab closes, and the others go on writing", async () => {
    const device = await newDevice();
    const leader = await openTab(device, 'tabs-jay');
    const follower = await openTab(device, 'tabs-jay');
    await follower.evaluate(async () => {
      const { database } = (window as unknown as TabWindow).pocketSync;
      await new Promise<void>((begun) => {
        void database.transaction(async (tx) => {
          await tx.insert('todos', { title: 'never committed', created_at: '2026-01-01' });
          begun();
          await new Promise(() => undefined); // the tab closes first
        });
      });
    });
    await follower.close();
    // The leader's write waits for the open transaction to end, which it does when its tab is gone.
    await insert(leader, 'after the follower left');
    await seesAll(leader, ['after the follower left']);
    expect(await leader.evaluate(() => (window as unknown as TabWindow).titles)).toEqual(['after the follower left']);
  });

  it('hands over when the leader closes its instance, and a reloaded leader comes back as a follower', async () => {
    const device = await newDevice();
    const first = await openTab(device, 'tabs-lou');
    const second = await openTab(device, 'tabs-lou');
    await insert(first, 'before');
    await first.evaluate(() => (window as unknown as TabWindow).pocketSync.close());
    // close() lets go of the database before the lock, so the second tab opens it at once.
    await insert(second, 'after close');
    await seesAll(second, ['before', 'after close']);

    await first.reload();
    await watchTitles(first);
    await seesAll(first, ['before', 'after close']);
    await insert(first, 'from the reloaded tab');
    await seesAll(second, ['from the reloaded tab']);
  });

  it.each(Object.keys(endings) as Array<keyof typeof endings>)('hands over to another tab when the leader %s mid-stream: no write lost or doubled, and sync goes on', async (ending) => {
    const user = `tabs-kim-${ending}`;
    const device = await newDevice();
    const leader = await openTab(device, user);
    const writer = await openTab(device, user);
    const third = await openTab(device, user);
    const errors = [writer, third].map((tab) => pageErrors(tab));
    const otherDevice = await openTab(await newDevice(), user);

    // The writer inserts w0, w1, ... one after another, noting how each ended.
    await writer.evaluate(() => {
      const w = window as unknown as TabWindow;
      w.writes = { resolved: [], closed: [], other: [], stop: false, done: false };
      void (async () => {
        for (let i = 0; !w.writes.stop; i++) {
          const title = `w${String(i).padStart(4, '0')}`;
          try {
            await w.pocketSync.database.insert('todos', { title, created_at: new Date().toISOString() });
            w.writes.resolved.push(title);
          } catch (error) {
            const { kind, message } = error as { kind?: string; message: string };
            (kind === 'closed' ? w.writes.closed : w.writes.other).push(`${title}: ${kind} ${message}`);
          }
        }
        w.writes.done = true;
      })();
    });
    const resolvedCount = () => writer.evaluate(() => (window as unknown as TabWindow).writes.resolved.length);
    await writer.waitForFunction(() => (window as unknown as TabWindow).writes.resolved.length >= 30);
    await endings[ending](leader);
    const atClose = await resolvedCount();
    await writer.waitForFunction((n) => (window as unknown as TabWindow).writes.resolved.length >= n + 30, atClose, { timeout: 30_000 });
    await writer.evaluate(() => {
      (window as unknown as TabWindow).writes.stop = true;
    });
    await writer.waitForFunction(() => (window as unknown as TabWindow).writes.done);
    const writes = await writer.evaluate(() => (window as unknown as TabWindow).writes);

    expect(writes.other).toEqual([]);
    const stored = await third.evaluate(() =>
      (window as unknown as TabWindow).pocketSync.database.query<{ title: string; n: number }>("SELECT title, count(*) AS n FROM todos WHERE title GLOB 'w[0-9]*' GROUP BY title"),
    );
    const count = new Map(stored.map((row) => [row.title, row.n]));
    for (const title of writes.resolved) expect(count.get(title), title).toBe(1);
    // A write cut off by the handover ran once or not at all.
    expect([...count.values()].every((n) => n === 1)).toBe(true);
    expect(count.size).toBeLessThanOrEqual(writes.resolved.length + writes.closed.length);

    // Sync goes on through the new leader: the other profile sees everything, and later writes too.
    await insert(third, 'after the handover');
    await seesAll(otherDevice, [...writes.resolved, 'after the handover']);
    for (const tab of [writer, third]) {
      await seesAll(tab, [...writes.resolved, 'after the handover']);
      await tab.waitForFunction(() => (window as unknown as TabWindow).pocketSync.sync.status.state === 'live');
      expect(await tab.evaluate(() => document.body.innerText)).not.toMatch(/NoModificationAllowed/);
    }
    // The new leader alone connected.
    expect([writer, third].filter((tab) => sockets.has(tab))).toHaveLength(1);
    expect(errors.flat().filter((e) => /NoModificationAllowed/.test(e))).toEqual([]);
  });
});
