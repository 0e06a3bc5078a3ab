/**
 * The server under load and over time (issue 11). Each WebSocket benchmark runs the server in a
 * child process of its own (this file, forked with POCKETSYNC_LOAD_ROLE set), with its store on
 * disk, and the clients in this process: on 2 cores the server has one core and the load generator
 * the other, the clients' work does not count as the server's, and RSS is the server's own
 * (sampled over IPC). All clients come from 127.0.0.1.
 * - isolation: one device catches up from cursor 0 on a user with H rows (seeded through
 *   store.push in batches of 1,000), while other users' devices say 50 hellos a second at their
 *   current cursor (50 users, one hello a second each, under the default limits). Measured during
 *   the catch-up: GET /v1/health p99, issued every 10 ms (fetch, so on kept-alive connections: the
 *   probes add no connection load), and another user's single write from device A to device B
 *   (from sending the push on A to B receiving the changes frame), one every 20 ms; both are
 *   issued on a timer, not after the last one returns, so a stall is sampled. Baseline: the same
 *   two probes on the idle server, in the same run (after a second of them unmeasured, to warm
 *   up). Also the catch-up's time and rows/s; the background hellos' own time (connect to last
 *   frame: what a new connection waits), against the same hellos before the catch-up began; and
 *   the server's event-loop delay (the longest its loop went without a turn) in both windows.
 * - hello rate: W sockets in parallel, each in a loop: connect, say hello with a valid token at
 *   the current cursor, and count it when its last changes frame (hasMore: false) arrives; 20
 *   users, one device per socket, each bound by one unmeasured hello first. The limits are raised
 *   (hellosPerMinute, maxConnectionsPerUser, maxConnectionsPerAddress): from one address a
 *   benchmark would otherwise measure the limiter, not the server. Baseline: a plain `ws` echo
 *   server in a child process, driven the same way (connect, the same frame, one reply).
 * - soak: U users × 50 devices connected for S seconds (maxConnectionsPerAddress raised; the
 *   per-user limits at their defaults). One device of each user writes one change a second, the
 *   others receive it. Every delivery is counted and timed (send on the writer to receipt on each
 *   receiver; p50/p99 over all deliveries), and the server's RSS is read at the start, the middle
 *   and the end. Anchor: PowerSync's published 3,000 connections per instance.
 * - growth: 1,000 rows updated again and again through store.push (pushes of 1,000 updates, one
 *   per row) with retention on, in this process. After every 10,000 updates the store compacts,
 *   with `now` one retention past the last push, so every change logged so far has expired and the
 *   sizes depend on the work, not on the machine's speed. The size is the .db plus -wal files after
 *   a TRUNCATE checkpoint, at three levels. Baseline: a plain one-table database holding the same
 *   1,000 rows.
 *
 * Full size: H = 200,000; W = 200 sockets for 20 s; U = 100 (5,000 sockets) for 60 s; 1,000,000
 * updates, measured at 100k, 500k and 1M. Small (CI): 20,000; 100 for 4 s; 10 (500 sockets) for
 * 10 s; 100,000 updates, at 10k, 50k and 100k.
 */
import { fork } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import WebSocket, { WebSocketServer } from 'ws';
import type { ClientChange } from '../lib/protocol/change.js';
import { PROTOCOL_VERSION } from '../lib/protocol/protocol-version.js';
import { LIMITS } from '../lib/protocol/up.js';
import { mintUserToken } from '../server/auth.js';
import type { Retention, ServerLimits } from '../server/limits.js';
import { createServer } from '../server/server.js';
import { SqliteStore } from '../server/store/sqlite-store.js';
import type { Project } from '../server/store/store.js';
import { formatClock } from '../worker/hlc.js';
import { median, percentile } from './stats.js';
import { report, type Metric } from './report.js';
import type { BenchOptions } from './run.js';

const ROLE_ENV = 'POCKETSYNC_LOAD_ROLE';
const CONFIG_ENV = 'POCKETSYNC_LOAD_CONFIG';
const SECRET = 'load-bench-secret-'.padEnd(32, 'x');
const PROJECT: Project = { id: 'p', secret: SECRET, strategy: 'column-lww', sharedTables: [], createdAt: 0, keys: [{ kid: 'default', secret: SECRET }] };
/** Limits no benchmark from one address should meet. */
const UNLIMITED: Partial<ServerLimits> = { hellosPerMinute: 1_000_000_000, maxConnectionsPerUser: 1_000_000, maxConnectionsPerAddress: 1_000_000 };

