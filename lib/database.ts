/**
 * The database API of a PocketSync instance: typed writes, raw SQL, transactions and live queries.
 * Every write through any of these paths is captured by the worker's triggers and syncs.
 */
import { PocketSyncError } from './errors.js';
import { ErrorKind } from './protocol/error-kind.js';
import type { ExecuteResult, Params, Row, SqlValue, TxId, Where } from './protocol/worker-api.js';
import type { WatchCallback, WatchOptions, Watches } from './watch.js';
import type { WorkerClient } from './worker-client.js';

/** The operations available both on the database and inside a transaction. */
export class Queries {
  protected readonly client: WorkerClient;
  protected readonly tx: TxId | undefined;

  constructor(client: WorkerClient, tx?: TxId) {
    this.client = client;
    this.tx = tx;
  }

  /** Inserts a row and resolves to its ps_global_id (null for a table that does not sync). */
  insert(table: string, values: Row): Promise<string | null> {
    return this.client.call((api) => api.insert(table, values, this.tx));
  }

  /**
   * Sets `values` on the rows matching `where` (column equalities, or a SQL condition with
   * `whereParams`); resolves to the number of rows changed.
   */
  update(table: string, values: Row, where: Where, whereParams?: readonly SqlValue[]): Promise<number> {
    return this.client.call((api) => api.update(table, values, where, whereParams, this.tx));
  }

  /** Deletes the rows matching `where`; resolves to the number of rows deleted. */
  delete(table: string, where: Where, whereParams?: readonly SqlValue[]): Promise<number> {
    return this.client.call((api) => api.delete(table, where, whereParams, this.tx));
  }

  /** Runs a query and resolves to its rows. */
  query<T extends Row = Row>(sql: string, params?: Params): Promise<T[]> {
    return this.client.call((api) => api.query(sql, params, this.tx)) as Promise<T[]>;
  }

  /** Runs any statement (or a script of several, without params). */
  execute(sql: string, params?: Params): Promise<ExecuteResult> {
    return this.client.call((api) => api.execute(sql, params, this.tx));
  }
}

/** The handle passed to `transaction(fn)`; unusable once the transaction has ended. */
export class Transaction extends Queries {
  declare protected readonly tx: TxId;
}

export class Database extends Queries {
  readonly #watches: Watches;

  constructor(client: WorkerClient, watches: Watches) {
    super(client);
    this.#watches = watches;
  }

  /**
   * Runs `fn` in one transaction: it commits when `fn` resolves and rolls back entirely when `fn`
   * throws or a statement fails. Use the `tx` handle inside; calls on the database itself wait
   * until the transaction ends (so calling them from inside `fn` and awaiting them deadlocks).
   */
  async transaction<T>(fn: (tx: Transaction) => Promise<T>): Promise<T> {
    const id = await this.client.call((api) => api.begin());
    const tx = new Transaction(this.client, id);
    let value: T;
    try {
      value = await fn(tx);
    } catch (error) {
      try {
        await this.client.call((api) => api.rollback(id));
      } catch (rollbackError) {
        if (!(rollbackError instanceof PocketSyncError && rollbackError.kind === ErrorKind.Closed)) throw rollbackError;
      }
      throw error;
    }
    await this.client.call((api) => api.commit(id));
    return value;
  }

  /**
   * Runs `sql` now and again whenever a table it reads changes (here, through sync or in another
   * tab), passing the rows to `callback`. Bursts of writes coalesce into one re-run.
   * Returns the function that stops watching.
   */
  watch<T extends Row = Row>(sql: string, params: Params | undefined, callback: WatchCallback<T>, options?: WatchOptions): () => void {
    return this.#watches.add(sql, params, callback as WatchCallback, options);
  }
}
