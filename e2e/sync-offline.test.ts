/**
 * Two devices of one user (two browser profiles, each with its own OPFS) and the real server, when
 * one of them goes offline: writes on both sides converge after it returns, and a catch-up cut
 * short by a reload finishes with exactly the right rows. Pages are driven through
 * `window.pocketSync` only, never through the demo's DOM.
 */
import type { BrowserContext, Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import type { PocketSync, Row, SyncStatus } from '../lib/index.js';
import type { RowChange } from '../lib/protocol/change.js';
import type { Changes } from '../lib/protocol/down.js';
import { demoUrl, haveBrowser, newDevice, pageErrors, screenshot, useBrowser } from './helpers/browser.js';

useBrowser();

/** What the page exposes, and what these tests record in it. */
type TestWindow = Window & {
  pocketSync?: PocketSync;
  statusLog?: Array<Pick<SyncStatus, 'state' | 'pending'>>;
  midCatchUpText?: string;
  midCatchUp?: { done: number; total: number };
};

/** Patient deadlines: the machine is shared and Chromium is slow to start on it. */
const DEADLINE = 60_000;

interface Todo {
  ps_global_id: string;
  title: string;
  done: number;
}

interface Device {
  context: BrowserContext;
  page: Page;
}

async function openAs(user: string): Promise<Device> {
  const context = await newDevice();
  const page = await context.newPage();
  await page.goto(`${demoUrl}?user=${user}`);
  await waitForState(page, 'live');
  return { context, page };
}

function waitForState(page: Page, state: SyncStatus['state']): Promise<unknown> {
  return page.waitForFunction((wanted) => (window as TestWindow).pocketSync?.sync.status.state === wanted, state, { timeout: DEADLINE });
}

function status(page: Page): Promise<SyncStatus> {
  return page.evaluate(() => (window as TestWindow).pocketSync!.sync.status);
}

function execute(page: Page, sql: string, params: unknown[] = []): Promise<unknown> {
  return page.evaluate(([statement, values]) => (window as TestWindow).pocketSync!.database.execute(statement, values as never), [sql, params] as const);
}

/** The device's todos in a stable order (the INTEGER PRIMARY KEY is local to each device, so left out). */
function todos(page: Page): Promise<Todo[]> {
  return page.evaluate(() => (window as TestWindow).pocketSync!.database.query<Todo & Row>('SELECT ps_global_id, title, done FROM todos ORDER BY ps_global_id'));
}

/** Records every status of the page's sync in `window.statusLog`, from now on. */
function recordStatuses(page: Page): Promise<void> {
  return page.evaluate(() => {
    const w = window as TestWindow;
    w.statusLog = [];
    w.pocketSync!.sync.subscribe(({ state, pending }) => w.statusLog!.push({ state, pending }));
  });
}

function statusLog(page: Page): Promise<Array<Pick<SyncStatus, 'state' | 'pending'>>> {
  return page.evaluate(() => (window as TestWindow).statusLog ?? []);
}

/**
 * Waits until the page's change log has nothing unacknowledged. (The status's pending count is
 * recounted a few milliseconds after a write, so right after one it may still say 0.)
 */
function waitForAllPushed(page: Page): Promise<unknown> {
  return page.waitForFunction(
    async () => {
      const [row] = await (window as TestWindow).pocketSync!.database.query('SELECT count(*) AS n FROM __pocketsync_changes WHERE synced = 0');
      return row?.n === 0;
    },
    undefined,
    { timeout: DEADLINE, polling: 100 },
  );
}

function waitForPending(page: Page, pending: number): Promise<unknown> {
  return page.waitForFunction((wanted) => (window as TestWindow).pocketSync?.sync.status.pending === wanted, pending, { timeout: DEADLINE });
}

/** Polls the page's todos until there are `count` of them and `where` (SQL) holds for `matching`. */
function waitForTodos(page: Page, count: number, where = '1', matching = count): Promise<unknown> {
  return page.waitForFunction(
    async ([total, condition, wanted]) => {
      const sql = `SELECT count(*) AS total, count(*) FILTER (WHERE ${condition}) AS matching FROM todos`;
      const [row] = await (window as TestWindow).pocketSync!.database.query(sql);
      return row?.total === total && row.matching === wanted;
    },
    [count, where, matching] as const,
    { timeout: DEADLINE, polling: 100 },
  );
}

/** The server's rows of `table` for `user`: a full pull from cursor 0, deleted rows left out. */
async function serverTodos(user: string): Promise<Todo[]> {
  const tokenResponse = await fetch(new URL('v1/projects/demo/dev/token', demoUrl), {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ user }),
  });
  const { token } = (await tokenResponse.json()) as { token: string };
  const rows: RowChange[] = [];
  for (let cursor = 0, hasMore = true; hasMore; ) {
    const response = await fetch(new URL(`v1/projects/demo/pull?cursor=${cursor}`, demoUrl), { headers: { Authorization: `Bearer ${token}` } });
    const batch = (await response.json()) as Changes;
    rows.push(...batch.changes);
    cursor = batch.cursor;
    hasMore = batch.hasMore;
  }
  return rows
    .filter((row) => row.table === 'todos' && !row.deleted)
    .map((row) => ({ ps_global_id: row.row, title: row.values!.title as string, done: row.values!.done as number }))
    .sort((x, y) => (x.ps_global_id < y.ps_global_id ? -1 : 1));
}