type Role = 'pocketsync' | 'echo';
interface ChildConfig {
  readonly dataDir: string;
  readonly limits?: Partial<ServerLimits>;
}
type Command = { readonly op: 'seed'; readonly user: string; readonly rows: number } | { readonly op: 'stats' } | { readonly op: 'close' };
type Reply = { readonly ready: number } | { readonly id: number; readonly result: unknown } | { readonly id: number; readonly error: string };
interface Stats {
  readonly rss: number;
  readonly heapUsed: number;
  readonly connections: number;
  readonly seq: number;
  /** Error lines the server logged, by event and kind. */
  readonly errors: Record<string, number>;
  /** The server's event-loop delay since the last stats (ms, sampled every 1 ms). */
  readonly loopP99Ms: number;
  readonly loopMaxMs: number;
}

interface Size {
  readonly heavyRows: number;
  readonly idleMs: number;
  readonly helloSockets: number;
  readonly helloMs: number;
  readonly soakUsers: number;
  readonly soakSeconds: number;
  readonly updates: number;
  readonly levels: readonly number[];
}

const SMALL: Size = { heavyRows: 20_000, idleMs: 2_000, helloSockets: 100, helloMs: 4_000, soakUsers: 10, soakSeconds: 10, updates: 100_000, levels: [10_000, 50_000, 100_000] };
const FULL: Size = { heavyRows: 200_000, idleMs: 5_000, helloSockets: 200, helloMs: 20_000, soakUsers: 100, soakSeconds: 60, updates: 1_000_000, levels: [100_000, 500_000, 1_000_000] };
const SOAK_DEVICES = 50;
const COMPACT_EVERY = 10_000;

// ---- The server process ----

const childRole = process.env[ROLE_ENV];
if (childRole !== undefined) await serve(childRole as Role, JSON.parse(process.env[CONFIG_ENV] ?? '{}') as ChildConfig);

async function serve(role: Role, config: ChildConfig): Promise<void> {
  process.on('disconnect', () => process.exit(1));
  const errors: Record<string, number> = {};
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  let stats = (): Promise<Pick<Stats, 'connections' | 'seq'>> => Promise.resolve({ connections: 0, seq: 0 });
  let close = (): Promise<void> => Promise.resolve();
  let seed = (_user: string, _rows: number): Promise<void> => Promise.resolve();
  let port: number;
  if (role === 'echo') {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, maxPayload: LIMITS.maxMessageBytes });
    await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
    wss.on('connection', (socket) => {
      socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary }));
      socket.on('error', () => undefined);
    });
    port = (wss.address() as AddressInfo).port;
    stats = () => Promise.resolve({ connections: wss.clients.size, seq: 0 });
    close = () => new Promise((resolve) => {
      for (const client of wss.clients) client.terminate();
      wss.close(() => resolve());
    });
  } else {
    const server = await createServer({
      dataDir: config.dataDir,
      adminKey: 'bench',
      ...(config.limits ? { limits: config.limits } : {}),
      // Errors only, counted, and the first few of each kind shown.
      log: (line) => {
        if (line.event !== 'error' && line.event !== 'socket-error' && line.event !== 'refused') return;
        const key = `${String(line.event)}:${String(line.kind ?? line.code ?? line.reason)}`;
        errors[key] = (errors[key] ?? 0) + 1;
        if (errors[key] <= 3) console.error('[server]', JSON.stringify(line));
      },
    });
    await server.store.createProject({ id: PROJECT.id, secret: PROJECT.secret });
    port = server.port;
    stats = async () => ({ connections: server.hub.connections, seq: await server.store.currentSeq(PROJECT.id) });
    close = () => server.close();
    seed = async (user, rows) => {
      for (let i = 0; i < rows; i += 1000) {
        const changes = Array.from({ length: Math.min(1000, rows - i) }, (_, j) => insert(`${user}-${i + j}`, `${user}-seeder`));
        await server.store.push({ projectId: PROJECT.id, userId: user, deviceId: `${user}-seeder`, deviceCursor: 0, changes });
      }
    };
  }
  const send = (reply: Reply, then: () => void = () => undefined) => process.send?.(reply, then);
  process.on('message', (message: { id: number; command: Command }) => {
    const { id, command } = message;
    const work = async (): Promise<unknown> => {
      if (command.op === 'seed') return seed(command.user, command.rows);
      if (command.op === 'close') return close();
      const { rss, heapUsed } = process.memoryUsage();
      const delay = { loopP99Ms: loop.percentile(99) / 1e6, loopMaxMs: loop.max / 1e6 };
      loop.reset();
      return { ...(await stats()), rss, heapUsed, errors, ...delay };
    };
    work().then(
      (result) => send({ id, result: result ?? null }, command.op === 'close' ? () => process.exit(0) : undefined),
      (error: unknown) => send({ id, error: String(error) }),
    );
  });
  send({ ready: port });
}

