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
import type { LostWrite, QuarantineEntry } from './change.js';
import type { ErrorData, Result } from './error-kind.js';

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
  /** Sync with this endpoint (ws:// or wss://…/v1/projects/<project>/sync); local only when absent. */
  readonly syncUrl?: string;
  /** The app's own version, reported to the server's operators with the device's status. */
  readonly appVersion?: string;
}

export interface OpenResult {
  readonly storage: StorageKind;
  readonly deviceId: string;
  /** Why data may not persist, when it may not (memory storage). */
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

/** Posted on the notification port when a local write lost to another device's. */
export interface ConflictMessage {
  readonly type: 'conflict';
  readonly conflict: LostWrite;
}

/** Posted on the notification port whenever the sync status changes. */
export interface SyncStatusMessage {
  readonly type: 'sync-status';
  readonly status: SyncStatus;
}

/** Posted on the notification port when changes were newly put in the quarantine. */
export interface QuarantineMessage {
  readonly type: 'quarantine';
  readonly entries: readonly QuarantineEntry[];
}

/**
 * Posted on the notification port when the storage's warning (OpenResult.warning) changes: the
 * memory fallback could not save its copy to IndexedDB, or can again. `warning` is the whole text.
 */
export interface WarningMessage {
  readonly type: 'warning';
  readonly warning: string;
}

/** Everything the worker posts on the notification port. */
export type Notification = TablesChangedMessage | SyncStatusMessage | ConflictMessage | QuarantineMessage | WarningMessage;

/**
 * Where the worker posts notifications: the MessagePort the main thread transferred, or, in the
 * tab that holds the database, a sink that also forwards them to the other tabs.
 */
export interface NotificationPort {
  postMessage(message: Notification): void;
  close(): void;
}

export type SyncState = 'offline' | 'connecting' | 'catching-up' | 'live' | 'error';

export interface SyncStatus {
  readonly state: SyncState;
  /** Local changes not yet acknowledged by the server. */
  readonly pending: number;
  readonly lastSyncedAt: number | null;
  /** Rows applied of the rows this catch-up brings; null when not catching up. */
  readonly progress: { readonly done: number; readonly total: number } | null;
  /**
   * Why sync stopped (state 'error') or is being retried; null when all is well. Every failure that
   * stops or slows sync is here with a kind.
   */
  readonly error: ErrorData | null;
  /** When the next connection attempt is due (ms since the epoch), while waiting out a back-off; else null. */
  readonly retryAt: number | null;
  /** Changes kept in the quarantine (not synced, with their error): see `sync.quarantined()`. */
  readonly quarantined: number;
}

/** A transaction id from `begin`; calls that pass it run inside that transaction. */
export type TxId = number;

export interface WorkerApi {
  /** `token` (a Comlink proxy) gives the user's token for each connection when syncUrl is set. */
  open(options: OpenOptions, notifications: NotificationPort, token?: () => Promise<string>): Promise<Result<OpenResult>>;
  /** Deletes the local database and sync state and opens an empty one (sync stopped): sign-out. */
  reset(): Promise<Result<OpenResult>>;
  syncStart(): Promise<Result<void>>;
  syncStop(): Promise<Result<void>>;
  /** Everything in the quarantine, oldest first (empty when the database was opened without sync). */
  syncQuarantined(): Promise<Result<QuarantineEntry[]>>;
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
  /**
   * The page is going away (pagehide): saves what the memory fallback has not saved yet, now rather
   * than after its debounce. Resolves once stored; nothing to do for OPFS, nor in a tab that does
   * not hold the database (its writes were the holder's commits). Not relayed between tabs.
   */
  flush(): Promise<Result<void>>;
  /** Closes the database and lets go of its storage, so that another tab can open it at once. */
  close(): Promise<Result<void>>;
}
