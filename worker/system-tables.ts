/**
 * PocketSync's own tables, created idempotently on every open. Names follow the original PocketSync.
 *
 * - __pocketsync_changes: the local change log. One row per captured insert/update/delete, in
 *   capture order (`id`), with a globally unique `change_id`, the row's `ps_global_id`, the payload
 *   (JSON: `{ row, changed }` for insert/update, `{ old }` for delete), the HLC stamp, the table's
 *   version after the change, and whether the server has acknowledged it.
 *   Only the triggers write it, every column always; it declares no NOT NULL or CHECK constraint
 *   because each one makes every captured write pay for a statement journal (bench/capture.ts).
 * - __pocketsync_version: the per-table version counters as of the last pruning of the change log;
 *   the live counter of a table is the larger of this and its newest version in the log. Each synced
 *   table also gets a stable `table_id` here, which its triggers pass to ps_version().
 * - __pocketsync_device_state: a single row: this database's device id, the server cursor, the last
 *   sync time and the newest clock this device has issued or seen.
 * - __pocketsync_processed_changes: ids of remote changes already applied, so none applies twice.
 */
export const SYSTEM_TABLES_SQL = `
CREATE TABLE IF NOT EXISTS __pocketsync_changes (
  id INTEGER PRIMARY KEY,
  change_id TEXT,
  table_name TEXT,
  ps_global_id TEXT,
  operation TEXT,
  payload TEXT,
  clock TEXT,
  version INTEGER,
  synced INTEGER DEFAULT 0
);
CREATE TABLE IF NOT EXISTS __pocketsync_version (
  table_name TEXT PRIMARY KEY,
  table_id INTEGER NOT NULL UNIQUE,
  version INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS __pocketsync_device_state (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  device_id TEXT NOT NULL,
  server_cursor INTEGER NOT NULL DEFAULT 0,
  last_sync_at INTEGER,
  last_clock TEXT
);
CREATE TABLE IF NOT EXISTS __pocketsync_processed_changes (
  change_id TEXT PRIMARY KEY,
  processed_at INTEGER NOT NULL
) WITHOUT ROWID;
`;