interface ServerProcess {
  readonly port: number;
  seed(user: string, rows: number): Promise<void>;
  stats(): Promise<Stats>;
  stop(): Promise<void>;
}

async function startServer(role: Role, config: ChildConfig): Promise<ServerProcess> {
  const child = fork(fileURLToPath(import.meta.url), [], {
    env: { ...process.env, [ROLE_ENV]: role, [CONFIG_ENV]: JSON.stringify(config) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const waiting = new Map<number, { resolve: (result: unknown) => void; reject: (error: Error) => void }>();
  let gone: Error | null = null;
  let next = 0;
  const ready = new Promise<number>((resolve, reject) => {
    child.on('message', (message: Reply) => {
      if ('ready' in message) return resolve(message.ready);
      const call = waiting.get(message.id);
      waiting.delete(message.id);
      if ('error' in message) call?.reject(new Error(message.error));
      else call?.resolve(message.result);
    });
    child.once('exit', (code, signal) => {
      gone = new Error(`the ${role} server process exited (code ${code}, signal ${signal})`);
      reject(gone);
      for (const call of waiting.values()) call.reject(gone);
      waiting.clear();
    });
  });
  const call = (command: Command): Promise<unknown> =>
    new Promise((resolve, reject) => {
      if (gone) return reject(gone);
      const id = ++next;
      waiting.set(id, { resolve, reject });
      child.send({ id, command });
    });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    port: await ready,
    seed: async (user, rows) => void (await call({ op: 'seed', user, rows })),
    stats: async () => (await call({ op: 'stats' })) as Stats,
    stop: async () => {
      if (!gone) await call({ op: 'close' }).catch(() => undefined);
      await exited;
    },
  };
}

// ---- Clients ----

let changeCount = 0;
function insert(row: string, device: string): ClientChange {
  changeCount++;
  return { id: `c${changeCount}`, table: 'todos', row, op: 'insert', clock: formatClock({ wall: Date.now(), counter: changeCount % 1024, deviceId: device }), values: { title: `todo ${row}`, done: 0 } };
}

function syncUrl(port: number): string {
  return `ws://127.0.0.1:${port}/v1/projects/${PROJECT.id}/sync`;
}

function helloFrame(token: string, deviceId: string, cursor: number): string {
  return JSON.stringify({ type: 'hello', protocolVersion: PROTOCOL_VERSION, deviceId, cursor, token });
}

/** The last frame of a catch-up (at the current cursor, its only frame). */
const isFinal = (text: string) => text.startsWith('{"type":"changes"') && text.includes('"hasMore":false');

function opened(url: string): Promise<WebSocket> {
  const socket = new WebSocket(url, { perMessageDeflate: false });
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.once('open', () => {
      // From now on a failure shows as a close, which the waits below see.
      socket.on('error', () => undefined);
      resolve(socket);
    });
  });
}

/** The first frame `done` accepts; rejects on an error frame, or a close before it. */
function frame(socket: WebSocket, done: (text: string) => boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    const onMessage = (data: WebSocket.RawData) => {
      const text = (data as Buffer).toString('utf8');
      if (text.startsWith('{"type":"error"')) {
        finish();
        reject(new Error(text));
      } else if (done(text)) {
        finish();
        resolve(text);
      }
    };
    const onClose = (code: number) => {
      finish();
      reject(new Error(`closed (${code}) before the frame`));
    };
    const finish = () => {
      socket.off('message', onMessage);
      socket.off('close', onClose);
    };
    socket.on('message', onMessage);
    socket.once('close', onClose);
  });
}

/** Connect, send `text`, wait for the answer `done` accepts, drop the connection. */
async function roundTrip(url: string, text: string, done: (text: string) => boolean): Promise<void> {
  const socket = await opened(url);
  try {
    const answer = frame(socket, done);
    socket.send(text);
    await answer;
  } finally {
    socket.terminate();
  }
}

