/**
 * End-to-end sync benchmarks (issue: sync client): two PocketSync instances, A and B, each the
 * real client API over the real worker API and engine (in-memory SQLite-WASM, over a
 * MessageChannel, as in the Node tests), syncing through the real server (createServer, embedded
 * store on disk) on 127.0.0.1. Everything runs on this one Node thread, server included.
 *
 * - a-to-b-10k: one statement inserts 10,000 rows on A; from the execute call until B's watch sees
 *   all. Not from the commit: on this one thread, the first push goes out before the call returns.
 * - single-write: 200 single-row inserts on A, one at a time; from the insert call until B's
 *   watch fires with the row.
 * - catch-up: B goes offline; A makes 100,000 changes to 10,000 rows and pushes them all; B comes
 *   back. From B's start() until B is live again, and the rows the server sent B meanwhile.
 *
 * Each is measured beside its physical limit in the same run: a plain `ws` relay forwarding
 * pre-serialized frames of the same rows from A to B (for catch-up: B connects and pulls the
 * 10,000 latest rows, pre-serialized in frames of the server's batch size). The relay's receiver
 * parses each frame, since B has to read a row to have it. Repetitions alternate between the two,
 * and medians are reported.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expose } from 'comlink';
import WebSocket, { WebSocketServer } from 'ws';
import { PocketSync } from '../lib/index.js';
import type { Changes } from '../lib/protocol/down.js';
import type { RowChange } from '../lib/protocol/change.js';
import { mintUserToken } from '../server/auth.js';
import { createServer, type RunningServer } from '../server/server.js';
import type { Project } from '../server/store/store.js';
import { createWorkerApi } from '../worker/worker-api.js';
import { median, percentile } from './stats.js';
import { report, type Metric } from './report.js';
import type { BenchOptions } from './run.js';

interface Sizes {
  /** Rows of the one-transaction write, and of the catch-up table. */
  readonly rows: number;
  /** Single-row writes per repetition. */
  readonly writes: number;
  /** Changes A makes while B is offline (to `rows` rows). */
  readonly changes: number;
  readonly repetitions: { readonly bulk: number; readonly single: number; readonly catchUp: number };
}

const SCHEMA = {
  version: 1,
  migrations: [{ version: 1, sql: ['CREATE TABLE todos (id INTEGER PRIMARY KEY, title TEXT NOT NULL, done INTEGER NOT NULL DEFAULT 0)'] }],
};
/** The server's catch-up batch size (createServer's default), mirrored by the relay. */
const BATCH_ROWS = 1000;
const TIMEOUT_MS = 120_000;

let dbCounter = 0;
let userCounter = 0;

/**
 * A WebSocket for B's worker that keeps the frames it receives while `frames` is set (during a
 * catch-up), to count the rows the server sent.
 */
class RecordingWebSocket extends WebSocket {
  static frames: string[] | null = null;
  constructor(...args: ConstructorParameters<typeof WebSocket>) {
    super(...args);
    this.on('message', (data, isBinary) => {
      if (!isBinary) RecordingWebSocket.frames?.push((data as Buffer).toString('utf8'));
    });
  }
}

interface Pair {
  readonly a: PocketSync;
  readonly b: PocketSync;
  readonly close: () => Promise<void>;
}

/**
 * The worker side's end of each instance's channel. In a browser, terminating the worker closes it;
 * in Node an open port keeps the process running, so the harness closes it.
 */
const workerPorts = new Map<PocketSync, MessagePort>();

async function instance(server: RunningServer, token: string, WebSocketClass: unknown): Promise<PocketSync> {
  const { port1, port2 } = new MessageChannel();
  expose(createWorkerApi({ WebSocket: WebSocketClass }), port1);
  const opened = await PocketSync.initialize({
    dbName: `bench-${process.pid}-${++dbCounter}`,
    storage: 'memory',
    worker: port2,
    schema: SCHEMA,
    serverUrl: server.url,
    projectId: 'p',
    authToken: token,
  });
  workerPorts.set(opened, port1);
  return opened;
}

