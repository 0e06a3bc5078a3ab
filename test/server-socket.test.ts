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
const change = (row: string, values: NonNullable<ClientChange['values']>, table = 'todos'): ClientChange => ({
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
    ['changes that are not a list', JSON.stringify({ type: 'push', changes: { a: 1 } }), 'invalid'],
    ['too many changes', JSON.stringify({ type: 'push', changes: Array.from({ length: LIMITS.maxChangesPerPush + 1 }, (_, i) => change(`r${i}`, { i })) }), 'invalid'],
  ])('answers %s with an error frame, stores nothing, and keeps the socket open', async (_name, frame, kind) => {
    const socket = await device('alice', 'd1');
    const from = socket.received.length;
    socket.send(frame);
    expect((await socket.next(isType('error'), from)).kind).toBe(kind);
    expect(await server.store.currentSeq('p1')).toBe(0);
    socket.send({ type: 'push', changes: [change('ok', { a: 1 })] });
    expect((await socket.next(isType('ack'), from)).results).toMatchObject([{ outcome: 'applied' }]);
  });

  it.each(['nope', 'not.an.id', 'x'.repeat(80)])('refuses a socket for a project that does not exist (%s), saying why', async (id) => {
    const socket = await TestSocket.open(server.url, encodeURIComponent(id));
    sockets.push(socket);
    const error = await socket.next(isType('error'));
    expect(error.kind).toBe('not-found');
    expect(error.message).toContain('no such project');
    expect(await socket.closed()).toBe(4004);
  });

  it('rejects the bad changes of a push one by one and applies the rest', async () => {
    const socket = await device('alice', 'd1');
    const ahead = formatClock({ wall: Date.now() + 2 * 3_600_000, counter: 0, deviceId: 'd1' });
    const changes: Array<Record<string, unknown>> = [
      change('ok1', { a: 1 }),
      change('r1', { a: 1 }, 'my-notes'),
      change('r2', { 'e-mail': 'x' }),
      change('not a row id', { a: 1 }),
      { ...change('r3', { a: 1 }), op: 'upsert' },
      { ...change('r4', { a: 1 }), clock: ahead },
      { ...change('r5', { a: 'INF' }) },
      { table: 'todos', row: 'r6', op: 'insert' },
      change('ok2', { a: 2 }),
    ];
    // A REAL ±Inf: JSON has no literal for it, but 1e999 parses to Infinity.
    const frame = JSON.stringify({ type: 'push', changes }).replace('"INF"', '1e999');
    const from = socket.received.length;
    socket.send(frame);
    const ack = await socket.next(isType('ack'), from);
    expect(ack.results.map((r) => [r.id, r.outcome, r.error?.kind])).toEqual([
      [changes[0]!.id, 'applied', undefined],
      ...changes.slice(1, 7).map((c) => [c.id, 'rejected', 'invalid']),
      ['', 'rejected', 'invalid'],
      [changes[8]!.id, 'applied', undefined],
    ]);
    expect(ack.results[5]!.error?.message).toMatch(/minutes ahead/);
    expect(ack.results.every((r) => r.outcome !== 'rejected' || (r.seq === null && r.error!.message.length > 0))).toBe(true);
    expect(await server.store.currentSeq('p1')).toBe(2);
    const pulled = await server.store.pull({ projectId: 'p1', scopes: ['shared', 'user:alice'], cursor: 0, limit: 100 });
    expect(pulled.changes.map((c) => c.row)).toEqual(['ok1', 'ok2']);
  });
});

