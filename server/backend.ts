/**
 * The backend API: the app's own server reads and writes a project's synced rows with a service
 * key, the way a job, a webhook or an admin page needs to.
 *
 *   POST   /v1/admin/projects/:project/service-keys       admin key   → a new key (shown once)
 *   GET    /v1/admin/projects/:project/service-keys       admin key   → the project's keys (no secrets)
 *   DELETE /v1/admin/projects/:project/service-keys/:id   admin key   → revoked
 *   GET    /v1/projects/:project/backend/rows?table&user|shared=1&after&limit&id…  service key → a page of rows
 *   POST   /v1/projects/:project/backend/changes          service key → the ack of server-authored changes
 *
 * A service key is `psk_<id>_<secret>`; the store keeps its SHA-256 only. A key belongs to one
 * project and opens nothing of another (kind 'auth', nothing read).
 *
 * Writes take the path a device's push takes (server/push.ts: each change checked on its own, the
 * store's atomic merge, the fan-out to every socket of the scope), as the changes of a device the
 * server keeps for each user: its id is derived from the project's secret and the user (so no
 * device can claim it first), its clock is a hybrid logical clock advanced past every clock of the
 * rows written, and its base is the project's current seq. So a backend write is a write made now,
 * having seen everything: under every strategy it wins over what the devices wrote before it, and
 * loses to nothing older; a device's edit made offline before it and pushed later is judged
 * against it by the same rules as any two devices' edits.
 */
import { createHash, createHmac } from 'node:crypto';
import type { Context, Hono } from 'hono';
import * as v from 'valibot';
import type { PushResult, RowChange } from '../lib/protocol/change.js';
import { OperationSchema } from '../lib/protocol/change.js';
import { ErrorKind } from '../lib/protocol/error-kind.js';
import { LIMITS } from '../lib/protocol/up.js';
import { IdentifierSchema, IdSchema, USER_ID, USER_ID_RULE } from '../lib/protocol/values.js';
import { HybridLogicalClock } from '../worker/hlc.js';
import { randomHex } from '../worker/random.js';
import { bearer, sameSecret } from './auth.js';
import { parse, ServerError } from './errors.js';
import type { Resolver } from './merge.js';
import { acceptPush, knownProject, SERVER_DEVICE_PREFIX, type PushObserver } from './push.js';
import { scopeOf, type Project, type PushOutput, type Store } from './store/store.js';

export interface BackendOptions {
  readonly store: Store;
  readonly resolver?: Resolver | undefined;
  readonly onCommit?: ((projectId: string, out: PushOutput) => void) | undefined;
  readonly metrics?: PushObserver | undefined;
  readonly readJson: (c: Context) => Promise<unknown>;
}

/** Rows per page of a read, unless the request asks for fewer. */
const DEFAULT_PAGE = 500;

const KEY_PATTERN = /^psk_([0-9a-f]{16})_([0-9a-f]{64})$/;

const NewKeySchema = v.strictObject({ name: v.optional(v.pipe(v.string(), v.maxLength(100, 'a key name has at most 100 characters'))) });

const UserSchema = v.pipe(v.string(), v.regex(USER_ID, USER_ID_RULE));

/** One change the backend writes: what a device's change says, without the clock the server gives it. */
const BackendChangeSchema = v.strictObject({
  table: IdentifierSchema,
  /** The row's ps_global_id. */
  id: IdSchema,
  operation: OperationSchema,
  /**
   * The columns written (all of the row's for an insert); none for a delete. Checked with the
   * change, as a device's are (ClientChangeSchema), so a bad one rejects that change alone.
   */
  values: v.optional(v.unknown()),
  /** Makes the write idempotent: a change id sent before for this user is answered 'duplicate'. */
  changeId: v.optional(IdSchema),
});

const BackendWriteSchema = v.strictObject({
  /** The user on whose behalf the changes are written (and whose rows, for a private table, they are). */
  user: UserSchema,
  changes: v.pipe(v.array(BackendChangeSchema), v.minLength(1, 'at least one change'), v.maxLength(LIMITS.maxChangesPerPush, `at most ${LIMITS.maxChangesPerPush} changes per request`)),
});

