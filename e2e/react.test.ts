/**
 * pocketsync/react in Chromium: a small React app (e2e/react-site, built here with Vite as an app
 * would be, under StrictMode) on a real sync server, with counters of renders and watches.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import { build } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PocketSync } from '../lib/index.js';
import { createServer, type RunningServer } from '../server/server.js';
import { haveBrowser, newDevice, pageErrors, useBrowser } from './helpers/browser.js';

useBrowser();

interface Probe {
  renders: Record<'todos' | 'count' | 'notes' | 'status' | 'conflicts' | 'unsynced', number>;
  watches: { started: number; active: number; runs: Record<string, number> };
  rerender(): void;
  show(change: { todos?: boolean; all?: boolean }): void;
}
type TestWindow = Window & { probe: Probe; pocketSync: PocketSync };

const TODOS_SQL = 'SELECT title FROM todos WHERE done = ? ORDER BY title';
const work = mkdtempSync(join(tmpdir(), 'pocketsync-react-'));
let server: RunningServer;

beforeAll(async () => {
  if (!haveBrowser) return;
  const outDir = join(work, 'site');
  await build({
    configFile: false,
    root: fileURLToPath(new URL('./react-site/', import.meta.url)),
    base: './',
    logLevel: 'warn',
    optimizeDeps: { exclude: ['pocketsync', '@sqlite.org/sqlite-wasm'] },
    worker: { format: 'es' },
    build: { outDir, emptyOutDir: true, target: 'es2022' },
  });
  server = await createServer({ dataDir: join(work, 'data'), adminKey: 'react-admin', devProject: 'react', staticDir: outDir, log: null });
  await server.store.createProject({ id: 'react', secret: 'react-secret-react-secret-react-secret' });
}, 120_000);

afterAll(async () => {
  await server?.close();
  rmSync(work, { recursive: true, force: true });
});

const probe = (page: Page) => page.evaluate(() => JSON.parse(JSON.stringify((window as unknown as TestWindow).probe)) as Probe);
const run = (page: Page, sql: string) => page.evaluate((statement) => (window as unknown as TestWindow).pocketSync.database.execute(statement), sql);

async function open(page: Page, user: string): Promise<void> {
  await page.goto(`${server.url}?user=${user}`);
  await page.locator('#status', { hasText: /^live, 0 pending$/ }).waitFor({ timeout: 30_000 });
  await page.locator('#todos[data-loading="false"]').waitFor({ state: 'attached' });
}

/** Polls the page's probe until `check` holds, with a deadline. */
async function until(page: Page, check: (probe: Probe) => boolean, what: string, timeoutMs = 10_000): Promise<Probe> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const now = await probe(page);
    if (check(now)) return now;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(now)}`);
    await page.waitForTimeout(20);
  }
}

describe.skipIf(!haveBrowser)('pocketsync/react in Chromium', () => {
  it('useQuery shows rows and follows every write, one watch per mounted query, under StrictMode', async () => {
    const page = await (await newDevice()).newPage();
    const errors = pageErrors(page);
    await open(page, 'ann');
    // Three mounted queries (todos, count, notes): StrictMode's second mount left no extra watch.
    expect((await probe(page)).watches.active).toBe(3);

    await run(page, "INSERT INTO todos (title) VALUES ('milk'), ('bread')");
    await page.locator('#todos li').nth(1).waitFor();
    expect(await page.locator('#todos li').allTextContents()).toEqual(['bread', 'milk']);
    await run(page, "UPDATE todos SET title = 'butter' WHERE title = 'bread'");
    await page.locator('#todos li', { hasText: 'butter' }).waitFor();
    await run(page, "DELETE FROM todos WHERE title = 'milk'");
    await page.locator('#count', { hasText: /^1$/ }).waitFor();
    expect(await page.locator('#todos li').allTextContents()).toEqual(['butter']);
    expect(errors).toEqual([]);
  });

  it('re-renders only when the rows change, and keeps its watch when the parent re-renders', async () => {
    const page = await (await newDevice()).newPage();
    await open(page, 'ben');
    await run(page, "INSERT INTO todos (title) VALUES ('a')");
    await page.locator('#todos li', { hasText: 'a' }).waitFor();
    const before = await until(page, (p) => p.watches.runs[TODOS_SQL] !== undefined, 'the first run');

    // A todo that is done changes the table the query reads but not its rows: the query runs again,
    // the component does not render again.
    await run(page, "INSERT INTO todos (title, done) VALUES ('finished', 1)");
    await page.locator('#count', { hasText: /^2$/ }).waitFor();
    const after = await until(page, (p) => (p.watches.runs[TODOS_SQL] ?? 0) > (before.watches.runs[TODOS_SQL] ?? 0), 'the todos query to run again');
    expect(after.renders.todos).toBe(before.renders.todos);
    // A write to another table does not even run it.
    await run(page, "INSERT INTO notes (body) VALUES ('n1')");
    await page.locator('#notes', { hasText: 'n1' }).waitFor();
    const notes = await probe(page);
    expect([notes.renders.todos, notes.watches.runs[TODOS_SQL]]).toEqual([after.renders.todos, after.watches.runs[TODOS_SQL]]);

    // The parent renders again three times, each with a new params array of the same values.
    for (let i = 0; i < 3; i++) await page.evaluate(() => (window as unknown as TestWindow).probe.rerender());
    const rerendered = await until(page, (p) => p.renders.todos > notes.renders.todos, 'the re-renders');
    expect([rerendered.watches.started, rerendered.watches.active]).toEqual([notes.watches.started, 3]);
  });

  it('stops a query’s watch when its component unmounts, and every watch when all do', async () => {
    const page = await (await newDevice()).newPage();
    await open(page, 'cat');
    await page.evaluate(() => (window as unknown as TestWindow).probe.show({ todos: false }));
    await until(page, (p) => p.watches.active === 2, 'the todos watch to stop');
    await page.evaluate(() => (window as unknown as TestWindow).probe.show({ todos: true }));
    await until(page, (p) => p.watches.active === 3, 'a watch for the remounted query');
    await page.evaluate(() => (window as unknown as TestWindow).probe.show({ all: false }));
    await page.locator('#empty').waitFor();
    await until(page, (p) => p.watches.active === 0, 'every watch to stop');
  });

  it('useQuery reports a failing query’s error', async () => {
    const page = await (await newDevice()).newPage();
    await open(page, 'dan');
    await run(page, 'DROP TABLE notes');
    await page.locator('#notes', { hasText: 'error: database' }).waitFor();
  });

  it('useSyncStatus, useUnsynced and useConflicts follow sync: an offline write that loses to another device’s', async () => {
    const [a, b] = await Promise.all([(await newDevice()).newPage(), (await newDevice()).newPage()]);
    await open(a, 'eve');
    await open(b, 'eve');
    await run(a, "INSERT INTO todos (title) VALUES ('draft')");
    await b.locator('#todos li', { hasText: 'draft' }).waitFor();
    await a.locator('#unsynced', { hasText: /^0$/ }).waitFor();

    await a.evaluate(() => (window as unknown as TestWindow).pocketSync.sync.stop());
    await a.locator('#status', { hasText: /^offline/ }).waitFor();
    await run(a, "UPDATE todos SET title = 'from A' WHERE title = 'draft'");
    await a.locator('#status', { hasText: /^offline, 1 pending$/ }).waitFor();
    await a.locator('#unsynced', { hasText: /^1$/ }).waitFor();
    await run(b, "UPDATE todos SET title = 'from B' WHERE title = 'draft'");
    await b.locator('#status', { hasText: /^live, 0 pending$/ }).waitFor();

    await a.evaluate(() => (window as unknown as TestWindow).pocketSync.sync.start());
    await a.locator('#conflicts', { hasText: 'title: "from A" lost to "from B"' }).waitFor();
    await a.locator('#todos li', { hasText: 'from B' }).waitFor();
    await a.locator('#unsynced', { hasText: /^0$/ }).waitFor();
    await a.locator('#status', { hasText: /^live, 0 pending$/ }).waitFor();
    await a.getByRole('button', { name: 'Clear conflicts' }).click();
    await a.locator('#conflicts', { hasText: /^$/ }).waitFor({ state: 'attached' });
  });
});
