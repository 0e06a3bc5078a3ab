/** The sync server's HTTP API, in-process through app.request(), on a real (in-memory) store. */
import { sign } from 'hono/jwt';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ClientChange } from '../lib/protocol/change.js';
import type { Ack, Changes } from '../lib/protocol/down.js';
import { LIMITS } from '../lib/protocol/up.js';
import { createApp } from '../server/app.js';
import { mintUserToken } from '../server/auth.js';
import { SqliteStore } from '../server/store/sqlite-store.js';
import type { Project, ScopedRowChange } from '../server/store/store.js';
import { formatClock } from '../worker/hlc.js';

const ADMIN = 'admin-key-for-tests';
let store: SqliteStore;
let app: ReturnType<typeof createApp>;
let p1: Project;
let p2: Project;
let committed: ScopedRowChange[];

beforeEach(async () => {
  store = new SqliteStore(':memory:');
  committed = [];
  app = createApp({ store, adminKey: ADMIN, devProject: 'p1', onCommit: (_p, out) => committed.push(...out.effective) });
  p1 = await store.createProject({ id: 'p1', secret: 'p1-secret-p1-secret-p1-secret-p1-secret', sharedTables: ['lists'] });
  p2 = await store.createProject({ id: 'p2', secret: 'p2-secret-p2-secret-p2-secret-p2-secret' });
});
afterEach(() => store.close());

let n = 0;
const change = (row: string, values: Record<string, string | number | null>, table = 'todos'): ClientChange => ({
  id: `c${++n}`, table, row, op: 'insert', clock: formatClock({ wall: 1_000 + n, counter: 0, deviceId: 'dev1' }), values,
});
const json = (body: unknown, token?: string): RequestInit => ({
  method: 'POST',
  headers: { 'Content-Type': 'application/json', ...(token ? { Authorization: `Bearer ${token}` } : {}) },
  body: typeof body === 'string' ? body : JSON.stringify(body),
});
const push = (project: string, token: string | undefined, body: unknown) => app.request(`/v1/projects/${project}/push`, json(body, token));
const pull = (project: string, token: string | undefined, query = 'cursor=0') =>
  app.request(`/v1/projects/${project}/pull?${query}`, token ? { headers: { Authorization: `Bearer ${token}` } } : {});

describe('push and pull', () => {
  it('acknowledges a push after commit and serves it back through pull', async () => {
    const token = await mintUserToken(p1, 'alice');
    const res = await push('p1', token, { deviceId: 'dev1', changes: [change('r1', { title: 'milk' }), change('r2', { title: 'bread' })] });
    expect(res.status).toBe(200);
    const ack = (await res.json()) as { type: string; results: unknown[] };
    expect(ack).toMatchObject({ type: 'ack', results: [{ outcome: 'applied', seq: 1 }, { outcome: 'applied', seq: 2 }] });
    expect(committed.map((c) => c.row)).toEqual(['r1', 'r2']);
    const pulled = await (await pull('p1', token)).json();
    expect(pulled).toMatchObject({ type: 'changes', cursor: 2, hasMore: false, remaining: 0 });
    expect((pulled as { changes: unknown[] }).changes).toMatchObject([{ row: 'r1', values: { title: 'milk' } }, { row: 'r2' }]);
    expect(await store.listDevices('p1')).toMatchObject([{ deviceId: 'dev1', userId: 'alice' }]);
  });

  it('pulls in batches with a limit', async () => {
    const token = await mintUserToken(p1, 'alice');
    await push('p1', token, { deviceId: 'dev1', changes: Array.from({ length: 5 }, (_, i) => change(`r${i}`, { i })) });
    const first = (await (await pull('p1', token, 'cursor=0&limit=2')).json()) as { cursor: number; hasMore: boolean; remaining: number };
    expect(first).toMatchObject({ cursor: 2, hasMore: true, remaining: 3 });
  });

  it('mints dev tokens only in dev mode', async () => {
    const res = await app.request('/v1/projects/p1/dev/token', json({ user: 'carol' }));
    const { token } = (await res.json()) as { token: string };
    expect((await pull('p1', token)).status).toBe(200);
    const prod = createApp({ store, adminKey: ADMIN });
    expect((await prod.request('/v1/projects/p1/dev/token', json({ user: 'carol' }))).status).toBe(404);
  });

  it('creates projects with the admin key only', async () => {
    const body = { id: 'p3', sharedTables: ['lists'] };
    expect((await app.request('/v1/admin/projects', json(body))).status).toBe(401);
    expect((await app.request('/v1/admin/projects', json(body, 'wrong'))).status).toBe(401);
    const res = await app.request('/v1/admin/projects', json(body, ADMIN));
    expect(res.status).toBe(201);
    expect(await res.json()).toMatchObject({ id: 'p3', strategy: 'column-lww', sharedTables: ['lists'], secret: expect.stringMatching(/^[0-9a-f]{64}$/) });
    expect(await (await app.request('/v1/admin/projects', json(body, ADMIN))).json()).toMatchObject({ kind: 'invalid' });
  });
});

