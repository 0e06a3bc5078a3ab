/**
 * The embedded store: one SQLite file (better-sqlite3, WAL) in the data directory. The default.
 *
 * better-sqlite3 is synchronous and this process holds the only connection, so a transaction is
 * never interleaved with another: that is the per-project lock the contract asks for, and seq
 * order is commit order. synchronous=FULL: a push is acknowledged only once its commit is on disk.
 */
import Database from 'better-sqlite3';
import type { ClientChange, PushResult, RowChange } from '../../lib/protocol/change.js';
import type { ColumnValue } from '../../lib/protocol/values.js';
import { hasUnseen, merge, type Conflict, type MergeContext, type RowState, type Strategy } from '../merge.js';
import {
  scopeOf,
  type DeviceContact,
  type DeviceRecord,
  type NewProject,
  type Project,
  type PullInput,
  type PullOutput,
  type PushInput,
  type PushOutput,
  type ScopedRowChange,
  type Store,
} from './store.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS projects (
  id TEXT PRIMARY KEY,
  secret TEXT NOT NULL,
  strategy TEXT NOT NULL,
  shared_tables TEXT NOT NULL,
  last_seq INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL
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
  PRIMARY KEY (project_id, change_id)
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
  PRIMARY KEY (project_id, scope, table_name, row_id)
) WITHOUT ROWID;
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
  change_id TEXT
);
`;

/** Stores made before conflicts knew their change get the column and its index at open. */
function upgradeSchema(db: Database.Database): void {
  const columns = db.prepare("SELECT name FROM pragma_table_info('conflicts')").all() as { name: string }[];
  if (!columns.some((c) => c.name === 'change_id')) db.exec('ALTER TABLE conflicts ADD COLUMN change_id TEXT');
  db.exec('CREATE INDEX IF NOT EXISTS conflicts_by_change ON conflicts (project_id, change_id)');
}

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
      seenChange: db.prepare('SELECT seq FROM change_log WHERE project_id = ? AND change_id = ?'),
      logChange: db.prepare(
        `INSERT INTO change_log (project_id, change_id, device_id, user_id, table_name, row_id, op, payload, clock, outcome, seq, received_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (project_id, change_id) DO NOTHING`,
      ),
      rowState: db.prepare('SELECT vals, clocks, seqs, deleted, delete_clock, last_seq FROM row_state WHERE project_id = ? AND scope = ? AND table_name = ? AND row_id = ?'),
      upsertRow: db.prepare(
        `INSERT INTO row_state (project_id, scope, table_name, row_id, vals, clocks, seqs, deleted, delete_clock, last_seq)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (project_id, scope, table_name, row_id) DO UPDATE SET
           vals = excluded.vals, clocks = excluded.clocks, seqs = excluded.seqs, deleted = excluded.deleted,
           delete_clock = excluded.delete_clock, last_seq = excluded.last_seq`,
      ),
      conflictsOfChange: db.prepare(
        'SELECT table_name, row_id, column_name, rule, losing, winning FROM conflicts WHERE project_id = ? AND change_id = ? ORDER BY id',
      ),
      insertConflict: db.prepare(
        'INSERT INTO conflicts (project_id, table_name, row_id, column_name, rule, losing, winning, at, change_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
      ),
      touchDevice: db.prepare(
        `INSERT INTO devices (project_id, device_id, user_id, cursor, online, first_seen, last_seen) VALUES (@projectId, @deviceId, @userId, coalesce(@cursor, 0), coalesce(@online, 0), @now, @now)
         ON CONFLICT (project_id, device_id) DO UPDATE SET last_seen = excluded.last_seen,
           cursor = coalesce(@cursor, cursor), online = coalesce(@online, online)
         WHERE devices.user_id = excluded.user_id`,
      ),
      devices: db.prepare('SELECT project_id, device_id, user_id, cursor, online, first_seen, last_seen FROM devices WHERE project_id = ? ORDER BY last_seen DESC'),
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

  #touchDevice(contact: DeviceContact): boolean {
    // The upsert's WHERE leaves another user's device untouched: then no row changed.
    const { changes } = this.#statements.touchDevice.run({
      projectId: contact.projectId,
      deviceId: contact.deviceId,
      userId: contact.userId,
      cursor: contact.cursor ?? null,
      online: contact.online === undefined ? null : contact.online ? 1 : 0,
      now: Date.now(),
    });
    return changes === 1;
  }

  listDevices(projectId: string): Promise<DeviceRecord[]> {
    return settle(() => this.#listDevices(projectId));
  }

  #listDevices(projectId: string): DeviceRecord[] {
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
          const seen = s.seenChange.get(project.id, change.id) as { seq: number | null };
          results.push({ id: change.id, outcome: 'duplicate', seq: seen.seq });
          // Its first ack may have been lost, with the row state the device needed and the
          // conflicts it was to be told of.
          states.set(key, current);
          if (current !== null) returned.set(key, change);
          conflicts.push(...this.#conflictsOf(project.id, change));
          continue;
        }
        if (changeSeq !== null) seq = changeSeq;
        if (result.effective || result.state !== current) {
          // A new row's values are exactly the change's: reuse that JSON instead of writing it twice.
          const values = current === null && payload !== null && !result.state.deleted ? payload : JSON.stringify(result.state.values);
          this.#saveRow(project, scope, change, result.state, values);
        }
        states.set(key, result.state);
        for (const conflict of result.conflicts) {
          s.insertConflict.run(project.id, conflict.table, conflict.row, conflict.column, conflict.rule, JSON.stringify(conflict.losing), JSON.stringify(conflict.winning), now, change.id);
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
  #conflictsOf(projectId: string, change: ClientChange): Conflict[] {
    const rows = this.#statements.conflictsOfChange.all(projectId, change.id) as ConflictRecord[];
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
      values: JSON.parse(row.vals) as Record<string, ColumnValue>,
      clocks: JSON.parse(row.clocks) as Record<string, string>,
      seqs: JSON.parse(row.seqs) as Record<string, number>,
      lastSeq: row.last_seq,
      deleted: row.deleted === 1,
      deleteClock: row.delete_clock,
    };
  }

  #saveRow(project: Project, scope: string, change: ClientChange, state: RowState, values: string): void {
    this.#statements.upsertRow.run(project.id, scope, change.table, change.row, values, JSON.stringify(state.clocks), JSON.stringify(state.seqs),
      state.deleted ? 1 : 0, state.deleteClock, state.lastSeq);
  }

  pull(input: PullInput): Promise<PullOutput> {
    return settle(() => this.#pull(input));
  }

  #pull(input: PullInput): PullOutput {
    const db = this.#db;
    const read = db.transaction((): PullOutput => {
      // Only a fresh device's first page may leave deletes out: it holds none of those rows. Every
      // later page sends them (a row of the first page may be deleted meanwhile), so the count of
      // what remains includes them on every page, and done + remaining stays one total.
      const { page, count } = this.#pullStatements(input.scopes.length, input.cursor === 0 && input.fresh === true);
      const rows = page.all(input.projectId, ...input.scopes, input.cursor, input.limit + 1) as Array<
        Omit<RowStateRecord, 'seqs'> & { table_name: string; row_id: string }
      >;
      const hasMore = rows.length > input.limit;
      const batch = rows.slice(0, input.limit);
      const changes = batch.map((r) =>
        toRowChange(r.table_name, r.row_id, { values: JSON.parse(r.vals) as Record<string, ColumnValue>, clocks: JSON.parse(r.clocks) as Record<string, string>, seqs: {}, lastSeq: r.last_seq, deleted: r.deleted === 1, deleteClock: r.delete_clock }),
      );
      const last = batch.at(-1)?.last_seq;
      const cursor = hasMore && last !== undefined ? last : ((this.#statements.lastSeq.get(input.projectId) as number | undefined) ?? input.cursor);
      const remaining = hasMore
        ? (count.get(input.projectId, ...input.scopes, cursor) as number)
        : 0;
      return { changes, cursor, hasMore, remaining };
    });
    return read.deferred();
  }

  /** The catch-up statements for a number of scopes, with or without deleted rows, prepared once. */
  #pullStatements(scopeCount: number, skipDeletes: boolean): { page: Database.Statement; count: Database.Statement } {
    const key = `${scopeCount}:${skipDeletes}`;
    let statements = this.#pullCache.get(key);
    if (!statements) {
      const scopes = Array.from({ length: scopeCount }, () => '?').join(', ');
      const where = `project_id = ? AND scope IN (${scopes}) AND last_seq > ?`;
      statements = {
        page: this.#db.prepare(`SELECT table_name, row_id, vals, clocks, deleted, delete_clock, last_seq FROM row_state WHERE ${where}${skipDeletes ? ' AND deleted = 0' : ''} ORDER BY last_seq LIMIT ?`),
        count: this.#db.prepare(`SELECT count(*) FROM row_state WHERE ${where}`).pluck(),
      };
      this.#pullCache.set(key, statements);
    }
    return statements;
  }

  currentSeq(projectId: string): Promise<number> {
    return settle(() => (this.#statements.lastSeq.get(projectId) as number | undefined) ?? 0);
  }

  close(): Promise<void> {
    return settle(() => {
      if (this.#db.open) this.#db.close();
    });
  }
}

/** Runs synchronous store work and hands back a promise, with a throw becoming a rejection. */
function settle<T>(work: () => T): Promise<T> {
  return new Promise((resolve) => resolve(work()));
}

function toRowChange(table: string, row: string, state: RowState): RowChange {
  const seq = state.lastSeq;
  return state.deleted
    ? { seq, table, row, deleted: true, ...(state.deleteClock !== null ? { deleteClock: state.deleteClock } : {}) }
    : { seq, table, row, deleted: false, values: state.values, clocks: state.clocks };
}
