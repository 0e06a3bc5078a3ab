/**
 * The server under load, abuse and time (issue 11), over real sockets on 127.0.0.1: one device's
 * catch-up does not hold up anyone else, every limit applies before the work (frame size, hello
 * deadline, connection caps, rates, slow HTTP bodies), a socket that closes early leaves nothing
 * behind, column names that are JavaScript built-ins are ordinary or refused, and tokens, change
 * ids and cursors are checked as the protocol says.
 */
import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { Agent, request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { sign } from 'hono/jwt';
import WebSocket from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import type { ClientChange } from '../lib/protocol/change.js';
import type { Changes } from '../lib/protocol/down.js';
import { LIMITS } from '../lib/protocol/up.js';
import { own } from '../lib/protocol/values.js';
import { PROTOCOL_VERSION } from '../lib/protocol/protocol-version.js';
import { mintUserToken, sameSecret } from '../server/auth.js';
import type { ServerLimits } from '../server/limits.js';
import { createServer, type RunningServer } from '../server/server.js';
import { SqliteStore } from '../server/store/sqlite-store.js';
import type { Project } from '../server/store/store.js';
import { formatClock } from '../worker/hlc.js';
import { openEngine } from './helpers/engine.js';
import { waitFor } from './helpers/instance.js';
import { isType, TestSocket } from './helpers/socket.js';

let server: RunningServer | null = null;
let lines: Record<string, unknown>[] = [];
const sockets: TestSocket[] = [];

async function start(limits: Partial<ServerLimits> = {}, strategy: Project['strategy'] = 'column-lww'): Promise<{ server: RunningServer; project: Project }> {
  const store = new SqliteStore(':memory:');
  const project = await store.createProject({ id: 'p', secret: 's'.repeat(32), strategy, sharedTables: ['shared_todos'] });
  lines = [];
  server = await createServer({ store, adminKey: 'admin', log: (line) => lines.push(line), limits });
  return { server, project };
}

afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.ws.terminate();
  if (server) {
    await server.close();
    await server.store.close();
    server = null;
  }
});

let n = 0;
function change(row: string, values: Record<string, unknown>, table = 'todos', device = 'd1'): ClientChange {
  n++;
  return { id: `c${n}`, table, row, op: 'insert', clock: formatClock({ wall: Date.now(), counter: n % 65536, deviceId: device }), values: values as ClientChange['values'] };
}

async function open(s: RunningServer): Promise<TestSocket> {
  const socket = await TestSocket.open(s.url, 'p');
  sockets.push(socket);
  return socket;
}

/** A socket that said hello as `user` on device `deviceId` and finished its catch-up. */
async function device(s: RunningServer, project: Project, user: string, deviceId: string, cursor = 0): Promise<TestSocket> {
  const socket = await open(s);
  socket.send({ type: 'hello', protocolVersion: PROTOCOL_VERSION, deviceId, cursor, token: await mintUserToken(project, user) });
  await socket.next((m): m is Changes => m.type === 'changes' && !m.hasMore, 0, 20_000);
  return socket;
}

async function seed(s: RunningServer, user: string, rows: number, table = 'todos'): Promise<void> {
  for (let i = 0; i < rows; i += 1000) {
    const changes = Array.from({ length: Math.min(1000, rows - i) }, (_, j) => change(`seed${i + j}`, { title: `row ${i + j}` }, table, 'seeder'));
    await s.store.push({ projectId: 'p', userId: user, deviceId: 'seeder', deviceCursor: 0, changes });
  }
}

describe('no device stalls another', () => {
  it('a health check and another user\'s write are answered while one device catches up 30,000 rows', async () => {
    const { server: s, project } = await start();
    await seed(s, 'heavy', 30_000);
    const other = await device(s, project, 'bob', 'bob-1');
    const otherB = await device(s, project, 'bob', 'bob-2');
    const heavy = await open(s);
    heavy.send({ type: 'hello', protocolVersion: PROTOCOL_VERSION, deviceId: 'heavy-1', cursor: 0, token: await mintUserToken(project, 'heavy') });
    await heavy.next((m): m is Changes => m.type === 'changes' && m.hasMore);
    // Asked while the catch-up has more to send: both are answered before it ends.
    const health = fetch(`${s.url}v1/health`).then((r) => r.status);
    const from = otherB.received.length;
    other.send({ type: 'push', changes: [change('b1', { title: 'bob' }, 'todos', 'bob-1')] });
    expect(await health).toBe(200);
    await otherB.next((m): m is Changes => m.type === 'changes' && m.changes.some((c) => c.row === 'b1'), from);
    await other.next(isType('ack'));
    const done = heavy.received.findIndex((m): m is Changes => m.type === 'changes' && !m.hasMore);
    expect(done).toBe(-1);
    await heavy.next((m): m is Changes => m.type === 'changes' && !m.hasMore, 0, 30_000);
    const rows = heavy.received.flatMap((m) => (m.type === 'changes' ? m.changes : []));
    expect(new Set(rows.map((r) => r.row)).size).toBe(30_000);
  });
});

