/**
 * The operators' admin API (server/console-api.ts) and the console's sign-in (server/admin-session.ts),
 * in-process through app.request(), on a real (in-memory) store.
 */
import { decode } from 'hono/jwt';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ClientChange } from '../lib/protocol/change.js';
import { AdminSessions, SESSION_COOKIE, SIGN_IN_FAILURES_PER_MINUTE } from '../server/admin-session.js';
import { createApp } from '../server/app.js';
import { mintUserToken } from '../server/auth.js';
import { Metrics } from '../server/metrics.js';
import { SqliteStore } from '../server/store/sqlite-store.js';
import type { Project } from '../server/store/store.js';
import { formatClock } from '../worker/hlc.js';
import { waitFor } from './helpers/instance.js';

const ADMIN = 'admin-key-for-console-tests';
/** The origin of a page of the server app.request() talks to (its Host is localhost). */
const ORIGIN = 'http://localhost';
let store: SqliteStore;
let app: ReturnType<typeof createApp>;
let p1: Project;

let n = 0;
const change = (row: string, values: Record<string, string | number>, table = 'todos', wall = 1_000 + ++n, op: ClientChange['op'] = 'insert'): ClientChange => ({
  id: `c${++n}`, table, row, op, clock: formatClock({ wall, counter: 0, deviceId: 'dev' }), values,
});

beforeEach(async () => {
  store = new SqliteStore(':memory:');
  app = createApp({ store, adminKey: ADMIN, metrics: new Metrics(() => new Map()) });
  p1 = await store.createProject({ id: 'p1', secret: 'p1-secret-p1-secret-p1-secret-p1-secret', sharedTables: ['lists'] });
  await store.createProject({ id: 'p2', secret: 'p2-secret-p2-secret-p2-secret-p2-secret' });
  await store.touchDevice({ projectId: 'p1', userId: 'alice', deviceId: 'a1' });
  await store.touchDevice({ projectId: 'p1', userId: 'bob', deviceId: 'b1' });
  await store.push({ projectId: 'p1', userId: 'alice', deviceId: 'a1', deviceCursor: 0, changes: [change('r1', { title: 'milk', n: 3 }, 'todos', 5_000), change('l1', { name: 'groceries' }, 'lists')] });
  // Loses to r1's write: a conflict.
  await store.push({ projectId: 'p1', userId: 'alice', deviceId: 'a1', deviceCursor: 0, changes: [change('r1', { title: 'old' }, 'todos', 10, 'update')] });
  await store.push({ projectId: 'p1', userId: 'bob', deviceId: 'b1', deviceCursor: 0, changes: [change('b1', { title: 'bob’s' })] });
  await store.createServiceKey({ id: 'k1', projectId: 'p1', name: 'jobs', hash: 'h1' });
});
afterEach(() => store.close());

interface Call {
  readonly method?: string;
  readonly body?: unknown;
  /** The session cookie's value. */
  readonly cookie?: string;
  readonly origin?: string;
  readonly bearer?: string;
  readonly headers?: Record<string, string>;
  readonly address?: string;
}

function call(path: string, { method = 'GET', body, cookie, origin, bearer, headers = {}, address }: Call = {}): Promise<Response> {
  const all: Record<string, string> = { ...headers };
  if (body !== undefined) all['Content-Type'] = 'application/json';
  if (cookie !== undefined) all.Cookie = `${SESSION_COOKIE}=${cookie}`;
  if (origin !== undefined) all.Origin = origin;
  if (bearer !== undefined) all.Authorization = `Bearer ${bearer}`;
  // The client's address, as @hono/node-server gives it to the app.
  const env = address === undefined ? undefined : { incoming: { socket: { remoteAddress: address } } };
  return Promise.resolve(app.request(path, { method, headers: all, ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}) }, env));
}
const admin = (path: string, init: Call = {}) => call(path, { ...init, bearer: ADMIN });
const errorOf = async (res: Response) => ({ status: res.status, kind: ((await res.json()) as { kind?: string }).kind });
const jsonOf = async <T = Record<string, unknown>>(res: Response, status = 200): Promise<T> => {
  const body = (await res.json()) as T;
  expect({ status: res.status, body }).toMatchObject({ status });
  return body;
};

/** Signs in with the admin key: the session cookie's value. */
async function signIn(headers: Record<string, string> = {}, origin = ORIGIN): Promise<{ cookie: string; setCookie: string; res: Response }> {
  const res = await call('/v1/console/session', { method: 'POST', body: { key: ADMIN }, origin, headers });
  expect(res.status).toBe(200);
  const setCookie = res.headers.get('Set-Cookie') ?? '';
  const match = new RegExp(`${SESSION_COOKIE}=([^;]*)`).exec(setCookie);
  expect(match?.[1]).toMatch(/^[0-9a-f]{64}$/);
  return { cookie: match![1]!, setCookie, res };
}

/** Everything the admin API could change. */
async function snapshot() {
  return {
    projects: await store.listProjects(),
    keys: await Promise.all(['p1', 'p2'].map((p) => store.signingKeys(p))),
    users: await store.users('p1', { limit: 100 }),
    devices: await store.listDevices('p1'),
    seq: await store.currentSeq('p1'),
    tables: await store.tables('p1'),
    changes: await store.changes({ projectId: 'p1', limit: 100 }),
    conflicts: await store.conflicts({ projectId: 'p1', limit: 100 }),
    serviceKeys: await store.listServiceKeys('p1'),
  };
}

