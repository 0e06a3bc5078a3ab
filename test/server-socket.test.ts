/** The sync server's WebSocket side over real sockets on 127.0.0.1. */
import { sign } from 'hono/jwt';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ClientChange } from '../lib/protocol/change.js';
import type { Changes } from '../lib/protocol/down.js';
import { PROTOCOL_VERSION } from '../lib/protocol/protocol-version.js';
import { LIMITS } from '../lib/protocol/up.js';
import { mintUserToken } from '../server/auth.js';
import { createServer, type RunningServer } from '../server/server.js';
import { SqliteStore } from '../server/store/sqlite-store.js';
import type { Project } from '../server/store/store.js';
import { formatClock } from '../worker/hlc.js';
import { isType, TestSocket } from './helpers/socket.js';

let server: RunningServer;
let p1: Project;
let p2: Project;
const sockets: TestSocket[] = [];

beforeEach(async () => {
  const store = new SqliteStore(':memory:');
  p1 = await store.createProject({ id: 'p1', secret: 'p1-secret-p1-secret-p1-secret-p1-secret', sharedTables: ['lists'] });
  p2 = await store.createProject({ id: 'p2', secret: 'p2-secret-p2-secret-p2-secret-p2-secret' });
  server = await createServer({ store, adminKey: 'admin', batchSize: 10, log: null });
});
afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.close();
  await server.close();
  await server.store.close();
});

let n = 0;
const change = (row: string, values: Record<string, string | number>, table = 'todos'): ClientChange => ({
  id: `c${++n}`, table, row, op: 'insert', clock: formatClock({ wall: 1_000 + n, counter: 0, deviceId: 'dev' }), values,
});

/** A device that has said hello and finished its catch-up. */
async function device(user: string, deviceId: string, project: Project = p1, cursor = 0): Promise<TestSocket> {
  const socket = await TestSocket.open(server.url, project.id);
  sockets.push(socket);
  socket.send({ type: 'hello', protocolVersion: PROTOCOL_VERSION, deviceId, cursor, token: await mintUserToken(project, user) });
  await socket.next((m): m is Changes => m.type === 'changes' && !m.hasMore);
  return socket;
}

describe('sync over WebSocket', () => {
  it('acknowledges a push after commit and fans it out to the user’s other devices only', async () => {
    const a1 = await device('alice', 'a1');
    const a2 = await device('alice', 'a2');
    const bob = await device('bob', 'b1');
    const before = { a1: a1.received.length, a2: a2.received.length, bob: bob.received.length };
    a1.send({ type: 'push', changes: [change('r1', { title: 'private' }), change('l1', { name: 'shared' }, 'lists')] });
    const ack = await a1.next(isType('ack'), before.a1);
    expect(ack.results.map((r) => [r.outcome, r.seq])).toEqual([['applied', 1], ['applied', 2]]);
    const onA2 = await a2.next(isType('changes'), before.a2);
    expect(onA2.changes.map((c) => [c.row, c.seq])).toEqual([['r1', 1], ['l1', 2]]);
    expect(onA2.cursor).toBe(2);
    const onBob = await bob.next(isType('changes'), before.bob);
    expect(onBob.changes.map((c) => c.row)).toEqual(['l1']);
    // The pushing device gets its ack, not its own changes back.
    expect(a1.received.slice(before.a1).filter((m) => m.type === 'changes')).toEqual([]);
  });

  it('catches a returning device up in batches, with progress, then goes live', async () => {
    const writer = await device('alice', 'w');
    writer.send({ type: 'push', changes: Array.from({ length: 25 }, (_, i) => change(`r${i}`, { i })) });
    await writer.next(isType('ack'));
    const socket = await device('alice', 'late');
    const batches = socket.received.filter(isType('changes'));
    expect(batches.map((b) => [b.changes.length, b.hasMore, b.remaining])).toEqual([[10, true, 15], [10, true, 5], [5, false, 0]]);
    expect(batches.flatMap((b) => b.changes.map((c) => c.seq))).toEqual(Array.from({ length: 25 }, (_, i) => i + 1));
    const from = socket.received.length;
    writer.send({ type: 'push', changes: [change('live', { i: 99 })] });
    expect((await socket.next(isType('changes'), from)).changes).toMatchObject([{ row: 'live', seq: 26 }]);
  });

  it('never lets a socket of one project see another project’s changes', async () => {
    const inP1 = await device('alice', 'x1', p1);
    const inP2 = await device('alice', 'x2', p2);
    const from = inP2.received.length;
    inP1.send({ type: 'push', changes: [change('r1', { title: 'p1 only' })] });
    await inP1.next(isType('ack'));
    inP2.send({ type: 'push', changes: [change('r2', { title: 'p2' })] });
    await inP2.next(isType('ack'), from);
    expect(inP2.received.slice(from).filter(isType('changes'))).toEqual([]);
  });
});

