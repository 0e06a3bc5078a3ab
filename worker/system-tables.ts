/**
 * PocketSync's own tables, created idempotently on every open. Names follow the original PocketSync.
 *
 * - __pocketsync_changes: the local change log. One row per captured insert/update/delete, in
 *   capture order (`id`), with a globally unique `change_id`, the row's `ps_global_id`, the payload
 *   (JSON: `{ row, changed }` for insert/update, `{ old }` for delete), the HLC stamp, the table's
 *   version after the change. An acknowledged change is deleted in the ack's transaction
 *   (replica.ts), so the log holds exactly the changes still to push and its rowid order is the
 *   push order: no index on `synced` is needed (every row is 0; 1 only in logs of older versions,
 *   which the replica prunes when it starts).
 *   Only the triggers write it, every column always; it declares no NOT NULL or CHECK constraint
 *   because each one makes every captured write pay for a statement journal (bench/capture.ts).
 * - __pocketsync_version: the per-table version counters as of the last pruning of the change log;
 *   the live counter of a table is the larger of this and its newest version in the log. Each synced
 *   table also gets a stable `table_id` here, which its triggers pass to ps_version().
 * - __pocketsync_device_state: a single row: this database's device id, the server cursor, the last
 *   sync time and the newest clock this device has issued or seen.
 *
 * There is no __pocketsync_processed_changes table (the original's record of applied remote
 * changes): a remote change is known by its server seq, the server delivers a device's scopes in
 * seq order without gaps, and the cursor (the highest seq applied) moves in the same transaction as
 * the batch it covers. So "seq ≤ cursor" is the whole record of what was applied, in one integer;
 * a table of ids would grow with every change and answer the same question. Databases made by
 * earlier versions lose the unused table at open.
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
DROP TABLE IF EXISTS __pocketsync_processed_changes;
`;
