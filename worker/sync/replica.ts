/**
 * The local replica's side of sync, on top of the engine: what to push (the unsynced change log, as
 * wire changes), what an acknowledgement settles, and how a batch of remote row changes is applied.
 * The sync loop (transport, reconnects, status) drives these; they know nothing of sockets.
 *
 * Applying a batch (design notes):
 * - One transaction, change capture off, the cursor advanced in the same transaction: a crash
 *   leaves either the whole batch and its cursor, or neither.
 * - Idempotent: a row change at or below the stored cursor was applied already and is skipped, so
 *   a batch delivered twice has the effect of once. The cursor is the record of applied remote
 *   changes (system-tables.ts says why there is no table of them).
 * - A local edit not yet acknowledged keeps its columns against a remote value with an older
 *   clock: the same per-column rule the server applies, so the server's echo of the merged row and
 *   this device agree once the edit is pushed. Likewise a local delete not yet acknowledged keeps
 *   the row deleted against a remote state all older than it: the server will delete the row when
 *   the delete arrives, and sends that back to the other devices only, so a row brought back here
 *   would stay.
 * - Every received clock advances this device's HLC, so later local edits sort after what it saw.
 *
 * Acknowledging: acknowledged changes are deleted from the log in the ack's transaction (with the
 * server's state of rows where they lost), so the log never grows beyond what is still to push.
 */
import type { ClientChange, RowChange } from '../../lib/protocol/change.js';
import type { ColumnValue } from '../../lib/protocol/values.js';
import type { SqlValue } from '../../lib/protocol/worker-api.js';
import type { Engine } from '../engine.js';
import { parseClock } from '../hlc.js';
import { quoteIdentifier } from '../sql.js';

/**
 * A change-log row as a wire change (JSON): an insert carries its whole row, an update the columns
 * it changed, a delete no values. The one definition of what a change carries, for pushes and for
 * the clocks that unacknowledged edits hold against remote ones.
 */
const WIRE_CHANGE_SQL = `CASE operation
    WHEN 'delete' THEN json_object('id', change_id, 'table', table_name, 'row', ps_global_id, 'op', operation, 'clock', clock)
    ELSE json_object('id', change_id, 'table', table_name, 'row', ps_global_id, 'op', operation, 'clock', clock, 'values',
      CASE WHEN operation = 'update' AND payload -> '$.changed' IS NOT NULL
        THEN json((SELECT json_group_object(r.key, CASE WHEN r.type = 'object' THEN json(r.value) ELSE r.value END)
                   FROM json_each(payload, '$.row') AS r WHERE r.key IN (SELECT value FROM json_each(payload, '$.changed'))))
        ELSE json(payload -> '$.row') END)
    END`;

/** The oldest `?` unacknowledged changes as wire changes (one JSON array), and their rowids. */
const PENDING_SQL = `
SELECT json_group_array(id ORDER BY id) AS rowids, json_group_array(json(change) ORDER BY id) AS changes FROM (
  SELECT id, ${WIRE_CHANGE_SQL} AS change FROM __pocketsync_changes WHERE synced = 0 ORDER BY id LIMIT ?)`;

/** The unacknowledged changes of the rows in the JSON array ?1, as wire changes, oldest first. */
const PENDING_OF_ROWS_SQL = `
SELECT json_group_array(json(change) ORDER BY id) AS changes FROM (
  SELECT id, ${WIRE_CHANGE_SQL} AS change FROM __pocketsync_changes
  WHERE synced = 0 AND ps_global_id IN (SELECT value FROM json_each(?1)))`;

export class Replica {
  readonly #engine: Engine;
  /** The rowids of the changes the last pending() call returned, by change id. */
  #sent = new Map<string, number>();

  constructor(engine: Engine) {
    this.#engine = engine;
    // Acknowledged changes kept (as synced = 1) by versions that did not prune the log yet.
    if (engine.query('SELECT 1 AS x FROM __pocketsync_changes WHERE synced = 1 LIMIT 1').length > 0) {
      this.#transaction(() => this.#removeChanges('synced = 1'));
    }
  }