/** Every admin route, with a body it would accept. */
const ROUTES: ReadonlyArray<readonly [string, string, unknown?]> = [
  ['GET', '/v1/admin/projects'],
  ['POST', '/v1/admin/projects', { id: 'p3' }],
  ['GET', '/v1/admin/projects/p1'],
  ['PATCH', '/v1/admin/projects/p1', { strategy: 'server-wins' }],
  ['DELETE', '/v1/admin/projects/p1', { confirm: 'p1' }],
  ['GET', '/v1/admin/projects/p1/activity?range=24h'],
  ['GET', '/v1/admin/projects/p1/live'],
  ['GET', '/v1/admin/projects/p1/users'],
  ['GET', '/v1/admin/projects/p1/users/alice/devices'],
  ['POST', '/v1/admin/projects/p1/users/alice/block', { blocked: true }],
  ['DELETE', '/v1/admin/projects/p1/users/alice/data', { confirm: 'alice' }],
  ['POST', '/v1/admin/projects/p1/devices/a1/disconnect'],
  ['GET', '/v1/admin/projects/p1/changes'],
  ['GET', '/v1/admin/projects/p1/tables'],
  ['GET', '/v1/admin/projects/p1/rows?table=todos&scope=user:alice'],
  ['GET', '/v1/admin/projects/p1/history?table=todos&row=r1'],
  ['GET', '/v1/admin/projects/p1/conflicts'],
  ['GET', '/v1/admin/projects/p1/keys'],
  ['POST', '/v1/admin/projects/p1/keys'],
  ['DELETE', '/v1/admin/projects/p1/keys/default'],
  ['POST', '/v1/admin/projects/p1/tokens', { user: 'alice' }],
  ['GET', '/v1/admin/projects/p1/service-keys'],
  ['POST', '/v1/admin/projects/p1/service-keys', { name: 'jobs' }],
  ['DELETE', '/v1/admin/projects/p1/service-keys/k1'],
  ['GET', '/metrics'],
];

describe('every admin route refuses a request without a live credential', () => {
  const refusedEverywhere = async (credential: Omit<Call, 'method' | 'body'>) => {
    const before = await snapshot();
    for (const [i, [method, path, body]] of ROUTES.entries()) {
      // Each from an address of its own: wrong keys count against their address (tested below).
      const res = await call(path, { method, body, origin: ORIGIN, ...credential, address: `10.0.0.${i}` });
      expect({ method, path, ...(await errorOf(res)) }).toEqual({ method, path, status: 401, kind: 'auth' });
    }
    expect(await snapshot()).toEqual(before);
  };

  it('no credential at all', () => refusedEverywhere({}));
  it('a forged session cookie', () => refusedEverywhere({ cookie: 'deadbeef' }));
  it('a wrong admin key, even with a live session', async () => {
    const { cookie } = await signIn();
    await refusedEverywhere({ bearer: 'not-the-key', cookie });
  });

  it('wrong admin keys count against the address, in the header as at sign-in: the sixth in a minute is not tried', async () => {
    const from = { address: '10.1.1.1' };
    for (let i = 0; i < 5; i++) expect(await errorOf(await call('/v1/admin/projects', { bearer: `guess-${i}`, ...from }))).toEqual({ status: 401, kind: 'auth' });
    // Not even the right key, now: the guess is refused before it is compared.
    expect(await errorOf(await call('/v1/admin/projects', { bearer: ADMIN, ...from }))).toEqual({ status: 429, kind: 'rate-limited' });
    expect(await errorOf(await call('/v1/console/session', { method: 'POST', body: { key: ADMIN }, origin: ORIGIN, ...from }))).toEqual({ status: 429, kind: 'rate-limited' });
    // Another address is not held up.
    expect((await call('/v1/admin/projects', { bearer: ADMIN, address: '10.1.1.2' })).status).toBe(200);
  });

  it('guesses sent all at once are counted before any is tried past the limit', async () => {
    const guesses = await Promise.all(
      Array.from({ length: 50 }, (_, i) => call('/v1/console/session', { method: 'POST', body: { key: i === 49 ? ADMIN : `guess-${i}` }, origin: ORIGIN, address: '10.2.2.2' })),
    );
    const statuses = guesses.map((r) => r.status);
    expect(statuses.filter((s) => s === 401)).toHaveLength(5);
    expect(statuses.filter((s) => s === 429)).toHaveLength(45);
  });

  it('an expired session', async () => {
    app = createApp({ store, adminKey: ADMIN, sessions: new AdminSessions(1), metrics: new Metrics(() => new Map()) });
    const { cookie } = await signIn();
    await waitFor(async () => (await call('/v1/console/session', { cookie })).status === 401, 5_000, 'the session to expire');
    await refusedEverywhere({ cookie });
  });

  it('the same routes answer with the admin key or a session (the checks below are what refused)', async () => {
    const { cookie } = await signIn();
    expect((await call('/v1/admin/projects', { cookie })).status).toBe(200);
    expect((await admin('/v1/admin/projects')).status).toBe(200);
    const metrics = await call('/metrics', { cookie });
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toContain('pocketsync_');
    expect((await call('/v1/admin/projects/p1/keys', { cookie })).status).toBe(200);
  });
});

