/**
 * What the console sees of sockets and does to them, over real sockets on 127.0.0.1: protocol 2's
 * device status (and version 1 hellos still served), and the operators' actions that close sockets.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ClientChange } from '../lib/protocol/change.js';
import type { Changes } from '../lib/protocol/down.js';
import { PROTOCOL_VERSION } from '../lib/protocol/protocol-version.js';
import { mintUserToken } from '../server/auth.js';
import type { RunningServer } from '../server/server.js';
import type { DeviceRecord, Project } from '../server/store/store.js';
import { formatClock } from '../worker/hlc.js';
import { waitFor } from './helpers/instance.js';
import { startTestServer, stopTestServer } from './helpers/server.js';
import { isType, TestSocket } from './helpers/socket.js';

let server: RunningServer;
let project: Project;
const sockets: TestSocket[] = [];

beforeEach(async () => {
  ({ server, project } = await startTestServer());
  await server.store.updateProject('p', { sharedTables: ['lists'] });
  project = (await server.store.getProject('p'))!;
});
afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.close();
  await stopTestServer(server);
});

let n = 0;
const change = (row: string, values: Record<string, string | number>, table = 'todos'): ClientChange => ({
  id: `c${++n}`, table, row, op: 'insert', clock: formatClock({ wall: 1_000 + n, counter: 0, deviceId: 'dev' }), values,
});

/** The admin API of the test server, with its admin key. */
async function admin<T = Record<string, unknown>>(path: string, init: { method?: string; body?: unknown } = {}, status = 200): Promise<T> {
  const res = await fetch(new URL(path, server.url), {
    method: init.method ?? 'GET',
    headers: { Authorization: 'Bearer admin', ...(init.body !== undefined ? { 'Content-Type': 'application/json' } : {}) },
    ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
  });
  const body = (await res.json()) as T;
  expect({ path, status: res.status, body }).toMatchObject({ path, status });
  return body;
}

const devicesOf = async (user: string) => (await admin<{ devices: Array<DeviceRecord & { lag: number }> }>(`/v1/admin/projects/p/users/${user}/devices`)).devices;

/** Polls the devices API until `deviceId` matches. */
async function deviceShows(user: string, deviceId: string, expected: Partial<DeviceRecord>): Promise<DeviceRecord> {
  let last: DeviceRecord | undefined;
  await waitFor(async () => {
    last = (await devicesOf(user)).find((d) => d.deviceId === deviceId);
    return last !== undefined && Object.entries(expected).every(([key, value]) => last![key as keyof DeviceRecord] === value);
  }, 5_000, `device ${deviceId} to show ${JSON.stringify(expected)} (last: ${JSON.stringify(last)})`).catch((error: unknown) => {
    throw new Error(`${String(error)}; last seen ${JSON.stringify(last)}`);
  });
  return last!;
}

interface HelloOptions {
  readonly protocolVersion?: number;
  readonly cursor?: number;
  readonly token?: string;
  readonly status?: Record<string, unknown>;
  readonly headers?: Record<string, string>;
}

/** A socket past its hello and catch-up; the catch-up's pages are in `received`. */
async function device(user: string, deviceId: string, { protocolVersion = PROTOCOL_VERSION, cursor = 0, token, status, headers }: HelloOptions = {}): Promise<TestSocket> {
  const socket = await TestSocket.open(server.url, 'p', headers);
  sockets.push(socket);
  socket.send({ type: 'hello', protocolVersion, deviceId, cursor, token: token ?? (await mintUserToken(project, user)), ...(status ? { status } : {}) });
  await socket.next((m): m is Changes => m.type === 'changes' && !m.hasMore);
  return socket;
}

/** Pushes on `socket` and waits for the ack. */
async function push(socket: TestSocket, changes: ClientChange[]): Promise<void> {
  const from = socket.received.length;
  socket.send({ type: 'push', changes });
  expect((await socket.next(isType('ack'), from)).results.every((r) => r.outcome === 'applied')).toBe(true);
}

