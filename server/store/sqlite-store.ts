/**
 * The embedded store: one SQLite file (better-sqlite3, WAL) in the data directory. The default.
 *
 * better-sqlite3 is synchronous and this process holds the only connection, so a transaction is
 * never interleaved with another: that is the per-project lock the contract asks for, and seq
 * order is commit order. synchronous=FULL: a push is acknowledged only once its commit is on disk.
 */
import Database from 'better-sqlite3';
import type { ClientChange, PushResult, RowChange } from '../../lib/protocol/change.js';
import { record, type ColumnValue } from '../../lib/protocol/values.js';
import { hasUnseen, merge, type Conflict, type MergeContext, type RowState, type Strategy } from '../merge.js';
import type { Retention } from '../limits.js';
import {
  scopeOf,
  type CompactionResult,
  type DeviceContact,
  type DeviceRecord,
  type NewProject,
  type Project,
  type PullInput,
  type PullOutput,
  type PushInput,
  type PushOutput,
  type RowsInput,
  type RowsOutput,
  type ScopedRowChange,
  type ServiceKey,
  type Store,
  type StoredServiceKey,
} from './store.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS projects (
  id TEXT PRIMARY KEY,
  secret TEXT NOT NULL,
  strategy TEXT NOT NULL,
  shared_tables TEXT NOT NULL,
  last_seq INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  -- The highest seq of a tombstone removed by compaction: a device with an older cursor re-syncs.
  horizon INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS devices (
  project_id TEXT NOT NULL,
  device_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  cursor INTEGER NOT NULL DEFAULT 0,
  online INTEGER NOT NULL DEFAULT 0,
  first_seen INTEGER NOT NULL,
  last_seen INTEGER NOT NULL,
  PRIMARY KEY (project_id, device_id)
);
CREATE TABLE IF NOT EXISTS change_log (
  project_id TEXT NOT NULL,
  change_id TEXT NOT NULL,
  device_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  table_name TEXT NOT NULL,
  row_id TEXT NOT NULL,
  op TEXT NOT NULL,
  payload TEXT,
  clock TEXT NOT NULL,
  outcome TEXT NOT NULL,
  seq INTEGER,
  received_at INTEGER NOT NULL,
  PRIMARY KEY (project_id, device_id, change_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS row_state (
  project_id TEXT NOT NULL,
  scope TEXT NOT NULL,
  table_name TEXT NOT NULL,
  row_id TEXT NOT NULL,
  vals TEXT NOT NULL,
  clocks TEXT NOT NULL,
  seqs TEXT NOT NULL,
  deleted INTEGER NOT NULL,
  delete_clock TEXT,
  last_seq INTEGER NOT NULL,
  -- When the row last changed (ms): a deleted row's tombstone is kept for the retention after it.
  changed_at INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (project_id, scope, table_name, row_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS service_keys (
  id TEXT PRIMARY KEY,
  project_id TEXT NOT NULL,
  name TEXT NOT NULL,
  hash TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS service_keys_by_project ON service_keys (project_id, created_at);
CREATE INDEX IF NOT EXISTS row_state_by_seq ON row_state (project_id, scope, last_seq);
CREATE TABLE IF NOT EXISTS conflicts (
  id INTEGER PRIMARY KEY,
  project_id TEXT NOT NULL,
  table_name TEXT NOT NULL,
  row_id TEXT NOT NULL,
  column_name TEXT,
  rule TEXT NOT NULL,
  losing TEXT NOT NULL,
  winning TEXT NOT NULL,
  at INTEGER NOT NULL,
  -- The change whose merge recorded it (NULL for conflicts recorded before this column existed).
  change_id TEXT,
  device_id TEXT
);
`;

/**
 * Brings a store made by an earlier version up to this schema, at open: columns added since, the
 * change log keyed per device (it was per project, so one user's change id could answer another's
 * with 'duplicate'), and the indexes compaction and the re-push's conflicts read by.
 */
function upgradeSchema(db: Database.Database): void {
  const columnsOf = (table: string) => new Set((db.prepare(`SELECT name FROM pragma_table_info('${table}')`).all() as { name: string }[]).map((c) => c.name));
  const conflicts = columnsOf('conflicts');
  if (!conflicts.has('change_id')) db.exec('ALTER TABLE conflicts ADD COLUMN change_id TEXT');
  if (!conflicts.has('device_id')) db.exec('ALTER TABLE conflicts ADD COLUMN device_id TEXT');
  if (!columnsOf('row_state').has('changed_at')) {
    // Tombstones of before are kept a whole retention from now, not forgotten at the first compaction.
    db.exec('ALTER TABLE row_state ADD COLUMN changed_at INTEGER NOT NULL DEFAULT 0');
    db.prepare('UPDATE row_state SET changed_at = ? WHERE deleted = 1').run(Date.now());
  }
  if (!columnsOf('projects').has('horizon')) db.exec('ALTER TABLE projects ADD COLUMN horizon INTEGER NOT NULL DEFAULT 0');
  const changeLog = db.prepare("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'change_log'").pluck().get() as string;
  if (!/PRIMARY KEY \(project_id, device_id, change_id\)/.test(changeLog)) {
    db.transaction(() => {
      db.exec('ALTER TABLE change_log RENAME TO change_log_by_project');
      db.exec(SCHEMA);
      db.exec('INSERT INTO change_log SELECT * FROM change_log_by_project');
      db.exec('DROP TABLE change_log_by_project');
    })();
  }
  db.exec(`
    DROP INDEX IF EXISTS conflicts_by_change;
    CREATE INDEX IF NOT EXISTS conflicts_by_device_change ON conflicts (project_id, device_id, change_id);
    CREATE INDEX IF NOT EXISTS conflicts_by_time ON conflicts (at);
    CREATE INDEX IF NOT EXISTS change_log_by_time ON change_log (received_at);
    CREATE INDEX IF NOT EXISTS row_state_tombstones ON row_state (changed_at) WHERE deleted = 1;
  `);
}

/** Rows removed per compaction statement: each chunk is one short transaction. */
const COMPACT_CHUNK = 5000;
/** How long device contacts wait to be written together. */
const TOUCH_FLUSH_MS = 250;
const MAX_CACHED_OWNERS = 100_000;

interface ConflictRecord {
  table_name: string;
  row_id: string;
  column_name: string | null;
  rule: string;
  losing: string;
  winning: string;
}

interface RowStateRecord {
  vals: string;
  clocks: string;
  seqs: string;
  deleted: number;
  delete_clock: string | null;
  last_seq: number;
}

export class SqliteStore implements Store {
  readonly #db: Database.Database;
  readonly #statements;
  readonly #pullCache = new Map<string, { page: Database.Statement; count: Database.Statement }>();
  readonly #rowsCache = new Map<string, Database.Statement>();
  /** Who each device seen belongs to (bindings never change). */
  readonly #owners = new Map<string, string>();
  /** Device contacts not yet written (see #touchDevice). */
  readonly #touches = new Map<string, DeviceContact & { at: number }>();
  #touchTimer: ReturnType<typeof setTimeout> | null = null;

  /** Opens (creating when needed) the store at `file`; ':memory:' for tests. */
  constructor(file: string) {
    this.#db = new Database(file);
    this.#db.pragma('journal_mode = WAL');
    this.#db.pragma('synchronous = FULL');
    this.#db.pragma('cache_size = -65536');
    this.#db.exec(SCHEMA);
    upgradeSchema(this.#db);
    const db = this.#db;
    this.#statements = {
      insertProject: db.prepare('INSERT INTO projects (id, secret, strategy, shared_tables, created_at) VALUES (?, ?, ?, ?, ?)'),
      project: db.prepare('SELECT id, secret, strategy, shared_tables, created_at FROM projects WHERE id = ?'),
      lastSeq: db.prepare('SELECT last_seq FROM projects WHERE id = ?').pluck(),
      setLastSeq: db.prepare('UPDATE projects SET last_seq = ? WHERE id = ?'),
      seenChange: db.prepare('SELECT seq FROM change_log WHERE project_id = ? AND device_id = ? AND change_id = ?'),
      logChange: db.prepare(
        `INSERT INTO change_log (project_id, change_id, device_id, user_id, table_name, row_id, op, payload, clock, outcome, seq, received_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (project_id, device_id, change_id) DO NOTHING`,
      ),
      rowState: db.prepare('SELECT vals, clocks, seqs, deleted, delete_clock, last_seq FROM row_state WHERE project_id = ? AND scope = ? AND table_name = ? AND row_id = ?'),
      upsertRow: db.prepare(
        `INSERT INTO row_state (project_id, scope, table_name, row_id, vals, clocks, seqs, deleted, delete_clock, last_seq, changed_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (project_id, scope, table_name, row_id) DO UPDATE SET
           vals = excluded.vals, clocks = excluded.clocks, seqs = excluded.seqs, deleted = excluded.deleted,
           delete_clock = excluded.delete_clock, last_seq = excluded.last_seq, changed_at = excluded.changed_at`,
      ),
      conflictsOfChange: db.prepare(
        'SELECT table_name, row_id, column_name, rule, losing, winning FROM conflicts WHERE project_id = ? AND device_id = ? AND change_id = ? ORDER BY id',
      ),
      insertConflict: db.prepare(
        'INSERT INTO conflicts (project_id, table_name, row_id, column_name, rule, losing, winning, at, change_id, device_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
      ),
      touchDevice: db.prepare(
        `INSERT INTO devices (project_id, device_id, user_id, cursor, online, first_seen, last_seen) VALUES (@projectId, @deviceId, @userId, coalesce(@cursor, 0), coalesce(@online, 0), @now, @now)
         ON CONFLICT (project_id, device_id) DO UPDATE SET last_seen = excluded.last_seen,
           cursor = coalesce(@cursor, cursor), online = coalesce(@online, online)
         WHERE devices.user_id = excluded.user_id`,
      ),
      devices: db.prepare('SELECT project_id, device_id, user_id, cursor, online, first_seen, last_seen FROM devices WHERE project_id = ? ORDER BY last_seen DESC'),
      deviceOwner: db.prepare('SELECT user_id FROM devices WHERE project_id = ? AND device_id = ?').pluck(),
      horizon: db.prepare('SELECT horizon FROM projects WHERE id = ?').pluck(),
      insertServiceKey: db.prepare('INSERT INTO service_keys (id, project_id, name, hash, created_at) VALUES (?, ?, ?, ?, ?)'),
      serviceKey: db.prepare('SELECT id, project_id, name, hash, created_at FROM service_keys WHERE id = ?'),
      serviceKeys: db.prepare('SELECT id, project_id, name, created_at FROM service_keys WHERE project_id = ? ORDER BY created_at, id'),
      deleteServiceKey: db.prepare('DELETE FROM service_keys WHERE project_id = ? AND id = ?'),
      raiseHorizon: db.prepare('UPDATE projects SET horizon = max(horizon, ?) WHERE id = ?'),
      compactChanges: db.prepare(
        'DELETE FROM change_log WHERE (project_id, device_id, change_id) IN (SELECT project_id, device_id, change_id FROM change_log WHERE received_at < ? LIMIT ?)',
      ),
      compactConflicts: db.prepare('DELETE FROM conflicts WHERE id IN (SELECT id FROM conflicts WHERE at < ? LIMIT ?)'),
      compactTombstones: db.prepare(
        `DELETE FROM row_state WHERE (project_id, scope, table_name, row_id) IN
           (SELECT project_id, scope, table_name, row_id FROM row_state WHERE deleted = 1 AND changed_at < ? LIMIT ?)
         RETURNING project_id, last_seq`,
      ),
    };
  }

  createProject(project: NewProject): Promise<Project> {
    return settle(() => this.#createProject(project));
  }

  #createProject(project: NewProject): Project {
    const record: Project = {
      id: project.id,
      secret: project.secret,
      strategy: project.strategy ?? 'column-lww',
      sharedTables: [...(project.sharedTables ?? [])],
      createdAt: Date.now(),
    };
    this.#statements.insertProject.run(record.id, record.secret, record.strategy, JSON.stringify(record.sharedTables), record.createdAt);
    return record;
  }

  getProject(id: string): Promise<Project | null> {
    return settle(() => this.#project(id));
  }

  #project(id: string): Project | null {
    const row = this.#statements.project.get(id) as
      | { id: string; secret: string; strategy: Strategy; shared_tables: string; created_at: number }
      | undefined;
    if (!row) return null;
    return { id: row.id, secret: row.secret, strategy: row.strategy, sharedTables: JSON.parse(row.shared_tables) as string[], createdAt: row.created_at };
  }

  touchDevice(contact: DeviceContact): Promise<boolean> {
    return settle(() => this.#touchDevice(contact));
  }

  /**
   * A device's first contact binds it to its user at once, in its own commit. Later contacts
   * (last seen, cursor, online) are gathered and written together within TOUCH_FLUSH_MS: a hello
   * then costs no commit of its own, and the binding, which never changes, is answered from memory.
   */
  #touchDevice(contact: DeviceContact): boolean {
    const key = `${contact.projectId}\u0000${contact.deviceId}`;
    let owner = this.#owners.get(key);
    if (owner === undefined) {
      owner = (this.#statements.deviceOwner.get(contact.projectId, contact.deviceId) as string | undefined) ?? contact.userId;
      if (this.#owners.size >= MAX_CACHED_OWNERS) this.#owners.clear();
      this.#owners.set(key, owner);
      if (owner === contact.userId && !this.#touches.has(key)) {
        // The upsert's WHERE leaves another user's device untouched: then no row changed.
        return this.#writeTouch(contact, Date.now());
      }
    }
    if (owner !== contact.userId) return false;
    const pending = this.#touches.get(key);
    this.#touches.set(key, {
      ...contact,
      ...(contact.cursor === undefined && pending?.cursor !== undefined ? { cursor: pending.cursor } : {}),
      ...(contact.online === undefined && pending?.online !== undefined ? { online: pending.online } : {}),
      at: Date.now(),
    });
    this.#touchTimer ??= setTimeout(() => {
      try {
        this.#flushTouches();
      } catch (error) {
        // Last-seen times and cursors only: lost, and written again at the device's next contact.
        console.error(JSON.stringify({ event: 'error', kind: 'internal', message: `device contacts were not written: ${String(error)}` }));
      }
    }, TOUCH_FLUSH_MS);
    return true;
  }

  #writeTouch(contact: DeviceContact, now: number): boolean {
    const { changes } = this.#statements.touchDevice.run({
      projectId: contact.projectId,
      deviceId: contact.deviceId,
      userId: contact.userId,
      cursor: contact.cursor ?? null,
      online: contact.online === undefined ? null : contact.online ? 1 : 0,
      now,
    });
    return changes === 1;
  }

  #flushTouches(): void {
    if (this.#touchTimer) clearTimeout(this.#touchTimer);
    this.#touchTimer = null;
    if (this.#touches.size === 0 || !this.#db.open) return;
    const touches = [...this.#touches.values()];
    this.#touches.clear();
    this.#db.transaction(() => {
      for (const touch of touches) this.#writeTouch(touch, touch.at);
    })();
  }

  listDevices(projectId: string): Promise<DeviceRecord[]> {
    return settle(() => this.#listDevices(projectId));
  }

  #listDevices(projectId: string): DeviceRecord[] {
    this.#flushTouches();
    const rows = this.#statements.devices.all(projectId) as Array<{
      project_id: string; device_id: string; user_id: string; cursor: number; online: number; first_seen: number; last_seen: number;
    }>;
    return rows.map((r) => ({ projectId: r.project_id, deviceId: r.device_id, userId: r.user_id, cursor: r.cursor, online: r.online === 1, firstSeen: r.first_seen, lastSeen: r.last_seen }));
  }

  push(input: PushInput): Promise<PushOutput> {
    return settle(() => this.#push(input));
  }

  #push(input: PushInput): PushOutput {
    const s = this.#statements;
    const run = this.#db.transaction((): PushOutput => {
      const project = this.#project(input.projectId);
      if (!project) throw new Error(`no such project: ${input.projectId}`);
      let seq = s.lastSeq.get(project.id) as number;
      const now = Date.now();
      const context: MergeContext = { strategy: project.strategy, deviceCursor: input.deviceCursor, resolver: input.resolver };
      // Under any rule but clock order the device cannot tell what the server decided: every row goes back.
      const everyRow = project.strategy === 'server-wins' || project.strategy === 'client-wins' || input.resolver !== undefined;
      const results: PushResult[] = [];
      const conflicts: Conflict[] = [];
      const touched = new Map<string, ScopedRowChange>();
      // The rows of this push as they stand (read once, then kept current), and those the ack returns.
      const states = new Map<string, RowState | null>();
      const returned = new Map<string, { table: string; row: string }>();
      for (const change of input.changes) {
        const scope = scopeOf(project, change.table, input.userId);
        const key = `${scope}\u0000${change.table}\u0000${change.row}`;
        const current = states.has(key) ? (states.get(key) ?? null) : this.#rowState(project.id, scope, change);
        const result = merge(current, change, seq + 1, context);
        const changeSeq = result.effective ? seq + 1 : null;
        const outcome = result.effective ? 'applied' : 'superseded';
        const payload = change.values === undefined ? null : JSON.stringify(change.values);
        // The change log's primary key is the idempotency check: a change id seen before is not
        // logged again, and its merge result is thrown away (nothing else was written yet).
        const logged = s.logChange.run(project.id, change.id, input.deviceId, input.userId, change.table, change.row, change.op, payload, change.clock, outcome, changeSeq, now);
        if (logged.changes === 0) {
          const seen = s.seenChange.get(project.id, input.deviceId, change.id) as { seq: number | null };
          results.push({ id: change.id, outcome: 'duplicate', seq: seen.seq });
          // Its first ack may have been lost, with the row state the device needed and the
          // conflicts it was to be told of.
          states.set(key, current);
          if (current !== null) returned.set(key, change);
          conflicts.push(...this.#conflictsOf(project.id, input.deviceId, change));
          continue;
        }
        if (changeSeq !== null) seq = changeSeq;
        if (result.effective || result.state !== current) {
          // A new row's values are exactly the change's: reuse that JSON instead of writing it twice.
          const values = current === null && payload !== null && !result.state.deleted ? payload : JSON.stringify(result.state.values);
          this.#saveRow(project, scope, change, result.state, values, now);
        }
        states.set(key, result.state);
        for (const conflict of result.conflicts) {
          s.insertConflict.run(project.id, conflict.table, conflict.row, conflict.column, conflict.rule, JSON.stringify(conflict.losing), JSON.stringify(conflict.winning), now, change.id, input.deviceId);
        }
        conflicts.push(...result.conflicts);
        results.push({ id: change.id, outcome, seq: changeSeq });
        // What the device derives from its own write and what it had applied, unless something here says otherwise.
        const derivable = !everyRow && result.conflicts.length === 0 && (current === null || (!current.deleted && !hasUnseen(current, change, context)));
        if (!derivable) returned.set(key, change);
        if (changeSeq !== null) {
          touched.delete(key); // re-insert so the map stays in seq order
          touched.set(key, { scope, ...toRowChange(change.table, change.row, result.state) });
        }
      }
      s.setLastSeq.run(seq, project.id);
      const rows = [...returned].flatMap(([key, { table, row }]) => {
        const state = states.get(key);
        return state ? [toRowChange(table, row, state)] : [];
      });
      return { results, effective: [...touched.values()], conflicts, rows };
    });
    return run.immediate();
  }

  /** The conflicts recorded when `change` was first merged (for the ack of its re-push). */
  #conflictsOf(projectId: string, deviceId: string, change: ClientChange): Conflict[] {
    const rows = this.#statements.conflictsOfChange.all(projectId, deviceId, change.id) as ConflictRecord[];
    return rows.map((row) => ({
      table: row.table_name,
      row: row.row_id,
      column: row.column_name,
      rule: row.rule as Conflict['rule'],
      losing: JSON.parse(row.losing) as Conflict['losing'],
      winning: JSON.parse(row.winning) as Conflict['winning'],
    }));
  }

  #rowState(projectId: string, scope: string, change: ClientChange): RowState | null {
    const row = this.#statements.rowState.get(projectId, scope, change.table, change.row) as RowStateRecord | undefined;
    if (!row) return null;
    return {
      values: record(JSON.parse(row.vals) as Record<string, ColumnValue>),
      clocks: record(JSON.parse(row.clocks) as Record<string, string>),
      seqs: record(JSON.parse(row.seqs) as Record<string, number>),
      lastSeq: row.last_seq,
      deleted: row.deleted === 1,
      deleteClock: row.delete_clock,
    };
  }

  #saveRow(project: Project, scope: string, change: ClientChange, state: RowState, values: string, now: number): void {
    this.#statements.upsertRow.run(project.id, scope, change.table, change.row, values, JSON.stringify(state.clocks), JSON.stringify(state.seqs),
      state.deleted ? 1 : 0, state.deleteClock, state.lastSeq, now);
  }

  pull(input: PullInput): Promise<PullOutput> {
    return settle(() => this.#pull(input));
  }

  #pull(input: PullInput): PullOutput {
    const db = this.#db;
    const read = db.transaction((): PullOutput => {
      // A cursor older than the tombstone horizon may stand for rows whose deletes were forgotten:
      // the catch-up starts over from 0 as a re-sync (a fresh device at 0 holds no rows to drop).
      const horizon = (this.#statements.horizon.get(input.projectId) as number | undefined) ?? 0;
      const fresh = input.fresh === true && input.cursor === 0;
      const checked = input.continuing === true ? input.since : input.cursor;
      const resync = !fresh && checked !== undefined && checked < horizon;
      const from = resync ? 0 : input.cursor;
      // A fresh device's first page may leave deletes out: it holds none of those rows. Every other
      // page sends them, a re-sync's too (a row of an earlier page may be deleted meanwhile), so the
      // count of what remains includes them on every page, and done + remaining stays one total.
      const { page, count } = this.#pullStatements(input.scopes.length, fresh);
      const perScope = input.scopes.flatMap((scope) => [input.projectId, scope, from, input.limit + 1]);
      const rows = page.all(...perScope, input.limit + 1) as Array<Omit<RowStateRecord, 'seqs'> & { table_name: string; row_id: string }>;
      const hasMore = rows.length > input.limit;
      const batch = rows.slice(0, input.limit);
      const changes = batch.map((r) => storedRowChange(r.table_name, r.row_id, r));
      const last = batch.at(-1)?.last_seq;
      const cursor = hasMore && last !== undefined ? last : ((this.#statements.lastSeq.get(input.projectId) as number | undefined) ?? from);
      const remaining = !hasMore
        ? 0
        : input.remaining !== undefined && !resync
          ? Math.max(0, input.remaining - batch.length)
          : (count.get(...input.scopes.flatMap((scope) => [input.projectId, scope, cursor])) as number);
      return { changes, cursor, hasMore, remaining, ...(resync ? { resync: true } : {}) };
    });
    return read.deferred();
  }

  /**
   * The catch-up statements for a number of scopes, prepared once per shape. Each scope is read
   * by its own range of the (project, scope, last_seq) index, already in seq order, and the ranges
   * are merged: no scan of the project, no sort, whatever the cursor.
   */
  #pullStatements(scopeCount: number, skipDeletes: boolean): { page: Database.Statement; count: Database.Statement } {
    const key = `${scopeCount}:${skipDeletes}`;
    let statements = this.#pullCache.get(key);
    if (!statements) {
      const range = 'project_id = ? AND scope = ? AND last_seq > ?';
      const columns = 'table_name, row_id, vals, clocks, deleted, delete_clock, last_seq';
      const scopePage = `SELECT * FROM (SELECT ${columns} FROM row_state WHERE ${range}${skipDeletes ? ' AND deleted = 0' : ''} ORDER BY last_seq LIMIT ?)`;
      const scopeCount_ = `(SELECT count(*) FROM row_state WHERE ${range})`;
      statements = {
        page: this.#db.prepare(`${Array.from({ length: scopeCount }, () => scopePage).join(' UNION ALL ')} ORDER BY last_seq LIMIT ?`),
        count: this.#db.prepare(`SELECT ${Array.from({ length: scopeCount }, () => scopeCount_).join(' + ')}`).pluck(),
      };
      this.#pullCache.set(key, statements);
    }
    return statements;
  }

  async compact(retention: Retention, now = Date.now()): Promise<CompactionResult> {
    this.#flushTouches();
    const s = this.#statements;
    const result = { changes: 0, conflicts: 0, tombstones: 0 };
    // In chunks, each its own short transaction, with the event loop let go in between: a large
    // backlog never holds up a request for long.
    const chunks = async (run: () => number): Promise<number> => {
      let total = 0;
      for (;;) {
        const done = run();
        total += done;
        if (done < COMPACT_CHUNK || !this.#db.open) return total;
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    };
    result.changes = await chunks(() => s.compactChanges.run(now - retention.changeLogMs, COMPACT_CHUNK).changes);
    result.conflicts = await chunks(() => s.compactConflicts.run(now - retention.conflictsMs, COMPACT_CHUNK).changes);
    result.tombstones = await chunks(
      this.#db.transaction(() => {
        const removed = s.compactTombstones.all(now - retention.tombstonesMs, COMPACT_CHUNK) as Array<{ project_id: string; last_seq: number }>;
        const horizons = new Map<string, number>();
        for (const row of removed) horizons.set(row.project_id, Math.max(horizons.get(row.project_id) ?? 0, row.last_seq));
        for (const [projectId, horizon] of horizons) s.raiseHorizon.run(horizon, projectId);
        return removed.length;
      }),
    );
    return result;
  }

  rows(input: RowsInput): Promise<RowsOutput> {
    return settle(() => this.#rows(input));
  }

  #rows(input: RowsInput): RowsOutput {
    const alive = input.includeDeleted === true ? '' : ' AND deleted = 0';
    const which = input.ids !== undefined ? ' AND row_id IN (SELECT value FROM json_each(?))' : ' AND row_id > ?';
    const key = `rows:${alive}:${which}`;
    let statement = this.#rowsCache.get(key);
    if (!statement) {
      statement = this.#db.prepare(
        `SELECT row_id, vals, clocks, deleted, delete_clock, last_seq FROM row_state
         WHERE project_id = ? AND scope = ? AND table_name = ?${which}${alive} ORDER BY row_id LIMIT ?`,
      );
      this.#rowsCache.set(key, statement);
    }
    const from = input.ids !== undefined ? JSON.stringify(input.ids) : (input.after ?? '');
    const found = statement.all(input.projectId, input.scope, input.table, from, input.limit + 1) as Array<Omit<RowStateRecord, 'seqs'> & { row_id: string }>;
    const rows = found.slice(0, input.limit).map((r) => storedRowChange(input.table, r.row_id, r));
    return { rows, hasMore: found.length > input.limit };
  }

  createServiceKey(key: Omit<StoredServiceKey, 'createdAt'>): Promise<ServiceKey> {
    return settle(() => {
      const createdAt = Date.now();
      this.#statements.insertServiceKey.run(key.id, key.projectId, key.name, key.hash, createdAt);
      return { id: key.id, projectId: key.projectId, name: key.name, createdAt };
    });
  }

  serviceKey(id: string): Promise<StoredServiceKey | null> {
    return settle(() => {
      const row = this.#statements.serviceKey.get(id) as { id: string; project_id: string; name: string; hash: string; created_at: number } | undefined;
      return row ? { id: row.id, projectId: row.project_id, name: row.name, hash: row.hash, createdAt: row.created_at } : null;
    });
  }

  listServiceKeys(projectId: string): Promise<ServiceKey[]> {
    return settle(() => {
      const rows = this.#statements.serviceKeys.all(projectId) as Array<{ id: string; project_id: string; name: string; created_at: number }>;
      return rows.map((row) => ({ id: row.id, projectId: row.project_id, name: row.name, createdAt: row.created_at }));
    });
  }

  deleteServiceKey(projectId: string, id: string): Promise<boolean> {
    return settle(() => this.#statements.deleteServiceKey.run(projectId, id).changes === 1);
  }

  currentSeq(projectId: string): Promise<number> {
    return settle(() => (this.#statements.lastSeq.get(projectId) as number | undefined) ?? 0);
  }

  close(): Promise<void> {
    return settle(() => {
      if (!this.#db.open) return;
      this.#flushTouches();
      this.#db.close();
    });
  }
}

/** Runs synchronous store work and hands back a promise, with a throw becoming a rejection. */
function settle<T>(work: () => T): Promise<T> {
  return new Promise((resolve) => resolve(work()));
}

/** A stored row as it goes out (a catch-up page, a backend read): no per-column seqs needed. */
function storedRowChange(table: string, row: string, r: Omit<RowStateRecord, 'seqs'>): RowChange {
  return toRowChange(table, row, {
    values: JSON.parse(r.vals) as Record<string, ColumnValue>,
    clocks: JSON.parse(r.clocks) as Record<string, string>,
    seqs: {},
    lastSeq: r.last_seq,
    deleted: r.deleted === 1,
    deleteClock: r.delete_clock,
  });
}

function toRowChange(table: string, row: string, state: RowState): RowChange {
  const seq = state.lastSeq;
  return state.deleted
    ? { seq, table, row, deleted: true, ...(state.deleteClock !== null ? { deleteClock: state.deleteClock } : {}) }
    : { seq, table, row, deleted: false, values: state.values, clocks: state.clocks };
}