describe('what a device cannot derive', () => {
  it('a hello without fresh gets every delete since cursor 0; a fresh one does not', async () => {
    const writer = await device('alice', 'w');
    writer.send({ type: 'push', changes: [change('r1', { a: 1 }), change('r2', { a: 2 })] });
    await writer.next(isType('ack'));
    const from = writer.received.length;
    writer.send({ type: 'push', changes: [{ id: `c${++n}`, table: 'todos', row: 'r1', op: 'delete', clock: formatClock({ wall: 5_000_000, counter: 0, deviceId: 'dev' }) }] });
    await writer.next(isType('ack'), from);
    // A device that only pushed r1 still has cursor 0.
    const pushedOnly = await device('alice', 'p');
    expect(pushedOnly.received.filter(isType('changes')).flatMap((b) => b.changes.map((c) => [c.row, c.deleted]))).toEqual([['r2', false], ['r1', true]]);
    const socket = await TestSocket.open(server.url, 'p1');
    sockets.push(socket);
    socket.send({ type: 'hello', protocolVersion: PROTOCOL_VERSION, deviceId: 'f', cursor: 0, fresh: true, token: await mintUserToken(p1, 'alice') });
    const batch = await socket.next((m): m is Changes => m.type === 'changes' && !m.hasMore);
    expect(batch.changes.map((c) => c.row)).toEqual(['r2']);
  });

  it('a re-push after a lost ack comes back duplicate with the server’s row and the conflicts of its first merge', async () => {
    const a = await device('alice', 'a');
    const b = await device('alice', 'b');
    a.send({ type: 'push', changes: [change('r1', { title: 'x' })] });
    await a.next(isType('ack'));
    b.send({ type: 'push', changes: [{ ...change('r1', { title: 'newer' }), op: 'update', clock: formatClock({ wall: 9_000_000, counter: 0, deviceId: 'b' }) }] });
    await b.next(isType('ack'));
    const losing = { ...change('r1', { title: 'older' }), op: 'update' as const, base: 1 };
    let from = a.received.length;
    a.send({ type: 'push', changes: [losing] });
    const first = await a.next(isType('ack'), from);
    expect(first.rows).toMatchObject([{ row: 'r1', values: { title: 'newer' } }]);
    expect(first.conflicts).toMatchObject([{ row: 'r1', column: 'title', losing: { clock: losing.clock, value: 'older' } }]);
    from = a.received.length;
    a.send({ type: 'push', changes: [losing] });
    const again = await a.next(isType('ack'), from);
    expect(again.results).toMatchObject([{ outcome: 'duplicate' }]);
    expect(again.rows).toMatchObject([{ row: 'r1', values: { title: 'newer' } }]);
    // The device was to be told its write lost: the re-push tells it again.
    expect(again.conflicts).toEqual(first.conflicts);
  });

  it('a 64-bit integer travels exactly through push, merge, store, fan-out and catch-up', async () => {
    const a = await device('alice', 'a');
    const b = await device('alice', 'b');
    const big = { $int: '9007199254740993' };
    const raw: string[] = [];
    b.ws.on('message', (data) => raw.push((data as Buffer).toString('utf8')));
    const fromB = b.received.length;
    a.send({ type: 'push', changes: [change('r1', { n: big, m: { $int: '-9223372036854775808' } })] });
    expect((await a.next(isType('ack'))).results).toMatchObject([{ outcome: 'applied' }]);
    const live = await b.next(isType('changes'), fromB);
    expect(live.changes[0]!.values).toEqual({ n: big, m: { $int: '-9223372036854775808' } });
    expect(raw.join('')).toContain('"$int":"9007199254740993"');
    // The same value again is equal (no new seq); a neighbour is not.
    let from = a.received.length;
    a.send({ type: 'push', changes: [{ ...change('r1', { n: { $int: '9007199254740993' } }), op: 'update' }] });
    expect((await a.next(isType('ack'), from)).results).toMatchObject([{ outcome: 'superseded', seq: null }]);
    from = a.received.length;
    a.send({ type: 'push', changes: [{ ...change('r1', { n: { $int: '9007199254740992' } }), op: 'update' }] });
    expect((await a.next(isType('ack'), from)).results).toMatchObject([{ outcome: 'applied', seq: 2 }]);
    const late = await device('alice', 'late');
    const caught = late.received.filter(isType('changes')).flatMap((m) => m.changes);
    expect(caught[0]!.values).toEqual({ n: { $int: '9007199254740992' }, m: { $int: '-9223372036854775808' } });
  });
});

describe('device ids belong to users', () => {
  it('refuses a hello naming another user’s device id, and stores nothing for it', async () => {
    await device('alice', 'shared-id');
    const socket = await TestSocket.open(server.url, 'p1');
    sockets.push(socket);
    socket.send({ type: 'hello', protocolVersion: PROTOCOL_VERSION, deviceId: 'shared-id', cursor: 0, token: await mintUserToken(p1, 'bob') });
    const error = await socket.next(isType('error'));
    expect(error.kind).toBe('auth');
    expect(error.message).toMatch(/another user/);
    expect(await socket.closed()).toBe(4001);
    expect(await server.store.listDevices('p1')).toMatchObject([{ deviceId: 'shared-id', userId: 'alice' }]);
  });

  it('the fan-out tells sockets apart, not device ids: two sockets of one device id both hear each other', async () => {
    const first = await device('alice', 'same');
    const second = await device('alice', 'same');
    const from = second.received.length;
    first.send({ type: 'push', changes: [change('r1', { a: 1 })] });
    await first.next(isType('ack'));
    expect((await second.next(isType('changes'), from)).changes).toMatchObject([{ row: 'r1' }]);
  });
});
