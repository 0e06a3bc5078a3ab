/**
 * The operators' admin API, under /v1/admin/ (admin key or console session: server/admin-session.ts).
 * The console (console/) is a page over it; scripts may call it the same way.
 *
 *   GET    /v1/admin/projects                                   every project with its counts
 *   GET    /v1/admin/projects/:p                                settings and stats
 *   PATCH  /v1/admin/projects/:p          { strategy?, sharedTables? }
 *   DELETE /v1/admin/projects/:p          { confirm: <project id> }
 *   GET    /v1/admin/projects/:p/activity?range=5m|24h|7d       the chart's points
 *   GET    /v1/admin/projects/:p/live                           Server-Sent Events: one `second` a second
 *   GET    /v1/admin/projects/:p/users?after&prefix&limit
 *   GET    /v1/admin/projects/:p/users/:u/devices               with online now, cursor and lag
 *   POST   /v1/admin/projects/:p/users/:u/block  { blocked }    (true also closes the user's sockets)
 *   DELETE /v1/admin/projects/:p/users/:u/data   { confirm: <user id> }
 *   POST   /v1/admin/projects/:p/devices/:d/disconnect
 *   GET    /v1/admin/projects/:p/changes?table&row&user&device&op&outcome&from&to&before&limit
 *   GET    /v1/admin/projects/:p/tables
 *   GET    /v1/admin/projects/:p/rows?table&scope&after&id&column&value&limit
 *   GET    /v1/admin/projects/:p/history?table&row&scope       a row's changes, oldest first, with the conflicts each met
 *   GET    /v1/admin/projects/:p/conflicts?table&row&from&to&before&limit
 *   GET    /v1/admin/projects/:p/keys ; POST …/keys ; DELETE …/keys/:kid   (signing keys)
 *   POST   /v1/admin/projects/:p/tokens      { user, ttlSeconds? }   a test token
 *
 * Every input is checked first (kind 'invalid', nothing changed); an unknown project is kind
 * 'not-found'.
 */
import type { Context, Hono } from 'hono';
import { streamSSE } from 'hono/streaming';
import * as v from 'valibot';
import { ErrorKind } from '../lib/protocol/error-kind.js';
import { IdentifierSchema, IdSchema, USER_ID, USER_ID_RULE } from '../lib/protocol/values.js';
import { randomHex } from '../worker/random.js';
import type { Activity, Second } from './activity.js';
import { mintUserToken } from './auth.js';
import { parse, ServerError } from './errors.js';
import type { Hub } from './hub.js';
import { SharedTablesSchema, StrategySchema } from './merge.js';
import { knownProject } from './push.js';
import type { ChangeCursor, Project, Store } from './store/store.js';
import { CloseCode } from '../lib/protocol/close-codes.js';

export interface ConsoleApiOptions {
  readonly store: Store;
  /** Who is connected now, and closing their sockets. */
  readonly hub?: Pick<Hub, 'subscribers' | 'disconnect'> | undefined;
  readonly activity?: Activity | undefined;
  readonly maxTokenLifetimeSeconds: number;
  /** Whether the request's credential still holds (a session may end while its stream is open). */
  readonly stillAllowed: (c: Context) => boolean;
  readonly onSeqTaken?: ((projectId: string) => void) | undefined;
  readonly onProjectDeleted?: ((projectId: string) => void) | undefined;
  readonly readJson: (c: Context) => Promise<unknown>;
}

const UserSchema = v.pipe(v.string(), v.regex(USER_ID, USER_ID_RULE));
const ScopeSchema = v.union([v.literal('shared'), v.pipe(v.string(), v.regex(/^user:[A-Za-z0-9_.@:-]{1,128}$/, 'a scope is shared or user:<user id>'))]);
const KidSchema = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{1,64}$/, 'a kid is 1-64 characters of A-Z a-z 0-9 _ -'));
const UpdateProjectSchema = v.strictObject({ strategy: v.optional(StrategySchema), sharedTables: v.optional(SharedTablesSchema) });
const ConfirmSchema = v.strictObject({ confirm: v.string() });
const BlockSchema = v.strictObject({ blocked: v.boolean() });
const TokenSchema = v.strictObject({
  user: UserSchema,
  ttlSeconds: v.optional(v.pipe(v.number(), v.integer(), v.minValue(60, 'a test token lives at least 60 s'))),
});
const OperationSchema = v.picklist(['insert', 'update', 'delete']);
const OutcomeSchema = v.picklist(['applied', 'superseded', 'duplicate', 'rejected']);

