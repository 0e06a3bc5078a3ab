/**
 * The PostgreSQL store: the server's data in a database that several server processes share.
 *
 * The push algorithm is server/push-plan.ts's; this file is its statements around it. A push is one
 * transaction that first locks the project's row (SELECT … FOR UPDATE): pushes to one project
 * queue on that lock, each reads the seq its predecessor committed, and commit order is seq order
 * across processes. Reads of a catch-up page run in a REPEATABLE READ snapshot, so a page, its
 * count and its cursor agree.
 *
 * Text columns compare as bytes (COLLATE "C"), as SQLite's do: row ids and cursors page the same
 * way on both stores. Values are kept as the wire's JSON text, exactly as received.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import { randomHex } from '../../worker/random.js';
import type { Conflict, RowState, Strategy } from '../merge.js';
import type { Retention } from '../limits.js';
import { planPush, pushRows } from '../push-plan.js';
import { conflictOf, DEVICE_COLUMNS, PROJECT_TABLES, deviceRecord, rowStateOf, storedRowChange, type ConflictRow, type DeviceRow, type RowStateRecord } from './records.js';
import {
  DEFAULT_KID,
  type ActivitySample,
  type ChangeQuery,
  type ChangeRecord,
  type CompactionResult,
  type ConflictQuery,
  type ConflictRecord,
  type DeviceContact,
  type DeviceQuery,
  type ScopedRowChange,
  type SeqRange,
  type DeviceRecord,
  type NewProject,
  type OutcomeRecord,
  type Project,
  type ProjectStats,
  type PullInput,
  type PullOutput,
  type PushInput,
  type PushOutput,
  type RowsInput,
  type RowsOutput,
  type ServiceKey,
  type SigningKey,
  type Store,
  type StoredServiceKey,
  type TableRecord,
  type UserDataDeleted,
  type UserQuery,
  type UserRecord,
} from './store.js';

const T = 'TEXT COLLATE "C"';

/** The schema, version by version (pocketsync_schema holds the one a database is at). */
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE projects (id ${T} PRIMARY KEY, secret TEXT NOT NULL, strategy TEXT NOT NULL, shared_tables TEXT NOT NULL,
    last_seq BIGINT NOT NULL DEFAULT 0, created_at BIGINT NOT NULL, horizon BIGINT NOT NULL DEFAULT 0);
  CREATE TABLE devices (project_id ${T} NOT NULL, device_id ${T} NOT NULL, user_id ${T} NOT NULL, cursor BIGINT NOT NULL DEFAULT 0,
    online BOOLEAN NOT NULL DEFAULT false, first_seen BIGINT NOT NULL, last_seen BIGINT NOT NULL, pending BIGINT, quarantined BIGINT,
    app_version TEXT, library TEXT, protocol_version INTEGER, user_agent TEXT, PRIMARY KEY (project_id, device_id));
  CREATE INDEX devices_by_user ON devices (project_id, user_id);
  CREATE TABLE change_log (project_id ${T} NOT NULL, change_id ${T} NOT NULL, device_id ${T} NOT NULL, user_id ${T} NOT NULL,
    table_name ${T} NOT NULL, row_id ${T} NOT NULL, op TEXT NOT NULL, payload TEXT, clock ${T} NOT NULL, outcome TEXT NOT NULL,
    seq BIGINT, received_at BIGINT NOT NULL, PRIMARY KEY (project_id, device_id, change_id));
  CREATE INDEX change_log_by_time ON change_log (received_at);
  CREATE INDEX change_log_by_project_time ON change_log (project_id, received_at);
  CREATE TABLE push_outcomes (project_id ${T} NOT NULL, device_id ${T} NOT NULL, change_id ${T} NOT NULL, user_id ${T} NOT NULL,
    table_name ${T} NOT NULL, row_id ${T} NOT NULL, op TEXT NOT NULL, clock ${T} NOT NULL, outcome TEXT NOT NULL, seq BIGINT,
    message TEXT, received_at BIGINT NOT NULL);
  CREATE INDEX push_outcomes_by_time ON push_outcomes (project_id, received_at);
  CREATE TABLE row_state (project_id ${T} NOT NULL, scope ${T} NOT NULL, table_name ${T} NOT NULL, row_id ${T} NOT NULL,
    vals TEXT NOT NULL, clocks TEXT NOT NULL, seqs TEXT NOT NULL, deleted BOOLEAN NOT NULL, delete_clock TEXT,
    last_seq BIGINT NOT NULL, changed_at BIGINT NOT NULL DEFAULT 0, PRIMARY KEY (project_id, scope, table_name, row_id));
  CREATE INDEX row_state_by_seq ON row_state (project_id, scope, last_seq);
  CREATE INDEX row_state_tombstones ON row_state (changed_at) WHERE deleted;
  CREATE TABLE conflicts (id BIGSERIAL PRIMARY KEY, project_id ${T} NOT NULL, table_name ${T} NOT NULL, row_id ${T} NOT NULL,
    column_name TEXT, rule TEXT NOT NULL, losing TEXT NOT NULL, winning TEXT NOT NULL, at BIGINT NOT NULL, change_id ${T}, device_id ${T});
  CREATE INDEX conflicts_by_device_change ON conflicts (project_id, device_id, change_id);
  CREATE INDEX conflicts_by_time ON conflicts (at);
  CREATE TABLE service_keys (id ${T} PRIMARY KEY, project_id ${T} NOT NULL, name TEXT NOT NULL, hash TEXT NOT NULL, created_at BIGINT NOT NULL);
  CREATE INDEX service_keys_by_project ON service_keys (project_id, created_at);
  CREATE TABLE signing_keys (project_id ${T} NOT NULL, kid ${T} NOT NULL, secret TEXT NOT NULL, created_at BIGINT NOT NULL,
    last_used_at BIGINT, revoked_at BIGINT, PRIMARY KEY (project_id, kid));
  CREATE TABLE blocked_users (project_id ${T} NOT NULL, user_id ${T} NOT NULL, blocked_at BIGINT NOT NULL, PRIMARY KEY (project_id, user_id));
  CREATE TABLE scope_horizons (project_id ${T} NOT NULL, scope ${T} NOT NULL, horizon BIGINT NOT NULL, PRIMARY KEY (project_id, scope));
  CREATE TABLE activity (project_id ${T} NOT NULL, minute BIGINT NOT NULL, pushes BIGINT NOT NULL, changes BIGINT NOT NULL,
    applied BIGINT NOT NULL, conflicts BIGINT NOT NULL, rejected BIGINT NOT NULL, catchup_rows BIGINT NOT NULL,
    connections BIGINT NOT NULL, PRIMARY KEY (project_id, minute));
  `,
];

export const POSTGRES_SCHEMA_VERSION = MIGRATIONS.length;

const COMPACT_CHUNK = 5000;

/** int8 and numeric as numbers: seqs, times and counts stay far below 2^53. */
const TYPES = {
  getTypeParser: (oid: number, format?: string) => {
    if (oid === 20 || oid === 1700) return (value: string) => Number(value);
    return pg.types.getTypeParser(oid, format as 'text') as (value: string) => unknown;
  },
};

export interface PostgresStoreOptions {
  readonly connectionString: string;
  /** The schema the tables live in (created when missing); public by default. */
  readonly schema?: string;
  /** Connections in the pool (default 10). */
  readonly max?: number;
}

type Queryable = Pick<pg.PoolClient, 'query'>;

export class PostgresStore implements Store {
  readonly #pool: pg.Pool;
  readonly #schema: string;
  readonly #ready: Promise<void>;
  /** Signing keys used since the last flush: project and kid → when. */
  readonly #keyUses = new Map<string, number>();
  #keyTimer: ReturnType<typeof setTimeout> | null = null;
  readonly #connectionString: string;
  /** Who this store is in the commit notices (its own are not told back to it). */
  readonly #instance = randomHex(8);
  /** The commits channel: one per schema, so that stores of other schemas hear none of them. */
  readonly #channel: string;

  constructor(options: PostgresStoreOptions) {
    const schema = options.schema ?? 'public';
    if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) throw new Error(`a schema name is lowercase letters, digits and _, not ${JSON.stringify(schema)}`);
    this.#schema = schema;
    this.#connectionString = options.connectionString;
    // A channel name is at most 63 bytes: the schema's hash, not its name.
    this.#channel = `pocketsync_commits_${createHash('sha256').update(schema).digest('hex').slice(0, 16)}`;
    this.#pool = new pg.Pool({ connectionString: options.connectionString, max: options.max ?? 10, types: TYPES, options: `-c search_path=${schema}` });
    // A connection error of an idle client is the pool's to handle (it drops the client); said, never thrown.
    this.#pool.on('error', (error) => console.error(JSON.stringify({ event: 'error', kind: 'internal', message: `PostgreSQL: ${error.message}` })));
    this.#ready = this.#migrate();
    this.#ready.catch(() => undefined);
  }

  /** Resolves once the schema is migrated (every call waits for it). */
  ready(): Promise<void> {
    return this.#ready;
  }

  async #migrate(): Promise<void> {
    await this.#transaction(async (db) => {
      // Several processes starting at once migrate one at a time.
      await db.query("SELECT pg_advisory_xact_lock(hashtext('pocketsync-migrate'))");
      await db.query(`CREATE SCHEMA IF NOT EXISTS ${this.#schema}`);
      await db.query('CREATE TABLE IF NOT EXISTS pocketsync_schema (version INTEGER NOT NULL)');
      const found = await db.query<{ version: number }>('SELECT version FROM pocketsync_schema');
      let version = found.rows[0]?.version ?? 0;
      if (found.rows.length === 0) await db.query('INSERT INTO pocketsync_schema VALUES (0)');
      if (version > POSTGRES_SCHEMA_VERSION) throw new Error(`this database is at schema version ${version}, newer than this pocketsync-server's ${POSTGRES_SCHEMA_VERSION}: run the newer server`);
      for (; version < POSTGRES_SCHEMA_VERSION; version++) {
        await db.query(MIGRATIONS[version]!);
        await db.query('UPDATE pocketsync_schema SET version = $1', [version + 1]);
      }
    }, false);
  }

  async #query<R extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<R[]> {
    await this.#ready;
    return (await this.#pool.query<R>(sql, params)).rows;
  }

  async #transaction<T>(work: (db: Queryable) => Promise<T>, waitReady = true, begin = 'BEGIN'): Promise<T> {
    if (waitReady) await this.#ready;
    const client = await this.#pool.connect();
    try {
      await client.query(begin);
      const result = await work(client);
      await client.query('COMMIT');
      return result;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  }

  async createProject(project: NewProject): Promise<Project> {
    const record: Project = {
      id: project.id,
      secret: project.secret,
      strategy: project.strategy ?? 'column-lww',
      sharedTables: [...(project.sharedTables ?? [])],
      createdAt: Date.now(),
      keys: [{ kid: DEFAULT_KID, secret: project.secret }],
    };
    await this.#transaction(async (db) => {
      await db.query('INSERT INTO projects (id, secret, strategy, shared_tables, created_at) VALUES ($1, $2, $3, $4, $5)', [record.id, record.secret, record.strategy, JSON.stringify(record.sharedTables), record.createdAt]);
      await db.query('INSERT INTO signing_keys (project_id, kid, secret, created_at) VALUES ($1, $2, $3, $4)', [record.id, DEFAULT_KID, record.secret, record.createdAt]);
    });
    return record;
  }

  async getProject(id: string): Promise<Project | null> {
    const rows = await this.#query<{ id: string; secret: string; strategy: Strategy; shared_tables: string; created_at: number; keys: Array<{ kid: string; secret: string }> | null }>(
      `SELECT p.id, p.secret, p.strategy, p.shared_tables, p.created_at,
         (SELECT json_agg(json_build_object('kid', k.kid, 'secret', k.secret) ORDER BY k.created_at DESC, k.kid DESC)
            FROM signing_keys k WHERE k.project_id = p.id AND k.revoked_at IS NULL) AS keys
       FROM projects p WHERE p.id = $1`,
      [id],
    );
    const row = rows[0];
    if (!row) return null;
    return { id: row.id, secret: row.secret, strategy: row.strategy, sharedTables: JSON.parse(row.shared_tables) as string[], createdAt: row.created_at, keys: row.keys ?? [] };
  }

  async listProjects(): Promise<Project[]> {
    const ids = await this.#query<{ id: string }>('SELECT id FROM projects ORDER BY id');
    return (await Promise.all(ids.map((r) => this.getProject(r.id)))).filter((p): p is Project => p !== null);
  }

  async updateProject(id: string, change: { readonly strategy?: Strategy; readonly sharedTables?: readonly string[] }): Promise<Project | null> {
    await this.#query('UPDATE projects SET strategy = coalesce($1, strategy), shared_tables = coalesce($2, shared_tables) WHERE id = $3', [
      change.strategy ?? null, change.sharedTables === undefined ? null : JSON.stringify(change.sharedTables), id,
    ]);
    return this.getProject(id);
  }

  async deleteProject(id: string): Promise<boolean> {
    return this.#transaction(async (db) => {
      // Its row first, as a push locks it before its rows.
      await db.query('SELECT id FROM projects WHERE id = $1 FOR UPDATE', [id]);
      for (const table of PROJECT_TABLES) {
        await db.query(`DELETE FROM ${table} WHERE project_id = $1`, [id]);
      }
      return ((await db.query('DELETE FROM projects WHERE id = $1', [id])).rowCount ?? 0) === 1;
    });
  }

  async createSigningKey(projectId: string, kid: string, secret: string): Promise<SigningKey> {
    const rows = await this.#query<{ created_at: number }>(
      `INSERT INTO signing_keys (project_id, kid, secret, created_at)
       SELECT $1, $2, $3, greatest($4::bigint, coalesce((SELECT max(created_at) + 1 FROM signing_keys WHERE project_id = $1), 0)) RETURNING created_at`,
      [projectId, kid, secret, Date.now()],
    );
    return { kid, createdAt: rows[0]!.created_at, lastUsedAt: null, revokedAt: null };
  }

  async signingKeys(projectId: string): Promise<SigningKey[]> {
    await this.#flushKeyUses();
    const rows = await this.#query<{ kid: string; created_at: number; last_used_at: number | null; revoked_at: number | null }>(
      'SELECT kid, created_at, last_used_at, revoked_at FROM signing_keys WHERE project_id = $1 ORDER BY created_at, kid',
      [projectId],
    );
    return rows.map((r) => ({ kid: r.kid, createdAt: r.created_at, lastUsedAt: r.last_used_at, revokedAt: r.revoked_at }));
  }

  async revokeSigningKey(projectId: string, kid: string): Promise<boolean> {
    const rows = await this.#query('UPDATE signing_keys SET revoked_at = $1 WHERE project_id = $2 AND kid = $3 AND revoked_at IS NULL RETURNING kid', [Date.now(), projectId, kid]);
    return rows.length === 1;
  }

  signingKeyUsed(projectId: string, kid: string): void {
    this.#keyUses.set(`${projectId}\u0000${kid}`, Date.now());
    this.#keyTimer ??= setTimeout(() => void this.#flushKeyUses(), 1000);
  }

  async #flushKeyUses(): Promise<void> {
    if (this.#keyTimer) clearTimeout(this.#keyTimer);
    this.#keyTimer = null;
    const uses = [...this.#keyUses];
    this.#keyUses.clear();
    if (uses.length === 0) return;
    try {
      await this.#query(
        `UPDATE signing_keys k SET last_used_at = greatest(coalesce(k.last_used_at, 0), u.at)
         FROM unnest($1::text[], $2::text[], $3::bigint[]) AS u(project_id, kid, at) WHERE k.project_id = u.project_id AND k.kid = u.kid`,
        [uses.map(([key]) => key.split('\u0000')[0]), uses.map(([key]) => key.split('\u0000')[1]), uses.map(([, at]) => at)],
      );
    } catch (error) {
      console.error(JSON.stringify({ event: 'error', kind: 'internal', message: `signing keys' last use was not written: ${String(error)}` }));
    }
  }

  async touchDevice(contact: DeviceContact): Promise<boolean> {
    const status = contact.status;
    const rows = await this.#query(
      `INSERT INTO devices (project_id, device_id, user_id, cursor, online, first_seen, last_seen, pending, quarantined, app_version, library, protocol_version, user_agent)
       VALUES ($1, $2, $3, coalesce($4, 0), coalesce($5, false), $6, $6, $7, $8, $9, $10, $11, $12)
       ON CONFLICT (project_id, device_id) DO UPDATE SET last_seen = excluded.last_seen,
         cursor = coalesce($4, devices.cursor), online = coalesce($5, devices.online),
         pending = coalesce($7, devices.pending), quarantined = coalesce($8, devices.quarantined),
         app_version = coalesce($9, devices.app_version), library = coalesce($10, devices.library),
         protocol_version = coalesce($11, devices.protocol_version), user_agent = coalesce($12, devices.user_agent)
       WHERE devices.user_id = excluded.user_id
       RETURNING 1`,
      [contact.projectId, contact.deviceId, contact.userId, contact.cursor ?? null, contact.online ?? null, Date.now(),
        status?.pending ?? null, status?.quarantined ?? null, status?.appVersion ?? null, status?.library ?? null, status?.protocolVersion ?? null, status?.userAgent ?? null],
    );
    return rows.length === 1;
  }

  async listDevices(projectId: string, query: DeviceQuery = {}): Promise<DeviceRecord[]> {
    const rows = await this.#query<DeviceRow>(
      `SELECT ${DEVICE_COLUMNS} FROM devices WHERE project_id = $1 AND ($2::text IS NULL OR user_id = $2) ORDER BY last_seen DESC, device_id LIMIT $3`,
      [projectId, query.userId ?? null, query.limit ?? null],
    );
    return rows.map(deviceRecord);
  }

  async users(projectId: string, query: UserQuery): Promise<UserRecord[]> {
    const rows = await this.#query<{ user_id: string; devices: number; online: number; last_seen: number; blocked: boolean }>(
      `SELECT u.user_id, count(d.device_id) AS devices, count(*) FILTER (WHERE d.online) AS online, coalesce(max(d.last_seen), 0) AS last_seen,
         EXISTS (SELECT 1 FROM blocked_users b WHERE b.project_id = $1 AND b.user_id = u.user_id) AS blocked
       FROM (SELECT user_id FROM devices WHERE project_id = $1 UNION SELECT user_id FROM blocked_users WHERE project_id = $1) u
       LEFT JOIN devices d ON d.project_id = $1 AND d.user_id = u.user_id
       WHERE u.user_id > $2 AND substr(u.user_id, 1, length($3)) = $3
       GROUP BY u.user_id ORDER BY u.user_id LIMIT $4`,
      [projectId, query.after ?? '', query.prefix ?? '', query.limit],
    );
    return rows.map((r) => ({ userId: r.user_id, devices: r.devices, online: r.online, lastSeen: r.last_seen, blocked: r.blocked }));
  }

  async setBlocked(projectId: string, userId: string, blocked: boolean): Promise<void> {
    if (blocked) await this.#query('INSERT INTO blocked_users (project_id, user_id, blocked_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING', [projectId, userId, Date.now()]);
    else await this.#query('DELETE FROM blocked_users WHERE project_id = $1 AND user_id = $2', [projectId, userId]);
  }

  async isBlocked(projectId: string, userId: string): Promise<boolean> {
    return (await this.#query('SELECT 1 FROM blocked_users WHERE project_id = $1 AND user_id = $2', [projectId, userId])).length === 1;
  }

  async deleteUserData(projectId: string, userId: string): Promise<UserDataDeleted> {
    const scope = `user:${userId}`;
    return this.#transaction(async (db) => {
      const project = await db.query<{ last_seq: number }>('SELECT last_seq FROM projects WHERE id = $1 FOR UPDATE', [projectId]);
      const count = async (sql: string, params: unknown[]) => (await db.query(sql, params)).rowCount ?? 0;
      const rows = await count('DELETE FROM row_state WHERE project_id = $1 AND scope = $2', [projectId, scope]);
      const conflicts = await count('DELETE FROM conflicts WHERE project_id = $1 AND device_id IN (SELECT device_id FROM devices WHERE project_id = $1 AND user_id = $2)', [projectId, userId]);
      const changes = await count('DELETE FROM change_log WHERE project_id = $1 AND user_id = $2', [projectId, userId]);
      await db.query('DELETE FROM push_outcomes WHERE project_id = $1 AND user_id = $2', [projectId, userId]);
      const devices = await count('DELETE FROM devices WHERE project_id = $1 AND user_id = $2', [projectId, userId]);
      const seq = (project.rows[0]?.last_seq ?? 0) + 1;
      await db.query('UPDATE projects SET last_seq = $1 WHERE id = $2', [seq, projectId]);
      await this.#notify(db, projectId, { from: seq - 1, to: seq });
      await db.query(
        'INSERT INTO scope_horizons (project_id, scope, horizon) VALUES ($1, $2, $3) ON CONFLICT (project_id, scope) DO UPDATE SET horizon = greatest(scope_horizons.horizon, excluded.horizon)',
        [projectId, scope, seq],
      );
      return { rows, changes, conflicts, devices };
    });
  }

  async stats(projectId: string, dayStart: number): Promise<ProjectStats> {
    const [d] = await this.#query<{ devices: number; online: number; users: number; active: number; pending: number; quarantined: number; seq: number; changes: number; conflicts: number; rejected: number }>(
      `SELECT count(*) AS devices, count(*) FILTER (WHERE online) AS online, count(DISTINCT user_id) AS users,
         count(DISTINCT user_id) FILTER (WHERE last_seen >= $2) AS active, coalesce(sum(pending), 0) AS pending, coalesce(sum(quarantined), 0) AS quarantined,
         (SELECT coalesce(max(last_seq), 0) FROM projects WHERE id = $1) AS seq,
         (SELECT coalesce(sum(changes), 0) FROM activity WHERE project_id = $1 AND minute >= $2) AS changes,
         (SELECT coalesce(sum(conflicts), 0) FROM activity WHERE project_id = $1 AND minute >= $2) AS conflicts,
         (SELECT coalesce(sum(rejected), 0) FROM activity WHERE project_id = $1 AND minute >= $2) AS rejected
       FROM devices WHERE project_id = $1`,
      [projectId, dayStart],
    );
    return {
      projectId, users: d!.users, activeUsers: d!.active, devices: d!.devices, online: d!.online, pending: d!.pending, quarantined: d!.quarantined,
      seq: d!.seq, changesToday: d!.changes, conflictsToday: d!.conflicts, rejectedToday: d!.rejected,
    };
  }

  async addActivity(given: readonly ActivitySample[]): Promise<void> {
    if (given.length === 0) return;
    // One row per minute: an upsert may not meet the same row twice in one statement.
    const byMinute = new Map<string, ActivitySample>();
    for (const sample of given) {
      const key = `${sample.projectId}\u0000${sample.minute}`;
      const seen = byMinute.get(key);
      byMinute.set(key, !seen ? sample : {
        ...seen, pushes: seen.pushes + sample.pushes, changes: seen.changes + sample.changes, applied: seen.applied + sample.applied,
        conflicts: seen.conflicts + sample.conflicts, rejected: seen.rejected + sample.rejected, catchUpRows: seen.catchUpRows + sample.catchUpRows,
        connections: Math.max(seen.connections, sample.connections),
      });
    }
    const samples = [...byMinute.values()];
    const column = <K extends keyof ActivitySample>(key: K) => samples.map((s) => s[key]);
    await this.#query(
      `INSERT INTO activity (project_id, minute, pushes, changes, applied, conflicts, rejected, catchup_rows, connections)
       SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[])
       ON CONFLICT (project_id, minute) DO UPDATE SET pushes = activity.pushes + excluded.pushes, changes = activity.changes + excluded.changes,
         applied = activity.applied + excluded.applied, conflicts = activity.conflicts + excluded.conflicts, rejected = activity.rejected + excluded.rejected,
         catchup_rows = activity.catchup_rows + excluded.catchup_rows, connections = greatest(activity.connections, excluded.connections)`,
      [column('projectId'), column('minute'), column('pushes'), column('changes'), column('applied'), column('conflicts'), column('rejected'), column('catchUpRows'), column('connections')],
    );
  }

  async activity(projectId: string, from: number, to: number, bucketMinutes = 1): Promise<ActivitySample[]> {
    const bucket = bucketMinutes * 60_000;
    const rows = await this.#query<{ minute: number; pushes: number; changes: number; applied: number; conflicts: number; rejected: number; catchup_rows: number; connections: number }>(
      `SELECT (minute / $4) * $4 AS minute, sum(pushes) AS pushes, sum(changes) AS changes, sum(applied) AS applied, sum(conflicts) AS conflicts,
         sum(rejected) AS rejected, sum(catchup_rows) AS catchup_rows, max(connections) AS connections
       FROM activity WHERE project_id = $1 AND minute >= $2 AND minute < $3 GROUP BY 1 ORDER BY 1`,
      [projectId, from, to, bucket],
    );
    return rows.map((r) => ({ projectId, minute: r.minute, pushes: r.pushes, changes: r.changes, applied: r.applied, conflicts: r.conflicts, rejected: r.rejected, catchUpRows: r.catchup_rows, connections: r.connections }));
  }

  async changes(query: ChangeQuery): Promise<ChangeRecord[]> {
    const params: unknown[] = [query.projectId];
    const p = (value: unknown) => `$${params.push(value)}`;
    const filters = [`project_id = $1`];
    if (query.table !== undefined) filters.push(`table_name = ${p(query.table)}`);
    if (query.row !== undefined) filters.push(`row_id = ${p(query.row)}`);
    if (query.userId !== undefined) filters.push(`user_id = ${p(query.userId)}`);
    if (query.deviceId !== undefined) filters.push(`device_id = ${p(query.deviceId)}`);
    if (query.op !== undefined) filters.push(`op = ${p(query.op)}`);
    if (query.outcome !== undefined) filters.push(`outcome = ${p(query.outcome)}`);
    if (query.from !== undefined) filters.push(`received_at >= ${p(query.from)}`);
    if (query.to !== undefined) filters.push(`received_at <= ${p(query.to)}`);
    const order = query.ascending === true ? 'ASC' : 'DESC';
    if (query.before !== undefined) {
      filters.push(`(received_at, device_id, change_id) ${query.ascending === true ? '>' : '<'} (${p(query.before.receivedAt)}::bigint, ${p(query.before.deviceId)}::text, ${p(query.before.changeId)}::text)`);
    }
    const sort = `ORDER BY received_at ${order}, device_id ${order}, change_id ${order} LIMIT ${p(query.limit)}`;
    const where = filters.join(' AND ');
    const rows = await this.#query<{ change_id: string; device_id: string; user_id: string; table_name: string; row_id: string; op: string; payload: string | null; clock: string; outcome: string; seq: number | null; received_at: number; message: string | null }>(
      `SELECT * FROM ((SELECT change_id, device_id, user_id, table_name, row_id, op, payload, clock, outcome, seq, received_at, NULL::text AS message FROM change_log WHERE ${where} ${sort})
        UNION ALL (SELECT change_id, device_id, user_id, table_name, row_id, op, NULL, clock, outcome, seq, received_at, message FROM push_outcomes WHERE ${where} ${sort})) AS both_logs ${sort}`,
      params,
    );
    return rows.map((r) => ({
      changeId: r.change_id, deviceId: r.device_id, userId: r.user_id, table: r.table_name, row: r.row_id, op: r.op,
      values: r.payload === null ? null : (JSON.parse(r.payload) as Record<string, unknown>), clock: r.clock, outcome: r.outcome, seq: r.seq, receivedAt: r.received_at, message: r.message,
    }));
  }

  async logOutcomes(outcomes: readonly OutcomeRecord[]): Promise<void> {
    if (outcomes.length === 0) return;
    const column = <K extends keyof OutcomeRecord>(key: K) => outcomes.map((o) => o[key]);
    await this.#query(
      `INSERT INTO push_outcomes (project_id, user_id, device_id, change_id, table_name, row_id, op, clock, outcome, seq, message, received_at)
       SELECT *, $12::bigint FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::bigint[], $11::text[])`,
      [column('projectId'), column('userId'), column('deviceId'), column('changeId'), column('table'), column('row'), column('op'), column('clock'), column('outcome'), column('seq'), column('message'), Date.now()],
    );
  }

  async conflicts(query: ConflictQuery): Promise<ConflictRecord[]> {
    const params: unknown[] = [query.projectId];
    const p = (value: unknown) => `$${params.push(value)}`;
    const filters = ['c.project_id = $1'];
    if (query.table !== undefined) filters.push(`c.table_name = ${p(query.table)}`);
    if (query.row !== undefined) filters.push(`c.row_id = ${p(query.row)}`);
    if (query.from !== undefined) filters.push(`c.at >= ${p(query.from)}`);
    if (query.to !== undefined) filters.push(`c.at <= ${p(query.to)}`);
    if (query.before !== undefined) filters.push(`c.id < ${p(query.before)}`);
    if (query.changeId !== undefined) filters.push(`c.change_id = ${p(query.changeId)}`);
    const rows = await this.#query<ConflictRow & { id: number; at: number; change_id: string | null; device_id: string | null; user_id: string | null }>(
      `SELECT c.id, c.table_name, c.row_id, c.column_name, c.rule, c.losing, c.winning, c.at, c.change_id, c.device_id, d.user_id
       FROM conflicts c LEFT JOIN devices d ON d.project_id = c.project_id AND d.device_id = c.device_id
       WHERE ${filters.join(' AND ')} ORDER BY c.id DESC LIMIT ${p(query.limit)}`,
      params,
    );
    return rows.map((r) => ({ ...conflictOf(r), id: r.id, at: r.at, changeId: r.change_id, deviceId: r.device_id, userId: r.user_id }));
  }

  async tables(projectId: string): Promise<TableRecord[]> {
    const rows = await this.#query<{ table_name: string; rows: number; deleted: number }>(
      'SELECT table_name, count(*) AS rows, count(*) FILTER (WHERE deleted) AS deleted FROM row_state WHERE project_id = $1 GROUP BY table_name ORDER BY table_name',
      [projectId],
    );
    return rows.map((r) => ({ table: r.table_name, rows: r.rows, deleted: r.deleted }));
  }

  /** server/push-plan.ts between the reads and the writes, in one transaction holding the project's row lock. */
  push(input: PushInput): Promise<PushOutput> {
    return this.#transaction(async (db) => {
      const found = await db.query<{ strategy: Strategy; shared_tables: string; last_seq: number }>('SELECT strategy, shared_tables, last_seq FROM projects WHERE id = $1 FOR UPDATE', [input.projectId]);
      const head = found.rows[0];
      if (!head) throw new Error(`no such project: ${input.projectId}`);
      const project = { id: input.projectId, strategy: head.strategy, sharedTables: JSON.parse(head.shared_tables) as string[] };
      const ids = input.changes.map((c) => c.id);
      const touched = pushRows(project, input.userId, input.changes);
      // One after another: a client runs one query at a time.
      const seen = await 
db.query<{ change_id: string; seq: number | null }>('SELECT change_id, seq FROM change_log WHERE project_id = $1 AND device_id = $2 AND change_id = ANY($3::text[])', [project.id, input.deviceId, ids]);
      const conflictRows = seen.rows.length === 0 ? { rows: [] } : await db.query<ConflictRow & { change_id: string }>('SELECT change_id, table_name, row_id, column_name, rule, losing, winning FROM conflicts WHERE project_id = $1 AND device_id = $2 AND change_id = ANY($3::text[]) ORDER BY id', [project.id, input.deviceId, ids]);
      const stateRows = await db.query<RowStateRecord & { scope: string; table_name: string; row_id: string }>(
          `SELECT r.scope, r.table_name, r.row_id, r.vals, r.clocks, r.seqs, r.deleted, r.delete_clock, r.last_seq
           FROM row_state r JOIN unnest($2::text[], $3::text[], $4::text[]) AS k(scope, table_name, row_id)
             ON r.project_id = $1 AND r.scope = k.scope AND r.table_name = k.table_name AND r.row_id = k.row_id`,
          [project.id, touched.map((r) => r.scope), touched.map((r) => r.table), touched.map((r) => r.row)],
        );
      const logged = new Map(seen.rows.map((r) => [r.change_id, r.seq] as const));
      const conflictsOf = new Map<string, Conflict[]>();
      for (const row of conflictRows.rows) if (logged.has(row.change_id)) conflictsOf.set(row.change_id, [...(conflictsOf.get(row.change_id) ?? []), conflictOf(row)]);
      const rows = new Map<string, RowState>(stateRows.rows.map((r) => [`${r.scope}\u0000${r.table_name}\u0000${r.row_id}`, rowStateOf(r)]));
      const { writes, output } = planPush(input, { project, lastSeq: head.last_seq, logged, conflictsOf, rows });
      const now = Date.now();
      // Each kind of write in one statement, its rows as arrays.
      if (writes.changes.length > 0) {
        const c = writes.changes;
        await db.query(
          `INSERT INTO change_log (project_id, change_id, device_id, user_id, table_name, row_id, op, payload, clock, outcome, seq, received_at)
           SELECT $1, id, $2, $3, t, r, op, payload, clock, outcome, seq, $4 FROM unnest($5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::bigint[])
             AS x(id, t, r, op, payload, clock, outcome, seq)`,
          [project.id, input.deviceId, input.userId, now, c.map((x) => x.change.id), c.map((x) => x.change.table), c.map((x) => x.change.row), c.map((x) => x.change.op),
            c.map((x) => x.payload), c.map((x) => x.change.clock), c.map((x) => x.outcome), c.map((x) => x.seq)],
        );
      }
      if (writes.rows.length > 0) {
        const r = writes.rows;
        await db.query(
          `INSERT INTO row_state (project_id, scope, table_name, row_id, vals, clocks, seqs, deleted, delete_clock, last_seq, changed_at)
           SELECT $1, scope, t, r, vals, clocks, seqs, deleted, delete_clock, last_seq, $2 FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::boolean[], $10::text[], $11::bigint[])
             AS x(scope, t, r, vals, clocks, seqs, deleted, delete_clock, last_seq)
           ON CONFLICT (project_id, scope, table_name, row_id) DO UPDATE SET vals = excluded.vals, clocks = excluded.clocks, seqs = excluded.seqs,
             deleted = excluded.deleted, delete_clock = excluded.delete_clock, last_seq = excluded.last_seq, changed_at = excluded.changed_at`,
          [project.id, now, r.map((x) => x.scope), r.map((x) => x.table), r.map((x) => x.row), r.map((x) => x.values), r.map((x) => JSON.stringify(x.state.clocks)),
            r.map((x) => JSON.stringify(x.state.seqs)), r.map((x) => x.state.deleted), r.map((x) => x.state.deleteClock), r.map((x) => x.state.lastSeq)],
        );
      }
      if (writes.conflicts.length > 0) {
        const k = writes.conflicts;
        await db.query(
          `INSERT INTO conflicts (project_id, table_name, row_id, column_name, rule, losing, winning, at, change_id, device_id)
           SELECT $1, t, r, col, rule, losing, winning, $2, change_id, $3 FROM unnest($4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[])
             WITH ORDINALITY AS x(t, r, col, rule, losing, winning, change_id, n) ORDER BY n`,
          [project.id, now, input.deviceId, k.map((x) => x.conflict.table), k.map((x) => x.conflict.row), k.map((x) => x.conflict.column), k.map((x) => x.conflict.rule),
            k.map((x) => JSON.stringify(x.conflict.losing)), k.map((x) => JSON.stringify(x.conflict.winning)), k.map((x) => x.change.id)],
        );
      }
      await db.query('UPDATE projects SET last_seq = $1 WHERE id = $2', [writes.lastSeq, project.id]);
      await this.#notify(db, project.id, output.range);
      return output;
    });
  }

  pull(input: PullInput): Promise<PullOutput> {
    return this.#transaction(async (db) => {
      const horizonRows = await db.query<{ horizon: number; last_seq: number }>(
        `SELECT greatest(p.horizon, coalesce((SELECT max(horizon) FROM scope_horizons WHERE project_id = p.id AND scope = ANY($2::text[])), 0)) AS horizon, p.last_seq
         FROM projects p WHERE p.id = $1`,
        [input.projectId, input.scopes],
      );
      const horizon = horizonRows.rows[0]?.horizon ?? 0;
      const lastSeq = horizonRows.rows[0]?.last_seq ?? 0;
      const fresh = input.fresh === true && input.cursor === 0;
      const checked = input.continuing === true ? input.since : input.cursor;
      const resync = !fresh && checked !== undefined && checked < horizon;
      const from = resync ? 0 : input.cursor;
      const params: unknown[] = [input.projectId, from, input.limit + 1];
      const pages = input.scopes.map((scope) => {
        params.push(scope);
        return `(SELECT table_name, row_id, vals, clocks, deleted, delete_clock, last_seq FROM row_state
                 WHERE project_id = $1 AND scope = $${params.length} AND last_seq > $2${fresh ? ' AND NOT deleted' : ''} ORDER BY last_seq LIMIT $3)`;
      });
      const found = await db.query<Omit<RowStateRecord, 'seqs'> & { table_name: string; row_id: string }>(`SELECT * FROM (${pages.join(' UNION ALL ')}) AS page ORDER BY last_seq LIMIT $3`, params);
      const rows = found.rows;
      const hasMore = rows.length > input.limit;
      const batch = rows.slice(0, input.limit);
      const changes = batch.map((r) => storedRowChange(r.table_name, r.row_id, r));
      const last = batch.at(-1)?.last_seq;
      const cursor = hasMore && last !== undefined ? last : lastSeq;
      let remaining = 0;
      if (hasMore) {
        if (input.remaining !== undefined && !resync) remaining = Math.max(0, input.remaining - batch.length);
        else {
          const counted = await db.query<{ n: number }>('SELECT count(*) AS n FROM row_state WHERE project_id = $1 AND scope = ANY($2::text[]) AND last_seq > $3', [input.projectId, input.scopes, cursor]);
          remaining = counted.rows[0]?.n ?? 0;
        }
      }
      return { changes, cursor, hasMore, remaining, ...(resync ? { resync: true as const } : {}) };
    }, true, 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  }

  async rows(input: RowsInput): Promise<RowsOutput> {
    const params: unknown[] = [input.projectId, input.scope, input.table];
    const p = (value: unknown) => `$${params.push(value)}`;
    const filters = ['project_id = $1', 'scope = $2', 'table_name = $3'];
    if (input.ids !== undefined) filters.push(`row_id = ANY(${p(input.ids)}::text[])`);
    else filters.push(`row_id > ${p(input.after ?? '')}`);
    if (input.includeDeleted !== true) filters.push('NOT deleted');
    if (input.where !== undefined) {
      // As SQLite's json_extract(...) IS ?: a text matches a JSON string, a number a JSON number.
      // Matched in the row's JSON text as the server wrote it (JSON.stringify: `"column":value`,
      // then `,` or `}`), never parsed by PostgreSQL: json and jsonb refuse some strings a value
      // may hold (U+0000, a lone surrogate), which would fail the whole search.
      const like = (text: string) => text.replace(/[\\%_]/g, (c) => `\\${c}`);
      const pair = like(`${JSON.stringify(input.where.column)}:${JSON.stringify(input.where.value)}`);
      filters.push(`(vals LIKE ${p(`%${pair},%`)} ESCAPE '\\' OR vals LIKE ${p(`%${pair}}`)} ESCAPE '\\')`);
    }
    const rows = await this.#query<Omit<RowStateRecord, 'seqs'> & { row_id: string }>(
      `SELECT row_id, vals, clocks, deleted, delete_clock, last_seq FROM row_state WHERE ${filters.join(' AND ')} ORDER BY row_id LIMIT ${p(input.limit + 1)}`,
      params,
    );
    return { rows: rows.slice(0, input.limit).map((r) => storedRowChange(input.table, r.row_id, r)), hasMore: rows.length > input.limit };
  }

  async createServiceKey(key: Omit<StoredServiceKey, 'createdAt'>): Promise<ServiceKey> {
    const createdAt = Date.now();
    await this.#query('INSERT INTO service_keys (id, project_id, name, hash, created_at) VALUES ($1, $2, $3, $4, $5)', [key.id, key.projectId, key.name, key.hash, createdAt]);
    return { id: key.id, projectId: key.projectId, name: key.name, createdAt };
  }

  async serviceKey(id: string): Promise<StoredServiceKey | null> {
    const [row] = await this.#query<{ id: string; project_id: string; name: string; hash: string; created_at: number }>('SELECT id, project_id, name, hash, created_at FROM service_keys WHERE id = $1', [id]);
    return row ? { id: row.id, projectId: row.project_id, name: row.name, hash: row.hash, createdAt: row.created_at } : null;
  }

  async listServiceKeys(projectId: string): Promise<ServiceKey[]> {
    const rows = await this.#query<{ id: string; project_id: string; name: string; created_at: number }>('SELECT id, project_id, name, created_at FROM service_keys WHERE project_id = $1 ORDER BY created_at, id', [projectId]);
    return rows.map((row) => ({ id: row.id, projectId: row.project_id, name: row.name, createdAt: row.created_at }));
  }

  async deleteServiceKey(projectId: string, id: string): Promise<boolean> {
    return (await this.#query('DELETE FROM service_keys WHERE project_id = $1 AND id = $2 RETURNING id', [projectId, id])).length === 1;
  }

  async committed(projectId: string, range: SeqRange): Promise<ScopedRowChange[]> {
    const rows = await this.#query<Omit<RowStateRecord, 'seqs'> & { scope: string; table_name: string; row_id: string }>(
      'SELECT scope, table_name, row_id, vals, clocks, deleted, delete_clock, last_seq FROM row_state WHERE project_id = $1 AND last_seq > $2 AND last_seq <= $3 ORDER BY last_seq',
      [projectId, range.from, range.to],
    );
    return rows.map((r) => ({ scope: r.scope, ...storedRowChange(r.table_name, r.row_id, r) }));
  }

  /**
   * LISTEN on the commits channel with a connection of its own. A notice names the committing
   * process, the project and the seq range (well under PostgreSQL's 8,000-byte payload limit); this
   * process's own are left out. A dropped connection is made again, with back-off; what was
   * committed meanwhile shows as a gap, which the caller reads.
   */
  async watchCommits(listener: (projectId: string, range: SeqRange) => void, reconnected?: () => void): Promise<() => Promise<void>> {
    await this.#ready;
    let stopped = false;
    let client: pg.Client | null = null;
    let delay = 100;
    let connects = 0;
    const connect = async (): Promise<void> => {
      const next = new pg.Client({ connectionString: this.#connectionString });
      next.on('notification', (message) => {
        const [origin, projectId, from, to] = (message.payload ?? '').split(' ');
        if (origin === this.#instance || !projectId) return;
        listener(projectId, { from: Number(from), to: Number(to) });
      });
      next.on('error', () => undefined);
      next.on('end', () => {
        if (stopped) return;
        client = null;
        setTimeout(() => void connect().catch(() => undefined), delay);
        delay = Math.min(delay * 2, 5000);
      });
      await next.connect();
      await next.query(`LISTEN ${this.#channel}`);
      if (stopped) return void (await next.end());
      client = next;
      delay = 100;
      // Notices sent while it was away are lost: the caller reads what was committed meanwhile.
      if (connects++ > 0) reconnected?.();
    };
    await connect();
    return async () => {
      stopped = true;
      await client?.end();
    };
  }

  /** Tells the other processes of a commit, in its transaction (PostgreSQL sends it at the commit, in commit order). */
  async #notify(db: Queryable, projectId: string, range: SeqRange): Promise<void> {
    if (range.to > range.from) await db.query('SELECT pg_notify($1, $2)', [this.#channel, `${this.#instance} ${projectId} ${range.from} ${range.to}`]);
  }

  async currentSeq(projectId: string): Promise<number> {
    const [row] = await this.#query<{ last_seq: number }>('SELECT last_seq FROM projects WHERE id = $1', [projectId]);
    return row?.last_seq ?? 0;
  }

  async compact(retention: Retention, now = Date.now()): Promise<CompactionResult> {
    const chunks = async (sql: string, before: number): Promise<number> => {
      let total = 0;
      for (;;) {
        const done = (await this.#query(sql, [before, COMPACT_CHUNK])).length;
        total += done;
        if (done < COMPACT_CHUNK) return total;
      }
    };
    const changes = await chunks('DELETE FROM change_log WHERE ctid IN (SELECT ctid FROM change_log WHERE received_at < $1 LIMIT $2) RETURNING 1', now - retention.changeLogMs);
    await chunks('DELETE FROM push_outcomes WHERE ctid IN (SELECT ctid FROM push_outcomes WHERE received_at < $1 LIMIT $2) RETURNING 1', now - retention.changeLogMs);
    const conflicts = await chunks('DELETE FROM conflicts WHERE id IN (SELECT id FROM conflicts WHERE at < $1 LIMIT $2) RETURNING 1', now - retention.conflictsMs);
    let tombstones = 0;
    for (;;) {
      const removed = await this.#transaction(async (db) => {
        // The projects' rows first, in id order, as a push takes its project's before its rows:
        // the other order deadlocks with a push that writes a row being compacted.
        await db.query('SELECT id FROM projects ORDER BY id FOR UPDATE');
        const gone = await db.query<{ project_id: string; last_seq: number }>(
          `DELETE FROM row_state WHERE (project_id, scope, table_name, row_id) IN
             (SELECT project_id, scope, table_name, row_id FROM row_state WHERE deleted AND changed_at < $1 LIMIT $2)
           RETURNING project_id, last_seq`,
          [now - retention.tombstonesMs, COMPACT_CHUNK],
        );
        const horizons = new Map<string, number>();
        for (const row of gone.rows) horizons.set(row.project_id, Math.max(horizons.get(row.project_id) ?? 0, row.last_seq));
        for (const [projectId, horizon] of horizons) await db.query('UPDATE projects SET horizon = greatest(horizon, $1) WHERE id = $2', [horizon, projectId]);
        return gone.rows.length;
      });
      tombstones += removed;
      if (removed < COMPACT_CHUNK) break;
    }
    return { changes, conflicts, tombstones };
  }

  async close(): Promise<void> {
    await this.#ready.catch(() => undefined);
    await this.#flushKeyUses();
    await this.#pool.end();
  }
}