describe('signing in', () => {
  it('with the admin key: an HttpOnly, SameSite=Strict session cookie for the whole site, that GET reads and DELETE ends', async () => {
    const { cookie, setCookie, res } = await signIn();
    expect(setCookie).toContain('HttpOnly');
    expect(setCookie).toContain('SameSite=Strict');
    expect(setCookie).toMatch(/(^|;\s*)Path=\/(;|$)/);
    expect(setCookie).toMatch(/Max-Age=(\d+)/);
    const maxAge = Number(/Max-Age=(\d+)/.exec(setCookie)![1]);
    expect(maxAge).toBeGreaterThan(11 * 3600);
    expect(maxAge).toBeLessThanOrEqual(12 * 3600);
    // Over plain http, not Secure (a browser would then drop it); behind an https proxy, Secure.
    expect(setCookie).not.toContain('Secure');
    const { expiresAt } = await jsonOf<{ expiresAt: number }>(res);
    expect(expiresAt).toBeGreaterThan(Date.now() + 11 * 3600 * 1000);
    expect((await signIn({ 'X-Forwarded-Proto': 'https' }, 'https://localhost')).setCookie).toContain('Secure');

    expect(await jsonOf(await call('/v1/console/session', { cookie }))).toEqual({ expiresAt });
    expect(await errorOf(await call('/v1/console/session'))).toEqual({ status: 401, kind: 'auth' });
    expect(await errorOf(await call('/v1/console/session', { cookie: 'deadbeef' }))).toEqual({ status: 401, kind: 'auth' });
    expect((await call('/v1/admin/projects', { cookie })).status).toBe(200);

    // Signing out needs the page's origin too.
    expect(await errorOf(await call('/v1/console/session', { method: 'DELETE', cookie }))).toEqual({ status: 401, kind: 'auth' });
    expect((await call('/v1/console/session', { cookie })).status).toBe(200);
    const out = await call('/v1/console/session', { method: 'DELETE', cookie, origin: ORIGIN });
    expect(out.status).toBe(204);
    expect(out.headers.get('Set-Cookie')).toMatch(new RegExp(`${SESSION_COOKIE}=;.*Max-Age=0`));
    // The old cookie opens nothing now.
    expect(await errorOf(await call('/v1/console/session', { cookie }))).toEqual({ status: 401, kind: 'auth' });
    expect(await errorOf(await call('/v1/admin/projects', { cookie }))).toEqual({ status: 401, kind: 'auth' });
  });

  it('refuses a wrong key, and after five failures in a minute refuses even the right one', async () => {
    const attempt = (key: string) => call('/v1/console/session', { method: 'POST', body: { key }, origin: ORIGIN });
    for (let i = 0; i < SIGN_IN_FAILURES_PER_MINUTE; i++) {
      const res = await attempt(`wrong-${i}`);
      expect(await errorOf(res)).toEqual({ status: 401, kind: 'auth' });
      expect(res.headers.get('Set-Cookie')).toBeNull();
    }
    const sixth = await attempt(ADMIN);
    expect(await errorOf(sixth)).toEqual({ status: 429, kind: 'rate-limited' });
    expect(Number(sixth.headers.get('Retry-After'))).toBeGreaterThan(0);
    expect(sixth.headers.get('Set-Cookie')).toBeNull();
  });

  it('refuses a sign-in from another origin, or none, and a malformed body, without counting them as failures', async () => {
    const attempt = (body: unknown, origin?: string) => call('/v1/console/session', { method: 'POST', body, ...(origin !== undefined ? { origin } : {}) });
    expect(await errorOf(await attempt({ key: ADMIN }))).toEqual({ status: 401, kind: 'auth' });
    expect(await errorOf(await attempt({ key: ADMIN }, 'http://evil.example'))).toEqual({ status: 401, kind: 'auth' });
    expect(await errorOf(await attempt({ key: ADMIN }, 'null'))).toEqual({ status: 401, kind: 'auth' });
    for (const body of ['{"key":', { key: ADMIN, extra: 1 }, { key: 42 }, {}, { key: 'x'.repeat(1001) }]) {
      expect({ body, ...(await errorOf(await attempt(body, ORIGIN))) }).toMatchObject({ body, kind: 'invalid' });
    }
    await signIn();
  });
});