export function mountBackend(app: Hono, options: BackendOptions): void {
  const { store } = options;

  /** The project of an admin route (whose admin key app.ts checked). */
  const adminProject = (c: Context): Promise<Project> => knownProject(store, c.req.param('project') ?? '');

  app.post('/v1/admin/projects/:project/service-keys', async (c) => {
    const project = await adminProject(c);
    const { name } = parse(NewKeySchema, await options.readJson(c));
    const id = randomHex(8);
    const key = `psk_${id}_${randomHex(32)}`;
    const stored = await store.createServiceKey({ id, projectId: project.id, name: name ?? '', hash: hashOf(key) });
    return c.json({ ...stored, key }, 201);
  });

  app.get('/v1/admin/projects/:project/service-keys', async (c) => {
    const project = await adminProject(c);
    return c.json({ keys: await store.listServiceKeys(project.id) });
  });

  app.delete('/v1/admin/projects/:project/service-keys/:id', async (c) => {
    const project = await adminProject(c);
    const id = c.req.param('id') ?? '';
    if (!(await store.deleteServiceKey(project.id, id))) throw new ServerError(ErrorKind.NotFound, `project ${project.id} has no service key ${id}`);
    return c.body(null, 204);
  });

  /** The project of the URL, when the request's service key is one of its keys. */
  const keyedProject = async (c: Context): Promise<Project> => {
    const given = bearer(c.req.header('Authorization'));
    if (!given) throw new ServerError(ErrorKind.Auth, 'a service key is required (Authorization: Bearer psk_…)');
    const match = KEY_PATTERN.exec(given);
    if (!match) throw new ServerError(ErrorKind.Auth, 'that is not a service key (psk_…): user tokens cannot use the backend API');
    const stored = await store.serviceKey(match[1] ?? '');
    // The hash is compared even when the id names no key, so the answer takes the same time.
    if (!sameSecret(hashOf(given), stored?.hash ?? '') || !stored) throw new ServerError(ErrorKind.Auth, 'the service key is not valid (revoked, or never issued)');
    const id = c.req.param('project') ?? '';
    if (stored.projectId !== id) throw new ServerError(ErrorKind.Auth, 'the service key is for another project');
    return knownProject(store, id);
  };

  app.get('/v1/projects/:project/backend/rows', async (c) => {
    const project = await keyedProject(c);
    const table = parse(IdentifierSchema, c.req.query('table') ?? '');
    const scope = scopeParam(project, table, c.req.query('user'), c.req.query('shared'));
    const ids = c.req.queries('id');
    if (ids) for (const id of ids) parse(IdSchema, id);
    const limitText = c.req.query('limit');
    if (limitText !== undefined && !/^\d{1,6}$/.test(limitText)) throw new ServerError(ErrorKind.Invalid, 'limit must be a whole number');
    const limit = Math.min(limitText === undefined ? DEFAULT_PAGE : Number(limitText), LIMITS.maxBatchRows);
    if (limit < 1) throw new ServerError(ErrorKind.Invalid, 'limit must be at least 1');
    if (ids && ids.length > limit) throw new ServerError(ErrorKind.Invalid, `at most ${limit} ids per request`, 413);
    const after = c.req.query('after');
    if (after !== undefined) parse(IdSchema, after);
    const page = await store.rows({ projectId: project.id, scope, table, limit, ...(ids ? { ids } : after !== undefined ? { after } : {}) });
    const rows = page.rows.map((row) => ({ id: row.row, values: row.values ?? {}, seq: row.seq }));
    return c.json({ rows, next: page.hasMore && !ids ? (rows.at(-1)?.id ?? null) : null });
  });

  app.post('/v1/projects/:project/backend/changes', async (c) => {
    const project = await keyedProject(c);
    const body = parse(BackendWriteSchema, await options.readJson(c));
    const deviceId = serverDeviceId(project, body.user);
    if (!(await store.touchDevice({ projectId: project.id, userId: body.user, deviceId }))) {
      throw new ServerError(ErrorKind.Internal, `the server's device id for user ${body.user} is bound to another user`);
    }
    const changeIds = body.changes.flatMap((change) => (change.changeId === undefined ? [] : [change.changeId]));
    if (new Set(changeIds).size < changeIds.length) throw new ServerError(ErrorKind.Invalid, 'a changeId names one change: two changes of this request share one');
    const clock = new HybridLogicalClock(deviceId);
    // The rows as they stand, then as the earlier changes of this request leave them.
    const alive = new Set<string>();
    for (const row of await currentRows(store, project, body.user, body.changes)) {
      for (const stamp of [row.deleteClock, ...Object.values(row.clocks ?? {})]) if (stamp !== undefined) clock.receive(stamp);
      if (!row.deleted) alive.add(`${row.table}\u0000${row.row}`);
    }
    const base = await store.currentSeq(project.id);
    // An update of a row that is deleted or was never written is refused alone: the backend has seen
    // the delete, so bringing the row back (or making a partial one) is never what it means.
    const refused: Array<PushResult | null> = [];
    const changes = body.changes.flatMap((change) => {
      const id = change.changeId ?? randomHex(12);
      const key = `${change.table}\u0000${change.id}`;
      if (change.operation === 'update' && !alive.has(key)) {
        refused.push({ id, outcome: 'rejected', seq: null, error: { kind: ErrorKind.NotFound, message: `no row ${change.id} in ${change.table} to update (deleted, or never written): insert it instead` } });
        return [];
      }
      if (change.operation === 'delete') alive.delete(key);
      else alive.add(key);
      refused.push(null);
      const values = change.values !== undefined ? { values: change.values } : {};
      return [{ id, table: change.table, row: change.id, op: change.operation, clock: clock.now(), ...values, base }];
    });
    const { out, ack } = await acceptPush(store, { projectId: project.id, userId: body.user, deviceId, deviceCursor: base, changes, resolver: options.resolver }, options.metrics);
    options.onCommit?.(project.id, out);
    let next = 0;
    const { type: _type, results, ...rest } = ack;
    return c.json({ results: refused.map((slot) => slot ?? (results[next++] as PushResult)), ...rest });
  });
}

