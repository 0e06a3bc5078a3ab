/**
 * Change-capture cost: inserts into a synced table versus the same table without PocketSync's
 * triggers, in Node (in-memory SQLite-WASM) and in Chromium (opfs-sahpool in a worker).
 * Target: every ratio ≤ 1.5 (cr-sqlite, the nearest peer, pays 2.5–6.6×).
 */
import { existsSync } from 'node:fs';
import init from '@sqlite.org/sqlite-wasm';
import { CHROMIUM_PATH as CHROMIUM, launchChromium } from '../scripts/chromium.js';
import { Engine } from '../worker/engine.js';
import { median } from './stats.js';
import { CAPTURE_SCHEMA, CAPTURE_TABLES, medianRatio, runCaptureWorkload, type CaptureSizes, type CaptureTimings } from './capture-workload.js';
import { serveBenchPages } from './browser-site.js';
import { report, type Metric } from './report.js';
import type { BenchOptions } from './run.js';


async function inNode(sizes: CaptureSizes): Promise<CaptureTimings> {
  const sqlite3 = await init();
  return runCaptureWorkload(
    sizes,
    () => Promise.resolve(Engine.open(sqlite3, new sqlite3.oo1.DB(':memory:'), { deviceId: 'bench', schema: CAPTURE_SCHEMA, tables: CAPTURE_TABLES })),
    (engine) => Promise.resolve(engine.close()),
  );
}

async function inChromium(sizes: CaptureSizes): Promise<CaptureTimings> {
  const site = await serveBenchPages();
  const browser = await launchChromium();
  try {
    const page = await (await browser.newContext()).newPage();
    await page.goto(site.url);
    return await page.evaluate((s) => (window as unknown as { runCapture: (s: CaptureSizes) => Promise<CaptureTimings> }).runCapture(s), sizes);
  } finally {
    await browser.close();
    await site.close();
  }
}

function metrics(where: 'node' | 'chromium', t: CaptureTimings, sizes: CaptureSizes): Metric[] {
  const oneTx = { synced: median(t.syncedOneTx), plain: median(t.plainOneTx) };
  const manyTx = { synced: median(t.syncedManyTx), plain: median(t.plainManyTx) };
  const rate = (rows: number, ms: number) => (rows * 1000) / ms;
  const ratio1 = medianRatio(t.syncedOneTx, t.plainOneTx);
  const ratioMany = medianRatio(t.syncedManyTx, t.plainManyTx);
  return [
    { metric: `capture-ratio-${where}-1tx`, value: ratio1, unit: 'x', baseline: 1, ratio: ratio1, target: '≤ 1.5' },
    { metric: `capture-ratio-${where}-${sizes.manyTxRows}tx`, value: ratioMany, unit: 'x', baseline: 1, ratio: ratioMany, target: '≤ 1.5' },
    { metric: `rows-per-s-${where}-1tx-synced`, value: rate(sizes.oneTxRows, oneTx.synced), unit: 'rows/s', baseline: rate(sizes.oneTxRows, oneTx.plain), ratio: oneTx.plain / oneTx.synced },
    { metric: `rows-per-s-${where}-1tx-plain`, value: rate(sizes.oneTxRows, oneTx.plain), unit: 'rows/s' },
    { metric: `rows-per-s-${where}-${sizes.manyTxRows}tx-synced`, value: rate(sizes.manyTxRows, manyTx.synced), unit: 'rows/s', baseline: rate(sizes.manyTxRows, manyTx.plain), ratio: manyTx.plain / manyTx.synced },
    { metric: `rows-per-s-${where}-${sizes.manyTxRows}tx-plain`, value: rate(sizes.manyTxRows, manyTx.plain), unit: 'rows/s' },
  ];
}

export async function run(options: BenchOptions): Promise<void> {
  const sizes: CaptureSizes = options.small
    ? { oneTxRows: 1_000, manyTxRows: 100, repetitions: 1, warmups: 0 }
    : { oneTxRows: 10_000, manyTxRows: 1_000, repetitions: 9, warmups: 2 };
  const all = metrics('node', await inNode(sizes), sizes);
  if (existsSync(CHROMIUM)) all.push(...metrics('chromium', await inChromium(sizes), sizes));
  else if (process.env.CI) throw new Error(`Chromium is missing at ${CHROMIUM}`);
  else console.warn(`No Chromium at ${CHROMIUM}: the Chromium half of the capture benchmark is skipped.`);
  // Order as in the issue: the four ratios first.
  all.sort((a, b) => Number(!a.metric.startsWith('capture-ratio')) - Number(!b.metric.startsWith('capture-ratio')));
  report(options.small ? 'capture-small' : 'capture', all);
}