/** A device that said hello and finished its catch-up, left open. */
async function device(url: string, token: string, deviceId: string, cursor: number): Promise<WebSocket> {
  const socket = await opened(url);
  const caughtUp = frame(socket, isFinal);
  socket.send(helloFrame(token, deviceId, cursor));
  await caughtUp;
  return socket;
}

async function until(condition: () => boolean, ms: number): Promise<boolean> {
  const end = performance.now() + ms;
  while (!condition()) {
    if (performance.now() > end) return false;
    await sleep(10);
  }
  return true;
}

async function pool<T>(items: readonly T[], concurrency: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < items.length) await work(items[next++] as T);
  }));
}

const mb = (bytes: number) => bytes / (1024 * 1024);

// ---- isolation ----

interface Probes {
  readonly healthMs: number[];
  readonly writeMs: number[];
  readonly lost: number;
}

/** Health checks every 10 ms and A → B writes every 20 ms while `during` runs, then their stragglers. */
async function probe(port: number, a: WebSocket, b: WebSocket, during: () => Promise<void>): Promise<Probes> {
  const healthMs: number[] = [];
  const writeMs: number[] = [];
  const sent = new Map<string, number>();
  const requests: Promise<void>[] = [];
  const onMessage = (data: WebSocket.RawData) => {
    const now = performance.now();
    const message = JSON.parse((data as Buffer).toString('utf8')) as { type: string; changes?: { row: string }[] };
    for (const change of message.changes ?? []) {
      const at = sent.get(change.row);
      if (at === undefined) continue;
      sent.delete(change.row);
      writeMs.push(now - at);
    }
  };
  b.on('message', onMessage);
  const health = setInterval(() => {
    const start = performance.now();
    requests.push(fetch(`http://127.0.0.1:${port}/v1/health`).then(async (response) => {
      await response.arrayBuffer();
      if (!response.ok) throw new Error(`health answered ${response.status}`);
      healthMs.push(performance.now() - start);
    }));
  }, 10);
  const writes = setInterval(() => {
    const change = insert(`w${changeCount}`, 'bob-a');
    sent.set(change.row, performance.now());
    a.send(JSON.stringify({ type: 'push', changes: [change] }));
  }, 20);
  try {
    await during();
  } finally {
    clearInterval(health);
    clearInterval(writes);
  }
  await Promise.all(requests);
  await until(() => sent.size === 0, 30_000);
  b.off('message', onMessage);
  return { healthMs, writeMs, lost: sent.size };
}

/**
 * Hellos at `perSecond`, each on a new socket, round robin over `frames`, until stopped; each timed
 * from the connect to its last changes frame.
 */
function hellosAt(url: string, frames: readonly string[], perSecond: number): {
  served: () => number;
  failed: () => number;
  /** The times of the hellos started in [from, to). */
  ms: (from: number, to: number) => number[];
  stop: () => Promise<void>;
} {
  let served = 0;
  let failed = 0;
  let sent = 0;
  const samples: { at: number; ms: number }[] = [];
  const inflight = new Set<Promise<void>>();
  const timer = setInterval(() => {
    const at = performance.now();
    const hello: Promise<void> = roundTrip(url, frames[sent++ % frames.length] as string, isFinal)
      .then(() => {
        served++;
        samples.push({ at, ms: performance.now() - at });
      }, (error: unknown) => {
        if (failed++ < 3) console.error('background hello failed:', String(error));
      })
      .finally(() => inflight.delete(hello));
    inflight.add(hello);
  }, 1000 / perSecond);
  return {
    served: () => served,
    failed: () => failed,
    ms: (from, to) => samples.filter((s) => s.at >= from && s.at < to).map((s) => s.ms),
    stop: async () => {
      clearInterval(timer);
      await Promise.all(inflight);
    },
  };
}