/** The scope a read asks for: exactly one of `user=<id>` (a private table) and `shared=1` (a shared one). */
function scopeParam(project: Project, table: string, user: string | undefined, shared: string | undefined): string {
  if (shared !== undefined && shared !== '1') throw new ServerError(ErrorKind.Invalid, 'shared must be 1');
  if ((user === undefined) === (shared === undefined)) throw new ServerError(ErrorKind.Invalid, 'give exactly one of user=<id> (a user\'s rows) and shared=1 (the shared rows)');
  const isShared = project.sharedTables.includes(table);
  if (shared !== undefined) {
    if (!isShared) throw new ServerError(ErrorKind.Invalid, `table ${table} is not shared in project ${project.id}: read it with user=<id>`);
    return 'shared';
  }
  const userId = parse(UserSchema, user);
  if (isShared) throw new ServerError(ErrorKind.Invalid, `table ${table} is shared in project ${project.id}: read it with shared=1`);
  return scopeOf(project, table, userId);
}

/** The state of every row the changes write, deleted ones included (their clocks count too). */
async function currentRows(store: Store, project: Project, user: string, changes: ReadonlyArray<{ table: string; id: string }>): Promise<RowChange[]> {
  const byTable = new Map<string, Set<string>>();
  for (const change of changes) {
    let ids = byTable.get(change.table);
    if (!ids) byTable.set(change.table, (ids = new Set()));
    ids.add(change.id);
  }
  const pages = await Promise.all(
    [...byTable].map(([table, ids]) =>
      store.rows({ projectId: project.id, scope: scopeOf(project, table, user), table, ids: [...ids], limit: ids.size, includeDeleted: true }),
    ),
  );
  return pages.flatMap((page) => page.rows);
}

/**
 * The device the server writes as for `user`: derived from the project's secret, so that no device,
 * which never sees that secret, can take the id first and bind it to itself.
 */
export function serverDeviceId(project: Project, user: string): string {
  return `${SERVER_DEVICE_PREFIX}${createHmac('sha256', project.secret).update(`device\u0000${user}`).digest('hex').slice(0, 32)}`;
}

function hashOf(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}