describe('every limit before the work', () => {
  it('closes a socket whose frame is over 1 MiB (1009) before it is read, before hello or after, and logs the socket error', async () => {
    const { server: s, project } = await start();
    const before = await open(s);
    before.send('x'.repeat(LIMITS.maxMessageBytes + 1));
    expect(await before.closed()).toBe(1009);
    const after = await device(s, project, 'alice', 'd1');
    after.send(JSON.stringify({ type: 'push', changes: [change('r1', { big: 'x'.repeat(LIMITS.maxMessageBytes) })] }));
    expect(await after.closed()).toBe(1009);
    expect(await s.store.currentSeq('p')).toBe(0);
    expect(lines.filter((l) => l.event === 'socket-error').map((l) => l.code)).toEqual(['WS_ERR_UNSUPPORTED_MESSAGE_LENGTH', 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH']);
    // The server goes on.
    const next = await device(s, project, 'alice', 'd2');
    next.send({ type: 'push', changes: [change('ok', { a: 1 })] });
    expect((await next.next(isType('ack'))).results).toMatchObject([{ outcome: 'applied' }]);
  });

  it('leaves nothing running once closed: the process exits, though the hello deadline is a minute', async () => {
    // A child process says hello, closes its socket, closes the server, and should then exit at
    // once: a timer left armed (the hello deadline after the hello) would hold it for a minute.
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/helpers/hello-and-close.ts'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    await waitFor(() => out.includes('closed'), 20_000, 'the server closed');
    const closedAt = Date.now();
    expect(await exited).toBe(0);
    expect(Date.now() - closedAt).toBeLessThan(5_000);
  });

  it('closes a socket that says no hello within the deadline, saying why', async () => {
    const { server: s } = await start({ helloTimeoutMs: 200 });
    const silent = await open(s);
    const error = await silent.next(isType('error'));
    expect(error).toMatchObject({ kind: 'invalid', message: 'no hello within 200 ms' });
    expect(await silent.closed()).toBe(4003);
  });

  it('refuses an upgrade over the per-address connection cap with 429, and takes one again once a socket closes', async () => {
    const { server: s } = await start({ maxConnectionsPerAddress: 2 });
    const first = await open(s);
    await open(s);
    const refused = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const ws = new WebSocket(`${s.url.replace('http', 'ws')}v1/projects/p/sync`);
      ws.once('open', () => reject(new Error('the third socket opened')));
      ws.once('unexpected-response', (_request, response) => {
        let body = '';
        response.on('data', (chunk: Buffer) => (body += chunk.toString()));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
      });
    });
    expect(refused.status).toBe(429);
    expect(JSON.parse(refused.body)).toMatchObject({ kind: 'rate-limited' });
    first.ws.close();
    await first.closed();
    await waitFor(async () => {
      try {
        (await open(s)).ws.close();
        return true;
      } catch {
        return false;
      }
    }, 5_000, 'a socket accepted again');
  });

  it('refuses a hello over the per-user connection cap (4029), and one over the hello rate', async () => {
    const { server: s, project } = await start({ maxConnectionsPerUser: 2, hellosPerMinute: 3 });
    const d1 = await device(s, project, 'alice', 'd1');
    await device(s, project, 'alice', 'd2');
    const third = await open(s);
    third.send({ type: 'hello', protocolVersion: PROTOCOL_VERSION, deviceId: 'd3', cursor: 0, token: await mintUserToken(project, 'alice') });
    expect((await third.next(isType('error'))).kind).toBe('rate-limited');
    expect(await third.closed()).toBe(4029);
    // Another user is not affected; alice's fourth hello this minute is one too many.
    await device(s, project, 'bob', 'b1');
    d1.ws.close();
    await d1.closed();
    await waitFor(() => s.hub.connections === 2, 5_000, "d1's close seen by the server");
    const fourth = await open(s);
    fourth.send({ type: 'hello', protocolVersion: PROTOCOL_VERSION, deviceId: 'd4', cursor: 0, token: await mintUserToken(project, 'alice') });
    const error = await fourth.next(isType('error'));
    expect(error.kind).toBe('rate-limited');
    expect(error.message).toContain('hellos per minute');
    expect(await fourth.closed()).toBe(4029);
  });

  it('refuses pushes over the rate with kind rate-limited, stores none of them, and keeps the socket open', async () => {
    const { server: s, project } = await start({ requestsPerSecond: 3 });
    const socket = await device(s, project, 'alice', 'd1');
    for (let i = 0; i < 6; i++) socket.send({ type: 'push', changes: [change(`r${i}`, { i })] });
    await waitFor(() => socket.received.filter((m) => m.type === 'ack' || m.type === 'error').length === 6, 5_000, 'six answers');
    const answers = socket.received.filter((m) => m.type === 'ack' || m.type === 'error');
    const acks = answers.filter((m) => m.type === 'ack');
    expect(answers.filter((m) => m.type === 'error' && m.kind === 'rate-limited').length).toBe(6 - acks.length);
    expect(acks.length).toBeGreaterThanOrEqual(1);
    expect(acks.length).toBeLessThan(6);
    expect(await s.store.currentSeq('p')).toBe(acks.length);
    expect(socket.closeCode).toBeNull();
    // Over HTTP the same rate: 429.
    const token = await mintUserToken(project, 'alice');
    const statuses = await Promise.all(
      Array.from({ length: 6 }, () => fetch(`${s.url}v1/projects/p/pull`, { headers: { Authorization: `Bearer ${token}` } }).then((r) => r.status)),
    );
    expect(statuses).toContain(429);
  });

  it('drops an HTTP request whose body does not arrive within the request timeout', async () => {
    const { server: s, project } = await start({ requestTimeoutMs: 1000, headersTimeoutMs: 1000 });
    const token = await mintUserToken(project, 'alice');
    const port = new URL(s.url).port;
    const socket: Socket = connect(Number(port), '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    let answer = '';
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString()));
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.write(`POST /v1/projects/p/push HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"deviceId":`);
    await Promise.race([closed, new Promise((_, reject) => setTimeout(() => reject(new Error('still open after 5 s')), 5_000))]);
    expect(answer).toMatch(/^HTTP\/1\.1 408|^$/);
  });

  it('ends the connection after refusing a request before its body was read, and says so', async () => {
    const { server: s } = await start();
    const socket: Socket = connect(s.port, '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    let answer = '';
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString()));
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    // No admin key: refused before the body is read. The rest of the body never comes, so the
    // connection cannot carry another request, and the client must be told not to reuse it.
    socket.write(`POST /v1/admin/projects HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 300000\r\n\r\n{"id":"${'x'.repeat(1000)}`);
    await waitFor(() => answer.includes('\r\n\r\n'), 5_000, 'the answer');
    expect(answer).toMatch(/^HTTP\/1\.1 401/);
    expect(answer.toLowerCase()).toContain('connection: close');
    await closed;
    // A request whose body was read keeps its connection.
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const get = () =>
      new Promise<{ status: number; connection: string | undefined }>((resolve, reject) => {
        request(`${s.url}v1/health`, { agent }, (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection }));
        })
          .on('error', reject)
          .end();
      });
    expect(await get()).toEqual({ status: 200, connection: 'keep-alive' });
    expect(await get()).toEqual({ status: 200, connection: 'keep-alive' });
    agent.destroy();
  });
});

