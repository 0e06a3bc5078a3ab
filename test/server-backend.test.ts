/**
 * The backend API over HTTP on 127.0.0.1: service keys, reads of a user's and the shared rows, and
 * server-authored writes that merge and reach devices like a device's. Driven through the
 * `pocketsync/backend` client, with real PocketSync instances as the devices.
 */
import { sign } from 'hono/jwt';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createBackendClient, mintUserToken as mintInBackend, rowIdForKey, type BackendClient } from '../lib/backend.js';
import { isPocketSyncError, type Row } from '../lib/index.js';
import { ErrorKind } from '../lib/protocol/error-kind.js';
import { mintUserToken, verifyUserToken } from '../server/auth.js';
import { createServer, type RunningServer } from '../server/server.js';
import { SqliteStore } from '../server/store/sqlite-store.js';
import type { Project } from '../server/store/store.js';
import { formatClock } from '../worker/hlc.js';
import { PROTOCOL_VERSION } from '../lib/protocol/protocol-version.js';
import { openInstance, waitFor } from './helpers/instance.js';
import { isType, TestSocket } from './helpers/socket.js';

const ADMIN = 'admin-key-for-backend-tests';
const schema = {
  version: 1,
  migrations: [{ version: 1, sql: ['CREATE TABLE todos (id INTEGER PRIMARY KEY, title TEXT NOT NULL, done INTEGER NOT NULL DEFAULT 0, data BLOB, big INTEGER)', 'CREATE TABLE lists (id INTEGER PRIMARY KEY, name TEXT)', 'CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT)'] }],
};

let server: RunningServer;
let a: Project;
let b: Project;

beforeEach(async () => {
  const store = new SqliteStore(':memory:');
  a = await store.createProject({ id: 'pa', secret: 'a'.repeat(40), sharedTables: ['lists'] });
  b = await store.createProject({ id: 'pb', secret: 'b'.repeat(40) });
  server = await createServer({ store, adminKey: ADMIN, log: null, cors: { origins: ['http://app.example'] } });
});
afterEach(async () => {
  await server.close();
  await server.store.close();
});