describe('bad input over WebSocket', () => {
  async function helloWith(hello: Record<string, unknown>, project = 'p1') {
    const socket = await TestSocket.open(server.url, project);
    sockets.push(socket);
    socket.send({ type: 'hello', protocolVersion: PROTOCOL_VERSION, deviceId: 'd1', cursor: 0, ...hello });
    const error = await socket.next(isType('error'));
    return { error, code: await socket.closed() };
  }
  const now = () => Math.floor(Date.now() / 1000);

  it.each([
    ['a missing token', () => Promise.resolve({}), 'auth', 4001],
    ['an expired token', async () => ({ token: await sign({ sub: 'alice', project: 'p1', exp: now() - 5 }, p1.secret, 'HS256') }), 'auth', 4001],
    ['a forged token', async () => ({ token: await sign({ sub: 'alice', project: 'p1', exp: now() + 60 }, 'forged', 'HS256') }), 'auth', 4001],
    ['another project’s token', async () => ({ token: await mintUserToken(p2, 'alice') }), 'auth', 4001],
    ['a wrong protocol version', async () => ({ protocolVersion: 99, token: await mintUserToken(p1, 'alice') }), 'version', 4002],
  ])('a hello with %s is refused and closed', async (_name, hello, kind, code) => {
    const result = await helloWith(await hello());
    expect(result.error.kind).toBe(kind);
    expect(result.code).toBe(code);
    expect(await server.store.currentSeq('p1')).toBe(0);
  });

  it('refuses a push before hello', async () => {
    const socket = await TestSocket.open(server.url, 'p1');
    sockets.push(socket);
    socket.send({ type: 'push', changes: [change('r1', { a: 1 })] });
    expect((await socket.next(isType('error'))).kind).toBe('auth');
    expect(await socket.closed()).toBe(4001);
    expect(await server.store.currentSeq('p1')).toBe(0);
  });

  it.each([
    ['malformed JSON', '{"type": "push", "changes": [', 'invalid'],
    ['an unknown message type', JSON.stringify({ type: 'subscribe', table: 'todos' }), 'invalid'],
    ['wrong types', JSON.stringify({ type: 'push', changes: [{ ...change('r1', { a: 1 }), op: 'upsert' }] }), 'invalid'],
    ['SQL in a table name', JSON.stringify({ type: 'push', changes: [change('r1', { a: 1 }, "todos'; --")] }), 'invalid'],
    ['an oversize frame', JSON.stringify({ type: 'push', changes: [change('r1', { big: 'x'.repeat(LIMITS.maxMessageBytes) })] }), 'invalid'],
  ])('answers %s with an error frame, stores nothing, and keeps the socket open', async (_name, frame, kind) => {
    const socket = await device('alice', 'd1');
    const from = socket.received.length;
    socket.send(frame);
    expect((await socket.next(isType('error'), from)).kind).toBe(kind);
    expect(await server.store.currentSeq('p1')).toBe(0);
    socket.send({ type: 'push', changes: [change('ok', { a: 1 })] });
    expect((await socket.next(isType('ack'), from)).results).toMatchObject([{ outcome: 'applied' }]);
  });

  it('refuses a socket for a project that does not exist', async () => {
    const socket = await TestSocket.open(server.url, 'nope');
    sockets.push(socket);
    expect((await socket.next(isType('error'))).kind).toBe('not-found');
    expect(await socket.closed()).toBe(4004);
  });
});