describe('a socket that closes early', () => {
  it('is never registered in the fan-out when it closes during its token check, and its device is not left online', async () => {
    const { server: s, project } = await start();
    const token = await mintUserToken(project, 'alice');
    for (let i = 0; i < 20; i++) {
      const socket = await open(s);
      socket.send({ type: 'hello', protocolVersion: PROTOCOL_VERSION, deviceId: `early-${i}`, cursor: 0, token });
      socket.ws.terminate();
    }
    await waitFor(async () => (await s.store.listDevices('p')).every((d) => !d.online), 5_000, 'no device online');
    expect(s.hub.connections).toBe(0);
    // And a later change is buffered for nobody: a live socket still gets it.
    const live = await device(s, project, 'alice', 'live');
    const writer = await device(s, project, 'alice', 'writer');
    writer.send({ type: 'push', changes: [change('r1', { a: 1 }, 'todos', 'writer')] });
    await live.next((m): m is Changes => m.type === 'changes' && m.changes.some((c) => c.row === 'r1'));
    expect(s.hub.connections).toBe(2);
  });

  it('closes a socket with more than 16 frames waiting to be handled (4029), before it holds more', async () => {
    const { server: s, project } = await start();
    await seed(s, 'alice', 30_000);
    const socket = await open(s);
    socket.send({ type: 'hello', protocolVersion: PROTOCOL_VERSION, deviceId: 'd1', cursor: 0, token: await mintUserToken(project, 'alice') });
    // While the catch-up runs, frames wait behind it.
    for (let i = 0; i < 40; i++) socket.send({ type: 'push', changes: [change(`w${i}`, { i })] });
    expect(await socket.closed(20_000)).toBe(4029);
    expect(socket.received.find((m) => m.type === 'error')).toMatchObject({ kind: 'rate-limited' });
    await waitFor(() => s.hub.connections === 0, 5_000, 'the subscriber removed');
  });

  it('closes a socket whose catch-up failed (1011), leaving no subscriber behind', async () => {
    const { server: s, project } = await start();
    await seed(s, 'alice', 20_000);
    const socket = await open(s);
    socket.send({ type: 'hello', protocolVersion: PROTOCOL_VERSION, deviceId: 'd1', cursor: 0, token: await mintUserToken(project, 'alice') });
    await socket.next(isType('changes'));
    // The store goes away under the catch-up: its next read fails.
    await s.store.close();
    expect(await socket.closed()).toBe(1011);
    expect(socket.received.find((m) => m.type === 'error')).toMatchObject({ kind: 'internal' });
    await waitFor(() => s.hub.connections === 0, 5_000, 'the subscriber removed');
  });

  it('a client that resets its connection while its upgrade is answered does not bring the server down', async () => {
    const { server: s } = await start();
    const upgrade = (path: string) =>
      `GET ${path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`;
    // Refused (no such endpoint) and accepted upgrades alike, reset before the answer is written.
    for (let round = 0; round < 20; round++) {
      await Promise.all(
        Array.from(
          { length: 20 },
          (_, i) =>
            new Promise<void>((resolve) => {
              const socket = connect(s.port, '127.0.0.1', () => {
                socket.write(upgrade(i % 2 === 0 ? '/v1/nowhere' : '/v1/projects/p/sync'));
                setImmediate(() => {
                  socket.resetAndDestroy();
                  resolve();
                });
              });
              socket.on('error', () => resolve());
            }),
        ),
      );
    }
    await waitFor(() => lines.some((line) => line.event === 'socket-error' && line.code === 'ECONNRESET'), 5_000, 'a reset logged');
    expect((await fetch(`${s.url}v1/health`)).status).toBe(200);
    await waitFor(() => s.hub.connections === 0, 5_000, 'no socket left');
  });
});