async function isolation(dir: string, size: Size): Promise<Metric[]> {
  const server = await startServer('pocketsync', { dataDir: join(dir, 'isolation') });
  try {
    const seedStart = performance.now();
    await server.seed('heavy', size.heavyRows);
    console.log(`isolation: seeded ${size.heavyRows} rows in ${Math.round(performance.now() - seedStart)} ms`);
    const url = syncUrl(server.port);
    const { seq } = await server.stats();
    const bob = await mintUserToken(PROJECT, 'bob');
    const a = await device(url, bob, 'bob-a', seq);
    const b = await device(url, bob, 'bob-b', seq);
    const others = await Promise.all(Array.from({ length: 50 }, async (_, i) => helloFrame(await mintUserToken(PROJECT, `other-${i}`), `other-${i}-1`, seq)));
    // A device's first hello binds it in a commit of its own: each says one before anything is measured.
    for (const text of others) await roundTrip(url, text, isFinal);

    // Unmeasured: the health connection opens, and both paths are warm before the idle baseline.
    await probe(server.port, a, b, () => sleep(1000));
    await server.stats();
    const idle = await probe(server.port, a, b, () => sleep(size.idleMs));
    const idleLoop = await server.stats();
    // The hellos alone first: their latency without the heavy neighbour.
    const background = hellosAt(url, others, 50);
    const backgroundStart = performance.now();
    await sleep(size.idleMs);
    const heavy = await opened(url);
    let rows = 0;
    let catchUpMs = 0;
    let windowStart = 0;
    const servedBefore = background.served();
    await server.stats();
    // This process's own delay too: a probe answered late because the load generator was busy is not the server's.
    const clientLoop = monitorEventLoopDelay({ resolution: 1 });
    clientLoop.enable();
    const loaded = await probe(server.port, a, b, async () => {
      const done = new Promise<void>((resolve, reject) => {
        heavy.on('message', (data: WebSocket.RawData) => {
          // Counted without parsing, so that the load generator stays light beside the probes.
          const text = (data as Buffer).toString('utf8');
          if (text.startsWith('{"type":"error"')) return reject(new Error(text));
          for (let at = text.indexOf('"seq":'); at !== -1; at = text.indexOf('"seq":', at + 6)) rows++;
          if (text.includes('"hasMore":false')) resolve();
        });
        heavy.once('close', (code) => reject(new Error(`the catching-up socket closed (${code})`)));
      });
      const token = await mintUserToken(PROJECT, 'heavy');
      windowStart = performance.now();
      heavy.send(helloFrame(token, 'heavy-1', 0));
      await done;
      catchUpMs = performance.now() - windowStart;
    });
    const served = background.served() - servedBefore;
    const loadedLoop = await server.stats();
    clientLoop.disable();
    await background.stop();
    const idleHellos = background.ms(backgroundStart, windowStart);
    const loadedHellos = background.ms(windowStart, windowStart + catchUpMs);
    heavy.terminate();
    a.terminate();
    b.terminate();
    if (Object.keys(loadedLoop.errors).length > 0) console.error('isolation: server errors', loadedLoop.errors);
    if (idle.lost + loaded.lost > 0) console.error(`isolation: ${idle.lost + loaded.lost} A → B writes never reached B`);
    if (rows !== size.heavyRows) console.error(`isolation: the catch-up sent ${rows} rows, not ${size.heavyRows}`);
    console.log(`isolation: ${loaded.healthMs.length} health checks, ${loaded.writeMs.length} writes and ${loadedHellos.length} hellos during the catch-up; ${background.failed()} background hellos failed; the load generator's event-loop delay p99 ${(clientLoop.percentile(99) / 1e6).toFixed(1)} ms, max ${(clientLoop.max / 1e6).toFixed(1)} ms`);

    const health = percentile(loaded.healthMs, 99);
    const idleHealth = percentile(idle.healthMs, 99);
    const write = percentile(loaded.writeMs, 99);
    const idleWrite = percentile(idle.writeMs, 99);
    return [
      { metric: 'isolation-health-p99-ms', value: health, unit: 'ms', baseline: idleHealth, ratio: health / idleHealth, target: '≤ 50' },
      { metric: 'isolation-health-p50-ms', value: median(loaded.healthMs), unit: 'ms', baseline: median(idle.healthMs), ratio: median(loaded.healthMs) / median(idle.healthMs) },
      { metric: 'isolation-write-p99-ms', value: write, unit: 'ms', baseline: idleWrite, ratio: write / idleWrite, target: '≤ 50' },
      { metric: 'isolation-hello-p99-ms', value: percentile(loadedHellos, 99), unit: 'ms', baseline: percentile(idleHellos, 99), ratio: percentile(loadedHellos, 99) / percentile(idleHellos, 99) },
      { metric: 'isolation-server-loop-delay-p99-ms', value: loadedLoop.loopP99Ms, unit: 'ms', baseline: idleLoop.loopP99Ms, ratio: loadedLoop.loopP99Ms / idleLoop.loopP99Ms },
      { metric: 'isolation-server-loop-delay-max-ms', value: loadedLoop.loopMaxMs, unit: 'ms', baseline: idleLoop.loopMaxMs, ratio: loadedLoop.loopMaxMs / idleLoop.loopMaxMs },
      { metric: 'isolation-write-lost', value: idle.lost + loaded.lost, unit: 'writes', target: '0' },
      { metric: 'isolation-catchup-ms', value: catchUpMs, unit: 'ms' },
      { metric: 'isolation-catchup-rows-per-s', value: (rows * 1000) / catchUpMs, unit: 'rows/s' },
      { metric: 'isolation-catchup-rows', value: rows, unit: 'rows', baseline: size.heavyRows, ratio: rows / size.heavyRows, target: `${size.heavyRows.toLocaleString('en')}` },
      { metric: 'isolation-hellos-per-s', value: (served * 1000) / catchUpMs, unit: 'hellos/s', target: '50 (the load)' },
    ];
  } finally {
    await server.stop();
  }
}

