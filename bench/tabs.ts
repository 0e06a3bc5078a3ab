/**
 * Several tabs on one database, in Chromium on opfs-sahpool: the round trip of a one-row query from
 * the tab that holds the database (the leader) and from another tab of the same profile (a follower,
 * whose calls go through the leader), and the handover: from closing the leader's tab until the
 * follower's next write resolves (written as soon as the close returns; writes the handover cut off
 * are retried).
 *
 * Baselines, measured in the same rounds: for the leader, one tab in its own profile whose worker
 * does not share at all (the single-tab path before tabs could share); for the follower, the leader.
 * Query round trips are taken in interleaved chunks after a warm-up; each round opens fresh profiles.
 * The pages are cross-origin isolated for a fine-grained clock; storage is opfs-sahpool all the same
 * (bench/browser/tabs.ts checks).
 */
import { existsSync } from 'node:fs';
import type { Browser, Page } from 'playwright-core';
import { CHROMIUM_PATH as CHROMIUM, launchChromium } from '../scripts/chromium.js';
import type { TabsBench } from './browser/tabs.js';
import { serveBenchPages } from './browser-site.js';
import { median } from './stats.js';
import { report } from './report.js';
import type { BenchOptions } from './run.js';

interface Sizes {
  /** Measured round trips per tab and round. */
  readonly queries: number;
  /** Unmeasured round trips per tab and round, first. */
  readonly warmups: number;
  /** Rounds, each with fresh profiles and one handover. */
  readonly rounds: number;
}

const CHUNK = 100;
const DB_NAME = 'tabs-bench.sqlite3';

type BenchWindow = Window & { tabsBench: TabsBench };

async function openTab(browser: Browser, url: string, context?: Awaited<ReturnType<Browser['newContext']>>): Promise<Page> {
  const page = await (context ?? (await browser.newContext())).newPage();
  await page.goto(url);
  await page.waitForFunction(() => 'tabsBench' in window);
  await page.evaluate((name) => (window as unknown as BenchWindow).tabsBench.open(name), DB_NAME);
  return page;
}

function roundTrips(page: Page, count: number): Promise<number[]> {
  return page.evaluate((n) => (window as unknown as BenchWindow).tabsBench.queryRoundTrips(n), count);
}

export async function run(options: BenchOptions): Promise<void> {
  if (!existsSync(CHROMIUM)) {
    if (process.env.CI) throw new Error(`Chromium is missing at ${CHROMIUM}`);
    console.warn(`No Chromium at ${CHROMIUM}: the tabs benchmark is skipped.`);
    return;
  }
  const sizes: Sizes = options.small ? { queries: 100, warmups: 20, rounds: 1 } : { queries: 1_000, warmups: 200, rounds: 5 };
  const site = await serveBenchPages({ isolated: true });
  const browser = await launchChromium();
  const single: number[] = [];
  const leader: number[] = [];
  const follower: number[] = [];
  const handover: number[] = [];
  try {
    for (let round = 0; round < sizes.rounds; round++) {
      const alone = await openTab(browser, `${site.url}tabs.html?plain`);
      const device = await browser.newContext();
      const first = await openTab(browser, `${site.url}tabs.html`, device);
      const second = await openTab(browser, `${site.url}tabs.html`, device);
      for (const page of [alone, first, second]) await roundTrips(page, sizes.warmups);
      for (let done = 0; done < sizes.queries; done += CHUNK) {
        const n = Math.min(CHUNK, sizes.queries - done);
        single.push(...(await roundTrips(alone, n)));
        leader.push(...(await roundTrips(first, n)));
        follower.push(...(await roundTrips(second, n)));
      }
      const closing = Date.now();
      await first.close();
      const resolved = await second.evaluate(() => (window as unknown as BenchWindow).tabsBench.writeUntilDone());
      handover.push(resolved - closing);
      await device.close();
      await alone.context().close();
    }
  } finally {
    await browser.close();
    await site.close();
  }
  const leaderMs = median(leader);
  const singleMs = median(single);
  const followerMs = median(follower);
  report(options.small ? 'tabs-small' : 'tabs', [
    { metric: 'leader-query-rtt-ms', value: leaderMs, unit: 'ms', baseline: singleMs, ratio: leaderMs / singleMs },
    { metric: 'follower-query-rtt-ms', value: followerMs, unit: 'ms', baseline: leaderMs, ratio: followerMs / leaderMs },
    { metric: 'handover-ms', value: median(handover), unit: 'ms' },
  ]);
  console.log(`handovers (ms): ${handover.map((ms) => ms.toFixed(0)).join(', ')}`);
}