describe('protocol versions and device status', () => {
  it('serves a version 1 hello: its catch-up arrives, and its device reports nothing', async () => {
    const writer = await device('alice', 'w');
    await push(writer, [change('r1', { title: 'milk' }), change('l1', { name: 'groceries' }, 'lists')]);
    const old = await device('alice', 'old', { protocolVersion: 1 });
    const pages = old.received.filter(isType('changes'));
    expect(pages.flatMap((p) => p.changes.map((c) => c.row))).toEqual(['r1', 'l1']);
    expect(pages.at(-1)).toMatchObject({ cursor: 2, hasMore: false });
    // And live changes after it.
    const from = old.received.length;
    await push(writer, [change('r2', { title: 'bread' })]);
    expect((await old.next(isType('changes'), from)).changes).toMatchObject([{ row: 'r2' }]);
    expect(await deviceShows('alice', 'old', { protocolVersion: 1 })).toMatchObject({ pending: null, quarantined: null, appVersion: null, library: null });
  });

  it('records a version 2 hello’s status with the upgrade’s User-Agent, and a status frame’s update', async () => {
    const socket = await device('alice', 'd2', {
      status: { pending: 4, quarantined: 1, appVersion: '3.1.4', library: '0.1.0' },
      headers: { 'User-Agent': 'TestAgent/2.0 (console test)' },
    });
    const shown = await deviceShows('alice', 'd2', { pending: 4, quarantined: 1, appVersion: '3.1.4', library: '0.1.0', protocolVersion: 2, userAgent: 'TestAgent/2.0 (console test)' });
    expect(shown).toMatchObject({ online: true, cursor: 0 });

    socket.send({ type: 'status', pending: 0, quarantined: 2 });
    await deviceShows('alice', 'd2', { pending: 0, quarantined: 2, appVersion: '3.1.4', library: '0.1.0', protocolVersion: 2 });
    socket.send({ type: 'status', pending: 7 });
    await deviceShows('alice', 'd2', { pending: 7, quarantined: 2 });
    const stats = await admin<{ stats: { pending: number; quarantined: number; online: number } }>('/v1/admin/projects/p');
    expect(stats.stats).toMatchObject({ pending: 7, quarantined: 2, online: 1 });
    // A status frame has no answer.
    expect(socket.received.filter((m) => m.type === 'error')).toEqual([]);
  });

  it.each([
    ['a negative pending count', { type: 'status', pending: -1 }],
    ['a fractional count', { type: 'status', pending: 1.5 }],
    ['no pending count', { type: 'status', quarantined: 1 }],
    ['an extra field', { type: 'status', pending: 1, battery: 80 }],
    ['an app version over 64 characters', { type: 'status', pending: 1, appVersion: 'v'.repeat(65) }],
    ['a count that is text', { type: 'status', pending: '1' }],
  ])('answers a status frame with %s with an error of kind invalid, records nothing, and keeps the socket open', async (_name, frame) => {
    const socket = await device('alice', 'd3', { status: { pending: 5 } });
    await deviceShows('alice', 'd3', { pending: 5 });
    const from = socket.received.length;
    socket.send(frame);
    expect((await socket.next(isType('error'), from)).kind).toBe('invalid');
    await push(socket, [change('after', { title: 'still open' })]);
    expect(socket.closeCode).toBeNull();
    expect(await deviceShows('alice', 'd3', { pending: 5 })).toMatchObject({ appVersion: null });
  });

  it('refuses a count over a billion (so that sums over many devices stay exact), keeping the socket', async () => {
    const socket = await device('alice', 'big');
    const from = socket.received.length;
    socket.send({ type: 'status', pending: Number.MAX_SAFE_INTEGER });
    expect((await socket.next(isType('error'), from)).message).toMatch(/at most 1,000,000,000/);
    expect(socket.closeCode).toBeNull();
    const refused = await TestSocket.open(server.url, 'p');
    sockets.push(refused);
    refused.send({ type: 'hello', protocolVersion: PROTOCOL_VERSION, deviceId: 'huge', cursor: 0, token: await mintUserToken(project, 'alice'), status: { pending: 2 ** 53 - 1 } });
    expect(await refused.closed()).toBe(4003);
  });

  it('refuses a status frame before the hello', async () => {
    const socket = await TestSocket.open(server.url, 'p');
    sockets.push(socket);
    socket.send({ type: 'status', pending: 1 });
    expect((await socket.next(isType('error'))).kind).toBe('auth');
    expect(await socket.closed()).toBe(4001);
  });
});

