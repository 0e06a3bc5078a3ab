/** PocketSync's public surface. Everything else is internal. */
export { PocketSync, type PocketSyncOptions } from './pocket-sync.js';
export { Database, Transaction, Queries } from './database.js';
export { PocketSyncError, isPocketSyncError } from './errors.js';
export { ErrorKind, type ErrorData } from './protocol/error-kind.js';
export type { WatchCallback, WatchOptions } from './watch.js';
export { Sync, type Conflict, type QuarantineEntry, type SyncState, type SyncStatus, type UnsyncedRow } from './sync.js';
export type {
  ExecuteResult,
  Migration,
  Params,
  Row,
  Schema,
  SqlValue,
  StorageKind,
  Where,
} from './protocol/worker-api.js';