const MINUTE = 60_000;
/** Changes of a row's history shown at most. */
const HISTORY_LIMIT = 1000;
const RANGES = { '5m': 5 * MINUTE, '24h': 24 * 60 * MINUTE, '7d': 7 * 24 * 60 * MINUTE } as const;

export function mountConsoleApi(app: Hono, options: ConsoleApiOptions): void {
  const { store } = options;

  const projectOf = (c: Context): Promise<Project> => knownProject(store, c.req.param('project') ?? '');

  /** The store's counts, with what the server counted and has not saved yet. */
  const statsOf = async (projectId: string, dayStart: number) => {
    const stats = await store.stats(projectId, dayStart);
    const unsaved = options.activity?.unsaved(projectId, dayStart) ?? { changes: 0, conflicts: 0, rejected: 0 };
    return {
      ...stats,
      changesToday: stats.changesToday + unsaved.changes,
      conflictsToday: stats.conflictsToday + unsaved.conflicts,
      rejectedToday: stats.rejectedToday + unsaved.rejected,
    };
  };

  /** Who is connected to the project now, by device. */
  const onlineDevices = (projectId: string): Set<string> => new Set((options.hub?.subscribers(projectId) ?? []).map((s) => s.deviceId));

  app.get('/v1/admin/projects', async (c) => {
    const dayStart = startOfDay();
    const projects = await store.listProjects();
    const rows = await Promise.all(
      projects.map(async (project) => {
        const stats = await statsOf(project.id, dayStart);
        return {
          ...settings(project),
          users: stats.users,
          devices: stats.devices,
          online: options.hub?.subscribers(project.id).length ?? stats.online,
          changesToday: stats.changesToday,
          conflictsToday: stats.conflictsToday,
        };
      }),
    );
    return c.json({ projects: rows });
  });

  app.get('/v1/admin/projects/:project', async (c) => {
    const project = await projectOf(c);
    const stats = await statsOf(project.id, startOfDay());
    return c.json({ project: settings(project), stats: { ...stats, online: options.hub?.subscribers(project.id).length ?? stats.online } });
  });

  app.patch('/v1/admin/projects/:project', async (c) => {
    const project = await projectOf(c);
    const change = parse(UpdateProjectSchema, await options.readJson(c));
    if (change.sharedTables !== undefined) {
      // A table with rows would leave them in the scope they were written to, out of every device's reach.
      const moved = new Set([...change.sharedTables.filter((t) => !project.sharedTables.includes(t)), ...project.sharedTables.filter((t) => !change.sharedTables!.includes(t))]);
      const withRows = (await store.tables(project.id)).filter((t) => moved.has(t.table)).map((t) => t.table);
      if (withRows.length > 0) throw new ServerError(ErrorKind.Invalid, `tables with rows cannot change scope (their rows would be stranded): ${withRows.join(', ')}`);
    }
    const updated = await store.updateProject(project.id, defined(change));
    return c.json({ project: settings(updated as Project) });
  });

  app.delete('/v1/admin/projects/:project', async (c) => {
    const project = await projectOf(c);
    const { confirm } = parse(ConfirmSchema, await options.readJson(c));
    if (confirm !== project.id) throw new ServerError(ErrorKind.Invalid, `type the project id (${project.id}) to confirm`);
    options.hub?.disconnect(project.id, () => true, ErrorKind.NotFound, 'this project was deleted', CloseCode.notFound);
    await store.deleteProject(project.id);
    options.activity?.forget(project.id);
    options.onProjectDeleted?.(project.id);
    return c.body(null, 204);
  });

  app.get('/v1/admin/projects/:project/activity', async (c) => {
    const project = await projectOf(c);
    const range = c.req.query('range') ?? '5m';
    if (!Object.hasOwn(RANGES, range)) throw new ServerError(ErrorKind.Invalid, 'range must be 5m, 24h or 7d');
    if (range === '5m') return c.json({ range, unit: 'second', points: options.activity?.recent(project.id) ?? [] });
    const now = Date.now();
    const bucketMinutes = range === '7d' ? 10 : 1;
    const samples = await store.activity(project.id, now - RANGES[range as keyof typeof RANGES], now + MINUTE, bucketMinutes);
    const points = samples.map(({ projectId: _p, minute, ...counts }) => ({ at: minute, ...counts }));
    return c.json({ range, unit: `${bucketMinutes} minute${bucketMinutes > 1 ? 's' : ''}`, points });
  });

  app.get('/v1/admin/projects/:project/live', async (c) => {
    const project = await projectOf(c);
    const activity = options.activity;
    if (!activity) throw new ServerError(ErrorKind.NotFound, 'this server counts no live activity');
    return streamSSE(c, async (stream) => {
      const queue: Second[] = [];
      let wake: (() => void) | null = null;
      let open = true;
      const stop = activity.listen(project.id, (second) => {
        if (second === null) open = false;
        // A reader that has stopped reading holds at most the chart's five minutes.
        else if (queue.length >= 300) queue.shift();
        if (second !== null) queue.push(second);
        wake?.();
      });
      stream.onAbort(() => {
        open = false;
        wake?.();
      });
      try {
        while (open) {
          // Signed out (or the session ran out): the stream ends with the session.
          if (!options.stillAllowed(c)) break;
          while (queue.length > 0) await stream.writeSSE({ event: 'second', data: JSON.stringify(queue.shift()) });
          await new Promise<void>((resolve) => (wake = resolve));
          wake = null;
        }
      } finally {
        stop();
      }
    });
  });

  app.get('/v1/admin/projects/:project/users', async (c) => {
    const project = await projectOf(c);
    const after = c.req.query('after');
    const prefix = c.req.query('prefix');
    if (prefix !== undefined && prefix.length > 128) throw new ServerError(ErrorKind.Invalid, 'prefix is at most 128 characters');
    const limit = limitParam(c, 100, 1000);
    const users = await store.users(project.id, { limit: limit + 1, ...(after !== undefined ? { after } : {}), ...(prefix ? { prefix } : {}) });
    const online = new Map<string, number>();
    for (const s of options.hub?.subscribers(project.id) ?? []) online.set(s.userId, (online.get(s.userId) ?? 0) + 1);
    const page = users.slice(0, limit).map((user) => ({ ...user, online: options.hub ? (online.get(user.userId) ?? 0) : user.online }));
    return c.json({ users: page, next: users.length > limit ? (page.at(-1)?.userId ?? null) : null });
  });

  app.get('/v1/admin/projects/:project/users/:user/devices', async (c) => {
    const project = await projectOf(c);
    const userId = parse(UserSchema, c.req.param('user'));
    const [devices, seq, blocked] = await Promise.all([store.listDevices(project.id, { userId }), store.currentSeq(project.id), store.isBlocked(project.id, userId)]);
    const online = onlineDevices(project.id);
    return c.json({
      userId,
      blocked,
      seq,
      devices: devices.map((d) => ({ ...d, online: options.hub ? online.has(d.deviceId) : d.online, lag: Math.max(0, seq - d.cursor) })),
    });
  });

  app.post('/v1/admin/projects/:project/users/:user/block', async (c) => {
    const project = await projectOf(c);
    const userId = parse(UserSchema, c.req.param('user'));
    const { blocked } = parse(BlockSchema, await options.readJson(c));
    await store.setBlocked(project.id, userId, blocked);
    const closed = blocked ? (options.hub?.disconnect(project.id, (s) => s.userId === userId, ErrorKind.Auth, `user ${userId} is blocked in this project`, CloseCode.auth) ?? 0) : 0;
    return c.json({ userId, blocked, closed });
  });

  app.delete('/v1/admin/projects/:project/users/:user/data', async (c) => {
    const project = await projectOf(c);
    const userId = parse(UserSchema, c.req.param('user'));
    const { confirm } = parse(ConfirmSchema, await options.readJson(c));
    if (confirm !== userId) throw new ServerError(ErrorKind.Invalid, `type the user id (${userId}) to confirm`);
    // Closed first: each reconnects, past the deletion's seq, with a re-sync that drops what is gone.
    const closed = options.hub?.disconnect(project.id, (s) => s.userId === userId, ErrorKind.Invalid, 'this user\'s data was deleted: reconnect to re-sync', CloseCode.invalid) ?? 0;
    const deleted = await store.deleteUserData(project.id, userId);
    options.onSeqTaken?.(project.id);
    return c.json({ userId, closed, ...deleted });
  });

  app.post('/v1/admin/projects/:project/devices/:device/disconnect', async (c) => {
    const project = await projectOf(c);
    const deviceId = parse(IdSchema, c.req.param('device'));
    const closed = options.hub?.disconnect(project.id, (s) => s.deviceId === deviceId, ErrorKind.Invalid, 'disconnected by an operator', CloseCode.invalid) ?? 0;
    if (closed === 0) throw new ServerError(ErrorKind.NotFound, `device ${deviceId} is not connected`);
    return c.json({ deviceId, closed });
  });

  app.get('/v1/admin/projects/:project/changes', async (c) => {
    const project = await projectOf(c);
    const q = (name: string) => c.req.query(name) || undefined;
    const table = optional(IdentifierSchema, q('table'));
    const row = optional(IdSchema, q('row'));
    const userId = optional(UserSchema, q('user'));
    const deviceId = optional(IdSchema, q('device'));
    const op = optional(OperationSchema, q('op'));
    const outcome = optional(OutcomeSchema, q('outcome'));
    const from = timeParam(q('from'), 'from');
    const to = timeParam(q('to'), 'to');
    const before = cursorParam(q('before'));
    const limit = limitParam(c, 100, 1000);
    const changes = await store.changes({
      projectId: project.id, limit: limit + 1,
      ...defined({ table, row, userId, deviceId, op, outcome, from, to, before }),
    });
    const page = changes.slice(0, limit);
    const last = page.at(-1);
    return c.json({ changes: page, next: changes.length > limit && last ? `${last.receivedAt}:${last.deviceId}:${last.changeId}` : null });
  });

  app.get('/v1/admin/projects/:project/tables', async (c) => {
    const project = await projectOf(c);
    const tables = await store.tables(project.id);
    return c.json({ tables: tables.map((t) => ({ ...t, shared: project.sharedTables.includes(t.table) })) });
  });

  app.get('/v1/admin/projects/:project/rows', async (c) => {
    const project = await projectOf(c);
    const table = parse(IdentifierSchema, c.req.query('table') ?? '');
    const scope = project.sharedTables.includes(table) ? 'shared' : parse(ScopeSchema, c.req.query('scope') ?? '');
    if (scope === 'shared' && !project.sharedTables.includes(table)) throw new ServerError(ErrorKind.Invalid, `${table} is not a shared table: give scope=user:<user id>`);
    const after = optional(IdSchema, c.req.query('after') || undefined);
    const id = optional(IdSchema, c.req.query('id') || undefined);
    const column = optional(IdentifierSchema, c.req.query('column') || undefined);
    const valueText = c.req.query('value');
    if ((column === undefined) !== (valueText === undefined)) throw new ServerError(ErrorKind.Invalid, 'column and value go together');
    const limit = limitParam(c, 50, 500);
    const read = (value?: string | number) =>
      store.rows({
        projectId: project.id, scope, table, limit, includeDeleted: id !== undefined,
        ...defined({ after: id === undefined ? after : undefined, ids: id === undefined ? undefined : [id] }),
        ...(column !== undefined && value !== undefined ? { where: { column, value } } : {}),
      });
    // A value that reads as a number is looked for as one, then (when nothing matched) as text.
    const asNumber = valueText !== undefined && /^-?\d+(\.\d+)?$/.test(valueText) && Number.isFinite(Number(valueText)) ? Number(valueText) : undefined;
    let page = await read(asNumber ?? valueText);
    if (asNumber !== undefined && page.rows.length === 0) page = await read(valueText);
    return c.json({ scope, rows: page.rows, next: page.hasMore && id === undefined ? (page.rows.at(-1)?.row ?? null) : null });
  });

  app.get('/v1/admin/projects/:project/history', async (c) => {
    const project = await projectOf(c);
    const table = parse(IdentifierSchema, c.req.query('table') ?? '');
    const row = parse(IdSchema, c.req.query('row') ?? '');
    // The newest HISTORY_LIMIT changes (a long-lived row's oldest are left out, and said to be).
    const [newest, conflicts] = await Promise.all([
      store.changes({ projectId: project.id, table, row, limit: HISTORY_LIMIT + 1 }),
      store.conflicts({ projectId: project.id, table, row, limit: 5 * HISTORY_LIMIT }),
    ]);
    const changes = newest.slice(0, HISTORY_LIMIT).reverse();
    const byChange = new Map<string, typeof conflicts>();
    for (const conflict of conflicts) {
      const key = `${conflict.deviceId}\u0000${conflict.changeId}`;
      byChange.set(key, [...(byChange.get(key) ?? []), conflict]);
    }
    return c.json({
      table,
      row,
      truncated: newest.length > HISTORY_LIMIT,
      changes: changes.map((change) => ({ ...change, conflicts: (byChange.get(`${change.deviceId}\u0000${change.changeId}`) ?? []).reverse() })),
    });
  });

  app.get('/v1/admin/projects/:project/conflicts', async (c) => {
    const project = await projectOf(c);
    const q = (name: string) => c.req.query(name) || undefined;
    const table = optional(IdentifierSchema, q('table'));
    const row = optional(IdSchema, q('row'));
    const from = timeParam(q('from'), 'from');
    const to = timeParam(q('to'), 'to');
    const beforeText = q('before');
    if (beforeText !== undefined && !/^\d{1,15}$/.test(beforeText)) throw new ServerError(ErrorKind.Invalid, 'before must be a conflict id');
    const limit = limitParam(c, 100, 1000);
    const conflicts = await store.conflicts({ projectId: project.id, limit: limit + 1, ...defined({ table, row, from, to, before: beforeText === undefined ? undefined : Number(beforeText) }) });
    const page = conflicts.slice(0, limit);
    return c.json({ conflicts: page, next: conflicts.length > limit ? (page.at(-1)?.id ?? null) : null });
  });

  app.get('/v1/admin/projects/:project/keys', async (c) => {
    const project = await projectOf(c);
    return c.json({ keys: await store.signingKeys(project.id) });
  });

  app.post('/v1/admin/projects/:project/keys', async (c) => {
    const project = await projectOf(c);
    const kid = `k${randomHex(6)}`;
    const secret = randomHex(32);
    const key = await store.createSigningKey(project.id, kid, secret);
    return c.json({ key, secret }, 201);
  });

  app.delete('/v1/admin/projects/:project/keys/:kid', async (c) => {
    const project = await projectOf(c);
    const kid = parse(KidSchema, c.req.param('kid'));
    if (!(await store.revokeSigningKey(project.id, kid))) throw new ServerError(ErrorKind.NotFound, `no signing key ${kid} that is not revoked already`);
    const closed = options.hub?.disconnect(project.id, (s) => s.kid === kid, ErrorKind.Auth, `the token's signing key ${kid} was revoked`, CloseCode.auth) ?? 0;
    return c.json({ kid, revoked: true, closed });
  });

  app.post('/v1/admin/projects/:project/tokens', async (c) => {
    const project = await projectOf(c);
    const { user, ttlSeconds } = parse(TokenSchema, await options.readJson(c));
    const ttl = Math.min(ttlSeconds ?? 3600, options.maxTokenLifetimeSeconds);
    const token = await mintUserToken(project, user, ttl);
    return c.json({ token, user, kid: project.keys[0]?.kid, expiresAt: Date.now() + ttl * 1000 });
  });
}