describe('the operators’ actions close sockets', () => {
  it('blocking a user closes their open sockets (auth, 4001), refuses their next hello, and leaves other users connected', async () => {
    const alice = await device('alice', 'a1');
    const alice2 = await device('alice', 'a2');
    const bob = await device('bob', 'b1');
    const from = alice.received.length;
    expect(await admin('/v1/admin/projects/p/users/alice/block', { method: 'POST', body: { blocked: true } })).toEqual({ userId: 'alice', blocked: true, closed: 2 });
    expect(await alice.closed()).toBe(4001);
    expect(await alice2.closed()).toBe(4001);
    expect(alice.received.slice(from).filter(isType('error'))).toMatchObject([{ kind: 'auth' }]);

    const again = await TestSocket.open(server.url, 'p');
    sockets.push(again);
    again.send({ type: 'hello', protocolVersion: PROTOCOL_VERSION, deviceId: 'a1', cursor: 0, token: await mintUserToken(project, 'alice') });
    expect((await again.next(isType('error'))).kind).toBe('auth');
    expect(await again.closed()).toBe(4001);

    await push(bob, [change('b', { title: 'bob goes on' })]);
    expect(bob.closeCode).toBeNull();
    await waitFor(async () => (await devicesOf('alice')).every((d) => !d.online), 5_000, 'alice offline');

    await admin('/v1/admin/projects/p/users/alice/block', { method: 'POST', body: { blocked: false } });
    await device('alice', 'a1');
  });

  it('revoking a key closes the sockets whose token it signed (4001), and no other', async () => {
    const made = await admin<{ key: { kid: string } }>('/v1/admin/projects/p/keys', { method: 'POST' }, 201);
    const { token } = await admin<{ token: string; kid: string }>('/v1/admin/projects/p/tokens', { method: 'POST', body: { user: 'alice' } });
    const withNew = await device('alice', 'new-key', { token });
    const withDefault = await device('alice', 'default-key', { token: await mintUserToken({ ...project, keys: project.keys.filter((k) => k.kid === 'default') }, 'alice') });
    const from = withNew.received.length;
    expect(await admin(`/v1/admin/projects/p/keys/${made.key.kid}`, { method: 'DELETE' })).toEqual({ kid: made.key.kid, revoked: true, closed: 1 });
    expect(await withNew.closed()).toBe(4001);
    expect(withNew.received.slice(from).filter(isType('error'))).toMatchObject([{ kind: 'auth' }]);
    await push(withDefault, [change('r', { title: 'default key goes on' })]);
    expect(withDefault.closeCode).toBeNull();

    // The revoked key's token opens no socket again.
    const again = await TestSocket.open(server.url, 'p');
    sockets.push(again);
    again.send({ type: 'hello', protocolVersion: PROTOCOL_VERSION, deviceId: 'new-key', cursor: 0, token });
    expect((await again.next(isType('error'))).kind).toBe('auth');
    expect(await again.closed()).toBe(4001);
  });

  it('a socket opened before a key was revoked, saying hello after, is refused (the project is read at the hello)', async () => {
    const token = await mintUserToken(project, 'mallory');
    const early = await TestSocket.open(server.url, 'p');
    sockets.push(early);
    await admin('/v1/admin/projects/p/keys', { method: 'POST' }, 201);
    await admin('/v1/admin/projects/p/keys/default', { method: 'DELETE' });
    early.send({ type: 'hello', protocolVersion: PROTOCOL_VERSION, deviceId: 'm-early', cursor: 0, token });
    expect(await early.closed()).toBe(4001);
    expect(early.received.find(isType('error'))).toMatchObject({ kind: 'auth', message: expect.stringContaining('revoked or unknown') });
    expect(server.hub.subscribers('p')).toEqual([]);
  });

  it('a socket opened before its project was deleted and made again is not let into the new one', async () => {
    const token = await mintUserToken(project, 'alice');
    const early = await TestSocket.open(server.url, 'p');
    sockets.push(early);
    await server.store.deleteProject('p');
    await server.store.createProject({ id: 'p', secret: 'another-secret-another-secret-0000' });
    early.send({ type: 'hello', protocolVersion: PROTOCOL_VERSION, deviceId: 'a-early', cursor: 0, token });
    expect(await early.closed()).toBe(4001);
    expect(early.received.find(isType('changes'))).toBeUndefined();
    // Not re-created: the hello is told the project is gone.
    const orphan = await TestSocket.open(server.url, 'p');
    sockets.push(orphan);
    await server.store.deleteProject('p');
    orphan.send({ type: 'hello', protocolVersion: PROTOCOL_VERSION, deviceId: 'a-orphan', cursor: 0, token });
    expect(await orphan.closed()).toBe(4004);
    expect(await server.store.listDevices('p')).toEqual([]);
  });

  it('disconnecting a device closes its socket, and only its', async () => {
    const target = await device('alice', 'target');
    const other = await device('alice', 'other');
    const from = target.received.length;
    expect(await admin('/v1/admin/projects/p/devices/target/disconnect', { method: 'POST' })).toEqual({ deviceId: 'target', closed: 1 });
    expect(await target.closed()).toBe(4003);
    expect(target.received.slice(from).filter(isType('error'))).toMatchObject([{ kind: 'invalid' }]);
    await push(other, [change('r', { title: 'x' })]);
    await waitFor(async () => (await devicesOf('alice')).find((d) => d.deviceId === 'target')?.online === false, 5_000, 'target offline');
    await admin('/v1/admin/projects/p/devices/target/disconnect', { method: 'POST' }, 404);
  });

  it('deleting a user’s data closes their sockets; a reconnect with the old cursor re-syncs without the deleted rows', async () => {
    const socket = await device('alice', 'phone');
    const bob = await device('bob', 'bobs');
    await push(socket, [change('mine', { title: 'private' }), change('l1', { name: 'shared' }, 'lists')]);
    await push(bob, [change('bobs-row', { title: 'bob’s' })]);
    const cursor = 3;
    expect(await server.store.currentSeq('p')).toBe(cursor);

    const deleted = await admin('/v1/admin/projects/p/users/alice/data', { method: 'DELETE', body: { confirm: 'alice' } });
    expect(deleted).toEqual({ userId: 'alice', closed: 1, rows: 1, changes: 2, conflicts: 0, devices: 1 });
    expect(await socket.closed()).toBe(4003);
    expect(socket.received.filter(isType('error'))).toMatchObject([{ kind: 'invalid' }]);
    expect(bob.closeCode).toBeNull();
    // Her device is gone from the console until it comes back.
    expect(await devicesOf('alice')).toEqual([]);

    const back = await device('alice', 'phone', { cursor });
    const pages = back.received.filter(isType('changes'));
    expect(pages[0]?.resync).toBe(true);
    expect(pages.flatMap((p) => p.changes.map((c) => c.row))).toEqual(['l1']);
    expect(pages.at(-1)).toMatchObject({ hasMore: false, cursor: cursor + 1 });
    await deviceShows('alice', 'phone', { online: true });
    // Past the deletion, an ordinary catch-up.
    back.close();
    const later = await device('alice', 'phone', { cursor: cursor + 1 });
    expect(later.received.filter(isType('changes')).some((p) => p.resync)).toBe(false);
  });
});