  /**
   * After a device's clock ran fast and was set right: if this device's own stamps are ahead of
   * `latest` (its physical time plus the server's drift cap), the server refuses them, and the
   * clock, which never goes back, would keep stamping ahead until real time caught up. The pending
   * changes never reached the server (it refused them whole), so they are stamped again, in order,
   * from the physical clock, and the clock and the device state's last clock restart there.
   * Returns whether it did.
   */
  restampIfAhead(latest: number): boolean {
    const engine = this.#engine;
    const newest = engine.query(
      'SELECT max(c) AS c FROM (SELECT last_clock AS c FROM __pocketsync_device_state UNION ALL SELECT max(clock) FROM __pocketsync_changes)',
    )[0]?.c;
    if (typeof newest !== 'string' || parseClock(newest).wall <= latest) return false;
    this.#transaction(() => {
      engine.clock.restart();
      const ids = engine.query('SELECT id FROM __pocketsync_changes ORDER BY id').map((row) => Number(row.id));
      for (const id of ids) engine.execute('UPDATE __pocketsync_changes SET clock = ? WHERE id = ?', [engine.clock.now(), id]);
      engine.execute('UPDATE __pocketsync_device_state SET last_clock = ? WHERE id = 1', [engine.clock.now()]);
    });
    return true;
  }

  /** The highest seq applied from the server. */
  get cursor(): number {
    return Number(this.#engine.query('SELECT server_cursor AS c FROM __pocketsync_device_state WHERE id = 1')[0]?.c ?? 0);
  }

  /** When the last batch from the server was applied (ms since the epoch), kept across reloads. */
  get lastSyncedAt(): number | null {
    const at = this.#engine.query('SELECT last_sync_at AS t FROM __pocketsync_device_state WHERE id = 1')[0]?.t;
    return typeof at === 'number' ? at : null;
  }

  /**
   * Local changes not yet acknowledged, oldest first, as they go on the wire. SQLite builds the
   * wire JSON of the whole batch (PENDING_SQL): reading it row by row and column by column out of
   * WebAssembly cost more than everything else in a push.
   */
  pending(limit: number): ClientChange[] {
    const [batch] = this.#engine.query(PENDING_SQL, [limit]);
    const rowids = JSON.parse(String(batch?.rowids ?? '[]')) as number[];
    const changes = JSON.parse(String(batch?.changes ?? '[]')) as ClientChange[];
    this.#sent = new Map(changes.map((change, i) => [change.id, rowids[i] as number]));
    return changes;
  }

  pendingCount(): number {
    return Number(this.#engine.query('SELECT count(*) AS n FROM __pocketsync_changes WHERE synced = 0')[0]?.n ?? 0);
  }

  /**
   * An acknowledgement, in one transaction: the acknowledged changes (applied, superseded or
   * duplicate: the server has them) leave the change log, and `settled`, the server's state of
   * rows where this device's writes lost, is applied. Those rows come whatever the cursor (no new
   * seq carries them), with capture off; newer unacknowledged edits still keep their columns.
   */
  acknowledge(changeIds: readonly string[], settled: readonly RowChange[] = []): void {
    if (changeIds.length === 0 && settled.length === 0) return;
    this.#transaction(() => {
      this.#prune(changeIds);
      if (settled.length > 0) this.#applyRows(settled);
    });
  }

  /** Applies a batch of remote row changes and moves the cursor to `cursor`, atomically. */
  apply(changes: readonly RowChange[], cursor: number): void {
    const applied = this.cursor;
    const fresh = changes.filter((change) => change.seq > applied);
    if (fresh.length === 0 && cursor <= applied) return; // redelivered: nothing new
    this.#transaction(() => {
      this.#applyRows(fresh);
      if (cursor > applied) {
        this.#engine.execute('UPDATE __pocketsync_device_state SET server_cursor = ?, last_sync_at = ? WHERE id = 1', [cursor, Date.now()]);
      }
    });
  }

  #transaction(work: () => void): void {
    const engine = this.#engine;
    engine.begin();
    try {
      work();
      engine.commit();
    } catch (error) {
      engine.rollback();
      throw error;
    }
  }

  /**
   * Deletes acknowledged changes from the log. Nothing reads them once acknowledged but the
   * engine at open, for the newest clock and the per-table versions; those are kept in the device
   * state and __pocketsync_version first. Changes from the last pending() call go by rowid; any
   * other id (rare: an ack for a push of an earlier call) by change_id.
   */
  #prune(changeIds: readonly string[]): void {
    if (changeIds.length === 0) return;
    const rowids: number[] = [];
    const sent: string[] = [];
    const others: string[] = [];
    for (const id of changeIds) {
      const rowid = this.#sent.get(id);
      if (rowid === undefined) others.push(id);
      else {
        rowids.push(rowid);
        sent.push(id);
      }
    }
    // The change id is checked too: a rowid is only an address, and a rolled-back change's rowid is
    // handed out again to the next one.
    if (rowids.length > 0) {
      this.#removeChanges('id IN (SELECT value FROM json_each(?1)) AND change_id IN (SELECT value FROM json_each(?2))', [JSON.stringify(rowids), JSON.stringify(sent)]);
    }
    if (others.length > 0) this.#removeChanges('change_id IN (SELECT value FROM json_each(?1))', [JSON.stringify(others)]);
  }

  /**
   * Deletes the changes matching `where` (which may use ?1), after keeping the newest clock and each
   * table's version they carried. Three statements, so that no row crosses into JavaScript.
   */
  #removeChanges(where: string, params: SqlValue[] = []): void {
    const engine = this.#engine;
    engine.execute(
      `UPDATE __pocketsync_version SET version = removed.v
       FROM (SELECT table_name AS t, max(version) AS v FROM __pocketsync_changes WHERE ${where} GROUP BY table_name) AS removed
       WHERE table_name = removed.t AND version < removed.v`,
      params,
    );
    engine.execute(
      `UPDATE __pocketsync_device_state SET last_clock = removed.c
       FROM (SELECT max(clock) AS c FROM __pocketsync_changes WHERE ${where}) AS removed
       WHERE id = 1 AND removed.c IS NOT NULL AND (last_clock IS NULL OR last_clock < removed.c)`,
      params,
    );
    engine.execute(`DELETE FROM __pocketsync_changes WHERE ${where}`, params);
  }

  /** Applies row changes, capture off; what the batch needs from the database is read once, not per row. */
  #applyRows(changes: readonly RowChange[]): void {
    if (changes.length === 0) return;
    const engine = this.#engine;
    const batch: Batch = { synced: new Set(engine.syncedTables), shapes: new Map(), pending: this.#pendingClocks(changes) };
    let newest = '';
    engine.applyWithoutCapture(() => {
      for (const change of changes) {
        const clock = newestOf(change);
        if (clock > newest) newest = clock;
        this.#applyOne(change, batch);
      }
    });
    // Advancing past the newest clock of the batch is advancing past each of them.
    if (newest !== '') engine.clock.receive(newest);
  }

  #applyOne(change: RowChange, batch: Batch): void {
    const engine = this.#engine;
    if (!batch.synced.has(change.table)) return; // a table this app version does not have
    const local = batch.pending.get(rowKey(change.table, change.row));
    if (change.deleted) {
      // A newer unacknowledged local write keeps the row; the server will decide with it.
      if (local !== undefined && local.newest > newestOf(change)) return;
      engine.execute(`DELETE FROM ${quoteIdentifier(change.table)} WHERE ps_global_id = ?`, [change.row]);
      return;
    }
    if (local?.deleted !== undefined && local.deleted > newestOf(change)) return;
    let shape = batch.shapes.get(change.table);
    if (!shape) batch.shapes.set(change.table, (shape = this.#tableShape(change.table)));
    // A new row gets every column the server sent; an existing one only those that no newer
    // unacknowledged local edit holds.
    const columns: string[] = [];
    const params: SqlValue[] = [];
    const replaced: string[] = [];
    for (const [column, value] of Object.entries(change.values ?? {})) {
      // An INTEGER PRIMARY KEY is this device's rowid: two devices assign the same numbers offline,
      // so it never crosses over; rows are matched by ps_global_id.
      if (!shape.columns.has(column) || column === 'ps_global_id' || column === shape.localKey) continue;
      columns.push(column);
      params.push(fromWire(value));
      const localClock = local?.columns.get(column);
      if (localClock === undefined || localClock <= (change.clocks?.[column] ?? '')) replaced.push(column);
    }
    params.push(change.row);
    engine.execute(upsertSql(change.table, columns, replaced, shape), params);
  }

  /** A table's columns, and its INTEGER PRIMARY KEY (the rowid alias), if it has one. */
  #tableShape(table: string): TableShape {
    const info = this.#engine.query('SELECT name, type, pk FROM pragma_table_info(?)', [table]);
    const keys = info.filter((c) => Number(c.pk) > 0);
    const [key] = keys;
    const localKey = keys.length === 1 && key && String(key.type).toUpperCase() === 'INTEGER' ? String(key.name) : null;
    return { columns: new Set(info.map((c) => String(c.name))), localKey, upserts: new Map() };
  }

  /** The clocks of unacknowledged local writes, per row: per column, and the newest overall. */
  #pendingClocks(changes: readonly RowChange[]): Map<string, PendingClocks> {
    // Only the pending changes of the batch's rows: a device back from a long time offline may have
    // thousands queued, and each batch of its catch-up would otherwise parse every one of them.
    const [result] = this.#engine.query(PENDING_OF_ROWS_SQL, [JSON.stringify(changes.map((change) => change.row))]);
    const byRow = new Map<string, PendingClocks>();
    for (const pending of JSON.parse(String(result?.changes ?? '[]')) as ClientChange[]) {
      const key = rowKey(pending.table, pending.row);
      let clocks = byRow.get(key);
      if (!clocks) byRow.set(key, (clocks = { columns: new Map(), newest: pending.clock }));
      if (pending.clock > clocks.newest) clocks.newest = pending.clock;
      if (pending.op === 'delete' && (clocks.deleted === undefined || pending.clock > clocks.deleted)) clocks.deleted = pending.clock;
      for (const column of Object.keys(pending.values ?? {})) clocks.columns.set(column, pending.clock);
    }
    return byRow;
  }
}