async function closeInstance(instance: PocketSync): Promise<void> {
  await instance.close();
  workerPorts.get(instance)?.close();
  workerPorts.delete(instance);
}

/** Two devices of a fresh user (so no repetition sees another's rows), both live. */
async function pair(server: RunningServer, project: Project): Promise<Pair> {
  const token = await mintUserToken(project, `user-${++userCounter}`);
  const a = await instance(server, token, WebSocket);
  const b = await instance(server, token, RecordingWebSocket);
  await Promise.all([until(a, (s) => s.state === 'live'), until(b, (s) => s.state === 'live')]);
  return {
    a,
    b,
    close: async () => {
      await closeInstance(a);
      await closeInstance(b);
    },
  };
}

/** Resolves once the instance's sync status satisfies `test`. */
function until(instance: PocketSync, test: (status: PocketSync['sync']['status']) => boolean): Promise<void> {
  return deadline(
    new Promise<void>((resolve) => {
      const unsubscribe = instance.sync.subscribe((status) => {
        if (!test(status)) return;
        queueMicrotask(() => unsubscribe());
        resolve();
      });
    }),
    'a sync status',
  );
}

/** B's watch of its row count; `reach(n)` resolves when the watch has reported at least n rows. */
function countWatch(b: PocketSync): { reach: (n: number) => Promise<void>; stop: () => void } {
  let count = -1;
  let waiter: { n: number; resolve: () => void } | null = null;
  const stop = b.database.watch('SELECT count(*) AS n FROM todos', [], (rows) => {
    count = Number(rows[0]?.n ?? 0);
    if (waiter && count >= waiter.n) {
      waiter.resolve();
      waiter = null;
    }
  });
  const reach = (n: number) =>
    deadline(
      new Promise<void>((resolve) => {
        if (count >= n) resolve();
        else waiter = { n, resolve };
      }),
      `${n} rows on B`,
    );
  return { reach, stop };
}

function deadline<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`bench/sync: timed out waiting for ${what}`)), TIMEOUT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const insertRowsSql = (rows: number) =>
  `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${rows})
   INSERT INTO todos (title, done) SELECT 'todo number ' || i, 0 FROM n`;

// ---- PocketSync ----

async function bulk(server: RunningServer, project: Project, rows: number): Promise<number> {
  const { a, b, close } = await pair(server, project);
  try {
    const watch = countWatch(b);
    await watch.reach(0);
    const start = performance.now();
    await a.database.execute(insertRowsSql(rows));
    await watch.reach(rows);
    const ms = performance.now() - start;
    watch.stop();
    return ms;
  } finally {
    await close();
  }
}

async function single(server: RunningServer, project: Project, writes: number): Promise<number[]> {
  const { a, b, close } = await pair(server, project);
  try {
    const watch = countWatch(b);
    await watch.reach(0);
    const ms: number[] = [];
    for (let i = 1; i <= writes; i++) {
      const start = performance.now();
      await a.database.insert('todos', { title: `single write ${i}` });
      await watch.reach(i);
      ms.push(performance.now() - start);
    }
    watch.stop();
    return ms;
  } finally {
    await close();
  }
}

async function catchUp(server: RunningServer, project: Project, sizes: Sizes): Promise<{ ms: number; rowsSent: number }> {
  const { a, b, close } = await pair(server, project);
  try {
    await b.sync.stop();
    await until(b, (s) => s.state === 'offline');
    await a.database.execute(insertRowsSql(sizes.rows));
    for (let round = 1; round < sizes.changes / sizes.rows; round++) {
      await a.database.execute('UPDATE todos SET done = done + 1, title = title || ?', [`.${round}`]);
    }
    await until(a, (s) => s.pending === 0 && s.state === 'live');
    const frames: string[] = [];
    RecordingWebSocket.frames = frames;
    const start = performance.now();
    await b.sync.start();
    await until(b, (s) => s.state === 'live');
    const ms = performance.now() - start;
    RecordingWebSocket.frames = null;
    const rowsSent = frames.reduce((sum, frame) => sum + rowsIn(frame), 0);
    await checkConverged(a, b);
    return { ms, rowsSent };
  } finally {
    await close();
  }
}