// ---- hello rate ----

/** Each frame drives one socket in a loop (connect, send, answer, drop) for `ms`: the answers per second. */
async function roundTripsPerSecond(url: string, frames: readonly string[], done: (text: string) => boolean, ms: number): Promise<{ perSecond: number; failed: number }> {
  // One unmeasured round each: devices are bound, code is warm.
  await Promise.all(frames.map((text) => roundTrip(url, text, done)));
  let served = 0;
  let failed = 0;
  const start = performance.now();
  const end = start + ms;
  await Promise.all(frames.map(async (text) => {
    while (performance.now() < end) {
      try {
        await roundTrip(url, text, done);
        if (performance.now() <= end) served++;
      } catch (error) {
        if (failed++ < 3) console.error('hello failed:', String(error));
        await sleep(10);
      }
    }
  }));
  return { perSecond: (served * 1000) / ms, failed };
}

async function helloRate(dir: string, size: Size): Promise<Metric[]> {
  const users = 20;
  const server = await startServer('pocketsync', { dataDir: join(dir, 'hello'), limits: UNLIMITED });
  let ours: { perSecond: number; failed: number };
  let frames: string[];
  try {
    for (let u = 0; u < users; u++) await server.seed(`u${u}`, 100);
    const { seq } = await server.stats();
    const tokens = await Promise.all(Array.from({ length: users }, (_, u) => mintUserToken(PROJECT, `u${u}`)));
    frames = Array.from({ length: size.helloSockets }, (_, i) => helloFrame(tokens[i % users] as string, `hello-${i}`, seq));
    ours = await roundTripsPerSecond(syncUrl(server.port), frames, isFinal, size.helloMs);
    const { errors } = await server.stats();
    if (Object.keys(errors).length > 0) console.error('hello: server errors', errors);
  } finally {
    await server.stop();
  }
  const echo = await startServer('echo', { dataDir: '' });
  let relay: { perSecond: number; failed: number };
  try {
    relay = await roundTripsPerSecond(`ws://127.0.0.1:${echo.port}/`, frames, () => true, size.helloMs);
  } finally {
    await echo.stop();
  }
  return [
    { metric: 'hello-per-s', value: ours.perSecond, unit: 'hellos/s', baseline: relay.perSecond, ratio: ours.perSecond / relay.perSecond, target: '≥ 2,000' },
    { metric: 'hello-failed', value: ours.failed + relay.failed, unit: 'hellos', target: '0' },
  ];
}

// ---- soak ----