describe('a compaction during a catch-up', () => {
  it('that forgets deletes of rows the device held turns the catch-up into a re-sync, which ends with the server\'s rows', async () => {
    const store = new SqliteStore(':memory:');
    const project = await store.createProject({ id: 'p', secret: 's'.repeat(32) });
    server = await createServer({ store, adminKey: 'admin', log: null, batchSize: 100 });
    const s = server;
    await seed(s, 'alice', 500);
    // The device held all 500 (cursor 500); then 2,000 more rows, and 10 of its rows deleted.
    for (let i = 0; i < 2000; i += 1000) {
      await s.store.push({ projectId: 'p', userId: 'alice', deviceId: 'seeder', deviceCursor: 0, changes: Array.from({ length: 1000 }, (_, j) => change(`more${i + j}`, { i: i + j }, 'todos', 'seeder')) });
    }
    const deletes = Array.from({ length: 10 }, (_, i): ClientChange => ({ ...change(`seed${i}`, {}, 'todos', 'seeder'), op: 'delete', values: undefined }));
    await s.store.push({ projectId: 'p', userId: 'alice', deviceId: 'seeder', deviceCursor: 0, changes: deletes });
    const socket = await open(s);
    socket.send({ type: 'hello', protocolVersion: PROTOCOL_VERSION, deviceId: 'd1', cursor: 500, token: await mintUserToken(project, 'alice') });
    await socket.next(isType('changes'));
    const all = { changeLogMs: 0, conflictsMs: 0, tombstonesMs: 0, compactEveryMs: 60_000 };
    expect((await s.store.compact(all, Date.now() + 1000)).tombstones).toBe(10);
    await socket.next((m): m is Changes => m.type === 'changes' && !m.hasMore, 0, 20_000);
    // The device's rows: what it held, with each frame applied, and at a re-sync's end only what it sent.
    const frames = socket.received.filter((m): m is Changes => m.type === 'changes');
    const starts = frames.findIndex((f) => f.resync === true);
    expect(starts).toBeGreaterThan(0);
    const held = new Set(Array.from({ length: 500 }, (_, i) => `seed${i}`));
    for (const frame of frames.slice(0, starts)) for (const c of frame.changes) if (c.deleted) held.delete(c.row); else held.add(c.row);
    const resynced = new Set<string>();
    for (const frame of frames.slice(starts)) for (const c of frame.changes) if (c.deleted) resynced.delete(c.row); else resynced.add(c.row);
    const live = new Set<string>();
    let cursor = 0;
    for (;;) {
      const page = await s.store.pull({ projectId: 'p', scopes: ['shared', 'user:alice'], cursor, limit: 1000, continuing: true });
      for (const c of page.changes) if (!c.deleted) live.add(c.row);
      cursor = page.cursor;
      if (!page.hasMore) break;
    }
    expect(live.size).toBe(2490);
    expect([...resynced].sort()).toEqual([...live].sort());
  });
});