describe('a session’s requests that change something come from the server’s own pages', () => {
  const kids = async () => (await store.signingKeys('p1')).map((k) => k.kid);

  it('with a session, a body is JSON or nothing: what a page of another site may send unasked (text/plain, a form) is refused', async () => {
    const { cookie } = await signIn();
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
      const res = app.request('/v1/admin/projects/p1/users/alice/block', {
        method: 'POST',
        headers: { Cookie: `${SESSION_COOKIE}=${cookie}`, Origin: ORIGIN, 'Content-Type': type, 'Content-Length': '17' },
        body: '{"blocked":true}',
      });
      expect({ type, ...(await errorOf(await res)) }).toEqual({ type, status: 400, kind: 'invalid' });
    }
    expect(await store.isBlocked('p1', 'alice')).toBe(false);
  });

  it('refuses a mutation with no Origin, a foreign one, or another port, and stores nothing', async () => {
    const { cookie } = await signIn();
    for (const origin of [undefined, 'http://evil.example', 'http://localhost:8080', 'https://localhost.evil.example', 'null']) {
      const res = await call('/v1/admin/projects/p1/keys', { method: 'POST', cookie, ...(origin !== undefined ? { origin } : {}) });
      expect({ origin, ...(await errorOf(res)) }).toEqual({ origin, status: 401, kind: 'auth' });
      const blocked = await call('/v1/admin/projects/p1/users/alice/block', { method: 'POST', body: { blocked: true }, cookie, ...(origin !== undefined ? { origin } : {}) });
      expect((await errorOf(blocked)).status).toBe(401);
    }
    expect(await kids()).toEqual(['default']);
    expect(await store.isBlocked('p1', 'alice')).toBe(false);
    // A read needs no Origin.
    expect((await call('/v1/admin/projects/p1/keys', { cookie })).status).toBe(200);
    const made = await jsonOf<{ key: { kid: string }; secret: string }>(await call('/v1/admin/projects/p1/keys', { method: 'POST', cookie, origin: ORIGIN }), 201);
    expect(await kids()).toEqual(['default', made.key.kid]);
  });

  it('the Origin is judged against the Host the request was sent to', async () => {
    const { cookie } = await signIn();
    const headers = { Host: 'console.example:8443', 'X-Forwarded-Proto': 'https' };
    expect((await call('/v1/admin/projects/p1/keys', { method: 'POST', cookie, origin: 'https://console.example:8443', headers })).status).toBe(201);
    // The scheme counts: a page of the plain-http origin of the same host is another origin.
    expect(await errorOf(await call('/v1/admin/projects/p1/keys', { method: 'POST', cookie, origin: 'http://console.example:8443', headers }))).toEqual({ status: 401, kind: 'auth' });
    expect(await errorOf(await call('/v1/admin/projects/p1/keys', { method: 'POST', cookie, origin: 'https://localhost' }))).toEqual({ status: 401, kind: 'auth' });
    expect(await errorOf(await call('/v1/admin/projects/p1/keys', { method: 'POST', cookie, origin: ORIGIN, headers }))).toEqual({ status: 401, kind: 'auth' });
    expect(await errorOf(await call('/v1/admin/projects/p1/keys', { method: 'POST', cookie, origin: 'https://console.example', headers }))).toEqual({ status: 401, kind: 'auth' });
    expect(await kids()).toHaveLength(2);
  });

  it('the admin key needs no Origin (scripts)', async () => {
    expect((await admin('/v1/admin/projects/p1/keys', { method: 'POST' })).status).toBe(201);
    expect(await kids()).toHaveLength(2);
  });
});