/** The todo items of the page's Private list. */
function privateItems(page: Page) {
  return page.getByRole('region', { name: 'Private' }).getByRole('listitem');
}

function rowOf(rows: Todo[], id: string): Todo | undefined {
  return rows.find((row) => row.ps_global_id === id);
}

describe.skipIf(!haveBrowser)('a device offline, and back', () => {
  it('writes made on both devices while one was offline converge, on both and on the server', { timeout: 4 * DEADLINE }, async () => {
    const user = 'olive';
    const a = await openAs(user);
    const b = await openAs(user);
    const bErrors = pageErrors(b.page);
    for (const title of ['both edit me', 'b deletes me', 'nobody touches me']) {
      await execute(a.page, "INSERT INTO todos (title, created_at) VALUES (?, '2026-01-01')", [title]);
    }
    await waitForTodos(b.page, 3);
    const seeded = await todos(a.page);
    const idOf = (title: string): string => seeded.find((row) => row.title === title)!.ps_global_id;
    const edited = idOf('both edit me');
    const deleted = idOf('b deletes me');
    await recordStatuses(b.page);

    await b.context.setOffline(true);
    await waitForState(b.page, 'offline');
    // A edits the title of one row and marks the other done; B marks the first done and deletes the second.
    await execute(a.page, 'UPDATE todos SET title = ? WHERE ps_global_id = ?', ['edited on a', edited]);
    await execute(a.page, 'UPDATE todos SET done = 1 WHERE ps_global_id = ?', [deleted]);
    await execute(a.page, "INSERT INTO todos (title, created_at) VALUES ('added on a', '2026-01-02')");
    await waitForAllPushed(a.page);
    await execute(b.page, 'UPDATE todos SET done = 1 WHERE ps_global_id = ?', [edited]);
    await execute(b.page, 'DELETE FROM todos WHERE ps_global_id = ?', [deleted]);
    await execute(b.page, "INSERT INTO todos (title, created_at) VALUES ('added on b', '2026-01-03'), ('also added on b', '2026-01-04')");
    await waitForPending(b.page, 4);
    expect((await status(b.page)).state).toBe('offline');
    // Nothing of A's reached B while it was offline.
    expect(rowOf(await todos(b.page), edited)).toEqual({ ps_global_id: edited, title: 'both edit me', done: 1 });
    // B marks the rows its unacknowledged changes touch (the deleted one is gone), and only those.
    const marked = privateItems(b.page).filter({ has: b.page.locator('.unsynced:visible') });
    await expect.poll(() => marked.locator('label').allTextContents(), { timeout: DEADLINE }).toEqual(['both edit me', 'added on b', 'also added on b']);
    expect(await privateItems(a.page).locator('.unsynced:visible').count()).toBe(0);

    await b.context.setOffline(false);
    await waitForState(b.page, 'live');
    await waitForPending(b.page, 0);
    await waitForAllPushed(b.page);
    await expect.poll(() => privateItems(b.page).locator('.unsynced:visible').count(), { timeout: DEADLINE }).toBe(0);
    const expected = [
      { title: 'added on a', done: 0 },
      { title: 'added on b', done: 0 },
      { title: 'also added on b', done: 0 },
      // Different columns of one row: both edits kept.
      { title: 'edited on a', done: 1 },
      { title: 'nobody touches me', done: 0 },
    ];
    const byTitle = (rows: Todo[]) => rows.map(({ title, done }) => ({ title, done })).sort((x, y) => x.title.localeCompare(y.title));
    await waitForTodos(a.page, 5, "title = 'edited on a' AND done = 1", 1);
    const onA = await todos(a.page);
    const onB = await todos(b.page);
    expect(byTitle(onA)).toEqual(expected);
    expect(onB).toEqual(onA);
    expect(await serverTodos(user)).toEqual(onA);
    // B's delete (later than A's update of that row) won everywhere.
    expect(rowOf(onA, deleted)).toBeUndefined();

    const log = await statusLog(b.page);
    const states = log.map((s) => s.state).filter((state, i, all) => state !== all[i - 1]);
    expect(states).toEqual(['live', 'offline', 'connecting', 'catching-up', 'live']);
    const offlinePending = log.filter((s) => s.state === 'offline').map((s) => s.pending);
    expect(Math.max(...offlinePending)).toBe(4);
    expect(log.at(-1)).toEqual({ state: 'live', pending: 0 });
    await screenshot(a.page, 'sync-offline-1-device-a');
    await screenshot(b.page, 'sync-offline-1-device-b');
    expect(bErrors).toEqual([]);
  });

  it('a device reloaded in the middle of its catch-up finishes with exactly the other device’s rows', { timeout: 4 * DEADLINE }, async () => {
    const user = 'rosa';
    const rowCount = 3_000;
    const a = await openAs(user);
    const b = await openAs(user);
    await b.context.setOffline(true);
    await waitForState(b.page, 'offline');
    await execute(
      a.page,
      `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${rowCount})
       INSERT INTO todos (title, done, created_at) SELECT printf('row %05d', i), i % 2, '2026-02-01' FROM n`,
    );
    await waitForAllPushed(a.page);

    // Catch the catch-up in the act: the first status with some batches applied and more to come.
    await b.page.evaluate(() => {
      const w = window as TestWindow;
      w.pocketSync!.sync.subscribe(({ state, progress }) => {
        if (!w.midCatchUp && state === 'catching-up' && progress && progress.done > 0 && progress.done < progress.total) {
          w.midCatchUp = { ...progress };
          // The page's own subscriber ran first: what the sync panel shows at this moment.
          w.midCatchUpText = document.getElementById('catch-up-count')?.hidden ? 'hidden' : (document.getElementById('catch-up-count')?.textContent ?? '');
        }
      });
    });
    await b.context.setOffline(false);
    await b.page.waitForFunction(() => (window as TestWindow).midCatchUp !== undefined, undefined, { timeout: DEADLINE, polling: 'raf' });
    const cut = await b.page.evaluate(() => (window as TestWindow).midCatchUp!);
    const shown = await b.page.evaluate(() => (window as TestWindow).midCatchUpText);
    expect(shown).toBe(`Catching up: ${cut.done.toLocaleString('en-US')} of ${cut.total.toLocaleString('en-US')} changes, ${(cut.total - cut.done).toLocaleString('en-US')} to go`);
    await b.page.reload();
    await b.page.waitForFunction(() => (window as TestWindow).pocketSync !== undefined, undefined, { timeout: DEADLINE });
    // The batches applied before the reload were committed: they are still there.
    const afterReload = (await b.page.evaluate(() => (window as TestWindow).pocketSync!.database.query('SELECT count(*) AS n FROM todos')))[0]!.n as number;
    await waitForState(b.page, 'live');

    const onA = await todos(a.page);
    const onB = await todos(b.page);
    expect(onA).toHaveLength(rowCount);
    expect(new Set(onB.map((row) => row.ps_global_id)).size).toBe(onB.length);
    expect(onB).toEqual(onA);
    expect(cut.done).toBeGreaterThan(0);
    expect(cut.done).toBeLessThan(cut.total);
    // At most: progress counts the catch-up of one connection, from the cursor it began at. In 3 of
    // about 20 runs the first progress said 250 of 2,000, which fits a connection that dropped after
    // four batches (cursor 1,000) and caught up the rest on the next one (not confirmed).
    expect(cut.total).toBeLessThanOrEqual(rowCount);
    expect(afterReload).toBeGreaterThanOrEqual(cut.done);
    console.log(`catch-up cut at ${cut.done}/${cut.total} rows; ${afterReload} rows in B right after the reload`);
    await screenshot(a.page, 'sync-offline-2-device-a');
    await screenshot(b.page, 'sync-offline-2-device-b');
  });
});