async function soak(dir: string, size: Size): Promise<Metric[]> {
  const server = await startServer('pocketsync', { dataDir: join(dir, 'soak'), limits: { maxConnectionsPerAddress: 1_000_000 } });
  const sockets: WebSocket[] = [];
  try {
    const url = syncUrl(server.port);
    const users = size.soakUsers;
    const tokens = await Promise.all(Array.from({ length: users }, (_, u) => mintUserToken(PROJECT, `s${u}`)));
    const sent = new Map<string, { at: number; left: number }>();
    const fanoutMs: number[] = [];
    let delivered = 0;
    let strays = 0;
    let acks = 0;
    let errorFrames = 0;
    const receive = (data: WebSocket.RawData) => {
      const now = performance.now();
      const message = JSON.parse((data as Buffer).toString('utf8')) as { type: string; changes?: { row: string }[] };
      if (message.type === 'error') errorFrames++;
      for (const change of message.changes ?? []) {
        const push = sent.get(change.row);
        if (!push) {
          strays++;
          continue;
        }
        fanoutMs.push(now - push.at);
        delivered++;
        if (--push.left === 0) sent.delete(change.row);
      }
    };
    const writers: WebSocket[] = [];
    const connectStart = performance.now();
    const devices = Array.from({ length: users * SOAK_DEVICES }, (_, i) => ({ user: Math.floor(i / SOAK_DEVICES), index: i % SOAK_DEVICES }));
    await pool(devices, 100, async ({ user, index }) => {
      const socket = await device(url, tokens[user] as string, `s${user}-${index}`, 0);
      sockets.push(socket);
      if (index === 0) {
        writers[user] = socket;
        socket.on('message', (data: WebSocket.RawData) => {
          const text = (data as Buffer).toString('utf8');
          if (text.startsWith('{"type":"ack"')) acks++;
          else if (text.startsWith('{"type":"error"')) errorFrames++;
        });
      } else {
        socket.on('message', receive);
      }
    });
    const connectMs = performance.now() - connectStart;
    const connected = (await server.stats()).connections;
    console.log(`soak: ${connected} sockets connected in ${Math.round(connectMs)} ms`);

    const series: Stats[] = [];
    const rssStart = (await server.stats()).rss;
    let pushes = 0;
    const writing = setInterval(() => {
      const user = pushes % users;
      const change = insert(`s${user}-row${pushes}`, `s${user}-0`);
      pushes++;
      sent.set(change.row, { at: performance.now(), left: SOAK_DEVICES - 1 });
      (writers[user] as WebSocket).send(JSON.stringify({ type: 'push', changes: [change] }));
    }, 1000 / users);
    const sampling = setInterval(() => void server.stats().then((s) => series.push(s), () => undefined), 5_000);
    await sleep(size.soakSeconds * 500);
    const rssMid = (await server.stats()).rss;
    await sleep(size.soakSeconds * 500);
    clearInterval(writing);
    clearInterval(sampling);
    const end = await server.stats();
    const expected = pushes * (SOAK_DEVICES - 1);
    await until(() => delivered >= expected && acks >= pushes, 20_000);
    const after = await server.stats();
    console.log(`soak: ${pushes} pushes, ${acks} acks, ${delivered}/${expected} deliveries, ${strays} strays, ${errorFrames} error frames; sockets at the end ${after.connections}`);
    console.log(`soak: every 5 s, server RSS / heap used (MiB) / longest event-loop delay (ms): ${series.map((r) => `${mb(r.rss).toFixed(1)}/${mb(r.heapUsed).toFixed(1)}/${r.loopMaxMs.toFixed(0)}`).join(', ')}`);
    if (Object.keys(after.errors).length > 0) console.error('soak: server errors', after.errors);
    const p99 = percentile(fanoutMs, 99);
    return [
      { metric: 'soak-sockets', value: after.connections, unit: 'sockets', baseline: 3000, ratio: after.connections / 3000, target: `${(users * SOAK_DEVICES).toLocaleString('en')} for ${size.soakSeconds} s` },
      { metric: 'soak-delivered', value: delivered, unit: 'deliveries', baseline: expected, ratio: delivered / expected, target: 'ratio 1' },
      { metric: 'soak-pushes-per-s', value: pushes / size.soakSeconds, unit: 'pushes/s', target: `${users} (the load)` },
      { metric: 'soak-fanout-p50-ms', value: median(fanoutMs), unit: 'ms' },
      { metric: 'soak-fanout-p99-ms', value: p99, unit: 'ms', target: '≤ 100' },
      { metric: 'soak-rss-start-mb', value: mb(rssStart), unit: 'MiB' },
      { metric: 'soak-rss-mid-mb', value: mb(rssMid), unit: 'MiB' },
      { metric: 'soak-rss-end-mb', value: mb(end.rss), unit: 'MiB', baseline: mb(rssMid), ratio: end.rss / rssMid, target: 'no growth once warm (≈ mid)' },
      { metric: 'soak-connect-ms', value: connectMs, unit: 'ms' },
    ];
  } finally {
    for (const socket of sockets) socket.terminate();
    await server.stop();
  }
}

// ---- growth ----

function fileBytes(file: string): number {
  return (existsSync(file) ? statSync(file).size : 0) + (existsSync(`${file}-wal`) ? statSync(`${file}-wal`).size : 0);
}

/** The .db and -wal bytes of `file` after a TRUNCATE checkpoint (on a connection of its own), and the -wal bytes before. */
function checkpointed(file: string): { bytes: number; walBefore: number } {
  const walBefore = existsSync(`${file}-wal`) ? statSync(`${file}-wal`).size : 0;
  const db = new Database(file);
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
  return { bytes: fileBytes(file), walBefore };
}

