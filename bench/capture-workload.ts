/**
 * The change-capture workload, shared by the Node run (in-memory SQLite-WASM) and the Chromium run
 * (opfs-sahpool, inside a worker): the same inserts through the engine's typed API into a synced
 * table and into an identical table without PocketSync's triggers, alternating which goes first.
 */
import type { Engine } from '../worker/engine.js';
import { median } from './stats.js';

export interface CaptureSizes {
  /** Rows inserted in one transaction. */
  readonly oneTxRows: number;
  /** Rows inserted as separate (autocommit) transactions. */
  readonly manyTxRows: number;
  /** Measured repetitions: the ratio reported is the median of the per-repetition ratios. */
  readonly repetitions: number;
  /**
   * Unmeasured repetitions first. SQLite-WASM runs in V8's baseline tier until its hot functions are
   * recompiled, which goes on for several full repetitions; measuring before then mostly measures
   * the compiler.
   */
  readonly warmups: number;
}

export interface CaptureTimings {
  /** Milliseconds per repetition. */
  readonly syncedOneTx: number[];
  readonly plainOneTx: number[];
  readonly syncedManyTx: number[];
  readonly plainManyTx: number[];
}

export const CAPTURE_SCHEMA = {
  version: 1,
  migrations: [
    {
      version: 1,
      sql: [
        'CREATE TABLE items (id INTEGER PRIMARY KEY, title TEXT NOT NULL, done INTEGER NOT NULL, note TEXT, updated_at INTEGER)',
        'CREATE TABLE items_plain (id INTEGER PRIMARY KEY, title TEXT NOT NULL, done INTEGER NOT NULL, note TEXT, updated_at INTEGER)',
      ],
    },
  ],
};
/** Only `items` syncs; `items_plain` is the same table as the app would have without PocketSync. */
export const CAPTURE_TABLES = ['items'];

function insertRows(engine: Engine, table: string, rows: number, oneTransaction: boolean): number {
  const start = performance.now();
  if (oneTransaction) engine.begin();
  for (let i = 0; i < rows; i++) {
    engine.insert(table, { title: `item ${i}`, done: i % 2, note: 'a short note about this item', updated_at: 1_700_000_000_000 + i });
  }
  if (oneTransaction) engine.commit();
  return performance.now() - start;
}

/**
 * `open(name)` gives a fresh engine on a fresh database with CAPTURE_SCHEMA; `close(engine, name)`
 * disposes of both. Each measurement gets its own database so that none inherits another's pages.
 */
export async function runCaptureWorkload(
  sizes: CaptureSizes,
  open: (name: string) => Promise<Engine>,
  close: (engine: Engine, name: string) => Promise<void>,
): Promise<CaptureTimings> {
  const timings = { syncedOneTx: [] as number[], plainOneTx: [] as number[], syncedManyTx: [] as number[], plainManyTx: [] as number[] };
  let n = 0;
  const measure = async (table: string, rows: number, oneTx: boolean): Promise<number> => {
    const name = `capture-bench-${++n}.sqlite3`;
    const engine = await open(name);
    try {
      const ms = insertRows(engine, table, rows, oneTx);
      const expected = table === 'items' ? rows : 0;
      const captured = Number(engine.query('SELECT count(*) AS n FROM __pocketsync_changes')[0]?.n);
      if (captured !== expected) throw new Error(`expected ${expected} captured changes, found ${captured}`);
      return ms;
    } finally {
      await close(engine, name);
    }
  };
  for (let rep = 0; rep < sizes.warmups; rep++) {
    for (const table of ['items', 'items_plain']) {
      await measure(table, sizes.oneTxRows, true);
      await measure(table, sizes.manyTxRows, false);
    }
  }
  for (let rep = 0; rep < sizes.repetitions; rep++) {
    const order = rep % 2 === 0 ? (['items', 'items_plain'] as const) : (['items_plain', 'items'] as const);
    for (const table of order) {
      const synced = table === 'items';
      (synced ? timings.syncedOneTx : timings.plainOneTx).push(await measure(table, sizes.oneTxRows, true));
      (synced ? timings.syncedManyTx : timings.plainManyTx).push(await measure(table, sizes.manyTxRows, false));
    }
  }
  return timings;
}

/** The median over repetitions of synced time / plain time within the same repetition. */
export function medianRatio(synced: readonly number[], plain: readonly number[]): number {
  return median(synced.map((ms, i) => ms / (plain[i] as number)));
}

