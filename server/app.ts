/**
 * The sync server's HTTP API (Hono): project administration, dev-mode tokens, and push/pull for
 * clients that cannot hold a socket. Every error is `{ kind, message }` with a matching status;
 * every body is parsed against the protocol's schema before anything is stored.
 *
 *   GET  /v1/health
 *   POST /v1/admin/projects                       admin key  → create a project
 *   POST /v1/projects/:project/dev/token          dev mode   → a token for a named user (the dev project only)
 *   POST /v1/projects/:project/push               user token → ack
 *   GET  /v1/projects/:project/pull?cursor&limit&fresh&continuing&deviceId  user token → changes
 *        (fresh=1: the device holds none of its rows, so a pull from cursor 0 may leave deleted rows
 *        out; continuing=1: a later page of one catch-up, asked for with the cursor the last page
 *        gave, and since=the cursor the catch-up began at (left out by a fresh device and within a
 *        re-sync); a page with `resync: true` starts a re-sync, which goes on with continuing=1
 *        until hasMore is false)
 * and the backend API for the app's own server (server/backend.ts).
 */
import type { HttpBindings } from '@hono/node-server';
import { Hono, type Context, type MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import * as v from 'valibot';
import type { Changes } from '../lib/protocol/down.js';
import { ErrorKind } from '../lib/protocol/error-kind.js';
import { PROTOCOL_VERSION } from '../lib/protocol/protocol-version.js';
import { LIMITS } from '../lib/protocol/up.js';
import { IdSchema } from '../lib/protocol/values.js';
import { mountBackend } from './backend.js';
import type { Metrics } from './metrics.js';
import { corsMiddleware, type CorsOptions } from './cors.js';
import { authenticate, bearer, mintUserToken, type User } from './auth.js';
import { AdminSessions, adminAccess, mountSessions, stillAdmin } from './admin-session.js';
import type { Activity } from './activity.js';
import { mountConsoleApi } from './console-api.js';
import type { Hub } from './hub.js';
import { DEFAULT_LIMITS, type RateLimiter, type ServerLimits } from './limits.js';
import { parse, ServerError } from './errors.js';
import { acceptPush, claimDevice, HttpPushEnvelopeSchema, knownProject, SERVER_DEVICE_PREFIX, type PushObserver } from './push.js';
import { randomHex } from '../worker/random.js';
import { SharedTablesSchema, StrategySchema, type Resolver } from './merge.js';
import { scopesOf, type Project, type PushOutput, type Store } from './store/store.js';

export interface AppOptions {
  readonly store: Store;
  /** The key admin routes require (`Authorization: Bearer <key>`). */
  readonly adminKey: string;
  /** Dev mode: the server mints user tokens for any name, in this project only. Never in production. */
  readonly devProject?: string;
  /** Which pages of other origins may call the project routes and /v1/health; none by default. */
  readonly cors?: CorsOptions;
  readonly resolver?: Resolver;
  /** Defaults to DEFAULT_LIMITS. */
  readonly limits?: ServerLimits;
  /** Pushes and pulls per user and project (shared with the sockets' frames); none when absent. */
  readonly requests?: RateLimiter;
  /** Called after each commit (its effective changes and seq range), in seq order: the fan-out listens. */
  readonly onCommit?: (projectId: string, out: PushOutput) => void;
  /** Read by `GET /metrics` (admin key); none when absent. */
  readonly metrics?: Metrics;
  /** Counts each push as it is served (defaults to `metrics`). */
  readonly observe?: PushObserver;
  /** The fan-out: the console's online devices, and the sockets its actions close. */
  readonly hub?: Hub;
  /** Live and per-minute counts for the console; none when absent. */
  readonly activity?: Activity;
  /** A commit took a seq without a push (server/console-api.ts: a user's data deleted). */
  readonly onSeqTaken?: (projectId: string) => void;
  readonly onProjectDeleted?: (projectId: string) => void;
  /** The console's sign-in sessions (a new set when absent). */
  readonly sessions?: AdminSessions;
  /** One structured line per refused or failed request. */
  readonly log?: (line: Record<string, unknown>) => void;
}

const NewProjectSchema = v.strictObject({
  id: IdSchema,
  secret: v.optional(v.pipe(v.string(), v.minLength(32, 'a secret has at least 32 characters'))),
  strategy: v.optional(StrategySchema),
  sharedTables: v.optional(SharedTablesSchema),
});

const BACKEND_PATH = /^\/v1\/projects\/[^/]+\/backend\//;

const DevTokenSchema = v.strictObject({ user: v.string() });

export function createApp(options: AppOptions): Hono {
  const { store } = options;
  const app = new Hono();

  const log = options.log ?? (() => undefined);
  const limits = options.limits ?? DEFAULT_LIMITS;
  app.onError((error, c) => {
    if (error instanceof ServerError) {
      log({ event: 'error', method: c.req.method, path: c.req.path, status: error.status, kind: error.kind, message: error.message });
      return c.json({ kind: error.kind, message: error.message }, error.status as 400);
    }
    log({ event: 'error', method: c.req.method, path: c.req.path, status: 500, kind: ErrorKind.Internal, message: String(error) });
    return c.json({ kind: ErrorKind.Internal, message: 'internal error' }, 500);
  });
  app.notFound((c) => c.json({ kind: ErrorKind.NotFound, message: `no route for ${c.req.method} ${c.req.path}` }, 404));
  // A reply sent before its request's body was read (a refusal) ends the connection, and says so:
  // the rest of that body cannot be told from the next request, so a client reusing the
  // connection would wait for an answer that never comes.
  app.use('*', async (c, next) => {
    await next();
    const incoming = (c.env as Partial<HttpBindings> | undefined)?.incoming;
    if (incoming && !incoming.complete) c.res.headers.set('Connection', 'close');
  });
  // Before the body limit, so that its refusal, like every other answer, is readable by the page.
  if (options.cors) {
    const allow = corsMiddleware(options.cors);
    app.use('/v1/health', allow);
    // Not the backend API: a service key belongs on the app's server, never in a page.
    const allowOutsideBackend: MiddlewareHandler = (c, next) => (BACKEND_PATH.test(c.req.path) ? next() : allow(c, next));
    app.use('/v1/projects/*', allowOutsideBackend);
  }

  app.use(
    '/v1/*',
    bodyLimit({
      maxSize: LIMITS.maxMessageBytes,
      onError: (c) => c.json({ kind: ErrorKind.Invalid, message: `the body is larger than ${LIMITS.maxMessageBytes} bytes (the limit)` }, 413),
    }),
  );

  const sessions = options.sessions ?? new AdminSessions(undefined, limits.adminKeyFailuresPerMinute);
  const admin = adminAccess(options.adminKey, sessions);
  app.use('/v1/admin/*', admin);
  app.use('/metrics', admin);
  const observe = options.observe ?? options.metrics;
  mountSessions(app, options.adminKey, sessions, readJson);

  app.get('/v1/health', (c) => c.json({ ok: true, protocolVersion: PROTOCOL_VERSION }));
  // The sync endpoint is a WebSocket (server.ts handles the upgrade); a plain GET is told so.
  app.get('/v1/projects/:project/sync', (c) => c.json({ kind: ErrorKind.Invalid, message: 'this is a WebSocket endpoint: connect with an Upgrade: websocket request' }, 426));

  app.post('/v1/admin/projects', async (c) => {
    const input = parse(NewProjectSchema, await readJson(c));
    if (await store.getProject(input.id)) throw new ServerError(ErrorKind.Invalid, `project ${input.id} already exists`);
    const project = await store.createProject({
      id: input.id,
      secret: input.secret ?? randomHex(32),
      ...(input.strategy ? { strategy: input.strategy } : {}),
      ...(input.sharedTables ? { sharedTables: input.sharedTables } : {}),
    });
    return c.json(project, 201);
  });

  app.post('/v1/projects/:project/dev/token', async (c) => {
    if (options.devProject === undefined) throw new ServerError(ErrorKind.NotFound, 'dev mode is off');
    const project = await projectOf(c);
    if (project.id !== options.devProject) throw new ServerError(ErrorKind.NotFound, `dev mode mints tokens for project ${options.devProject} only`);
    const { user } = parse(DevTokenSchema, await readJson(c));
    return c.json({ token: await mintUserToken(project, user) });
  });

  app.post('/v1/projects/:project/push', async (c) => {
    const project = await projectOf(c);
    const user = await userOf(c, project);
    const body = parse(HttpPushEnvelopeSchema, await readJson(c));
    await claimDevice(store, { projectId: project.id, userId: user.userId, deviceId: body.deviceId });
    const { out, ack } = await acceptPush(store, {
      projectId: project.id,
      userId: user.userId,
      deviceId: body.deviceId,
      deviceCursor: body.cursor ?? 0,
      changes: body.changes,
      resolver: options.resolver,
    }, observe);
    options.onCommit?.(project.id, out);
    return c.json(ack);
  });

  app.get('/v1/projects/:project/pull', async (c) => {
    const project = await projectOf(c);
    const user = await userOf(c, project);
    const cursor = integerParam(c.req.query('cursor'), 'cursor', 0);
    const limit = Math.min(integerParam(c.req.query('limit'), 'limit', 1000), LIMITS.maxBatchRows);
    if (limit < 1) throw new ServerError(ErrorKind.Invalid, 'limit must be at least 1');
    const fresh = c.req.query('fresh');
    if (fresh !== undefined && fresh !== '0' && fresh !== '1') throw new ServerError(ErrorKind.Invalid, 'fresh must be 0 or 1');
    const continuing = c.req.query('continuing');
    if (continuing !== undefined && continuing !== '0' && continuing !== '1') throw new ServerError(ErrorKind.Invalid, 'continuing must be 0 or 1');
    const since = c.req.query('since') === undefined ? undefined : integerParam(c.req.query('since'), 'since', 0);
    const batch = await store.pull({ projectId: project.id, scopes: scopesOf(user.userId), cursor, limit, fresh: fresh === '1', continuing: continuing === '1', ...(since === undefined ? {} : { since }) });
    const deviceId = c.req.query('deviceId');
    if (deviceId !== undefined && v.is(IdSchema, deviceId) && !deviceId.startsWith(SERVER_DEVICE_PREFIX)) {
      await store.touchDevice({ projectId: project.id, userId: user.userId, deviceId, cursor: batch.cursor });
    }
    return c.json({ type: 'changes', ...batch } satisfies Changes);
  });

  mountBackend(app, { store, resolver: options.resolver, onCommit: options.onCommit, metrics: observe, readJson });
  mountConsoleApi(app, {
    store,
    hub: options.hub,
    activity: options.activity,
    maxTokenLifetimeSeconds: limits.maxTokenLifetimeSeconds,
    stillAllowed: (c) => stillAdmin(c, sessions),
    onSeqTaken: options.onSeqTaken,
    onProjectDeleted: options.onProjectDeleted,
    readJson,
  });

  // Prometheus scrapes with the admin key (`authorization: { credentials: <key> }` in its config).
  app.get('/metrics', async (c) => {
    if (!options.metrics) throw new ServerError(ErrorKind.NotFound, 'this server keeps no metrics');
    return c.body(await options.metrics.registry.metrics(), 200, { 'Content-Type': options.metrics.registry.contentType });
  });

  const projectOf = (c: Context): Promise<Project> => knownProject(store, c.req.param('project') ?? '');

  /** The user of the request's token, within the user's request rate. */
  async function userOf(c: Context, project: Project): Promise<User> {
    const user = await authenticate(store, bearer(c.req.header('Authorization')), project, limits.maxTokenLifetimeSeconds);
    const wait = (await options.requests?.take(`${project.id}\u0000${user.userId}`)) ?? 0;
    if (wait > 0) {
      c.header('Retry-After', String(Math.ceil(wait / 1000)));
      throw new ServerError(ErrorKind.RateLimited, `over ${limits.requestsPerSecond} requests per second for this user: retry in ${wait} ms`);
    }
    return user;
  }

  return app;
}

/** The request's body: a JSON object (every body of this API is one; a list or a bare value is refused here). */
async function readJson(c: Context): Promise<unknown> {
  let body: unknown;
  try {
    body = await c.req.json();
  } catch {
    throw new ServerError(ErrorKind.Invalid, 'the body is not valid JSON');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ServerError(ErrorKind.Invalid, 'the body must be a JSON object');
  return body;
}

/** Parses `input` against `schema`, or fails with kind 'invalid' naming the first problem and where. */
function integerParam(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (!/^\d{1,15}$/.test(value)) throw new ServerError(ErrorKind.Invalid, `${name} must be a non-negative integer`);
  return Number(value);
}
