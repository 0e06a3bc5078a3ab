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
 * - Every received clock advances this device's HLC, so later local edits sort after what it saw,
 *   and is kept in the device state in the same transaction (the engine restores its clock from
 *   there at open), so that holds across a reload.
 * - A row the local schema refuses (a constraint, a type) does not stop the batch: it is applied
 *   under a savepoint, and a failure undoes that row only and puts it in the quarantine
 *   (quarantine.ts). The batch is first tried whole under one savepoint (two statements per batch,
 *   not per row), and only applied row by row when something in it was refused.
 * - Tables and columns this schema version lacks go into the stash (stash.ts), so the cursor can
 *   move past them. Once the schema changed (SQLite's schema cookie differs from the one last
 *   recorded: a migration, or DDL at runtime), the stash is applied and the quarantined remote
 *   rows are tried again: at construction, before the next batch, or by afterSchemaChange().
 *   Quarantined remote rows are also tried again after every batch, which may bring what they
 *   were missing (a foreign key's parent can come at a later seq than its child).
 * - Each move of the cursor leaves a mark (clock, cursor): the base of a pending change is the
 *   cursor of the latest mark before its clock, what the device had when it made the edit.
 *
 * Acknowledging: acknowledged changes are deleted from the log in the ack's transaction (with the
 * server's state of rows where they lost), so the log never grows beyond what is still to push. A
 * change the server rejected moves from the log into the quarantine with its error: the row stays
 * as the device has it, and the change is never pushed again.
 */
import type { ClientChange, PushResult, QuarantineEntry, RowChange } from '../../lib/protocol/change.js';
import { ErrorKind } from '../../lib/protocol/error-kind.js';
import { own, type ColumnValue } from '../../lib/protocol/values.js';
import type { SqlValue } from '../../lib/protocol/worker-api.js';
import { EngineError } from '../engine-error.js';
import type { Engine } from '../engine.js';
import { parseClock } from '../hlc.js';
import { quoteIdentifier } from '../sql.js';
import { ENTRY_COLUMNS, Quarantine, rowKey, toEntry } from './quarantine.js';
import { Stash } from './stash.js';

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

/**
 * The oldest `?` unacknowledged changes as wire changes (one JSON array), and their rowids. Each
 * carries its base: the cursor of the latest mark before its clock (one index seek per change).
 */
const PENDING_SQL = `
SELECT json_group_array(id ORDER BY id) AS rowids, json_group_array(json(change) ORDER BY id) AS changes FROM (
  SELECT id, json_set(${WIRE_CHANGE_SQL}, '$.base', coalesce(
      (SELECT m.cursor FROM __pocketsync_cursor_marks AS m WHERE m.clock < c.clock ORDER BY m.clock DESC LIMIT 1),
      (SELECT server_cursor FROM __pocketsync_device_state WHERE id = 1))) AS change
  FROM __pocketsync_changes AS c WHERE synced = 0 ORDER BY id LIMIT ?)`;

/** The base of every change in the log, in log order (for restampIfAhead). */
const BASES_SQL = `
SELECT id, coalesce((SELECT m.cursor FROM __pocketsync_cursor_marks AS m WHERE m.clock < c.clock ORDER BY m.clock DESC LIMIT 1), 0) AS base
FROM __pocketsync_changes AS c ORDER BY id`;

/** The changes with the ids in the JSON array ?1 whose rows have a remote quarantine entry, oldest first. */
const ACKNOWLEDGED_OF_QUARANTINED_SQL = `
SELECT json_group_array(json(change) ORDER BY id) AS changes FROM (
  SELECT id, ${WIRE_CHANGE_SQL} AS change FROM __pocketsync_changes
  WHERE change_id IN (SELECT value FROM json_each(?1))
    AND ps_global_id IN (SELECT ps_global_id FROM __pocketsync_quarantine WHERE direction = 'remote'))`;

/** Keeps ?1 as the newest clock seen, when it is. */
const KEEP_CLOCK_SQL = 'UPDATE __pocketsync_device_state SET last_clock = ?1 WHERE id = 1 AND (last_clock IS NULL OR last_clock < ?1)';

/**
 * Keeps ?1 as the newest clock received from other devices, when it is: last_clock also holds this
 * device's own stamps, which restampIfAhead may have to forget, but never what it received.
 */
const KEEP_RECEIVED_SQL = `INSERT INTO __pocketsync_replica_state (key, value) VALUES ('received_clock', ?1)
  ON CONFLICT (key) DO UPDATE SET value = excluded.value WHERE value < excluded.value`;

/** Marks no pending change needs: all but the latest one before the oldest pending change. */
const PRUNE_MARKS_SQL = `
DELETE FROM __pocketsync_cursor_marks WHERE clock < (
  SELECT max(clock) FROM __pocketsync_cursor_marks
  WHERE clock < coalesce((SELECT clock FROM __pocketsync_changes ORDER BY id LIMIT 1), '~'))`;

/** The unacknowledged changes of the rows in the JSON array ?1, as wire changes, oldest first. */
const PENDING_OF_ROWS_SQL = `
SELECT json_group_array(json(change) ORDER BY id) AS changes FROM (
  SELECT id, ${WIRE_CHANGE_SQL} AS change FROM __pocketsync_changes
  WHERE synced = 0 AND ps_global_id IN (SELECT value FROM json_each(?1)))`;

export class Replica {
  readonly #engine: Engine;
  readonly #quarantine: Quarantine;
  readonly #stash: Stash;
  /** The rowids of the changes the last pending() call returned, by change id. */
  #sent = new Map<string, number>();
  /** The change ids the last pending() call returned, in push order (results come in that order). */
  #sentOrder: string[] = [];

  constructor(engine: Engine) {
    this.#engine = engine;
    this.#quarantine = new Quarantine(engine);
    this.#stash = new Stash(engine);
    // Acknowledged changes kept (as synced = 1) by versions that did not prune the log yet.
    const oldAcks = engine.query('SELECT 1 AS x FROM __pocketsync_changes WHERE synced = 1 LIMIT 1').length > 0;
    const unknownAck = this.#state('acknowledged') === undefined;
    const noMark = engine.query('SELECT 1 AS x FROM __pocketsync_cursor_marks LIMIT 1').length === 0;
    if (oldAcks || unknownAck || noMark) {
      this.#transaction(() => {
        // A database of an earlier version: its device was acknowledged if it pruned acknowledged
        // changes (which left their newest clock in the device state) or kept them as synced.
        if (unknownAck) {
          const pruned = engine.query('SELECT 1 AS x FROM __pocketsync_device_state WHERE id = 1 AND last_clock IS NOT NULL').length > 0;
          this.#setState('acknowledged', pruned || oldAcks ? 1 : 0);
        }
        if (oldAcks) this.#removeChanges('synced = 1');
        // Changes made before marks existed were made at an unknown cursor: the current one, as before.
        if (noMark) engine.execute("INSERT INTO __pocketsync_cursor_marks (clock, cursor) VALUES ('', ?)", [this.cursor]);
      });
    }
    if (this.#schemaChanged()) this.afterSchemaChange();
  }

  /**
   * After a device's clock ran fast and was set right: if this device's own stamps are ahead of
   * `latest` (its physical time plus the server's drift cap), the server refuses them, and the
   * clock, which never goes back, would keep stamping ahead until real time caught up. The pending
   * changes never reached the server (it refused them whole), so they are stamped again, in order,
   * from the physical clock (or the newest clock received from other devices, when that is not
   * ahead), keeping each one's base, and the clock and the device state's last clock restart there.
   * Returns whether it did.
   */
  restampIfAhead(latest: number): boolean {
    const engine = this.#engine;
    const [state] = engine.query(
      `SELECT (SELECT max(clock) FROM __pocketsync_changes) AS own, last_clock AS stored,
         (SELECT value FROM __pocketsync_replica_state WHERE key = 'received_clock') AS received
       FROM __pocketsync_device_state WHERE id = 1`,
    );
    const ahead = (clock: unknown) => typeof clock === 'string' && parseClock(clock).wall > latest;
    if (!ahead(state?.own) && !ahead(state?.stored)) return false;
    this.#transaction(() => {
      const bases = engine.query(BASES_SQL).map((row) => ({ id: Number(row.id), base: Number(row.base) }));
      const cursor = this.cursor;
      engine.clock.restart();
      // What it saw from other devices (the server took those stamps) still comes before its next one.
      for (const clock of [state?.stored, state?.received]) if (typeof clock === 'string' && !ahead(clock)) engine.clock.receive(clock);
      engine.execute('DELETE FROM __pocketsync_cursor_marks');
      let previous: number | undefined;
      for (const { id, base } of bases) {
        if (base !== previous) engine.execute('INSERT INTO __pocketsync_cursor_marks (clock, cursor) VALUES (?, ?)', [previous === undefined ? '' : engine.clock.now(), base]);
        previous = base;
        engine.execute('UPDATE __pocketsync_changes SET clock = ? WHERE id = ?', [engine.clock.now(), id]);
      }
      if (previous !== cursor) engine.execute('INSERT INTO __pocketsync_cursor_marks (clock, cursor) VALUES (?, ?)', [previous === undefined ? '' : engine.clock.now(), cursor]);
      engine.execute('UPDATE __pocketsync_device_state SET last_clock = ? WHERE id = 1', [engine.clock.now()]);
    });
    return true;
  }

  /** The highest seq applied from the server. */
  get cursor(): number {
    return Number(this.#engine.query('SELECT server_cursor AS c FROM __pocketsync_device_state WHERE id = 1')[0]?.c ?? 0);
  }

  /**
   * This device holds no row that came from the server or was acknowledged by it: no batch with
   * rows was ever applied (cursor 0) and no ack ever came. What the hello's `fresh` says: only then
   * may a catch-up from cursor 0 leave deleted rows out.
   */
  get fresh(): boolean {
    return this.cursor === 0 && this.#state('acknowledged') !== 1;
  }

  /**
   * A full re-sync is under way (Changes.resync): it started and has not ended yet. One cut off
   * goes on at the next connection from the cursor it reached: its pages come in seq order, so the
   * catch-up from there sends the rest, and the rows it had recorded stay recorded. (A cursor still
   * below the horizon makes the server start it over.)
   */
  get resyncing(): boolean {
    return this.#state('resync') === 1;
  }

  /** When the last batch from the server was applied (ms since the epoch), kept across reloads. */
  get lastSyncedAt(): number | null {
    const at = this.#engine.query('SELECT last_sync_at AS t FROM __pocketsync_device_state WHERE id = 1')[0]?.t;
    return typeof at === 'number' ? at : null;
  }

  /**
   * Local changes not yet acknowledged, oldest first, as they go on the wire, each with its base.
   * SQLite builds the wire JSON of the whole batch (PENDING_SQL): reading it row by row and column
   * by column out of WebAssembly cost more than everything else in a push.
   */
  pending(limit: number): ClientChange[] {
    const [batch] = this.#engine.query(PENDING_SQL, [limit]);
    const rowids = JSON.parse(String(batch?.rowids ?? '[]')) as number[];
    const changes = JSON.parse(String(batch?.changes ?? '[]')) as ClientChange[];
    this.#sent = new Map(changes.map((change, i) => [change.id, rowids[i] as number]));
    this.#sentOrder = changes.map((change) => change.id);
    return changes;
  }

  pendingCount(): number {
    return Number(this.#engine.query('SELECT count(*) AS n FROM __pocketsync_changes WHERE synced = 0')[0]?.n ?? 0);
  }

  /** Everything in the quarantine, oldest first. */
  quarantined(): QuarantineEntry[] {
    return this.#quarantine.list();
  }

  quarantineCount(): number {
    return this.#quarantine.count();
  }

  /**
   * An acknowledgement, in one transaction: the acknowledged changes (applied, superseded or
   * duplicate: the server has them) leave the change log; a rejected one moves into the
   * quarantine with its error; and `rows`, the server's state of rows the device cannot derive, is
   * applied. Those rows come whatever the cursor (no new seq carries them), with capture off; newer
   * unacknowledged edits still keep their columns. Returns the newly quarantined entries.
   *
   * A plain change id (the form of earlier versions of the sync loop) counts as acknowledged.
   */
  acknowledge(results: readonly (PushResult | string)[], rows: readonly RowChange[] = []): QuarantineEntry[] {
    if (results.length === 0 && rows.length === 0) return [];
    const acknowledged: string[] = [];
    const rejected: { id: string; error: { kind: string; message: string } }[] = [];
    // Results come in push order: one whose id the server could not read is matched by position.
    const positional = results.length === this.#sentOrder.length;
    results.forEach((result, i) => {
      if (typeof result === 'string') acknowledged.push(result);
      else if (result.outcome !== 'rejected') acknowledged.push(result.id);
      else {
        const id = result.id === '' && positional ? (this.#sentOrder[i] ?? '') : result.id;
        if (id !== '') rejected.push({ id, error: result.error ?? { kind: ErrorKind.Internal, message: 'rejected without a reason' } });
      }
    });
    const out: QuarantineEntry[] = [];
    this.#transaction(() => {
      if (acknowledged.length > 0 && this.#quarantine.hasRemote()) {
        const [held] = this.#engine.query(ACKNOWLEDGED_OF_QUARANTINED_SQL, [JSON.stringify(acknowledged)]);
        for (const change of JSON.parse(String(held?.changes ?? '[]')) as ClientChange[]) this.#quarantine.settle(change);
      }
      this.#prune(acknowledged);
      for (const { id, error } of rejected) {
        const entry = this.#quarantineLocal(id, error);
        if (entry) out.push(entry);
      }
      this.#prune(rejected.map((r) => r.id));
      if ((acknowledged.length > 0 || rows.length > 0) && this.#state('acknowledged') !== 1) this.#setState('acknowledged', 1);
      out.push(...this.#applyRows(rows));
      this.#engine.execute(PRUNE_MARKS_SQL);
    });
    return out;
  }

  /**
   * Applies a batch of remote row changes and moves the cursor to `cursor`, atomically. Returns the
   * rows the local schema refused, now in the quarantine.
   */
  apply(changes: readonly RowChange[], cursor: number, catchUp: { resync?: boolean; done?: boolean } = {}): QuarantineEntry[] {
    const applied = this.cursor;
    const unseen = changes.filter((change) => change.seq > applied);
    const resyncing = catchUp.resync === true || this.resyncing;
    if (!resyncing && unseen.length === 0 && cursor <= applied) return []; // redelivered: nothing new
    const out: QuarantineEntry[] = [];
    this.#transaction(() => {
      if (resyncing) this.#resync(changes, catchUp.resync === true);
      if (this.#schemaChanged()) out.push(...this.#catchUpSchema());
      out.push(...this.#applyRows(unseen));
      // What the batch brought may be what a quarantined row was missing (a parent row that a
      // foreign key needs, a freed unique value): those are tried again.
      if (unseen.length > 0) this.#retryQuarantined(RETRY_PER_BATCH);
      if (cursor > applied) {
        const engine = this.#engine;
        engine.execute('UPDATE __pocketsync_device_state SET server_cursor = ?, last_sync_at = ? WHERE id = 1', [cursor, Date.now()]);
        // Edits from now on were made at this cursor: their clocks are all after this one, also
        // after a reload, since the device state keeps it as the newest clock seen.
        const mark = engine.clock.now();
        engine.execute('INSERT OR REPLACE INTO __pocketsync_cursor_marks (clock, cursor) VALUES (?, ?)', [mark, cursor]);
        engine.execute(KEEP_CLOCK_SQL, [mark]);
        engine.execute(PRUNE_MARKS_SQL);
      }
      if (resyncing && catchUp.done === true) this.#endResync();
    });
    return out;
  }

  /**
   * A page of a re-sync: its rows are recorded as the server's (those at or below the cursor too,
   * which were applied before and are skipped). The page that starts one forgets what an earlier,
   * cut-off one had recorded.
   */
  #resync(changes: readonly RowChange[], starts: boolean): void {
    const engine = this.#engine;
    if (starts) {
      this.#setState('resync', 1);
      engine.execute('DELETE FROM __pocketsync_resync_seen');
    }
    const seen = changes.filter((change) => !change.deleted).map((change) => [change.table, change.row]);
    if (seen.length > 0) {
      engine.execute('INSERT OR IGNORE INTO __pocketsync_resync_seen (table_name, ps_global_id) SELECT value ->> 0, value ->> 1 FROM json_each(?)', [JSON.stringify(seen)]);
    }
  }

  /**
   * The re-sync sent every row the server holds: a synced row it did not send was deleted on the
   * server longer ago than its tombstones are kept, and goes, unless this device has a change of it
   * still to push or in its quarantine (its own write, which the server has yet to judge). Rows kept
   * for tables this version lacks go the same way.
   */
  #endResync(): void {
    const engine = this.#engine;
    engine.applyWithoutCapture(() => {
      for (const table of engine.syncedTables) {
        engine.execute(
          `DELETE FROM ${quoteIdentifier(table)} WHERE ps_global_id NOT IN (SELECT ps_global_id FROM __pocketsync_resync_seen WHERE table_name = ?1)
             AND ps_global_id NOT IN (SELECT ps_global_id FROM __pocketsync_changes WHERE table_name = ?1)
             AND ps_global_id NOT IN (SELECT ps_global_id FROM __pocketsync_quarantine WHERE table_name = ?1 AND direction = 'local')`,
          [table],
        );
      }
    });
    engine.execute('DELETE FROM __pocketsync_stash WHERE NOT EXISTS (SELECT 1 FROM __pocketsync_resync_seen AS s WHERE s.table_name = __pocketsync_stash.table_name AND s.ps_global_id = __pocketsync_stash.ps_global_id)');
    // A remote row held in the quarantine that the re-sync did not send is gone on the server too.
    engine.execute("DELETE FROM __pocketsync_quarantine WHERE direction = 'remote' AND NOT EXISTS (SELECT 1 FROM __pocketsync_resync_seen AS s WHERE s.table_name = __pocketsync_quarantine.table_name AND s.ps_global_id = __pocketsync_quarantine.ps_global_id)");
    engine.execute('DELETE FROM __pocketsync_resync_seen');
    engine.execute("DELETE FROM __pocketsync_replica_state WHERE key = 'resync'");
  }

  /**
   * After the schema changed (a migration, or DDL at runtime): applies what the stash holds for
   * tables and columns the schema now has, and tries the quarantined remote rows again, in one
   * transaction. Returns the entries newly quarantined (stashed rows the schema now refuses); a
   * quarantined row still refused keeps its entry.
   */
  afterSchemaChange(): QuarantineEntry[] {
    let out: QuarantineEntry[] = [];
    this.#transaction(() => {
      out = this.#catchUpSchema();
    });
    return out;
  }

  /** The schema changed since the stash and the quarantine were last tried against it. */
  #schemaChanged(): boolean {
    return this.#state('schema_cookie') !== this.#schemaCookie();
  }

  #schemaCookie(): number {
    return Number(this.#engine.query('PRAGMA schema_version')[0]?.schema_version ?? 0);
  }

  /** afterSchemaChange() inside the caller's transaction. */
  #catchUpSchema(): QuarantineEntry[] {
    const engine = this.#engine;
    const partial = new Set<RowChange>();
      const stashed = this.#stash.take(new Set(engine.syncedTables)).map((entry) => {
        const change: RowChange = { seq: entry.seq, table: entry.table, row: entry.row, deleted: false, values: entry.values, clocks: entry.clocks };
        if (!entry.whole) partial.add(change);
        return change;
      });
    const out = this.#applyRows(stashed, partial);
    this.#retryQuarantined(Number.MAX_SAFE_INTEGER);
    this.#setState('schema_cookie', this.#schemaCookie());
    return out;
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

  #state(key: string): SqlValue | undefined {
    return this.#engine.query('SELECT value FROM __pocketsync_replica_state WHERE key = ?', [key])[0]?.value;
  }

  #setState(key: string, value: SqlValue): void {
    this.#engine.execute('INSERT OR REPLACE INTO __pocketsync_replica_state (key, value) VALUES (?, ?)', [key, value]);
  }

  /** Copies a rejected change from the log into the quarantine (the caller removes it from the log). */
  #quarantineLocal(changeId: string, error: { kind: string; message: string }): QuarantineEntry | null {
    const rowid = this.#sent.get(changeId);
    const [row] = this.#engine.query(
      `INSERT INTO __pocketsync_quarantine (direction, table_name, ps_global_id, source, change, error_kind, error_message, at)
       SELECT 'local', table_name, ps_global_id, change_id, ${WIRE_CHANGE_SQL}, ?1, ?2, ?3 FROM __pocketsync_changes
       WHERE change_id = ?4${rowid === undefined ? '' : ' AND id = ?5'} RETURNING ${ENTRY_COLUMNS}`,
      rowid === undefined ? [error.kind, error.message, Date.now(), changeId] : [error.kind, error.message, Date.now(), changeId, rowid],
    );
    return row ? toEntry(row) : null;
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

  /**
   * Applies row changes, capture off, and keeps their newest clock; returns the rows the schema
   * refused, quarantined. What the batch needs from the database is read once, not per row.
   * `partial` rows (stashed columns) only update a row that exists.
   */
  #applyRows(changes: readonly RowChange[], partial: ReadonlySet<RowChange> = new Set()): QuarantineEntry[] {
    if (changes.length === 0) return [];
    const engine = this.#engine;
    let newest = '';
    for (const change of changes) {
      const clock = newestOf(change);
      if (clock > newest) newest = clock;
    }
    // Advancing past the newest clock of the batch is advancing past each of them; kept in the
    // device state too, where the engine restores its clock from after a reload.
    if (newest !== '') {
      engine.clock.receive(newest);
      engine.execute(KEEP_CLOCK_SQL, [newest]);
      engine.execute(KEEP_RECEIVED_SQL, [newest]);
    }
    return engine.applyWithoutCapture(() => {
      const whole = this.#batch(changes);
      try {
        engine.savepoint(() => {
          for (const change of changes) {
            this.#supersede(change, whole);
            this.#applyOne(change, whole, partial.has(change));
          }
        });
        return [];
      } catch (error) {
        if (!refused(error) || !engine.inTransaction) throw error;
      }
      // Something was refused: again, one row at a time, each under its own savepoint.
      const batch = this.#batch(changes);
      const out: QuarantineEntry[] = [];
      for (const change of changes) {
        this.#supersede(change, batch);
        try {
          engine.savepoint(() => this.#applyOne(change, batch, partial.has(change)));
        } catch (error) {
          if (!refused(error) || !engine.inTransaction) throw error;
          out.push(this.#quarantine.addRemote(change, { kind: ErrorKind.Database, message: error.message }));
        }
      }
      return out;
    });
  }

  /**
   * Applies quarantined remote rows again, oldest seq first, each under a savepoint: one that now
   * fits leaves the quarantine, one still refused keeps its entry. A later state of the row would
   * have superseded the entry, so what is quarantined is the newest the device has of the row.
   */
  #retryQuarantined(limit: number): void {
    const entries = this.#quarantine.remote(limit);
    if (entries.length === 0) return;
    const engine = this.#engine;
    const batch = this.#batch(entries.map((entry) => entry.change));
    engine.applyWithoutCapture(() => {
      for (const { id, change } of entries) {
        try {
          engine.savepoint(() => {
            this.#applyOne(change, batch, false);
            this.#quarantine.remove(id);
          });
        } catch (error) {
          if (!refused(error) || !engine.inTransaction) throw error;
        }
      }
    });
  }

  #batch(changes: readonly RowChange[]): Batch {
    return {
      synced: new Set(this.#engine.syncedTables),
      shapes: new Map(),
      pending: this.#pendingClocks(changes),
      stashed: this.#stash.keysOf(changes),
      quarantined: this.#quarantine.remoteKeysOf(changes),
    };
  }

  /** A newer state of a quarantined row supersedes the one that was refused. */
  #supersede(change: RowChange, batch: Batch): void {
    const key = rowKey(change.table, change.row);
    if (!batch.quarantined.delete(key)) return;
    this.#quarantine.supersede(change.table, change.row);
  }

  #applyOne(change: RowChange, batch: Batch, partial: boolean): void {
    const engine = this.#engine;
    const key = rowKey(change.table, change.row);
    if (change.deleted && batch.stashed.delete(key)) this.#stash.drop(change.table, change.row);
    if (!batch.synced.has(change.table)) {
      // A table this app version does not have (yet): kept whole for the version that adds it.
      if (!change.deleted) {
        this.#stash.put({ table: change.table, row: change.row, values: change.values ?? {}, clocks: change.clocks ?? {}, seq: change.seq, whole: true });
        batch.stashed.add(key);
      }
      return;
    }
    const local = batch.pending.get(key);
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
    let unknown: Record<string, ColumnValue> | null = null;
    for (const [column, value] of Object.entries(change.values ?? {})) {
      // A rowid table's INTEGER PRIMARY KEY is this device's rowid: two devices assign the same
      // numbers offline, so it never crosses over; rows are matched by ps_global_id.
      if (column === 'ps_global_id' || column === shape.localKey) continue;
      if (!shape.columns.has(column)) {
        // A column this app version does not have (yet): kept for the version that adds it.
        (unknown ??= {})[column] = value;
        continue;
      }
      columns.push(column);
      params.push(fromWire(value));
      const localClock = local?.columns.get(column);
      if (localClock === undefined || localClock <= (own(change.clocks, column) ?? '')) replaced.push(column);
    }
    if (unknown !== null) {
      this.#stash.put({ table: change.table, row: change.row, values: unknown, clocks: change.clocks ?? {}, seq: change.seq, whole: false });
      batch.stashed.add(key);
    }
    if (partial) {
      // Stashed columns of a row that came before: they update it, and never create it.
      if (replaced.length === 0) return;
      const set = replaced.map((column) => `${quoteIdentifier(column)} = ?`).join(', ');
      const values = replaced.map((column) => params[columns.indexOf(column)] as SqlValue);
      engine.execute(`UPDATE ${quoteIdentifier(change.table)} SET ${set} WHERE ps_global_id = ?`, [...values, change.row]);
      return;
    }
    params.push(change.row);
    engine.execute(upsertSql(change.table, columns, replaced, shape), params);
  }

  /**
   * A table's columns, and its INTEGER PRIMARY KEY if that is the rowid alias: only in a rowid
   * table; a WITHOUT ROWID table's INTEGER key is an ordinary column.
   */
  #tableShape(table: string): TableShape {
    const engine = this.#engine;
    const info = engine.query('SELECT name, type, pk FROM pragma_table_info(?)', [table]);
    const withoutRowid = Boolean(engine.query("SELECT wr FROM pragma_table_list WHERE schema = 'main' AND name = ?", [table])[0]?.wr);
    const keys = info.filter((c) => Number(c.pk) > 0);
    const [key] = keys;
    const localKey = !withoutRowid && keys.length === 1 && key && String(key.type).toUpperCase() === 'INTEGER' ? String(key.name) : null;
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

