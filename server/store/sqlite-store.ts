/**
 * The embedded store: one SQLite file (better-sqlite3, WAL) in the data directory. The default.
 *
 * better-sqlite3 is synchronous and this process holds the only connection, so a transaction is
 * never interleaved with another: that is the per-project lock the contract asks for, and seq
 * order is commit order. synchronous=FULL: a push is acknowledged only once its commit is on disk.
 */
import Database from 'better-sqlite3';
import type { Conflict, RowState, Strategy } from '../merge.js';
import { planPush, pushRows } from '../push-plan.js';
import { conflictOf, DEVICE_COLUMNS, PROJECT_TABLES, deviceRecord, rowStateOf, storedRowChange, type ConflictRow, type DeviceRow, type RowStateRecord } from './records.js';
import type { Retention } from '../limits.js';
import {
  DEFAULT_KID,
  type ActivitySample,
  type ChangeQuery,
  type ChangeRecord,
  type CompactionResult,
  type ConflictQuery,
  type ConflictRecord,
  type DeviceQuery,
  type ScopedRowChange,
  type SeqRange,
  type OutcomeRecord,
  type ProjectStats,
  type SigningKey,
  type TableRecord,
  type UserDataDeleted,
  type UserQuery,
  type UserRecord,
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
  -- What the device last said of itself (protocol 2), and its user agent; NULL when it never did.
  pending INTEGER,
  quarantined INTEGER,
  app_version TEXT,
  library TEXT,
  protocol_version INTEGER,
  user_agent TEXT,
  PRIMARY KEY (project_id, device_id)
);
CREATE TABLE IF NOT EXISTS signing_keys (
  project_id TEXT NOT NULL,
  kid TEXT NOT NULL,
  secret TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  last_used_at INTEGER,
  revoked_at INTEGER,
  PRIMARY KEY (project_id, kid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blocked_users (
  project_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  blocked_at INTEGER NOT NULL,
  PRIMARY KEY (project_id, user_id)
) WITHOUT ROWID;
-- A scope whose rows were deleted by an operator (a user's data): cursors below it re-sync.
CREATE TABLE IF NOT EXISTS scope_horizons (
  project_id TEXT NOT NULL,
  scope TEXT NOT NULL,
  horizon INTEGER NOT NULL,
  PRIMARY KEY (project_id, scope)
) WITHOUT ROWID;
-- Pushed changes that were duplicates or rejected: what names them and why, for the console.
CREATE TABLE IF NOT EXISTS push_outcomes (
  project_id TEXT NOT NULL,
  device_id TEXT NOT NULL,
  change_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  table_name TEXT NOT NULL,
  row_id TEXT NOT NULL,
  op TEXT NOT NULL,
  clock TEXT NOT NULL,
  outcome TEXT NOT NULL,
  seq INTEGER,
  message TEXT,
  received_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS push_outcomes_by_time ON push_outcomes (received_at);
-- Counted per minute as it happens (server/activity.ts): the console's charts and daily counts.
CREATE TABLE IF NOT EXISTS activity (
  project_id TEXT NOT NULL,
  minute INTEGER NOT NULL,
  pushes INTEGER NOT NULL,
  changes INTEGER NOT NULL,
  applied INTEGER NOT NULL,
  conflicts INTEGER NOT NULL,
  rejected INTEGER NOT NULL,
  catchup_rows INTEGER NOT NULL,
  connections INTEGER NOT NULL,
  PRIMARY KEY (project_id, minute)
) WITHOUT ROWID;
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
  const devices = columnsOf('devices');
  for (const [column, type] of [['pending', 'INTEGER'], ['quarantined', 'INTEGER'], ['app_version', 'TEXT'], ['library', 'TEXT'], ['protocol_version', 'INTEGER'], ['user_agent', 'TEXT']]) {
    if (!devices.has(column!)) db.exec(`ALTER TABLE devices ADD COLUMN ${column} ${type}`);
  }
  // Projects made before signing keys: their secret is their first key.
  db.exec(`INSERT INTO signing_keys (project_id, kid, secret, created_at)
           SELECT id, '${DEFAULT_KID}', secret, created_at FROM projects p WHERE NOT EXISTS (SELECT 1 FROM signing_keys k WHERE k.project_id = p.id)`);
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
    CREATE INDEX IF NOT EXISTS devices_by_user ON devices (project_id, user_id);
  `);
}

/**
 * The store's schema, version by version (SQLite's user_version holds the one a file is at): each
 * migration brings version n to n + 1 in one transaction, run in order at open, so an upgrade of
 * pocketsync-server never needs SQL by hand. A new schema change is a new entry at the end.
 */
const MIGRATIONS: ReadonlyArray<(db: Database.Database) => void> = [
  // 1 (2026-12): the tables as SCHEMA makes them; a file made before versions were kept (user_version
  // 0, at any earlier shape) is brought up to them.
  (db) => {
    db.exec(SCHEMA);
    upgradeSchema(db);
  },
];

/** The schema version this build writes. */
export const SCHEMA_VERSION = MIGRATIONS.length;

function migrate(db: Database.Database): void {
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version > SCHEMA_VERSION) {
    throw new Error(`this store is at schema version ${version}, newer than this pocketsync-server's ${SCHEMA_VERSION}: run the newer server (a downgrade is not supported)`);
  }
  for (let next = version; next < SCHEMA_VERSION; next++) {
    db.transaction(() => {
      MIGRATIONS[next]!(db);
      db.pragma(`user_version = ${next + 1}`);
    }).immediate();
  }
}

/** Rows removed per compaction statement: each chunk is one short transaction. */
const COMPACT_CHUNK = 5000;
/** How long device contacts wait to be written together. */
const TOUCH_FLUSH_MS = 250;
const MAX_CACHED_OWNERS = 100_000;

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
  /** Signing keys used since the last flush: project and kid → when. */
  readonly #keyUses = new Map<string, number>();
  readonly #changesCache = new Map<string, Database.Statement>();
  readonly #conflictsCache = new Map<string, Database.Statement>();

  /** Opens (creating when needed) the store at `file`; ':memory:' for tests. */
  constructor(file: string) {
    this.#db = new Database(file);
    this.#db.pragma('journal_mode = WAL');
    this.#db.pragma('synchronous = FULL');
    this.#db.pragma('cache_size = -65536');
    try {
      migrate(this.#db);
    } catch (error) {
      this.#db.close();
      throw error;
    }
    const db = this.#db;
    // This process holds the only connection: no device is connected to it yet, whatever the
    // last one (stopped, or killed mid-run) left behind.
    db.exec('UPDATE devices SET online = 0 WHERE online = 1');
    this.#statements = {
      insertProject: db.prepare('INSERT INTO projects (id, secret, strategy, shared_tables, created_at) VALUES (?, ?, ?, ?, ?)'),
      project: db.prepare('SELECT id, secret, strategy, shared_tables, created_at FROM projects WHERE id = ?'),
      lastSeq: db.prepare('SELECT last_seq FROM projects WHERE id = ?').pluck(),
      setLastSeq: db.prepare('UPDATE projects SET last_seq = ? WHERE id = ?'),
      pushProject: db.prepare('SELECT strategy, shared_tables, last_seq FROM projects WHERE id = ?'),
      // One statement for the push's ids, each found by the primary key.
      loggedChanges: db.prepare('SELECT change_id, seq FROM change_log WHERE project_id = ? AND device_id = ? AND change_id IN (SELECT value FROM json_each(?))'),
      logChange: db.prepare(
        `INSERT INTO change_log (project_id, change_id, device_id, user_id, table_name, row_id, op, payload, clock, outcome, seq, received_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
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
        `INSERT INTO devices (project_id, device_id, user_id, cursor, online, first_seen, last_seen, pending, quarantined, app_version, library, protocol_version, user_agent)
         VALUES (@projectId, @deviceId, @userId, coalesce(@cursor, 0), coalesce(@online, 0), @now, @now, @pending, @quarantined, @appVersion, @library, @protocolVersion, @userAgent)
         ON CONFLICT (project_id, device_id) DO UPDATE SET last_seen = excluded.last_seen,
           cursor = coalesce(@cursor, cursor), online = coalesce(@online, online),
           pending = coalesce(@pending, pending), quarantined = coalesce(@quarantined, quarantined),
           app_version = coalesce(@appVersion, app_version), library = coalesce(@library, library),
           protocol_version = coalesce(@protocolVersion, protocol_version), user_agent = coalesce(@userAgent, user_agent)
         WHERE devices.user_id = excluded.user_id`,
      ),
      devices: db.prepare(
        `SELECT ${DEVICE_COLUMNS} FROM devices WHERE project_id = @projectId AND (@userId IS NULL OR user_id = @userId) ORDER BY last_seen DESC, device_id LIMIT @limit`,
      ),
      users: db.prepare(
        `SELECT u.user_id AS user_id, count(d.device_id) AS devices, coalesce(sum(d.online), 0) AS online, coalesce(max(d.last_seen), 0) AS last_seen,
           EXISTS (SELECT 1 FROM blocked_users b WHERE b.project_id = @projectId AND b.user_id = u.user_id) AS blocked
         FROM (SELECT user_id FROM devices WHERE project_id = @projectId UNION SELECT user_id FROM blocked_users WHERE project_id = @projectId) u
         LEFT JOIN devices d ON d.project_id = @projectId AND d.user_id = u.user_id
         WHERE u.user_id > @after AND substr(u.user_id, 1, length(@prefix)) = @prefix
         GROUP BY u.user_id ORDER BY u.user_id LIMIT @limit`,
      ),
      deviceStats: db.prepare(
        `SELECT count(*) AS devices, coalesce(sum(online), 0) AS online, count(DISTINCT user_id) AS users,
           count(DISTINCT CASE WHEN last_seen >= ? THEN user_id END) AS active,
           -- total(), not sum(): a sum past 2^63 raises an error instead of answering.
           CAST(total(pending) AS INTEGER) AS pending, CAST(total(quarantined) AS INTEGER) AS quarantined
         FROM devices WHERE project_id = ?`,
      ),
      activityTotals: db.prepare(
        'SELECT coalesce(sum(changes), 0) AS changes, coalesce(sum(conflicts), 0) AS conflicts, coalesce(sum(rejected), 0) AS rejected FROM activity WHERE project_id = ? AND minute >= ?',
      ),
      addActivity: db.prepare(
        `INSERT INTO activity (project_id, minute, pushes, changes, applied, conflicts, rejected, catchup_rows, connections)
         VALUES (@projectId, @minute, @pushes, @changes, @applied, @conflicts, @rejected, @catchUpRows, @connections)
         ON CONFLICT (project_id, minute) DO UPDATE SET pushes = pushes + excluded.pushes, changes = changes + excluded.changes,
           applied = applied + excluded.applied, conflicts = conflicts + excluded.conflicts, rejected = rejected + excluded.rejected,
           catchup_rows = catchup_rows + excluded.catchup_rows, connections = max(connections, excluded.connections)`,
      ),
      activity: db.prepare(
        `SELECT project_id, (minute / CAST(@bucket AS INTEGER)) * CAST(@bucket AS INTEGER) AS minute, sum(pushes) AS pushes, sum(changes) AS changes, sum(applied) AS applied,
           sum(conflicts) AS conflicts, sum(rejected) AS rejected, sum(catchup_rows) AS catchup_rows, max(connections) AS connections
         FROM activity WHERE project_id = @projectId AND minute >= @from AND minute < @to GROUP BY 2 ORDER BY 2`,
      ),
      committed: db.prepare(
        'SELECT scope, table_name, row_id, vals, clocks, deleted, delete_clock, last_seq FROM row_state WHERE project_id = ? AND last_seq > ? AND last_seq <= ? ORDER BY last_seq',
      ),
      tables: db.prepare('SELECT table_name, count(*) AS rows, coalesce(sum(deleted), 0) AS deleted FROM row_state WHERE project_id = ? GROUP BY table_name ORDER BY table_name'),
      block: db.prepare('INSERT INTO blocked_users (project_id, user_id, blocked_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING'),
      unblock: db.prepare('DELETE FROM blocked_users WHERE project_id = ? AND user_id = ?'),
      isBlocked: db.prepare('SELECT 1 FROM blocked_users WHERE project_id = ? AND user_id = ?').pluck(),
      projectKeys: db.prepare('SELECT kid, secret FROM signing_keys WHERE project_id = ? AND revoked_at IS NULL ORDER BY created_at DESC, kid DESC'),
      insertKey: db.prepare('INSERT INTO signing_keys (project_id, kid, secret, created_at) VALUES (?, ?, ?, ?)'),
      newestKey: db.prepare('SELECT max(created_at) FROM signing_keys WHERE project_id = ?').pluck(),
      signingKeys: db.prepare('SELECT kid, created_at, last_used_at, revoked_at FROM signing_keys WHERE project_id = ? ORDER BY created_at, kid'),
      revokeKey: db.prepare('UPDATE signing_keys SET revoked_at = ? WHERE project_id = ? AND kid = ? AND revoked_at IS NULL'),
      keyUsed: db.prepare('UPDATE signing_keys SET last_used_at = max(coalesce(last_used_at, 0), ?) WHERE project_id = ? AND kid = ?'),
      projectIds: db.prepare('SELECT id FROM projects ORDER BY id').pluck(),
      updateProject: db.prepare('UPDATE projects SET strategy = coalesce(?, strategy), shared_tables = coalesce(?, shared_tables) WHERE id = ?'),
      setScopeHorizon: db.prepare(
        'INSERT INTO scope_horizons (project_id, scope, horizon) VALUES (?, ?, ?) ON CONFLICT (project_id, scope) DO UPDATE SET horizon = max(horizon, excluded.horizon)',
      ),
      deviceOwner: db.prepare('SELECT user_id FROM devices WHERE project_id = ? AND device_id = ?').pluck(),
      horizon: db.prepare(
        `SELECT max(horizon, coalesce((SELECT max(horizon) FROM scope_horizons WHERE project_id = @projectId AND scope IN (SELECT value FROM json_each(@scopes))), 0))
         FROM projects WHERE id = @projectId`,
      ).pluck(),
      insertServiceKey: db.prepare('INSERT INTO service_keys (id, project_id, name, hash, created_at) VALUES (?, ?, ?, ?, ?)'),
      serviceKey: db.prepare('SELECT id, project_id, name, hash, created_at FROM service_keys WHERE id = ?'),
      serviceKeys: db.prepare('SELECT id, project_id, name, created_at FROM service_keys WHERE project_id = ? ORDER BY created_at, id'),
      deleteServiceKey: db.prepare('DELETE FROM service_keys WHERE project_id = ? AND id = ?'),
      raiseHorizon: db.prepare('UPDATE projects SET horizon = max(horizon, ?) WHERE id = ?'),
      compactChanges: db.prepare(
        'DELETE FROM change_log WHERE (project_id, device_id, change_id) IN (SELECT project_id, device_id, change_id FROM change_log WHERE received_at < ? LIMIT ?)',
      ),
      compactOutcomes: db.prepare('DELETE FROM push_outcomes WHERE rowid IN (SELECT rowid FROM push_outcomes WHERE received_at < ? LIMIT ?)'),
      logOutcome: db.prepare(
        `INSERT INTO push_outcomes (project_id, device_id, change_id, user_id, table_name, row_id, op, clock, outcome, seq, message, received_at)
         VALUES (@projectId, @deviceId, @changeId, @userId, @table, @row, @op, @clock, @outcome, @seq, @message, @receivedAt)`,
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
      keys: [{ kid: DEFAULT_KID, secret: project.secret }],
    };
    this.#db.transaction(() => {
      this.#statements.insertProject.run(record.id, record.secret, record.strategy, JSON.stringify(record.sharedTables), record.createdAt);
      this.#statements.insertKey.run(record.id, DEFAULT_KID, record.secret, record.createdAt);
    })();
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
    const keys = this.#statements.projectKeys.all(id) as Array<{ kid: string; secret: string }>;
    return { id: row.id, secret: row.secret, strategy: row.strategy, sharedTables: JSON.parse(row.shared_tables) as string[], createdAt: row.created_at, keys };
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
      ...(pending?.status !== undefined || contact.status !== undefined ? { status: { ...pending?.status, ...contact.status } as NonNullable<DeviceContact['status']> } : {}),
      at: Date.now(),
    });
    this.#scheduleFlush();
    return true;
  }

  /** Device contacts and key uses are written together, TOUCH_FLUSH_MS after the first waits. */
  #scheduleFlush(): void {
    this.#touchTimer ??= setTimeout(() => {
      try {
        this.#flushTouches();
      } catch (error) {
        // Last-seen times and cursors only: lost, and written again at the device's next contact.
        console.error(JSON.stringify({ event: 'error', kind: 'internal', message: `device contacts were not written: ${String(error)}` }));
      }
    }, TOUCH_FLUSH_MS);
  }

  #writeTouch(contact: DeviceContact, now: number): boolean {
    const { changes } = this.#statements.touchDevice.run({
      projectId: contact.projectId,
      deviceId: contact.deviceId,
      userId: contact.userId,
      cursor: contact.cursor ?? null,
      online: contact.online === undefined ? null : contact.online ? 1 : 0,
      now,
      pending: contact.status?.pending ?? null,
      quarantined: contact.status?.quarantined ?? null,
      appVersion: contact.status?.appVersion ?? null,
      library: contact.status?.library ?? null,
      protocolVersion: contact.status?.protocolVersion ?? null,
      userAgent: contact.status?.userAgent ?? null,
    });
    return changes === 1;
  }

  #flushTouches(): void {
    if (this.#touchTimer) clearTimeout(this.#touchTimer);
    this.#touchTimer = null;
    if ((this.#touches.size === 0 && this.#keyUses.size === 0) || !this.#db.open) return;
    const touches = [...this.#touches.values()];
    this.#touches.clear();
    const uses = [...this.#keyUses];
    this.#keyUses.clear();
    this.#db.transaction(() => {
      for (const touch of touches) this.#writeTouch(touch, touch.at);
      for (const [key, at] of uses) {
        const [projectId, kid] = key.split('\u0000') as [string, string];
        this.#statements.keyUsed.run(at, projectId, kid);
      }
    })();
  }

  listDevices(projectId: string, query: DeviceQuery = {}): Promise<DeviceRecord[]> {
    return settle(() => {
      this.#flushTouches();
      const rows = this.#statements.devices.all({ projectId, userId: query.userId ?? null, limit: query.limit ?? -1 }) as DeviceRow[];
      return rows.map(deviceRecord);
    });
  }

  push(input: PushInput): Promise<PushOutput> {
    return settle(() => this.#push(input));
  }

  /**
   * The push algorithm (server/push-plan.ts) between this store's reads and writes, in one
   * immediate transaction: this process holds the only connection, so that is the project's lock.
   */
  #push(input: PushInput): PushOutput {
    const s = this.#statements;
    const run = this.#db.transaction((): PushOutput => {
      const found = s.pushProject.get(input.projectId) as { strategy: Strategy; shared_tables: string; last_seq: number } | undefined;
      if (!found) throw new Error(`no such project: ${input.projectId}`);
      const project = { id: input.projectId, strategy: found.strategy, sharedTables: JSON.parse(found.shared_tables) as string[] };
      const logged = new Map<string, number | null>();
      const conflictsOf = new Map<string, Conflict[]>();
      const seen = s.loggedChanges.all(project.id, input.deviceId, JSON.stringify(input.changes.map((c) => c.id))) as Array<{ change_id: string; seq: number | null }>;
      for (const { change_id: id, seq } of seen) {
        logged.set(id, seq);
        conflictsOf.set(id, this.#conflictsOf(project.id, input.deviceId, id));
      }
      const rows = new Map<string, RowState>();
      for (const row of pushRows(project, input.userId, input.changes)) {
        const state = this.#rowState(project.id, row.scope, row.table, row.row);
        if (state) rows.set(row.key, state);
      }
      const { writes, output } = planPush(input, { project, lastSeq: found.last_seq, logged, conflictsOf, rows });
      const now = Date.now();
      for (const { change, outcome, seq, payload } of writes.changes) {
        s.logChange.run(project.id, change.id, input.deviceId, input.userId, change.table, change.row, change.op, payload, change.clock, outcome, seq, now);
      }
      for (const row of writes.rows) {
        s.upsertRow.run(project.id, row.scope, row.table, row.row, row.values, JSON.stringify(row.state.clocks), JSON.stringify(row.state.seqs),
          row.state.deleted ? 1 : 0, row.state.deleteClock, row.state.lastSeq, now);
      }
      for (const { change, conflict } of writes.conflicts) {
        s.insertConflict.run(project.id, conflict.table, conflict.row, conflict.column, conflict.rule, JSON.stringify(conflict.losing), JSON.stringify(conflict.winning), now, change.id, input.deviceId);
      }
      s.setLastSeq.run(writes.lastSeq, project.id);
      return output;
    });
    return run.immediate();
  }

  /** The conflicts recorded when `change` was first merged (for the ack of its re-push). */
  #conflictsOf(projectId: string, deviceId: string, changeId: string): Conflict[] {
    const rows = this.#statements.conflictsOfChange.all(projectId, deviceId, changeId) as ConflictRow[];
    return rows.map(conflictOf);
  }

  #rowState(projectId: string, scope: string, table: string, rowId: string): RowState | null {
    const row = this.#statements.rowState.get(projectId, scope, table, rowId) as RowStateRecord | undefined;
    return row ? rowStateOf(row) : null;
  }

  pull(input: PullInput): Promise<PullOutput> {
    return settle(() => this.#pull(input));
  }

  #pull(input: PullInput): PullOutput {
    const db = this.#db;
    const read = db.transaction((): PullOutput => {
      // A cursor older than the tombstone horizon may stand for rows whose deletes were forgotten:
      // the catch-up starts over from 0 as a re-sync (a fresh device at 0 holds no rows to drop).
      const horizon = (this.#statements.horizon.get({ projectId: input.projectId, scopes: JSON.stringify(input.scopes) }) as number | undefined) ?? 0;
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
    await chunks(() => s.compactOutcomes.run(now - retention.changeLogMs, COMPACT_CHUNK).changes);
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
    const match = input.where !== undefined ? ' AND json_extract(vals, ?) IS ?' : '';
    const key = `rows:${alive}:${which}:${match}`;
    let statement = this.#rowsCache.get(key);
    if (!statement) {
      statement = this.#db.prepare(
        `SELECT row_id, vals, clocks, deleted, delete_clock, last_seq FROM row_state
         WHERE project_id = ? AND scope = ? AND table_name = ?${which}${alive}${match} ORDER BY row_id LIMIT ?`,
      );
      this.#rowsCache.set(key, statement);
    }
    const from = input.ids !== undefined ? JSON.stringify(input.ids) : (input.after ?? '');
    // The column, quoted within the JSON path: any identifier, never read as path syntax.
    const where = input.where !== undefined ? [`$."${input.where.column.replaceAll('"', '""')}"`, input.where.value] : [];
    const found = statement.all(input.projectId, input.scope, input.table, from, ...where, input.limit + 1) as Array<Omit<RowStateRecord, 'seqs'> & { row_id: string }>;
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

  listProjects(): Promise<Project[]> {
    return settle(() => (this.#statements.projectIds.all() as string[]).map((id) => this.#project(id) as Project));
  }

  updateProject(id: string, change: { readonly strategy?: Strategy; readonly sharedTables?: readonly string[] }): Promise<Project | null> {
    return settle(() => {
      const shared = change.sharedTables === undefined ? null : JSON.stringify(change.sharedTables);
      this.#statements.updateProject.run(change.strategy ?? null, shared, id);
      return this.#project(id);
    });
  }

  deleteProject(id: string): Promise<boolean> {
    return settle(() => {
      this.#flushTouches();
      const removed = this.#db.transaction(() => {
        for (const table of PROJECT_TABLES) {
          this.#db.prepare(`DELETE FROM ${table} WHERE project_id = ?`).run(id);
        }
        return this.#db.prepare('DELETE FROM projects WHERE id = ?').run(id).changes === 1;
      })();
      // Device bindings of the project are gone with it.
      this.#owners.clear();
      return removed;
    });
  }

  createSigningKey(projectId: string, kid: string, secret: string): Promise<SigningKey> {
    return settle(() => {
      // After every key the project has, even one made this same millisecond: Project.keys is newest first.
      const newest = this.#statements.newestKey.get(projectId) as number | null;
      const createdAt = Math.max(Date.now(), (newest ?? 0) + 1);
      this.#statements.insertKey.run(projectId, kid, secret, createdAt);
      return { kid, createdAt, lastUsedAt: null, revokedAt: null };
    });
  }

  signingKeys(projectId: string): Promise<SigningKey[]> {
    return settle(() => {
      this.#flushTouches();
      const rows = this.#statements.signingKeys.all(projectId) as Array<{ kid: string; created_at: number; last_used_at: number | null; revoked_at: number | null }>;
      return rows.map((row) => ({ kid: row.kid, createdAt: row.created_at, lastUsedAt: row.last_used_at, revokedAt: row.revoked_at }));
    });
  }

  revokeSigningKey(projectId: string, kid: string): Promise<boolean> {
    return settle(() => this.#statements.revokeKey.run(Date.now(), projectId, kid).changes === 1);
  }

  signingKeyUsed(projectId: string, kid: string): void {
    this.#keyUses.set(`${projectId}\u0000${kid}`, Date.now());
    this.#scheduleFlush();
  }

  users(projectId: string, query: UserQuery): Promise<UserRecord[]> {
    return settle(() => {
      this.#flushTouches();
      const rows = this.#statements.users.all({ projectId, after: query.after ?? '', prefix: query.prefix ?? '', limit: query.limit }) as Array<{
        user_id: string; devices: number; online: number; last_seen: number; blocked: number;
      }>;
      return rows.map((r) => ({ userId: r.user_id, devices: r.devices, online: r.online, lastSeen: r.last_seen, blocked: r.blocked === 1 }));
    });
  }

  setBlocked(projectId: string, userId: string, blocked: boolean): Promise<void> {
    return settle(() => {
      if (blocked) this.#statements.block.run(projectId, userId, Date.now());
      else this.#statements.unblock.run(projectId, userId);
    });
  }

  isBlocked(projectId: string, userId: string): Promise<boolean> {
    return settle(() => this.#statements.isBlocked.get(projectId, userId) !== undefined);
  }

  deleteUserData(projectId: string, userId: string): Promise<UserDataDeleted> {
    return settle(() => {
      // A device contact waiting to be written (its socket just closed) goes first, not after.
      this.#flushTouches();
      const db = this.#db;
      const scope = `user:${userId}`;
      return db.transaction((): UserDataDeleted => {
        const rows = db.prepare('DELETE FROM row_state WHERE project_id = ? AND scope = ?').run(projectId, scope).changes;
        const conflicts = db
          .prepare('DELETE FROM conflicts WHERE project_id = ? AND device_id IN (SELECT device_id FROM devices WHERE project_id = ? AND user_id = ?)')
          .run(projectId, projectId, userId).changes;
        const changes = db.prepare('DELETE FROM change_log WHERE project_id = ? AND user_id = ?').run(projectId, userId).changes;
        db.prepare('DELETE FROM push_outcomes WHERE project_id = ? AND user_id = ?').run(projectId, userId);
        const devices = db.prepare('DELETE FROM devices WHERE project_id = ? AND user_id = ?').run(projectId, userId).changes;
        // The bindings go with the devices' records, in memory as on disk.
        for (const [key, owner] of this.#owners) if (owner === userId && key.startsWith(`${projectId}\u0000`)) this.#owners.delete(key);
        // The deletion is a commit of its own: devices whose cursor lies below it re-sync the scope.
        const seq = ((this.#statements.lastSeq.get(projectId) as number | undefined) ?? 0) + 1;
        this.#statements.setLastSeq.run(seq, projectId);
        this.#statements.setScopeHorizon.run(projectId, scope, seq);
        return { rows, changes, conflicts, devices };
      }).immediate();
    });
  }

  stats(projectId: string, dayStart: number): Promise<ProjectStats> {
    return settle(() => {
      this.#flushTouches();
      const d = this.#statements.deviceStats.get(dayStart, projectId) as { devices: number; online: number; users: number; active: number; pending: number; quarantined: number };
      const a = this.#statements.activityTotals.get(projectId, dayStart) as { changes: number; conflicts: number; rejected: number };
      return {
        projectId,
        users: d.users,
        activeUsers: d.active,
        devices: d.devices,
        online: d.online,
        pending: d.pending,
        quarantined: d.quarantined,
        seq: (this.#statements.lastSeq.get(projectId) as number | undefined) ?? 0,
        changesToday: a.changes,
        conflictsToday: a.conflicts,
        rejectedToday: a.rejected,
      };
    });
  }

  addActivity(samples: readonly ActivitySample[]): Promise<void> {
    return settle(() => {
      if (samples.length === 0) return;
      this.#db.transaction(() => {
        for (const sample of samples) this.#statements.addActivity.run(sample);
      })();
    });
  }

  activity(projectId: string, from: number, to: number, bucketMinutes = 1): Promise<ActivitySample[]> {
    return settle(() => {
      const rows = this.#statements.activity.all({ projectId, from, to, bucket: bucketMinutes * 60_000 }) as Array<{
        project_id: string; minute: number; pushes: number; changes: number; applied: number; conflicts: number; rejected: number; catchup_rows: number; connections: number;
      }>;
      return rows.map((r) => ({
        projectId: r.project_id, minute: r.minute, pushes: r.pushes, changes: r.changes, applied: r.applied,
        conflicts: r.conflicts, rejected: r.rejected, catchUpRows: r.catchup_rows, connections: r.connections,
      }));
    });
  }

  changes(query: ChangeQuery): Promise<ChangeRecord[]> {
    return settle(() => {
      const filters: string[] = ['project_id = @projectId'];
      if (query.table !== undefined) filters.push('table_name = @table');
      if (query.row !== undefined) filters.push('row_id = @row');
      if (query.userId !== undefined) filters.push('user_id = @userId');
      if (query.deviceId !== undefined) filters.push('device_id = @deviceId');
      if (query.op !== undefined) filters.push('op = @op');
      if (query.outcome !== undefined) filters.push('outcome = @outcome');
      if (query.from !== undefined) filters.push('received_at >= @from');
      if (query.to !== undefined) filters.push('received_at <= @to');
      const order = query.ascending === true ? 'ASC' : 'DESC';
      if (query.before !== undefined) filters.push(`(received_at, device_id, change_id) ${query.ascending === true ? '>' : '<'} (@beforeAt, @beforeDevice, @beforeChange)`);
      const sort = `ORDER BY received_at ${order}, device_id ${order}, change_id ${order} LIMIT @limit`;
      const where = filters.join(' AND ');
      // The change log and the outcome log, each read in order by its own index, then merged.
      const sql = `SELECT * FROM (SELECT change_id, device_id, user_id, table_name, row_id, op, payload, clock, outcome, seq, received_at, NULL AS message FROM change_log WHERE ${where} ${sort})
        UNION ALL SELECT * FROM (SELECT change_id, device_id, user_id, table_name, row_id, op, NULL, clock, outcome, seq, received_at, message FROM push_outcomes WHERE ${where} ${sort})
        ${sort}`;
      let statement = this.#changesCache.get(sql);
      if (!statement) this.#changesCache.set(sql, (statement = this.#db.prepare(sql)));
      const rows = statement.all(definedOnly({
        projectId: query.projectId, table: query.table, row: query.row, userId: query.userId, deviceId: query.deviceId, op: query.op, outcome: query.outcome,
        from: query.from, to: query.to, beforeAt: query.before?.receivedAt, beforeDevice: query.before?.deviceId, beforeChange: query.before?.changeId,
        limit: query.limit,
      })) as Array<{
        change_id: string; device_id: string; user_id: string; table_name: string; row_id: string; op: string; payload: string | null;
        clock: string; outcome: string; seq: number | null; received_at: number; message: string | null;
      }>;
      return rows.map((r) => ({
        changeId: r.change_id, deviceId: r.device_id, userId: r.user_id, table: r.table_name, row: r.row_id, op: r.op,
        values: r.payload === null ? null : (JSON.parse(r.payload) as Record<string, unknown>), clock: r.clock, outcome: r.outcome, seq: r.seq, receivedAt: r.received_at,
        message: r.message,
      }));
    });
  }

  logOutcomes(outcomes: readonly OutcomeRecord[]): Promise<void> {
    return settle(() => {
      if (outcomes.length === 0) return;
      const receivedAt = Date.now();
      this.#db.transaction(() => {
        for (const outcome of outcomes) this.#statements.logOutcome.run({ ...outcome, receivedAt });
      })();
    });
  }

  conflicts(query: ConflictQuery): Promise<ConflictRecord[]> {
    return settle(() => {
      const filters: string[] = ['c.project_id = @projectId'];
      if (query.table !== undefined) filters.push('c.table_name = @table');
      if (query.row !== undefined) filters.push('c.row_id = @row');
      if (query.from !== undefined) filters.push('c.at >= @from');
      if (query.to !== undefined) filters.push('c.at <= @to');
      if (query.before !== undefined) filters.push('c.id < @before');
      if (query.changeId !== undefined) filters.push('c.change_id = @changeId');
      const sql = `SELECT c.id, c.table_name, c.row_id, c.column_name, c.rule, c.losing, c.winning, c.at, c.change_id, c.device_id, d.user_id
        FROM conflicts c LEFT JOIN devices d ON d.project_id = c.project_id AND d.device_id = c.device_id
        WHERE ${filters.join(' AND ')} ORDER BY c.id DESC LIMIT @limit`;
      let statement = this.#conflictsCache.get(sql);
      if (!statement) this.#conflictsCache.set(sql, (statement = this.#db.prepare(sql)));
      const rows = statement.all(definedOnly({
        projectId: query.projectId, table: query.table, row: query.row, from: query.from, to: query.to, before: query.before, changeId: query.changeId, limit: query.limit,
      })) as Array<ConflictRow & { id: number; at: number; change_id: string | null; device_id: string | null; user_id: string | null }>;
      return rows.map((r) => ({
        ...conflictOf(r), id: r.id, at: r.at, changeId: r.change_id, deviceId: r.device_id, userId: r.user_id,
      }));
    });
  }

  tables(projectId: string): Promise<TableRecord[]> {
    return settle(() => {
      const rows = this.#statements.tables.all(projectId) as Array<{ table_name: string; rows: number; deleted: number }>;
      return rows.map((r) => ({ table: r.table_name, rows: r.rows, deleted: r.deleted }));
    });
  }

  committed(projectId: string, range: SeqRange): Promise<ScopedRowChange[]> {
    return settle(() => {
      const rows = this.#statements.committed.all(projectId, range.from, range.to) as Array<Omit<RowStateRecord, 'seqs'> & { scope: string; table_name: string; row_id: string }>;
      return rows.map((r) => ({ scope: r.scope, ...storedRowChange(r.table_name, r.row_id, r) }));
    });
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

/** Named parameters without the undefined ones (better-sqlite3 refuses an undefined binding). */
function definedOnly(params: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(params).filter(([, value]) => value !== undefined));
}

/** Runs synchronous store work and hands back a promise, with a throw becoming a rejection. */
function settle<T>(work: () => T): Promise<T> {
  return new Promise((resolve) => resolve(work()));
}