describe('column names that are JavaScript built-ins', () => {
  it.each(['column-lww', 'server-wins'] as const)('%s: toString and valueOf are ordinary columns, merged and delivered', async (strategy) => {
    const { server: s, project } = await start({}, strategy);
    const a = await device(s, project, 'alice', 'a');
    const b = await device(s, project, 'alice', 'b');
    a.send({ type: 'push', changes: [change('r1', { toString: 'x', valueOf: 1, hasOwnProperty: 'h' }, 'todos', 'a')] });
    expect((await a.next(isType('ack'))).results).toMatchObject([{ outcome: 'applied' }]);
    b.send({ type: 'push', changes: [{ ...change('r1', { toString: 'y' }, 'todos', 'b'), op: 'update', base: 1 }] });
    expect((await b.next(isType('ack'))).results).toMatchObject([{ outcome: 'applied' }]);
    const { changes } = await s.store.pull({ projectId: 'p', scopes: ['user:alice'], cursor: 0, limit: 10 });
    expect(changes[0]?.values).toEqual({ toString: 'y', valueOf: 1, hasOwnProperty: 'h' });
    await a.next((m): m is Changes => m.type === 'changes' && m.changes.some((c) => own(c.values, 'toString') === 'y'));
  });

  it('refuses a change naming __proto__, constructor or prototype (kind invalid), and stores nothing of it', async () => {
    const { server: s, project } = await start();
    const a = await device(s, project, 'alice', 'a');
    const bad = ['__proto__', 'constructor', 'prototype'].map((name) => change(`r-${name}`, JSON.parse(`{"${name}": 1, "ok": 2}`) as Record<string, unknown>));
    a.send(JSON.stringify({ type: 'push', changes: [...bad, change('x', { ok: 1 }, 'constructor')] }));
    const ack = await a.next(isType('ack'));
    expect(ack.results.map((r) => r.outcome)).toEqual(['rejected', 'rejected', 'rejected', 'rejected']);
    expect(ack.results[0]?.error?.message).toContain('the wire cannot carry');
    expect(await s.store.currentSeq('p')).toBe(0);
  });

  it('the client refuses to sync a table with such a column when it opens', async () => {
    await expect(
      openEngine({ schema: { version: 1, migrations: [{ version: 1, sql: ['CREATE TABLE t (id INTEGER PRIMARY KEY, "constructor" TEXT)'] }] } }),
    ).rejects.toMatchObject({ kind: 'schema', message: expect.stringContaining('__proto__, constructor or prototype') as unknown });
  });
});

