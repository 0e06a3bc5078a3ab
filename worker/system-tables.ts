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
 * - __pocketsync_quarantine: changes this device could not sync, kept with the reason instead of
 *   stopping sync (QuarantineEntry in lib/protocol/change.ts): a remote row the local schema refused
 *   ('remote', `change` is the RowChange, retried after a schema change, superseded by a later
 *   state of the row), or a local change the server rejected ('local', `change` is the wire change;
 *   it left the change log and is never pushed again).
 * - __pocketsync_stash: the parts of remote rows this schema version does not have, so that the
 *   cursor can move past them without losing them: a whole row of a table this device lacks
 *   (`whole` = 1), or the values of columns it lacks (`whole` = 0), each column with its clock,
 *   the newest per column; applied once a migration adds the table or column (replica.ts).
 * - __pocketsync_cursor_marks: (clock, cursor) each time an applied batch moved the cursor. A
 *   change's `base` (the cursor when the edit was made) is the cursor of the latest mark with a
 *   lower clock: the device's clock only grows, so no work is added to the capture triggers. Marks
 *   that no pending change needs are pruned; one always remains.
 * - __pocketsync_replica_state: small facts of the replica by key: 'acknowledged' (the server
 *   ever acknowledged a change of this device: it is no longer fresh), 'schema_cookie' (SQLite's
 *   schema_version when the stash and the quarantine were last tried against the schema) and
 *   'received_clock' (the newest clock received from other devices), 'resync' (1 while a full
 *   re-sync is under way: the server had forgotten deletes older than this device's cursor).
 * - __pocketsync_resync_seen: during a re-sync, every row the server sent; when it ends, the synced
 *   rows not in it (and with no pending or quarantined local change) are dropped, as are stashed
 *   ones, and the table is emptied.
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
CREATE TABLE IF NOT EXISTS __pocketsync_quarantine (
  id INTEGER PRIMARY KEY,
  direction TEXT NOT NULL,
  table_name TEXT NOT NULL,
  ps_global_id TEXT NOT NULL,
  source TEXT NOT NULL,
  change TEXT NOT NULL,
  error_kind TEXT NOT NULL,
  error_message TEXT NOT NULL,
  at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS __pocketsync_quarantine_row ON __pocketsync_quarantine (ps_global_id, table_name);
CREATE TABLE IF NOT EXISTS __pocketsync_stash (
  table_name TEXT NOT NULL,
  ps_global_id TEXT NOT NULL,
  vals TEXT NOT NULL,
  clocks TEXT NOT NULL,
  seq INTEGER NOT NULL,
  whole INTEGER NOT NULL,
  PRIMARY KEY (ps_global_id, table_name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS __pocketsync_cursor_marks (
  clock TEXT PRIMARY KEY,
  cursor INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS __pocketsync_replica_state (
  key TEXT PRIMARY KEY,
  value
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS __pocketsync_resync_seen (
  table_name TEXT NOT NULL,
  ps_global_id TEXT NOT NULL,
  PRIMARY KEY (ps_global_id, table_name)
) WITHOUT ROWID;
DROP TABLE IF EXISTS __pocketsync_processed_changes;
`;