describe('the live stream (GET /v1/admin/projects/:p/live)', () => {
  /** Reads server-sent `second` events from an open stream, one at a time. */
  async function stream(headers: Record<string, string> = { Authorization: 'Bearer admin' }): Promise<{ next(): Promise<{ at: number; changes: number; pushes: number; connections: number }>; close(): void }> {
    const controller = new AbortController();
    const res = await fetch(new URL('/v1/admin/projects/p/live', server.url), { headers, signal: controller.signal });
    expect([res.status, res.headers.get('content-type')]).toEqual([200, 'text/event-stream']);
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    return {
      async next() {
        for (;;) {
          const end = buffer.indexOf('\n\n');
          if (end >= 0) {
            const event = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            expect(event).toMatch(/^event: second\ndata: /);
            return JSON.parse(event.slice(event.indexOf('data: ') + 6)) as { at: number; changes: number; pushes: number; connections: number };
          }
          const { value, done } = await reader.read();
          if (done) throw new Error('the stream ended');
          buffer += decoder.decode(value, { stream: true });
        }
      },
      close: () => controller.abort(),
    };
  }

  it('sends a second every second, an idle project included, and the pushes of each', async () => {
    const live = await stream();
    // Nobody is connected: the seconds come all the same, one after another.
    const first = await live.next();
    const second = await live.next();
    expect(second.at - first.at).toBe(1000);
    expect([first.connections, first.changes]).toEqual([0, 0]);
    const writer = await device('alice', 'w');
    await push(writer, [change('r1', { title: 'milk' }), change('r2', { title: 'bread' })]);
    let seen = await live.next();
    while (seen.changes === 0) seen = await live.next();
    expect(seen).toMatchObject({ changes: 2, pushes: 1, connections: 1 });
    live.close();
    // A closed stream leaves the server serving: another one opens and reads.
    const again = await stream();
    expect((await again.next()).connections).toBe(1);
    again.close();
  });

  it('ends when the session that opened it ends, and when its project is deleted', async () => {
    const origin = server.url.replace(/\/$/, '');
    const signIn = await fetch(new URL('/v1/console/session', server.url), { method: 'POST', headers: { 'Content-Type': 'application/json', Origin: origin }, body: JSON.stringify({ key: 'admin' }) });
    const cookie = /pocketsync_admin=[^;]+/.exec(signIn.headers.get('set-cookie') ?? '')![0];
    const live = await stream({ Cookie: cookie });
    await live.next();
    expect((await fetch(new URL('/v1/console/session', server.url), { method: 'DELETE', headers: { Cookie: cookie, Origin: origin } })).status).toBe(204);
    await expect(async () => {
      for (;;) await live.next();
    }).rejects.toThrow('the stream ended');

    const other = await stream();
    await other.next();
    expect((await fetch(new URL('/v1/admin/projects/p', server.url), { method: 'DELETE', headers: { Authorization: 'Bearer admin', 'Content-Type': 'application/json' }, body: JSON.stringify({ confirm: 'p' }) })).status).toBe(204);
    await expect(async () => {
      for (;;) await other.next();
    }).rejects.toThrow('the stream ended');
    // Made again under the same id, the project starts with no counts of the one deleted.
    await server.store.createProject({ id: 'p', secret: 'another-secret-another-secret-0000' });
    await server.activity.save();
    expect(await server.store.activity('p', 0, Date.now() + 60_000)).toEqual([]);
  });
});