function rowsIn(frame: string): number {
  const message = JSON.parse(frame) as { type: string; changes?: unknown[] };
  return message.type === 'changes' ? (message.changes?.length ?? 0) : 0;
}

/** After catch-up B must hold exactly A's rows: a benchmark of a wrong result measures nothing. */
async function checkConverged(a: PocketSync, b: PocketSync): Promise<void> {
  const sql = 'SELECT ps_global_id, title, done FROM todos ORDER BY ps_global_id';
  const [left, right] = await Promise.all([a.database.query(sql), b.database.query(sql)]);
  if (JSON.stringify(left) !== JSON.stringify(right)) throw new Error('bench/sync: B did not converge to A after catch-up');
}

// ---- the ws relay (the limit) ----

interface Relay {
  readonly url: string;
  readonly close: () => Promise<void>;
}

/** Forwards every frame from one client to the others; answers "pull" with the frames it holds. */
async function relay(held: readonly string[] = []): Promise<Relay> {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  server.on('connection', (socket) => {
    socket.on('message', (data, isBinary) => {
      if (!isBinary && (data as Buffer).toString() === 'pull') {
        for (const frame of held) socket.send(frame);
        return;
      }
      for (const client of server.clients) if (client !== socket) client.send(data, { binary: isBinary });
    });
  });
  return {
    url: `ws://127.0.0.1:${(server.address() as { port: number }).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const client of server.clients) client.terminate();
        server.close(() => resolve());
      }),
  };
}

function connect(url: string): Promise<WebSocket> {
  const socket = new WebSocket(url);
  return new Promise((resolve, reject) => {
    socket.once('open', () => resolve(socket));
    socket.once('error', reject);
  });
}

/** A receiver that parses each frame and resolves `reach(n)` once n rows have arrived. */
function relayReceiver(socket: WebSocket): { reach: (n: number) => Promise<void> } {
  let rows = 0;
  let waiter: { n: number; resolve: () => void } | null = null;
  socket.on('message', (data) => {
    rows += (JSON.parse((data as Buffer).toString('utf8')) as Changes).changes.length;
    if (waiter && rows >= waiter.n) {
      waiter.resolve();
      waiter = null;
    }
  });
  return {
    reach: (n) =>
      deadline(
        new Promise<void>((resolve) => {
          if (rows >= n) resolve();
          else waiter = { n, resolve };
        }),
        `${n} rows through the relay`,
      ),
  };
}

/** `count` row changes as the server sends them, in frames of at most `perFrame`. */
function changeFrames(count: number, perFrame: number, tag: string): string[] {
  const clock = '0001a2b3c4d5e:0000:device-a-000001';
  const rows: RowChange[] = Array.from({ length: count }, (_, i) => ({
    seq: i + 1,
    table: 'todos',
    row: `${tag}${String(i).padStart(32 - tag.length, '0')}`,
    deleted: false,
    values: { id: i + 1, title: `todo number ${i + 1}.1.2.3.4.5.6.7.8.9`, done: 9 },
    clocks: { id: clock, title: clock, done: clock },
  }));
  const frames: string[] = [];
  for (let i = 0; i < rows.length; i += perFrame) {
    const changes = rows.slice(i, i + perFrame);
    const message: Changes = { type: 'changes', changes, cursor: changes.at(-1)?.seq ?? 0, hasMore: i + perFrame < rows.length, remaining: Math.max(0, rows.length - i - perFrame) };
    frames.push(JSON.stringify(message));
  }
  return frames;
}

async function relayBulk(rows: number): Promise<number> {
  const frames = changeFrames(rows, BATCH_ROWS, 'bulk');
  const server = await relay();
  try {
    const sender = await connect(server.url);
    const receiver = relayReceiver(await connect(server.url));
    const start = performance.now();
    for (const frame of frames) sender.send(frame);
    await receiver.reach(rows);
    return performance.now() - start;
  } finally {
    await server.close();
  }
}

async function relaySingle(writes: number): Promise<number[]> {
  const frames = changeFrames(writes, 1, 'single');
  const server = await relay();
  try {
    const sender = await connect(server.url);
    const receiver = relayReceiver(await connect(server.url));
    const ms: number[] = [];
    for (let i = 0; i < writes; i++) {
      const start = performance.now();
      sender.send(frames[i] as string);
      await receiver.reach(i + 1);
      ms.push(performance.now() - start);
    }
    return ms;
  } finally {
    await server.close();
  }
}

async function relayCatchUp(rows: number): Promise<number> {
  const server = await relay(changeFrames(rows, BATCH_ROWS, 'catchup'));
  try {
    const start = performance.now();
    const socket = await connect(server.url);
    const receiver = relayReceiver(socket);
    socket.send('pull');
    await receiver.reach(rows);
    return performance.now() - start;
  } finally {
    await server.close();
  }
}

// ---- the run ----

/** Runs `ours` and `limit` `times` times, alternating which goes first. */
async function alternate<T>(times: number, ours: () => Promise<T>, limit: () => Promise<T>): Promise<{ ours: T[]; limit: T[] }> {
  const out = { ours: [] as T[], limit: [] as T[] };
  for (let i = 0; i < times; i++) {
    if (i % 2 === 0) {
      out.ours.push(await ours());
      out.limit.push(await limit());
    } else {
      out.limit.push(await limit());
      out.ours.push(await ours());
    }
  }
  return out;
}

function metric(name: string, value: number, baseline: number, unit: string, target: string): Metric {
  return { metric: name, value, unit, baseline, ratio: value / baseline, target };
}

export async function run(options: BenchOptions): Promise<void> {
  const sizes: Sizes = options.small
    ? { rows: 1_000, writes: 20, changes: 10_000, repetitions: { bulk: 1, single: 1, catchUp: 1 } }
    : { rows: 10_000, writes: 200, changes: 100_000, repetitions: { bulk: 7, single: 3, catchUp: 3 } };
  const dir = mkdtempSync(join(tmpdir(), 'pocketsync-bench-sync-'));
  const server = await createServer({ dataDir: dir, adminKey: 'k', log: null });
  try {
    const project = await server.store.createProject({ id: 'p', secret: 's'.repeat(32) });
    // Warm-up (JIT, statement caches), not measured.
    if (!options.small) {
      await bulk(server, project, sizes.rows);
      await single(server, project, 20);
    }
    const bulkRuns = await alternate(sizes.repetitions.bulk, () => bulk(server, project, sizes.rows), () => relayBulk(sizes.rows));
    const singleRuns = await alternate(sizes.repetitions.single, () => single(server, project, sizes.writes), () => relaySingle(sizes.writes));
    const catchUpRuns = await alternate(
      sizes.repetitions.catchUp,
      () => catchUp(server, project, sizes),
      async () => ({ ms: await relayCatchUp(sizes.rows), rowsSent: sizes.rows }),
    );
    const p = (runs: number[][], q: number) => median(runs.map((ms) => percentile(ms, q)));
    const catchUpMs = median(catchUpRuns.ours.map((r) => r.ms));
    const rowsSent = Math.max(...catchUpRuns.ours.map((r) => r.rowsSent));
    const k = (n: number) => n.toLocaleString('en');
    const metrics: Metric[] = [
      metric(`a-to-b-${sizes.rows / 1000}k-ms`, median(bulkRuns.ours), median(bulkRuns.limit), 'ms', '≤ 300'),
      metric('single-write-p50-ms', p(singleRuns.ours, 50), p(singleRuns.limit, 50), 'ms', '≤ 5'),
      metric('single-write-p99-ms', p(singleRuns.ours, 99), p(singleRuns.limit, 99), 'ms', '≤ 20'),
      metric(`catchup-${sizes.changes / 1000}k-ms`, catchUpMs, median(catchUpRuns.limit.map((r) => r.ms)), 'ms', '≤ 1,000'),
      metric('catchup-rows-sent', rowsSent, sizes.rows, 'rows', `≤ ${k(sizes.rows)}`),
    ];
    report(options.small ? 'sync-small' : 'sync', metrics);
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
