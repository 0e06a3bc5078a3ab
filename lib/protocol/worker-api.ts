/**
 * The contract between the main thread (lib/) and the database worker (worker/), carried by Comlink.
 *
 * Every method resolves to a `Result`: errors cross the boundary as `{ kind, message }` data.
 * Table-change notifications never travel as replies: they go out on the MessagePort handed to
 * `open`, as `TablesChangedMessage`s, once per committed write (a transaction notifies once, at commit).
 *
 * Calls are serialized by the worker. Between `begin` and `commit`/`rollback`, only calls that carry
 * that transaction's id run; every other call waits until the transaction ends.
 */
import type { Result } from './error-kind.js';

/** A value SQLite stores, as it crosses postMessage. */
export type SqlValue = string | number | bigint | null | Uint8Array;
export type Row = Record<string, SqlValue>;
export type Params = readonly SqlValue[] | Readonly<Record<string, SqlValue>>;

/**
 * Rows to update or delete: column equalities (`{ id: 3 }`, null meaning IS NULL), or a SQL
 * condition (`'done = ? AND due < ?'`) whose parameters follow as `whereParams`.
 */
export type Where = Readonly<Record<string, SqlValue>> | string;

export type StorageKind = 'opfs-sahpool' | 'opfs' | 'memory';

/** One migration step: the statements that bring the database to `version`. */
export interface Migration {
  readonly version: number;
  readonly sql: readonly string[];
}

/** The app's schema: the version it expects and the ordered steps that build it. */
export interface Schema {
  readonly version: number;
  readonly migrations: readonly Migration[];
}

export interface OpenOptions {
  /** The database file name (one per app and signed-in user, typically). */
  readonly dbName: string;
  readonly schema?: Schema;
  /** The tables to sync; all user tables when absent. */
  readonly tables?: readonly string[];
  /** Force a storage kind (tests and benchmarks); the best available one when absent. */
  readonly storage?: StorageKind;
}

export interface OpenResult {
  readonly storage: StorageKind;
  readonly deviceId: string;
  /** Why data will not persist, when it will not. */
  readonly warning?: string;
  readonly schemaVersion: number;
  readonly syncedTables: readonly string[];
}

export interface ExecuteResult {
  /** Rows the statement inserted, updated or deleted (as sqlite3_changes counts them). */
  readonly changes: number;
  readonly lastInsertRowid: number | bigint;
  /** Rows the statement returned (a SELECT or a RETURNING clause). */
  readonly rows: Row[];
}

/** Posted on the notification port after a write commits. */
export interface TablesChangedMessage {
  readonly type: 'tables-changed';
  readonly tables: readonly string[];
}

/** A transaction id from `begin`; calls that pass it run inside that transaction. */
export type TxId = number;

export interface WorkerApi {
  open(options: OpenOptions, notifications: MessagePort): Promise<Result<OpenResult>>;
  execute(sql: string, params: Params | undefined, tx?: TxId): Promise<Result<ExecuteResult>>;
  query(sql: string, params: Params | undefined, tx?: TxId): Promise<Result<Row[]>>;
  /** Resolves to the new row's ps_global_id, or null for a table that does not sync. */
  insert(table: string, values: Row, tx?: TxId): Promise<Result<string | null>>;
  update(table: string, values: Row, where: Where, whereParams: readonly SqlValue[] | undefined, tx?: TxId): Promise<Result<number>>;
  delete(table: string, where: Where, whereParams: readonly SqlValue[] | undefined, tx?: TxId): Promise<Result<number>>;
  begin(): Promise<Result<TxId>>;
  commit(tx: TxId): Promise<Result<void>>;
  rollback(tx: TxId): Promise<Result<void>>;
  /** The tables a query reads, as SQLite's authorizer reports them when preparing it. */
  readTables(sql: string): Promise<Result<string[]>>;
  close(): Promise<Result<void>>;
}