describe('isolation', () => {
  it('never shows one user’s private rows to another, and shares the shared tables', async () => {
    const alice = await mintUserToken(p1, 'alice');
    const bob = await mintUserToken(p1, 'bob');
    await push('p1', alice, { deviceId: 'a1', changes: [change('secret', { title: 'alice only' }), change('groceries', { name: 'shared list' }, 'lists')] });
    const bobs = (await (await pull('p1', bob)).json()) as { changes: Array<{ row: string }> };
    expect(bobs.changes.map((c) => c.row)).toEqual(['groceries']);
  });

  it('refuses a token of another project, and shows nothing across projects', async () => {
    const p1Token = await mintUserToken(p1, 'alice');
    await push('p1', p1Token, { deviceId: 'a1', changes: [change('r1', { title: 'p1' })] });
    const res = await pull('p2', p1Token);
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ kind: 'auth' });
    const p2Token = await mintUserToken(p2, 'alice');
    expect(((await (await pull('p2', p2Token)).json()) as { changes: unknown[] }).changes).toEqual([]);
  });
});

describe('bad input changes nothing and says why', () => {
  const cases: Array<[string, () => Promise<Response>, number, string]> = [
    ['malformed JSON', async () => push('p1', await mintUserToken(p1, 'alice'), '{"deviceId": "d1", "changes": ['), 400, 'invalid'],
    ['changes that are not a list', async () => push('p1', await mintUserToken(p1, 'alice'), { deviceId: 'd1', changes: 'all of them' }), 400, 'invalid'],
    ['an unknown field', async () => push('p1', await mintUserToken(p1, 'alice'), { deviceId: 'd1', changes: [], extra: true }), 400, 'invalid'],
    ['too many changes', async () => push('p1', await mintUserToken(p1, 'alice'), { deviceId: 'd1', changes: Array.from({ length: LIMITS.maxChangesPerPush + 1 }, (_, i) => change(`r${i}`, { i })) }), 413, 'invalid'],
    ['an oversize body', async () => push('p1', await mintUserToken(p1, 'alice'), { deviceId: 'd1', changes: [change('r1', { blob: 'x'.repeat(LIMITS.maxMessageBytes) })] }), 413, 'invalid'],
    ['no token', async () => push('p1', undefined, { deviceId: 'd1', changes: [change('r1', { a: 1 })] }), 401, 'auth'],
    ['an expired token', async () => push('p1', await sign({ sub: 'alice', project: 'p1', exp: Math.floor(Date.now() / 1000) - 60 }, p1.secret, 'HS256'), { deviceId: 'd1', changes: [change('r1', { a: 1 })] }), 401, 'auth'],
    ['a forged token', async () => push('p1', await sign({ sub: 'alice', project: 'p1', exp: Math.floor(Date.now() / 1000) + 60 }, 'not-the-secret', 'HS256'), { deviceId: 'd1', changes: [change('r1', { a: 1 })] }), 401, 'auth'],
    ['a token for another project', async () => push('p1', await sign({ sub: 'alice', project: 'p2', exp: Math.floor(Date.now() / 1000) + 60 }, p1.secret, 'HS256'), { deviceId: 'd1', changes: [change('r1', { a: 1 })] }), 401, 'auth'],
    ['a token without expiry', async () => push('p1', await sign({ sub: 'alice', project: 'p1' }, p1.secret, 'HS256'), { deviceId: 'd1', changes: [change('r1', { a: 1 })] }), 401, 'auth'],
    ['an unknown project', async () => push('nope', await mintUserToken(p1, 'alice'), { deviceId: 'd1', changes: [] }), 404, 'not-found'],
    ['a bad cursor', async () => pull('p1', await mintUserToken(p1, 'alice'), 'cursor=-1'), 400, 'invalid'],
  ];

  it.each(cases)('%s', async (_name, request, status, kind) => {
    const res = await request();
    expect(res.status).toBe(status);
    const body = (await res.json()) as { kind: string; message: string };
    expect(body.kind).toBe(kind);
    expect(body.message.length).toBeGreaterThan(0);
    expect(await store.currentSeq('p1')).toBe(0);
    expect(committed).toEqual([]);
    // ...and the server keeps serving.
    expect((await app.request('/v1/health')).status).toBe(200);
  });
});