describe('bad input changes nothing', () => {
  const refused = async (path: string, init: Call, kind = 'invalid', status = 400) => {
    const before = await snapshot();
    const res = await admin(path, init);
    expect({ path, init, ...(await errorOf(res)) }).toEqual({ path, init, status, kind });
    expect(await snapshot()).toEqual(before);
  };

  it.each([
    ['PATCH', '/v1/admin/projects/p1'],
    ['DELETE', '/v1/admin/projects/p1'],
    ['POST', '/v1/admin/projects/p1/users/alice/block'],
    ['DELETE', '/v1/admin/projects/p1/users/alice/data'],
    ['POST', '/v1/admin/projects/p1/tokens'],
    ['POST', '/v1/admin/projects'],
    ['POST', '/v1/admin/projects/p1/service-keys'],
  ])('%s %s: invalid JSON, unknown fields, wrong types', async (method, path) => {
    await refused(path, { method, body: '{"not json' });
    await refused(path, { method, body: { surprise: true } });
    await refused(path, { method, body: ['x'] });
    // valibot's object schemas take a list as an object with no keys: the body reader refuses it.
    await refused(path, { method, body: [] });
    await refused(path, { method, body: 'null' });
  });

  it('project settings: a bad strategy or table name, or a move of a table with rows', async () => {
    await refused('/v1/admin/projects/p1', { method: 'PATCH', body: { strategy: 'random' } });
    await refused('/v1/admin/projects/p1', { method: 'PATCH', body: { sharedTables: ['bad table'] } });
    await refused('/v1/admin/projects/p1', { method: 'PATCH', body: { sharedTables: 'lists' } });
    await refused('/v1/admin/projects/p1', { method: 'PATCH', body: { strategy: 'server-wins', extra: 1 } });
    // todos has rows in users' scopes, lists in the shared one: neither may move.
    await refused('/v1/admin/projects/p1', { method: 'PATCH', body: { sharedTables: ['lists', 'todos'] } });
    await refused('/v1/admin/projects/p1', { method: 'PATCH', body: { sharedTables: [] } });
    await refused('/v1/admin/projects/p1', { method: 'PATCH', body: { strategy: 'server-wins', sharedTables: ['todos'] } });
    // A table without rows may.
    const ok = await jsonOf<{ project: { sharedTables: string[]; strategy: string } }>(await admin('/v1/admin/projects/p1', { method: 'PATCH', body: { sharedTables: ['lists', 'tags'], strategy: 'server-wins' } }));
    expect(ok.project).toEqual({ id: 'p1', strategy: 'server-wins', sharedTables: ['lists', 'tags'], createdAt: p1.createdAt });
    expect(await store.getProject('p1')).toMatchObject({ strategy: 'server-wins', sharedTables: ['lists', 'tags'] });
    expect(JSON.stringify(ok)).not.toContain(p1.secret);
  });

  it('deleting a project or a user’s data needs its id typed as the confirmation', async () => {
    for (const confirm of ['p2', 'P1', '', ' p1']) await refused('/v1/admin/projects/p1', { method: 'DELETE', body: { confirm } });
    await refused('/v1/admin/projects/p1', { method: 'DELETE', body: {} });
    await refused('/v1/admin/projects/p1', { method: 'DELETE', body: { confirm: 'p1', force: true } });
    for (const confirm of ['bob', 'Alice', 'p1', '']) await refused('/v1/admin/projects/p1/users/alice/data', { method: 'DELETE', body: { confirm } });
    await refused('/v1/admin/projects/p1/users/alice/data', { method: 'DELETE', body: { confirm: 1 } });
    await refused('/v1/admin/projects/p1/users/bad%20user/data', { method: 'DELETE', body: { confirm: 'bad user' } });

    const deleted = await jsonOf(await admin('/v1/admin/projects/p1/users/alice/data', { method: 'DELETE', body: { confirm: 'alice' } }));
    expect(deleted).toEqual({ userId: 'alice', closed: 0, rows: 1, changes: 3, conflicts: 1, devices: 1 });
    expect((await store.listDevices('p1')).map((d) => d.userId)).toEqual(['bob']);
    expect((await admin('/v1/admin/projects/p1', { method: 'DELETE', body: { confirm: 'p1' } })).status).toBe(204);
    expect((await store.listProjects()).map((p) => p.id)).toEqual(['p2']);
  });

  it('users, devices and blocking: bad limits, prefixes, user ids and bodies', async () => {
    for (const limit of ['0', '-1', 'abc', '1.5', '1e3', '9999999']) await refused(`/v1/admin/projects/p1/users?limit=${limit}`, {});
    await refused(`/v1/admin/projects/p1/users?prefix=${'a'.repeat(129)}`, {});
    await refused('/v1/admin/projects/p1/users/bad%20user/devices', {});
    await refused(`/v1/admin/projects/p1/users/${'u'.repeat(129)}/devices`, {});
    await refused('/v1/admin/projects/p1/users/alice/block', { method: 'POST', body: { blocked: 'yes' } });
    await refused('/v1/admin/projects/p1/users/alice/block', { method: 'POST', body: {} });
    await refused('/v1/admin/projects/p1/users/bad%20user/block', { method: 'POST', body: { blocked: true } });
    await refused('/v1/admin/projects/p1/devices/bad.device/disconnect', { method: 'POST' });
    // No hub here: no device is connected.
    await refused('/v1/admin/projects/p1/devices/a1/disconnect', { method: 'POST' }, 'not-found', 404);
  });

  it('changes and conflicts: bad filters, limits, times and page cursors', async () => {
    const changes = '/v1/admin/projects/p1/changes';
    for (const query of [
      'limit=0', 'limit=x', 'before=garbage', 'before=12:a1', 'before=x:a1:c1', 'before=1:a.1:c1', 'from=yesterday-ish', 'to=not-a-time', 'from=1e5',
      'table=bad%20table', 'row=bad.row', 'user=bad%20user', 'device=bad.device', 'op=upsert',
    ]) await refused(`${changes}?${query}`, {});
    const conflicts = '/v1/admin/projects/p1/conflicts';
    for (const query of ['limit=0', 'before=abc', 'before=-1', 'before=1.5', 'from=soon', 'to=later', 'table=bad%20table', 'row=bad.row']) await refused(`${conflicts}?${query}`, {});
    await refused('/v1/admin/projects/p1/activity?range=1h', {});
  });

  it('rows and history: a table, a scope, and column with value', async () => {
    const rows = '/v1/admin/projects/p1/rows';
    for (const query of [
      '', 'table=todos', 'table=todos&scope=everyone', 'table=todos&scope=shared', 'table=todos&scope=user:bad%20user', 'table=bad%20table&scope=user:alice',
      'table=todos&scope=user:alice&column=title', 'table=todos&scope=user:alice&value=milk', 'table=todos&scope=user:alice&column=bad%20col&value=x',
      'table=todos&scope=user:alice&limit=0', 'table=todos&scope=user:alice&after=bad.id', 'table=todos&scope=user:alice&id=bad.id',
    ]) await refused(`${rows}?${query}`, {});
    for (const query of ['', 'table=todos', 'row=r1', 'table=todos&row=bad.row']) await refused(`/v1/admin/projects/p1/history?${query}`, {});
  });

  it('signing keys and tokens: a bad kid, an unknown one, a bad user or lifetime', async () => {
    await refused('/v1/admin/projects/p1/keys/bad.kid', { method: 'DELETE' });
    await refused(`/v1/admin/projects/p1/keys/${'k'.repeat(65)}`, { method: 'DELETE' });
    await refused('/v1/admin/projects/p1/keys/nope', { method: 'DELETE' }, 'not-found', 404);
    await refused('/v1/admin/projects/p1/tokens', { method: 'POST', body: { user: 'bad user' } });
    await refused('/v1/admin/projects/p1/tokens', { method: 'POST', body: { user: 'alice', ttlSeconds: 10 } });
    await refused('/v1/admin/projects/p1/tokens', { method: 'POST', body: { user: 'alice', ttlSeconds: 'long' } });
    await refused('/v1/admin/projects/p1/tokens', { method: 'POST', body: { user: 'alice', ttlSeconds: 90.5 } });
    await refused('/v1/admin/projects/p1/service-keys/nope', { method: 'DELETE' }, 'not-found', 404);
    await refused('/v1/admin/projects', { method: 'POST', body: { id: 'bad id' } });
    await refused('/v1/admin/projects', { method: 'POST', body: { id: 'p3', secret: 'short' } });
    await refused('/v1/admin/projects', { method: 'POST', body: { id: 'p1' } });
  });

  it('an unknown project is not found, on every project route', async () => {
    for (const [method, path, body] of ROUTES) {
      if (!path.includes('/projects/p1')) continue;
      for (const project of ['nope', 'bad.id']) {
        await refused(path.replace('/projects/p1', `/projects/${project}`), { method, ...(body !== undefined ? { body } : {}) }, 'not-found', 404);
      }
    }
  });
});