const admin = (path: string, init: RequestInit = {}, key = ADMIN) =>
  fetch(new URL(path, server.url), { ...init, headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json', ...(init.headers as Record<string, string>) } });

async function newKey(project: string, name = 'jobs'): Promise<string> {
  const response = await admin(`v1/admin/projects/${project}/service-keys`, { method: 'POST', body: JSON.stringify({ name }) });
  expect(response.status).toBe(201);
  return ((await response.json()) as { key: string }).key;
}

async function clientOf(project: string): Promise<BackendClient> {
  return createBackendClient({ serverUrl: server.url, projectId: project, serviceKey: await newKey(project) });
}

async function device(user: string, project = a) {
  const token = await mintUserToken(project, user);
  const instance = await openInstance({ schema, serverUrl: server.url, projectId: project.id, authToken: () => token });
  await waitFor(() => instance.sync.status.state === 'live', 5_000, `${user}'s device live`);
  return instance;
}

async function failure(promise: Promise<unknown>): Promise<{ kind: string; message: string }> {
  const error = await promise.then(() => null, (caught: unknown) => caught);
  if (!isPocketSyncError(error)) throw new Error(`expected a PocketSyncError, got ${String(error)}`);
  return { kind: error.kind, message: error.message };
}

describe('service keys', () => {
  it('are created by the admin route, shown once, listed without secrets, and revoked for good', async () => {
    const created = await admin('v1/admin/projects/pa/service-keys', { method: 'POST', body: JSON.stringify({ name: 'nightly' }) });
    expect(created.status).toBe(201);
    const { key, id, name, projectId } = (await created.json()) as { key: string; id: string; name: string; projectId: string };
    expect(key).toMatch(/^psk_[0-9a-f]{16}_[0-9a-f]{64}$/);
    expect({ name, projectId }).toEqual({ name: 'nightly', projectId: 'pa' });
    const listed = (await (await admin('v1/admin/projects/pa/service-keys')).json()) as { keys: Array<Record<string, unknown>> };
    expect(listed.keys).toEqual([{ id, projectId: 'pa', name: 'nightly', createdAt: expect.any(Number) }]);
    expect(JSON.stringify(listed)).not.toContain(key.slice(-64));

    const backend = createBackendClient({ serverUrl: server.url, projectId: 'pa', serviceKey: key });
    expect((await backend.rows('todos', { user: 'alice' })).rows).toEqual([]);
    expect((await admin(`v1/admin/projects/pa/service-keys/${id}`, { method: 'DELETE' })).status).toBe(204);
    expect(await failure(backend.rows('todos', { user: 'alice' }))).toMatchObject({ kind: ErrorKind.Auth, message: expect.stringContaining('revoked') });
    const again = await admin(`v1/admin/projects/pa/service-keys/${id}`, { method: 'DELETE' });
    expect([again.status, ((await again.json()) as { kind: string }).kind]).toEqual([404, ErrorKind.NotFound]);
  });

  it('need the admin key and an existing project', async () => {
    const wrong = await admin('v1/admin/projects/pa/service-keys', { method: 'POST', body: '{}' }, 'not-the-admin-key');
    expect([wrong.status, ((await wrong.json()) as { kind: string }).kind]).toEqual([401, ErrorKind.Auth]);
    const missing = await admin('v1/admin/projects/nope/service-keys', { method: 'POST', body: '{}' });
    expect([missing.status, ((await missing.json()) as { kind: string }).kind]).toEqual([404, ErrorKind.NotFound]);
    const bad = await admin('v1/admin/projects/pa/service-keys', { method: 'POST', body: JSON.stringify({ name: 'x'.repeat(101) }) });
    expect([bad.status, ((await bad.json()) as { kind: string }).kind]).toEqual([413, ErrorKind.Invalid]);
    expect((await (await admin('v1/admin/projects/pa/service-keys')).json()) as unknown).toEqual({ keys: [] });
  });

  it('open only their own project: a key of A reads and writes nothing of B', async () => {
    const bob = await device('bob', b);
    await bob.database.insert('todos', { title: 'b secret' });
    await waitFor(() => bob.sync.status.pending === 0, 5_000, 'bob’s push');
    const keyOfA = await newKey('pa');
    const intoB = createBackendClient({ serverUrl: server.url, projectId: 'pb', serviceKey: keyOfA });
    expect(await failure(intoB.rows('todos', { user: 'bob' }))).toEqual({ kind: ErrorKind.Auth, message: 'the service key is for another project' });
    expect(await failure(intoB.write('bob', [{ table: 'todos', id: 'x1', operation: 'insert', values: { title: 'forged' } }]))).toMatchObject({ kind: ErrorKind.Auth });
    const ownB = await clientOf('pb');
    expect((await ownB.rows('todos', { user: 'bob' })).rows.map((row) => row.values.title)).toEqual(['b secret']);
    expect(await bob.database.query('SELECT title FROM todos')).toEqual([{ title: 'b secret' }]);
  });

  it('are refused when missing, malformed, forged, or a user token', async () => {
    const rows = (key?: string) => fetch(new URL('v1/projects/pa/backend/rows?table=todos&user=alice', server.url), key ? { headers: { Authorization: `Bearer ${key}` } } : {});
    const real = await newKey('pa');
    const forged = `${real.slice(0, -4)}0000` === real ? `${real.slice(0, -4)}1111` : `${real.slice(0, -4)}0000`;
    for (const key of [undefined, 'nonsense', await mintUserToken(a, 'alice'), forged, `psk_${'0'.repeat(16)}_${'0'.repeat(64)}`]) {
      const response = await rows(key);
      expect(response.status, String(key)).toBe(401);
      const body = (await response.json()) as { kind: string; rows?: unknown };
      expect(body.kind).toBe(ErrorKind.Auth);
      expect(body.rows).toBeUndefined();
    }
  });
});

describe('reading rows', () => {
  it('reads a user’s rows and the shared rows, paged by id, never another user’s', async () => {
    const alice = await device('alice');
    const carol = await device('carol');
    await alice.database.transaction(async (tx) => {
      for (let i = 0; i < 7; i++) await tx.insert('todos', { title: `a${i}` });
      await tx.insert('lists', { name: 'groceries' });
    });
    await carol.database.insert('todos', { title: 'carol’s' });
    await waitFor(() => alice.sync.status.pending === 0 && carol.sync.status.pending === 0, 5_000, 'both pushes');
    await alice.database.delete('todos', { title: 'a3' });
    await waitFor(() => alice.sync.status.pending === 0, 5_000, 'the delete’s push');

    const backend = await clientOf('pa');
    const first = await backend.rows('todos', { user: 'alice' }, { limit: 4 });
    expect(first.rows).toHaveLength(4);
    expect(first.next).toBe(first.rows[3]?.id);
    const second = await backend.rows('todos', { user: 'alice' }, { limit: 4, after: first.next ?? '' });
    expect(second.next).toBeNull();
    const paged = [...first.rows, ...second.rows];
    const ids = paged.map((row) => row.id);
    expect(ids).toEqual([...ids].sort());
    expect(paged.map((row) => row.values.title).sort()).toEqual(['a0', 'a1', 'a2', 'a4', 'a5', 'a6']);
    const all: string[] = [];
    for await (const row of backend.allRows('todos', { user: 'alice' }, { pageSize: 2 })) all.push(row.id);
    expect(all).toEqual(ids);
    const local = await alice.database.query<Row>('SELECT ps_global_id AS id, title FROM todos ORDER BY ps_global_id');
    expect(local.map((row) => row.id)).toEqual(ids);

    const picked = await backend.rows('todos', { user: 'alice' }, { ids: [ids[1] ?? '', 'no-such-row', ids[4] ?? ''] });
    expect(picked.rows.map((row) => row.id)).toEqual([ids[1], ids[4]]);
    // Many ids, long ones: asked for in groups, answered in id order.
    const many = [...Array.from({ length: 1200 }, (_, i) => `${'x'.repeat(60)}${String(i).padStart(4, '0')}`), ids[5] ?? '', ids[0] ?? ''];
    expect((await backend.rows('todos', { user: 'alice' }, { ids: many })).rows.map((row) => row.id)).toEqual([ids[0], ids[5]]);
    expect((await backend.rows('todos', { user: 'alice' }, { ids: [] })).rows).toEqual([]);
    expect((await backend.rows('todos', { user: 'carol' })).rows.map((row) => row.values.title)).toEqual(['carol’s']);
    expect((await backend.rows('todos', { user: 'nobody' })).rows).toEqual([]);
    expect((await backend.rows('lists', { shared: true })).rows.map((row) => row.values.name)).toEqual(['groceries']);
  });

  it('refuses a read whose scope or paging is wrong, with kind invalid', async () => {
    const backend = await clientOf('pa');
    expect(await failure(backend.rows('lists', { user: 'alice' }))).toMatchObject({ kind: ErrorKind.Invalid, message: expect.stringContaining('shared=1') });
    expect(await failure(backend.rows('todos', { shared: true }))).toMatchObject({ kind: ErrorKind.Invalid, message: expect.stringContaining('user=') });
    expect(await failure(backend.rows('todos', { user: 'no spaces' }))).toMatchObject({ kind: ErrorKind.Invalid });
    expect(await failure(backend.rows('no-such"table', { user: 'alice' }))).toMatchObject({ kind: ErrorKind.Invalid });
    expect(await failure(backend.rows('todos', { user: 'alice' }, { limit: 0 }))).toMatchObject({ kind: ErrorKind.Invalid });
    expect(await failure(backend.rows('todos', { user: 'alice' }, { after: 'not/an/id' }))).toMatchObject({ kind: ErrorKind.Invalid });
    const key = await newKey('pa');
    const both = await fetch(new URL('v1/projects/pa/backend/rows?table=todos&user=alice&shared=1', server.url), { headers: { Authorization: `Bearer ${key}` } });
    expect([both.status, ((await both.json()) as { kind: string }).kind]).toEqual([400, ErrorKind.Invalid]);
  });
});

describe('writing on a user’s behalf', () => {
  it('inserts, updates and deletes rows that reach the user’s devices live, and not another user’s', async () => {
    const alice = await device('alice');
    const carol = await device('carol');
    const seen: Row[][] = [];
    alice.database.watch('SELECT title, done FROM todos ORDER BY title', [], (rows) => seen.push(rows));
    const backend = await clientOf('pa');

    const written = await backend.write('alice', [
      { table: 'todos', id: 'server-made-1', operation: 'insert', values: { title: 'from the server', done: 0 } },
      { table: 'todos', id: 'server-made-2', operation: 'insert', values: { title: 'second', done: 0 } },
    ]);
    expect(written.results).toMatchObject([{ outcome: 'applied', seq: expect.any(Number) }, { outcome: 'applied' }]);
    await waitFor(() => seen.at(-1)?.length === 2, 5_000, 'the inserts on alice’s device');
    const ids = await alice.database.query<Row>('SELECT ps_global_id AS id FROM todos ORDER BY id');
    expect(ids.map((row) => row.id)).toEqual(['server-made-1', 'server-made-2']);

    await backend.write('alice', [
      { table: 'todos', id: 'server-made-1', operation: 'update', values: { done: 1 } },
      { table: 'todos', id: 'server-made-2', operation: 'delete' },
    ]);
    await waitFor(() => JSON.stringify(seen.at(-1)) === JSON.stringify([{ title: 'from the server', done: 1 }]), 5_000, 'the update and delete');
    expect(await carol.database.query('SELECT * FROM todos')).toEqual([]);
    expect((await backend.rows('todos', { user: 'alice' })).rows).toMatchObject([{ id: 'server-made-1', values: { title: 'from the server', done: 1 } }]);
    // Written as the server's device for alice, bound to her like any device.
    const devices = await server.store.listDevices('pa');
    expect(devices.filter((d) => d.deviceId.startsWith('server-')).map((d) => d.userId)).toEqual(['alice']);
  });

  it('wins over a device’s earlier write even when that device’s clock runs ahead', async () => {
    const token = await mintUserToken(a, 'alice');
    const ahead = formatClock({ wall: Date.now() + 30 * 60_000, counter: 0, deviceId: 'fastdevice' });
    const pushed = await fetch(new URL('v1/projects/pa/push', server.url), {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ deviceId: 'fastdevice', changes: [{ id: 'c1', table: 'todos', row: 'r1', op: 'insert', clock: ahead, values: { title: 'typo', done: 0 } }] }),
    });
    expect(pushed.status).toBe(200);
    const backend = await clientOf('pa');
    const fixed = await backend.write('alice', [{ table: 'todos', id: 'r1', operation: 'update', values: { title: 'fixed' } }]);
    expect(fixed.results).toMatchObject([{ outcome: 'applied' }]);
    expect((await backend.rows('todos', { user: 'alice' })).rows[0]?.values).toEqual({ title: 'fixed', done: 0 });
  });

  it('is idempotent by changeId, and rejects a bad change alone, storing nothing of it', async () => {
    const backend = await clientOf('pa');
    const once = { table: 'todos', id: 'r1', operation: 'insert' as const, values: { title: 'once', done: 0 }, changeId: 'job-42' };
    const first = await backend.write('alice', [once]);
    const retry = await backend.write('alice', [once]);
    expect(retry.results).toEqual([{ id: 'job-42', outcome: 'duplicate', seq: first.results[0]?.seq }]);
    expect(await server.store.currentSeq('pa')).toBe(first.results[0]?.seq);

    const mixed = await backend.write('alice', [
      { table: 'todos', id: 'r2', operation: 'insert', values: { title: 'good', done: 0 } },
      { table: 'todos', id: 'r3', operation: 'insert' },
      { table: 'todos', id: 'r4', operation: 'insert', values: { 'bad column': 1 } },
    ]);
    expect(mixed.results.map((result) => [result.outcome, result.error?.kind])).toEqual([['applied', undefined], ['rejected', ErrorKind.Invalid], ['rejected', ErrorKind.Invalid]]);
    // A column the wire cannot carry is refused, not dropped without a word.
    const key = await newKey('pa');
    const proto = await fetch(new URL('v1/projects/pa/backend/changes', server.url), {
      method: 'POST',
      headers: { Authorization: `Bearer ${key}` },
      body: '{"user":"alice","changes":[{"table":"todos","id":"r5","operation":"insert","values":{"title":"t","__proto__":{"x":1}}},{"table":"todos","id":"r6","operation":"insert","values":[1]}]}',
    });
    expect(((await proto.json()) as { results: Array<{ outcome: string }> }).results.map((result) => result.outcome)).toEqual(['rejected', 'rejected']);
    expect((await backend.rows('todos', { user: 'alice' })).rows.map((row) => row.id)).toEqual(['r1', 'r2']);
  });

  it('refuses an update of a deleted or never-written row alone (kind not-found): a backend write never undoes a user’s delete', async () => {
    const alice = await device('alice');
    const backend = await clientOf('pa');
    const stored = async () => (await server.store.rows({ projectId: 'pa', scope: 'user:alice', table: 'todos', limit: 1, includeDeleted: true })).rows[0];
    await alice.database.insert('todos', { title: 'mine' });
    await waitFor(async () => (await stored()) !== undefined, 5_000, 'the insert on the server');
    await alice.database.delete('todos', { title: 'mine' });
    await waitFor(async () => (await stored())?.deleted === true, 5_000, 'the delete on the server');
    const deleted = await stored();
    const written = await backend.write('alice', [
      { table: 'todos', id: deleted?.row ?? '', operation: 'update', values: { done: 1 } },
      { table: 'todos', id: 'ghost', operation: 'update', values: { done: 1 } },
      { table: 'todos', id: 'fresh', operation: 'insert', values: { title: 'new', done: 0 } },
      { table: 'todos', id: 'fresh', operation: 'update', values: { done: 1 } },
    ]);
    expect(written.results.map((result) => [result.outcome, result.error?.kind])).toEqual([
      ['rejected', ErrorKind.NotFound], ['rejected', ErrorKind.NotFound], ['applied', undefined], ['applied', undefined],
    ]);
    await waitFor(async () => (await alice.database.query('SELECT title, done FROM todos')).length === 1, 5_000, 'the new row');
    expect(await alice.database.query('SELECT title, done FROM todos')).toEqual([{ title: 'new', done: 1 }]);
    expect(alice.sync.status.quarantined).toBe(0);
    expect(await failure(backend.write('alice', [
      { table: 'todos', id: 'a', operation: 'insert', values: { title: 'a' }, changeId: 'same' },
      { table: 'todos', id: 'b', operation: 'insert', values: { title: 'b' }, changeId: 'same' },
    ]))).toMatchObject({ kind: ErrorKind.Invalid, message: expect.stringContaining('changeId') });
  });

  it('keeps its device ids to itself: a user who read one in a clock cannot push or say hello as it', async () => {
    const backend = await clientOf('pa');
    await backend.write('alice', [{ table: 'todos', id: 'r1', operation: 'insert', values: { title: 'x', done: 0 }, changeId: 'refund-1' }]);
    const token = await mintUserToken(a, 'alice');
    const pulled = (await (await fetch(new URL('v1/projects/pa/pull?cursor=0', server.url), { headers: { Authorization: `Bearer ${token}` } })).json()) as { changes: Array<{ clocks: Record<string, string> }> };
    const serverDevice = /-(server-[0-9a-f]+)$/.exec(pulled.changes[0]?.clocks.title ?? '')?.[1] ?? '';
    expect(serverDevice).toMatch(/^server-/);
    const squat = await fetch(new URL('v1/projects/pa/push', server.url), {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ deviceId: serverDevice, changes: [{ id: 'refund-2', table: 'todos', row: 'r1', op: 'update', clock: formatClock({ wall: Date.now(), counter: 0, deviceId: serverDevice }), values: { title: 'squatted' } }] }),
    });
    expect([squat.status, ((await squat.json()) as { kind: string }).kind]).toEqual([401, ErrorKind.Auth]);
    const refund = await backend.write('alice', [{ table: 'todos', id: 'r1', operation: 'update', values: { title: 'refunded' }, changeId: 'refund-2' }]);
    expect(refund.results).toMatchObject([{ outcome: 'applied' }]);
    const socket = await TestSocket.open(server.url, 'pa');
    socket.send({ type: 'hello', protocolVersion: PROTOCOL_VERSION, deviceId: serverDevice, cursor: 0, token });
    expect(await socket.next(isType('error'))).toMatchObject({ kind: ErrorKind.Auth, message: expect.stringContaining('server-') });
    expect(await socket.closed()).toBe(4001);
  });

  it('refuses a malformed request whole, with kind invalid, and stores nothing', async () => {
    const backend = await clientOf('pa');
    const before = await server.store.currentSeq('pa');
    expect(await failure(backend.write('not a user', [{ table: 'todos', id: 'r1', operation: 'insert', values: { title: 'x' } }]))).toMatchObject({ kind: ErrorKind.Invalid });
    expect(await failure(backend.write('alice', []))).toMatchObject({ kind: ErrorKind.Invalid });
    const many = Array.from({ length: 1001 }, (_, i) => ({ table: 'todos', id: `r${i}`, operation: 'insert' as const, values: { title: 'x' } }));
    expect(await failure(backend.write('alice', many))).toMatchObject({ kind: ErrorKind.Invalid, message: expect.stringContaining('at most 1000') });
    const key = await newKey('pa');
    for (const body of ['{not json', JSON.stringify({ user: 'alice', changes: [{ table: 'todos', id: 'r1', operation: 'upsert' }] }), JSON.stringify({ user: 'alice', changes: [], extra: 1 })]) {
      const response = await fetch(new URL('v1/projects/pa/backend/changes', server.url), { method: 'POST', headers: { Authorization: `Bearer ${key}` }, body });
      expect([response.status, ((await response.json()) as { kind: string }).kind], body).toEqual([400, ErrorKind.Invalid]);
    }
    expect(await server.store.currentSeq('pa')).toBe(before);
  });

  it('carries BLOBs and 64-bit integers both ways', async () => {
    const alice = await device('alice');
    const backend = await clientOf('pa');
    await backend.write('alice', [{ table: 'todos', id: 'r1', operation: 'insert', values: { title: 'bin', done: 0, data: new Uint8Array([0, 1, 254, 255]), big: 2n ** 60n } }]);
    await waitFor(async () => (await alice.database.query('SELECT 1 FROM todos')).length === 1, 5_000, 'the row on the device');
    expect(await alice.database.query('SELECT hex(data) AS hex, big FROM todos')).toEqual([{ hex: '0001FEFF', big: 2n ** 60n }]);
    const [row] = (await backend.rows('todos', { user: 'alice' })).rows;
    expect(row?.values.data).toEqual(new Uint8Array([0, 1, 254, 255]));
    expect(row?.values.big).toBe(2n ** 60n);
  });

  it('writes a keyed table’s row under the id its key gives on every device', async () => {
    const alice = await device('alice');
    const backend = await clientOf('pa');
    const id = rowIdForKey('theme') ?? '';
    expect(id).toMatch(/^k[0-9a-f]{32}$/);
    await backend.write('alice', [{ table: 'settings', id, operation: 'insert', values: { key: 'theme', value: 'dark' } }]);
    await waitFor(async () => (await alice.database.query('SELECT 1 FROM settings')).length === 1, 5_000, 'the setting on the device');
    expect(await alice.database.query('SELECT ps_global_id AS id, value FROM settings')).toEqual([{ id, value: 'dark' }]);
    // The device's own upsert of that key is an edit of the same row.
    await alice.database.execute("INSERT INTO settings (key, value) VALUES ('theme', 'light') ON CONFLICT (key) DO UPDATE SET value = excluded.value");
    await waitFor(async () => (await backend.rows('settings', { user: 'alice' })).rows[0]?.values.value === 'light', 5_000, 'the device’s edit on the server');
    expect((await backend.rows('settings', { user: 'alice' })).rows.map((row) => row.id)).toEqual([id]);
  });

  it('answers no CORS request: a service key never belongs in a page', async () => {
    const key = await newKey('pa');
    const preflight = await fetch(new URL('v1/projects/pa/backend/rows', server.url), { method: 'OPTIONS', headers: { Origin: 'http://app.example', 'Access-Control-Request-Method': 'GET' } });
    expect(preflight.headers.get('access-control-allow-origin')).toBeNull();
    const read = await fetch(new URL('v1/projects/pa/backend/rows?table=todos&user=alice', server.url), { headers: { Origin: 'http://app.example', Authorization: `Bearer ${key}` } });
    expect(read.status).toBe(200);
    expect(read.headers.get('access-control-allow-origin')).toBeNull();
    const pull = await fetch(new URL('v1/projects/pa/pull', server.url), { headers: { Origin: 'http://app.example' } });
    expect(pull.headers.get('access-control-allow-origin')).toBe('http://app.example');
  });
});