describe('one bad change does not refuse the push', () => {
  it.each([
    ['wrong types', { ...change('r1', { a: 1 }), clock: 42 }],
    ['SQL in a table name', change('r1', { a: 1 }, 'todos; DROP TABLE x')],
    ['SQL in a column name', change('r1', { 'a" = 1 --': 1 })],
    ['a reserved table name', change('r1', { a: 1 }, '__pocketsync_changes')],
    ['a table name SQLite allows but the wire does not', change('r1', { a: 1 }, 'my-notes')],
    ['a row id the wire refuses', change('a row id with spaces', { a: 1 })],
    ['a clock two hours ahead of the server', { ...change('r2', { a: 2 }), clock: formatClock({ wall: Date.now() + 2 * 3_600_000, counter: 0, deviceId: 'd1' }) }],
  ])('%s: that change is rejected, the others are applied', async (_name, bad) => {
    const token = await mintUserToken(p1, 'alice');
    const good = change('good', { a: 1 });
    const res = await push('p1', token, { deviceId: 'd1', changes: [bad, good] });
    expect(res.status).toBe(200);
    const ack = (await res.json()) as Ack;
    expect(ack.results).toMatchObject([
      { id: bad.id, outcome: 'rejected', seq: null, error: { kind: 'invalid', message: expect.any(String) as string } },
      { id: good.id, outcome: 'applied', seq: 1 },
    ]);
    expect(ack.results[0]!.error!.message.length).toBeGreaterThan(0);
    expect(committed.map((c) => c.row)).toEqual(['good']);
    expect(await store.currentSeq('p1')).toBe(1);
  });

  it('a change whose values are a list, not an object of columns, is rejected alone; a list body is refused', async () => {
    const token = await mintUserToken(p1, 'alice');
    const res = await push('p1', token, {
      deviceId: 'd1',
      changes: [
        { id: 'c1', table: 'todos', row: 'r1', op: 'insert', clock: '000000000000000001024-d1', values: [] },
        { id: 'c2', table: 'todos', row: 'r2', op: 'insert', clock: '000000000000000001025-d1', values: { title: 'kept' } },
      ],
    });
    const ack = (await res.json()) as Ack;
    expect(ack.results.map((r) => r.outcome)).toEqual(['rejected', 'applied']);
    expect(ack.results[0]!.error!.message).toMatch(/values: must be an object, not a list/);
    expect(await store.currentSeq('p1')).toBe(1);
    const list = await push('p1', token, []);
    expect([list.status, ((await list.json()) as { kind: string }).kind]).toEqual([400, 'invalid']);
  });

  it('a change without a readable id is rejected with id ""', async () => {
    const res = await push('p1', await mintUserToken(p1, 'alice'), { deviceId: 'd1', changes: [{ id: 7, table: 'todos' }, 'not even an object'] });
    expect(((await res.json()) as Ack).results).toMatchObject([{ id: '', outcome: 'rejected' }, { id: '', outcome: 'rejected' }]);
    expect(await store.currentSeq('p1')).toBe(0);
  });
});

describe('what a device cannot derive, over HTTP', () => {
  it('pull with cursor 0 sends deletes unless fresh=1', async () => {
    const token = await mintUserToken(p1, 'alice');
    await push('p1', token, { deviceId: 'd1', changes: [change('r1', { a: 1 }), change('r2', { a: 2 })] });
    await push('p1', token, { deviceId: 'd1', changes: [{ id: `c${++n}`, table: 'todos', row: 'r1', op: 'delete', clock: formatClock({ wall: 9_000_000, counter: 0, deviceId: 'dev1' }) }] });
    const all = (await (await pull('p1', token, 'cursor=0')).json()) as Changes;
    expect(all.changes.map((c) => [c.row, c.deleted])).toEqual([['r2', false], ['r1', true]]);
    const fresh = (await (await pull('p1', token, 'cursor=0&fresh=1')).json()) as Changes;
    expect(fresh.changes.map((c) => c.row)).toEqual(['r2']);
  });
});

describe('device ids belong to users, over HTTP', () => {
  it('refuses a push naming another user’s device id, and stores nothing', async () => {
    await push('p1', await mintUserToken(p1, 'alice'), { deviceId: 'alices-phone', changes: [change('r1', { a: 1 })] });
    const res = await push('p1', await mintUserToken(p1, 'bob'), { deviceId: 'alices-phone', changes: [change('r2', { a: 2 })] });
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ kind: 'auth', message: expect.stringMatching(/another user/) as string });
    expect(await store.currentSeq('p1')).toBe(1);
    expect(await store.listDevices('p1')).toMatchObject([{ deviceId: 'alices-phone', userId: 'alice' }]);
  });
});