describe('what the reads return, at their edges', () => {
  it('a range is one of the three, not a name every object has', async () => {
    for (const range of ['toString', '__proto__', 'constructor', '1h']) {
      expect({ range, ...(await errorOf(await admin(`/v1/admin/projects/p1/activity?range=${range}`))) }).toEqual({ range, status: 400, kind: 'invalid' });
    }
  });

  it('a row found by id and a column value is that row only, whether the value is stored as a number or as text', async () => {
    await store.push({ projectId: 'p1', userId: 'alice', deviceId: 'a1', deviceCursor: 0, changes: [change('r7', { title: '7', n: 7 }), change('r8', { title: 'x', n: 7 })] });
    const rows = async (q: string) => (await jsonOf<{ rows: Array<{ row: string }> }>(await admin(`/v1/admin/projects/p1/rows?table=todos&scope=user:alice&${q}`))).rows.map((r) => r.row);
    expect(await rows('column=n&value=7')).toEqual(['r7', 'r8']);
    expect(await rows('column=title&value=7')).toEqual(['r7']);
    expect(await rows('id=r8&column=n&value=7')).toEqual(['r8']);
    expect(await rows('id=r8&column=title&value=7')).toEqual([]);
    expect(await rows('id=r1&column=n&value=99')).toEqual([]);
  });

  it('a long-lived row’s history is its newest 1,000 changes, oldest first, and says so', async () => {
    for (let i = 0; i < 12; i++) {
      await store.push({ projectId: 'p1', userId: 'bob', deviceId: 'b1', deviceCursor: 0, changes: Array.from({ length: 100 }, (_, j) => change('b1', { title: `v${i * 100 + j}` }, 'todos', 100_000 + i * 100 + j, 'update')) });
    }
    const history = await jsonOf<{ truncated: boolean; changes: Array<{ values: { title: string } }> }>(await admin('/v1/admin/projects/p1/history?table=todos&row=b1'));
    expect(history.truncated).toBe(true);
    expect(history.changes).toHaveLength(1000);
    expect([history.changes[0]!.values.title, history.changes.at(-1)!.values.title]).toEqual(['v200', 'v1199']);
    expect((await jsonOf<{ truncated: boolean }>(await admin('/v1/admin/projects/p1/history?table=todos&row=r1'))).truncated).toBe(false);
  });

  it('a push’s duplicates and rejections are listed with the changes, with why, and nothing of a rejected change’s values', async () => {
    const token = await mintUserToken(p1, 'alice');
    const good = change('g1', { title: 'good' });
    const push = (changes: unknown[]) => app.request('/v1/projects/p1/push', { method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' }, body: JSON.stringify({ deviceId: 'a1', changes }) });
    expect((await push([good, { ...change('bad', { title: 'secret value' }), values: [] }])).status).toBe(200);
    expect((await push([good])).status).toBe(200);
    const listed = await jsonOf<{ changes: Array<{ changeId: string; outcome: string; seq: number | null; message: string | null; values: unknown }> }>(await admin('/v1/admin/projects/p1/changes?user=alice&limit=3'));
    const rejected = listed.changes.find((c) => c.outcome === 'rejected')!;
    expect(rejected).toMatchObject({ changeId: expect.stringMatching(/^c\d+$/), values: null, seq: null, message: expect.stringContaining('must be an object, not a list') });
    expect(JSON.stringify(listed)).not.toContain('secret value');
    const applied = listed.changes.find((c) => c.outcome === 'applied' && c.changeId === good.id)!;
    expect(listed.changes.find((c) => c.outcome === 'duplicate')).toMatchObject({ changeId: good.id, seq: applied.seq });
    expect((await jsonOf<{ changes: unknown[] }>(await admin('/v1/admin/projects/p1/changes?outcome=duplicate'))).changes).toHaveLength(1);
    expect(await errorOf(await admin('/v1/admin/projects/p1/changes?outcome=lost'))).toEqual({ status: 400, kind: 'invalid' });
  });

  it('shared tables are kept once each, however often they are named', async () => {
    const made = await jsonOf<{ sharedTables: string[] }>(await admin('/v1/admin/projects', { method: 'POST', body: { id: 'p3', sharedTables: ['a', 'b', 'a'] } }), 201);
    expect(made.sharedTables).toEqual(['a', 'b']);
    const patched = await jsonOf<{ project: { sharedTables: string[] } }>(await admin('/v1/admin/projects/p3', { method: 'PATCH', body: { sharedTables: ['c', 'c', 'c'] } }));
    expect(patched.project.sharedTables).toEqual(['c']);
  });
});

describe('what the reads return', () => {
  it('projects with counts and no secrets, a project’s stats, users, devices, tables, rows, changes, history and conflicts', async () => {
    const projects = await jsonOf<{ projects: Array<Record<string, unknown>> }>(await admin('/v1/admin/projects'));
    expect(projects.projects).toMatchObject([
      { id: 'p1', strategy: 'column-lww', sharedTables: ['lists'], users: 2, devices: 2 },
      { id: 'p2', users: 0, devices: 0 },
    ]);
    expect(JSON.stringify(projects)).not.toContain('secret');
    expect(await jsonOf(await admin('/v1/admin/projects/p1'))).toMatchObject({ project: { id: 'p1' }, stats: { users: 2, devices: 2, seq: 3 } });

    const users = await jsonOf<{ users: Array<{ userId: string }>; next: string | null }>(await admin('/v1/admin/projects/p1/users?limit=1'));
    expect([users.users.map((u) => u.userId), users.next]).toEqual([['alice'], 'alice']);
    const rest = await jsonOf<{ users: Array<{ userId: string }>; next: string | null }>(await admin('/v1/admin/projects/p1/users?limit=1&after=alice'));
    expect([rest.users.map((u) => u.userId), rest.next]).toEqual([['bob'], null]);
    expect(await jsonOf(await admin('/v1/admin/projects/p1/users/alice/devices'))).toMatchObject({ userId: 'alice', blocked: false, seq: 3, devices: [{ deviceId: 'a1', lag: 3 }] });

    expect(await jsonOf(await admin('/v1/admin/projects/p1/tables'))).toEqual({
      tables: [{ table: 'lists', rows: 1, deleted: 0, shared: true }, { table: 'todos', rows: 2, deleted: 0, shared: false }],
    });
    expect(await jsonOf(await admin('/v1/admin/projects/p1/rows?table=todos&scope=user:alice'))).toMatchObject({ scope: 'user:alice', rows: [{ row: 'r1', values: { title: 'milk' } }], next: null });
    expect(await jsonOf(await admin('/v1/admin/projects/p1/rows?table=lists'))).toMatchObject({ scope: 'shared', rows: [{ row: 'l1' }] });
    expect((await jsonOf<{ rows: unknown[] }>(await admin('/v1/admin/projects/p1/rows?table=todos&scope=user:alice&column=n&value=3'))).rows).toHaveLength(1);
    expect((await jsonOf<{ rows: unknown[] }>(await admin('/v1/admin/projects/p1/rows?table=todos&scope=user:alice&column=title&value=milk'))).rows).toHaveLength(1);
    expect((await jsonOf<{ rows: unknown[] }>(await admin('/v1/admin/projects/p1/rows?table=todos&scope=user:alice&column=title&value=bread'))).rows).toHaveLength(0);

    // Changes in pages of two, through `next`.
    const seen: string[] = [];
    let next: string | null = null;
    do {
      const page: { changes: Array<{ changeId: string }>; next: string | null } = await jsonOf(await admin(`/v1/admin/projects/p1/changes?limit=2${next ? `&before=${encodeURIComponent(next)}` : ''}`));
      seen.push(...page.changes.map((c) => c.changeId));
      next = page.next;
    } while (next !== null);
    expect(seen.sort()).toEqual((await store.changes({ projectId: 'p1', limit: 100 })).map((c) => c.changeId).sort());
    expect(seen).toHaveLength(4);
    expect((await jsonOf<{ changes: unknown[] }>(await admin('/v1/admin/projects/p1/changes?user=bob'))).changes).toHaveLength(1);

    const history = await jsonOf<{ changes: Array<{ outcome: string; conflicts: unknown[] }> }>(await admin('/v1/admin/projects/p1/history?table=todos&row=r1'));
    expect(history.changes.map((c) => [c.outcome, c.conflicts.length])).toEqual([['applied', 0], ['superseded', 1]]);
    expect(await jsonOf(await admin('/v1/admin/projects/p1/conflicts'))).toMatchObject({ conflicts: [{ row: 'r1', column: 'title', userId: 'alice', deviceId: 'a1' }], next: null });
    expect(await jsonOf(await admin('/v1/admin/projects/p1/activity?range=24h'))).toMatchObject({ range: '24h', unit: '1 minute', points: [] });
    expect(await jsonOf(await admin('/v1/admin/projects/p1/activity?range=7d'))).toMatchObject({ range: '7d', unit: '10 minutes' });
  });
});

describe('signing keys and blocked users, as the sync endpoints see them', () => {
  const push = (token: string, deviceId = 'a1') =>
    app.request('/v1/projects/p1/push', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
      body: JSON.stringify({ deviceId, changes: [change(`x${n}`, { title: 'x' })] }),
    });

  it('a revoked key’s tokens are refused; a new key’s tokens, minted by the API with its kid, are accepted', async () => {
    const old = await mintUserToken(p1, 'alice');
    expect((await push(old)).status).toBe(200);

    const made = await jsonOf<{ key: { kid: string; createdAt: number; lastUsedAt: null; revokedAt: null }; secret: string }>(await admin('/v1/admin/projects/p1/keys', { method: 'POST' }), 201);
    expect(made.key).toEqual({ kid: expect.stringMatching(/^[A-Za-z0-9_-]{1,64}$/), createdAt: expect.any(Number), lastUsedAt: null, revokedAt: null });
    expect(made.secret.length).toBeGreaterThanOrEqual(32);
    // The new key signs from now on: the token names it.
    const minted = await jsonOf<{ token: string; kid: string; user: string }>(await admin('/v1/admin/projects/p1/tokens', { method: 'POST', body: { user: 'alice' } }));
    expect(minted).toMatchObject({ kid: made.key.kid, user: 'alice' });
    expect(decode(minted.token).header).toMatchObject({ kid: made.key.kid });
    expect((await push(minted.token)).status).toBe(200);
    // The old key still verifies until revoked.
    expect((await push(old)).status).toBe(200);

    expect(await jsonOf(await admin('/v1/admin/projects/p1/keys/default', { method: 'DELETE' }))).toEqual({ kid: 'default', revoked: true, closed: 0 });
    expect(await errorOf(await push(old))).toEqual({ status: 401, kind: 'auth' });
    expect(await errorOf(await app.request('/v1/projects/p1/pull?cursor=0', { headers: { Authorization: `Bearer ${old}` } }))).toEqual({ status: 401, kind: 'auth' });
    expect((await push(minted.token)).status).toBe(200);
    // A token the app's backend signs itself with the new key's secret and kid.
    const own = await mintUserToken({ ...p1, keys: [{ kid: made.key.kid, secret: made.secret }] }, 'carol');
    expect((await push(own, 'c1')).status).toBe(200);
    // Signed with the new secret but naming the revoked kid: refused.
    const misnamed = await mintUserToken({ ...p1, keys: [{ kid: 'default', secret: made.secret }] }, 'carol');
    expect(await errorOf(await push(misnamed, 'c1'))).toEqual({ status: 401, kind: 'auth' });

    const keys = (await jsonOf<{ keys: Array<{ kid: string; lastUsedAt: number | null; revokedAt: number | null }> }>(await admin('/v1/admin/projects/p1/keys'))).keys;
    expect(keys.map((k) => [k.kid, k.revokedAt !== null, k.lastUsedAt !== null])).toEqual([['default', true, true], [made.key.kid, false, true]]);
    expect(JSON.stringify(keys)).not.toContain(made.secret);
    expect(await errorOf(await admin('/v1/admin/projects/p1/keys/default', { method: 'DELETE' }))).toEqual({ status: 404, kind: 'not-found' });

    // With every key revoked, no token can be minted, and none verifies.
    expect((await admin(`/v1/admin/projects/p1/keys/${made.key.kid}`, { method: 'DELETE' })).status).toBe(200);
    expect(await errorOf(await admin('/v1/admin/projects/p1/tokens', { method: 'POST', body: { user: 'alice' } }))).toEqual({ status: 400, kind: 'invalid' });
    expect(await errorOf(await push(minted.token))).toEqual({ status: 401, kind: 'auth' });
  });

  it('a blocked user’s requests are refused until unblocked; other users go on', async () => {
    const alice = await mintUserToken(p1, 'alice');
    const bob = await mintUserToken(p1, 'bob');
    expect(await jsonOf(await admin('/v1/admin/projects/p1/users/alice/block', { method: 'POST', body: { blocked: true } }))).toEqual({ userId: 'alice', blocked: true, closed: 0 });
    const seq = await store.currentSeq('p1');
    expect(await errorOf(await push(alice))).toEqual({ status: 401, kind: 'auth' });
    expect(await errorOf(await app.request('/v1/projects/p1/pull?cursor=0', { headers: { Authorization: `Bearer ${alice}` } }))).toEqual({ status: 401, kind: 'auth' });
    expect(await store.currentSeq('p1')).toBe(seq);
    expect((await push(bob, 'b1')).status).toBe(200);
    expect(await jsonOf(await admin('/v1/admin/projects/p1/users/alice/devices'))).toMatchObject({ blocked: true });
    expect((await jsonOf<{ users: Array<{ userId: string; blocked: boolean }> }>(await admin('/v1/admin/projects/p1/users'))).users).toMatchObject([
      { userId: 'alice', blocked: true },
      { userId: 'bob', blocked: false },
    ]);
    // Blocked in this project only.
    expect(await store.isBlocked('p2', 'alice')).toBe(false);

    expect(await jsonOf(await admin('/v1/admin/projects/p1/users/alice/block', { method: 'POST', body: { blocked: false } }))).toEqual({ userId: 'alice', blocked: false, closed: 0 });
    expect((await push(alice)).status).toBe(200);
  });
});