describe('tokens, change ids, cursors, keys', () => {
  async function token(project: Project, claims: Record<string, unknown>): Promise<string> {
    return sign({ sub: 'alice', project: project.id, ...claims }, project.secret, 'HS256');
  }

  it.each([
    ['an exp in the year 9999', { exp: 253402300799 }, 'valid for longer than this server accepts'],
    ['a non-numeric exp', { exp: 'tomorrow' }, 'is not a number'],
    ['no exp', {}, 'no expiry'],
    ['an expired exp', { exp: Math.floor(Date.now() / 1000) - 10 }, 'has expired'],
  ])('refuses a token with %s, saying so', async (_name, claims, message) => {
    const { server: s, project } = await start();
    const socket = await open(s);
    socket.send({ type: 'hello', protocolVersion: PROTOCOL_VERSION, deviceId: 'd1', cursor: 0, token: await token(project, claims) });
    const error = await socket.next(isType('error'));
    expect(error.kind).toBe('auth');
    expect(error.message).toContain(message);
    expect(await socket.closed()).toBe(4001);
  });

  it('closes an open socket when its token expires', async () => {
    const { server: s, project } = await start();
    const socket = await device(s, project, 'alice', 'd1', 0).catch(() => null);
    expect(socket).not.toBeNull();
    const short = await open(s);
    short.send({ type: 'hello', protocolVersion: PROTOCOL_VERSION, deviceId: 'd2', cursor: 0, token: await token(project, { exp: Math.floor(Date.now() / 1000) + 2 }) });
    await short.next((m): m is Changes => m.type === 'changes' && !m.hasMore);
    const error = await short.next(isType('error'), 0, 5_000);
    expect(error).toMatchObject({ kind: 'auth', message: 'the token has expired' });
    expect(await short.closed()).toBe(4001);
    expect(s.hub.connections).toBe(1);
  });

  it('takes any secret as an HMAC key, even one that reads like a PEM label', async () => {
    const store = new SqliteStore(':memory:');
    const secret = 'my-PUBLIC-KEY-is-not-PRIVATE-at-all-0123456789';
    const project = await store.createProject({ id: 'p', secret });
    server = await createServer({ store, adminKey: 'admin', log: null });
    // Signed as an app's backend would, with any JWT library: HMAC-SHA256 over the secret's bytes.
    const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const body = `${part({ alg: 'HS256', typ: 'JWT' })}.${part({ sub: 'alice', project: 'p', exp: Math.floor(Date.now() / 1000) + 600 })}`;
    const external = `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
    for (const token of [external, await mintUserToken(project, 'alice')]) {
      const socket = await open(server);
      socket.send({ type: 'hello', protocolVersion: PROTOCOL_VERSION, deviceId: 'd1', cursor: 0, token });
      await socket.next((m): m is Changes => m.type === 'changes' && !m.hasMore);
      socket.close();
    }
  });

  it('deduplicates change ids per device: another user\'s change with the same id is its own', async () => {
    const { server: s, project } = await start();
    const alice = await device(s, project, 'alice', 'a');
    const bob = await device(s, project, 'bob', 'b');
    const mine = change('r1', { title: 'alice' }, 'todos', 'a');
    alice.send({ type: 'push', changes: [mine] });
    expect((await alice.next(isType('ack'))).results).toMatchObject([{ outcome: 'applied' }]);
    bob.send({ type: 'push', changes: [{ ...change('r1', { title: 'bob' }, 'todos', 'b'), id: mine.id }] });
    expect((await bob.next(isType('ack'))).results).toMatchObject([{ outcome: 'applied' }]);
    // The same device again: a duplicate.
    alice.send({ type: 'push', changes: [mine] });
    await waitFor(() => alice.received.filter((m) => m.type === 'ack').length === 2, 5_000, 'the second ack');
    expect(alice.received.filter((m) => m.type === 'ack')[1]).toMatchObject({ results: [{ outcome: 'duplicate' }] });
  });

  it('refuses a cursor beyond what a JSON number holds exactly', async () => {
    const { server: s, project } = await start();
    const hello = await open(s);
    hello.send(`{"type":"hello","protocolVersion":${PROTOCOL_VERSION},"deviceId":"d0","cursor":1e300,"token":"${await mintUserToken(project, 'alice')}"}`);
    expect((await hello.next(isType('error'))).kind).toBe('invalid');
    const socket = await device(s, project, 'alice', 'd1');
    socket.send(`{"type":"push","cursor":1e300,"changes":[]}`);
    expect((await socket.next(isType('error'))).kind).toBe('invalid');
  });

  it('compares secrets whole', () => {
    expect(sameSecret('k'.repeat(48), 'k'.repeat(48))).toBe(true);
    expect(sameSecret('k'.repeat(47), 'k'.repeat(48))).toBe(false);
    expect(sameSecret(`${'k'.repeat(47)}j`, 'k'.repeat(48))).toBe(false);
    expect(sameSecret(undefined, 'k')).toBe(false);
  });
});