/**
 * What one batch reads once: synced tables, table shapes, the unacknowledged local writes, and
 * which of its rows are stashed or quarantined (kept up to date while the batch is applied).
 */
interface Batch {
  readonly synced: ReadonlySet<string>;
  readonly shapes: Map<string, TableShape>;
  readonly pending: ReadonlyMap<string, PendingClocks>;
  readonly stashed: Set<string>;
  readonly quarantined: Set<string>;
}

/** Quarantined remote rows tried again after each batch, at most (all of them after a schema change). */
const RETRY_PER_BATCH = 200;

/** SQLite refused the row (a constraint, a type): the row is at fault, not the batch. */
function refused(error: unknown): error is EngineError {
  return error instanceof EngineError && error.kind === ErrorKind.Database;
}

function newestOf(change: RowChange): string {
  return Object.values(change.clocks ?? {}).reduce((a, b) => (b > a ? b : a), change.deleteClock ?? '');
}

/** A wire value as SQLite takes it: BLOBs come as { $base16 }, integers beyond 2^53 as { $int }, infinities as { $real }. */
export function fromWire(value: ColumnValue): SqlValue {
  if (value !== null && typeof value === 'object') {
    if ('$int' in value) return BigInt(value.$int);
    if ('$real' in value) return value.$real === 'Infinity' ? Number.POSITIVE_INFINITY : Number.NEGATIVE_INFINITY;
    const hex = value.$base16;
    return Uint8Array.from({ length: hex.length / 2 }, (_, i) => parseInt(hex.slice(i * 2, i * 2 + 2), 16));
  }
  return value;
}