describe('mintUserToken from pocketsync/backend', () => {
  it('mints a token the server accepts, that a device syncs with', async () => {
    const token = await mintInBackend({ projectId: 'pa', secret: a.secret, user: 'dana@example.com', ttlSeconds: 600 });
    const user = await verifyUserToken(token, a);
    expect(user.userId).toBe('dana@example.com');
    expect(user.expiresAt - Date.now()).toBeGreaterThan(590_000);
    await expect(verifyUserToken(token, b)).rejects.toMatchObject({ kind: ErrorKind.Auth });
    const dana = await openInstance({ schema, serverUrl: server.url, projectId: 'pa', authToken: token });
    await waitFor(() => dana.sync.status.state === 'live', 5_000, 'dana live');
    expect(await failure(mintInBackend({ projectId: 'pa', secret: a.secret, user: 'has space' }))).toMatchObject({ kind: ErrorKind.Invalid });
  });

  it('is accepted from a signer whose clock runs up to a minute ahead, and refused beyond', async () => {
    const now = Math.floor(Date.now() / 1000);
    const signed = (claims: Record<string, number>) => sign({ sub: 'alice', project: 'pa', exp: now + 3600, ...claims }, a.secret, 'HS256');
    await expect(verifyUserToken(await signed({ iat: now + 30, nbf: now + 30 }), a)).resolves.toMatchObject({ userId: 'alice' });
    await expect(verifyUserToken(await signed({ iat: now + 120 }), a)).rejects.toMatchObject({ kind: ErrorKind.Auth, message: 'the token was issued in the future (iat)' });
    await expect(verifyUserToken(await signed({ nbf: now + 120 }), a)).rejects.toMatchObject({ kind: ErrorKind.Auth, message: 'the token is not valid yet (nbf)' });
  });
});