/** A project as operators see it: no secrets. */
function settings(project: Project): { id: string; strategy: string; sharedTables: readonly string[]; createdAt: number } {
  return { id: project.id, strategy: project.strategy, sharedTables: project.sharedTables, createdAt: project.createdAt };
}

/** Today's start in UTC. */
function startOfDay(now = Date.now()): number {
  return Math.floor(now / 86_400_000) * 86_400_000;
}

function optional<S extends v.GenericSchema>(schema: S, value: unknown): v.InferOutput<S> | undefined {
  return value === undefined ? undefined : parse(schema, value);
}

function defined<T extends Record<string, unknown>>(values: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(values).filter(([, value]) => value !== undefined)) as { [K in keyof T]?: Exclude<T[K], undefined> };
}

function limitParam(c: Context, fallback: number, max: number): number {
  const text = c.req.query('limit');
  if (text === undefined || text === '') return fallback;
  if (!/^\d{1,6}$/.test(text) || Number(text) < 1) throw new ServerError(ErrorKind.Invalid, 'limit must be a whole number of at least 1');
  return Math.min(Number(text), max);
}

/** A time in ms since the epoch, or an ISO date. */
function timeParam(text: string | undefined, name: string): number | undefined {
  if (text === undefined) return undefined;
  const value = /^\d{1,15}$/.test(text) ? Number(text) : Date.parse(text);
  if (!Number.isFinite(value)) throw new ServerError(ErrorKind.Invalid, `${name} must be a time (ms since the epoch, or an ISO date)`);
  return value;
}

function cursorParam(text: string | undefined): ChangeCursor | undefined {
  if (text === undefined) return undefined;
  // A rejected change's id may be '' (one too malformed to name).
  const match = /^(\d{1,15}):([A-Za-z0-9_-]{1,64}):([A-Za-z0-9_-]{0,64})$/.exec(text);
  if (!match) throw new ServerError(ErrorKind.Invalid, 'before must be the `next` a page of changes gave');
  return { receivedAt: Number(match[1]), deviceId: match[2]!, changeId: match[3]! };
}
