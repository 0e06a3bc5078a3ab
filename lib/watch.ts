/**
 * Live queries. A watch runs its query at once and again whenever a table it reads changes,
 * whether the write came from this page, the sync loop or another tab.
 *
 * Which tables a query reads comes from the worker (SQLite's authorizer at prepare time). Bursts
 * coalesce: a notification marks the affected watches dirty, and they re-run only once this page
 * has no call in flight (so fifty inserts issued together give one re-run, not fifty), or after
 * MAX_DELAY_MS when calls never stop. A watch never has two runs in flight; a change during a run
 * makes it run once more afterwards.
 */
import type { PocketSyncError } from './errors.js';
import { ErrorKind } from './protocol/error-kind.js';
import type { Params, Row } from './protocol/worker-api.js';
import type { WorkerClient } from './worker-client.js';

const MAX_DELAY_MS = 50;

export interface WatchOptions {
  /** Called when the query fails (a dropped table, say); defaults to console.error. */
  readonly onError?: (error: PocketSyncError) => void;
}

export type WatchCallback<T extends Row = Row> = (rows: T[]) => void;

class Watch {
  tables: ReadonlySet<string> | null = null;
  dirty = true;
  running = false;
  closed = false;

  constructor(
    readonly sql: string,
    readonly params: Params | undefined,
    readonly callback: WatchCallback,
    readonly onError: (error: PocketSyncError) => void,
  ) {}

  reads(changed: readonly string[]): boolean {
    return this.tables === null || changed.some((table) => this.tables?.has(table));
  }
}

export class Watches {
  readonly #client: WorkerClient;
  readonly #watches = new Set<Watch>();
  #flushScheduled = false;

  constructor(client: WorkerClient) {
    this.#client = client;
  }

  add(sql: string, params: Params | undefined, callback: WatchCallback, options: WatchOptions = {}): () => void {
    const watch = new Watch(sql, params, callback, options.onError ?? ((error) => console.error('PocketSync watch failed:', error)));
    this.#watches.add(watch);
    void this.#start(watch);
    return () => {
      watch.closed = true;
      this.#watches.delete(watch);
    };
  }

  /** A notification from the worker: these tables changed. */
  tablesChanged(tables: readonly string[]): void {
    let any = false;
    for (const watch of this.#watches) {
      if (watch.reads(tables)) {
        watch.dirty = true;
        any = true;
      }
    }
    if (any) this.#scheduleFlush();
  }

  async #start(watch: Watch): Promise<void> {
    try {
      watch.tables = new Set(await this.#client.call((api) => api.readTables(watch.sql)));
    } catch (error) {
      if (!watch.closed && !this.#client.isClosed) watch.onError(error as PocketSyncError);
      watch.closed = true;
      this.#watches.delete(watch);
      return;
    }
    await this.#run(watch);
  }

  async #run(watch: Watch): Promise<void> {
    if (watch.running || watch.closed) return;
    watch.running = true;
    watch.dirty = false;
    let handedOver = false;
    try {
      const rows = await this.#client.call((api) => api.query(watch.sql, watch.params));
      if (!watch.closed) watch.callback(rows);
    } catch (error) {
      // 'closed' while this instance is open: the tab holding the database went away mid-query.
      // The next one announces every table once it has the database, and the watch re-runs then.
      handedOver = (error as PocketSyncError).kind === ErrorKind.Closed && !this.#client.isClosed;
      if (!watch.closed && !this.#client.isClosed && !handedOver) watch.onError(error as PocketSyncError);
    } finally {
      watch.running = false;
    }
    if (handedOver) watch.dirty = true;
    else if (watch.dirty && !watch.closed) this.#scheduleFlush();
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    const deadline = Date.now() + MAX_DELAY_MS;
    const flush = async (): Promise<void> => {
      // Let a burst of calls finish first; a notification posted just before a reply may still be
      // on its way, so give it one more turn of the event loop.
      await Promise.race([this.#client.whenIdle(), delay(Math.max(0, deadline - Date.now()))]);
      await delay(0);
      this.#flushScheduled = false;
      for (const watch of this.#watches) if (watch.dirty) void this.#run(watch);
    };
    void flush();
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