interface TableShape {
  readonly columns: ReadonlySet<string>;
  readonly localKey: string | null;
  /** upsertSql() by its column lists. */
  readonly upserts: Map<string, string>;
}

/**
 * One statement that inserts a remote row with `columns`, or sets `replaced` on the local row with
 * the same ps_global_id (its unique index is the conflict target): half the statements of a lookup
 * followed by an insert or an update.
 */
function upsertSql(table: string, columns: readonly string[], replaced: readonly string[], shape: TableShape): string {
  const key = `${columns.join('\u0000')}\u0001${replaced.join('\u0000')}`;
  let sql = shape.upserts.get(key);
  if (sql === undefined) {
    const names = [...columns, 'ps_global_id'].map(quoteIdentifier);
    const set = replaced.map((column) => `${quoteIdentifier(column)} = excluded.${quoteIdentifier(column)}`).join(', ');
    sql = `INSERT INTO ${quoteIdentifier(table)} (${names.join(', ')}) VALUES (${names.map(() => '?').join(', ')})
           ON CONFLICT (ps_global_id) DO ${set === '' ? 'NOTHING' : `UPDATE SET ${set}`}`;
    shape.upserts.set(key, sql);
  }
  return sql;
}

interface PendingClocks {
  readonly columns: Map<string, string>;
  newest: string;
  /** The clock of the newest unacknowledged delete of the row, if any. */
  deleted?: string;
}

/** What one batch reads once: synced tables, table shapes, and the unacknowledged local writes. */
interface Batch {
  readonly synced: ReadonlySet<string>;
  readonly shapes: Map<string, TableShape>;
  readonly pending: ReadonlyMap<string, PendingClocks>;
}

const rowKey = (table: string, row: string) => `${table}\u0000${row}`;

function newestOf(change: RowChange): string {
  return Object.values(change.clocks ?? {}).reduce((a, b) => (b > a ? b : a), change.deleteClock ?? '');
}

/** A wire value as SQLite takes it: BLOBs come as { $base16 }, integers beyond 2^53 as { $int }. */
function fromWire(value: ColumnValue): SqlValue {
  if (value !== null && typeof value === 'object') {
    if ('$int' in value) return BigInt(value.$int);
    const hex = value.$base16;
    return Uint8Array.from({ length: hex.length / 2 }, (_, i) => parseInt(hex.slice(i * 2, i * 2 + 2), 16));
  }
  return value;
}