async function growth(dir: string, size: Size): Promise<Metric[]> {
  const rows = 1000;
  const file = join(dir, 'growth.db');
  const store = new SqliteStore(file);
  const retention: Retention = { changeLogMs: 1000, conflictsMs: 1000, tombstonesMs: 1000, compactEveryMs: 60_000 };
  const sizes: number[] = [];
  let walMax = 0;
  let updateMs = 0;
  let last: ClientChange[] = [];
  try {
    await store.createProject({ id: PROJECT.id, secret: PROJECT.secret });
    const base = Date.now() - 3_600_000;
    const batch = (round: number, op: 'insert' | 'update'): ClientChange[] =>
      Array.from({ length: rows }, (_, r) => ({
        id: `g${round}-${r}`, table: 'todos', row: `row${r}`, op,
        clock: formatClock({ wall: base + round, counter: 0, deviceId: 'grower' }),
        values: op === 'insert' ? { title: `todo ${r}`, done: 0 } : { title: `todo ${r} v${round}`, done: round % 2 },
      }));
    const push = (changes: ClientChange[]) => store.push({ projectId: PROJECT.id, userId: 'g', deviceId: 'grower', deviceCursor: 0, changes });
    await push(batch(0, 'insert'));
    const levels = new Set(size.levels);
    for (let done = 0, round = 1; done < size.updates; round++) {
      const start = performance.now();
      last = batch(round, 'update');
      await push(last);
      updateMs += performance.now() - start;
      done += rows;
      if (done % COMPACT_EVERY === 0) await store.compact(retention, Date.now() + retention.changeLogMs);
      if (levels.has(done)) {
        const measured = checkpointed(file);
        walMax = Math.max(walMax, measured.walBefore);
        sizes.push(measured.bytes);
        console.log(`growth: ${done} updates, ${(measured.bytes / 1024).toFixed(0)} KiB (-wal before the checkpoint ${(measured.walBefore / 1024).toFixed(0)} KiB)`);
      }
    }
  } finally {
    await store.close();
  }

  // The baseline: the same 1,000 rows, as they stand at the end, in a plain table.
  const plainFile = join(dir, 'plain.db');
  const plain = new Database(plainFile);
  plain.pragma('journal_mode = WAL');
  plain.exec('CREATE TABLE todos (id TEXT PRIMARY KEY, title TEXT, done INTEGER)');
  const put = plain.prepare('INSERT INTO todos VALUES (?, ?, ?)');
  plain.transaction(() => {
    for (const change of last) put.run(change.row, change.values?.title, change.values?.done);
  })();
  plain.close();
  const plainBytes = checkpointed(plainFile).bytes;

  const label = (updates: number) => (updates >= 1_000_000 ? `${updates / 1_000_000}m` : `${updates / 1000}k`);
  const kb = (bytes: number) => bytes / 1024;
  const first = sizes[0] as number;
  const lastSize = sizes.at(-1) as number;
  return [
    ...size.levels.map((level, i): Metric => ({ metric: `growth-size-at-${label(level)}-kb`, value: kb(sizes[i] as number), unit: 'KiB', baseline: kb(plainBytes), ratio: (sizes[i] as number) / plainBytes })),
    { metric: `growth-size-ratio-${label(size.levels.at(-1) as number)}-to-${label(size.levels[0] as number)}`, value: lastSize / first, unit: 'x', baseline: 1, ratio: lastSize / first, target: '≤ 1.1 (levels off)' },
    { metric: 'growth-wal-max-kb', value: kb(walMax), unit: 'KiB' },
    { metric: 'growth-updates-per-s', value: (size.updates * 1000) / updateMs, unit: 'updates/s' },
  ];
}

export async function run(options: BenchOptions): Promise<void> {
  const size = options.small ? SMALL : FULL;
  const dir = mkdtempSync(join(tmpdir(), 'pocketsync-load-'));
  const start = performance.now();
  const lap = (name: string, since: number) => console.log(`${name}: ${((performance.now() - since) / 1000).toFixed(1)} s`);
  try {
    const metrics: Metric[] = [];
    for (const [name, bench] of [['isolation', isolation], ['hello', helloRate], ['soak', soak], ['growth', growth]] as const) {
      const since = performance.now();
      metrics.push(...(await bench(dir, size)));
      lap(name, since);
    }
    report(options.small ? 'load-small' : 'load', metrics);
    lap('load', start);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
