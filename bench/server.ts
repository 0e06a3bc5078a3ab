/**
 * Sync-server benchmarks (issue: server): ingest into the embedded store, and fan-out to many
 * sockets on one process, each beside its limit measured in the same run:
 * - ingest: pushes of 500 changes through store.push (merge, change log, row state, seq), against
 *   plain inserts of the same rows into a one-table better-sqlite3 database in the same mode
 *   (WAL, synchronous=FULL, one transaction per 500).
 * - fan-out: N sockets of one user; one more device pushes one change at a time; the time from
 *   sending the push to the last socket receiving it. Against a plain ws relay that broadcasts a
 *   pre-serialized message of the same size to N sockets.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type WebSocket from 'ws';
import { WebSocketServer } from 'ws';
import { connect, hello, waitAll } from './sockets.js';
import type { ClientChange } from '../lib/protocol/change.js';
import { mintUserToken } from '../server/auth.js';
import { createServer } from '../server/server.js';
import { SqliteStore } from '../server/store/sqlite-store.js';
import { formatClock } from '../worker/hlc.js';
import { median, percentile } from './stats.js';
import { report, type Metric } from './report.js';
import type { BenchOptions } from './run.js';

let n = 0;
function changes(count: number, device = 'bench'): ClientChange[] {
  return Array.from({ length: count }, () => {
    n++;
    return { id: `c${n}`, table: 'todos', row: `r${n}`, op: 'insert', clock: formatClock({ wall: 1_000_000 + n, counter: 0, deviceId: device }), values: { title: `todo ${n}`, done: 0 } };
  });
}

async function ingest(dir: string, batches: number): Promise<{ store: number; plain: number }> {
  const store = new SqliteStore(join(dir, 'ingest.db'));
  await store.createProject({ id: 'p', secret: 'x'.repeat(32) });
  const db = new Database(join(dir, 'plain.db'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec('CREATE TABLE todos (id TEXT PRIMARY KEY, title TEXT, done INTEGER)');
  const insert = db.prepare('INSERT INTO todos VALUES (?, ?, ?)');
  const plainBatch = db.transaction((rows: ClientChange[]) => {
    for (const row of rows) insert.run(row.row, JSON.stringify(row.values?.title), 0);
  });
  const storeRates: number[] = [];
  const plainRates: number[] = [];
  // Three rounds after a warm-up, alternating which goes first; the median rate of each is reported.
  for (let round = 0; round < 4; round++) {
    const input = Array.from({ length: round === 0 ? 5 : batches }, () => changes(500));
    const timed = async (work: () => Promise<void> | void): Promise<number> => {
      const start = performance.now();
      await work();
      return (input.length * 500 * 1000) / (performance.now() - start);
    };
    const pushAll = async () => {
      for (const batch of input) await store.push({ projectId: 'p', userId: 'u', deviceId: 'd', deviceCursor: 0, changes: batch });
    };
    const insertAll = () => {
      for (const rows of input) plainBatch(rows);
    };
    let storeRate: number;
    let plainRate: number;
    if (round % 2 === 0) {
      storeRate = await timed(pushAll);
      plainRate = await timed(insertAll);
    } else {
      plainRate = await timed(insertAll);
      storeRate = await timed(pushAll);
    }
    if (round > 0) {
      storeRates.push(storeRate);
      plainRates.push(plainRate);
    }
  }
  await store.close();
  db.close();
  return { store: median(storeRates), plain: median(plainRates) };
}

async function fanout(dir: string, sockets: number, rounds: number): Promise<{ ms: number[]; relayMs: number[]; connected: number }> {
  // One user's devices, all from 127.0.0.1: above the per-user and per-address caps, which this
  // measures nothing of (test/server-limits.test.ts does).
  const server = await createServer({
    dataDir: join(dir, 'fanout'),
    adminKey: 'k',
    log: null,
    limits: { maxConnectionsPerUser: sockets + 1, maxConnectionsPerAddress: sockets + 1, hellosPerMinute: sockets + 1 },
  });
  const project = await server.store.createProject({ id: 'p', secret: 'y'.repeat(32) });
  const token = await mintUserToken(project, 'alice');
  const url = `${server.url.replace('http', 'ws')}v1/projects/p/sync`;
  const receivers: WebSocket[] = [];
  for (let i = 0; i < sockets; i++) receivers.push(await hello(url, token, `r${i}`));
  const writer = await hello(url, token, 'writer');
  const connected = server.hub.connections;
  const ms: number[] = [];
  let sample = '';
  for (let round = 0; round < rounds; round++) {
    const push = { type: 'push', changes: changes(1, 'writer') };
    const id = push.changes[0]!.row;
    const delivered = waitAll(receivers, (d) => d.includes(`"row":"${id}"`));
    const start = performance.now();
    writer.send(JSON.stringify(push));
    await delivered;
    ms.push(performance.now() - start);
    if (!sample) sample = JSON.stringify({ type: 'changes', changes: [{ seq: 1, table: 'todos', row: id, deleted: false, values: push.changes[0]!.values, clocks: { title: push.changes[0]!.clock, done: push.changes[0]!.clock } }], cursor: 1, hasMore: false, remaining: 0 });
  }
  for (const socket of [...receivers, writer]) socket.terminate();
  await server.close();

  // The limit: a plain ws relay broadcasting a pre-serialized frame of the same size.
  const relay = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((resolve) => relay.once('listening', () => resolve()));
  relay.on('connection', (socket) => {
    socket.on('message', (data) => {
      for (const client of relay.clients) if (client !== socket) client.send(data);
    });
  });
  const relayUrl = `ws://127.0.0.1:${(relay.address() as { port: number }).port}`;
  const relayReceivers = await Promise.all(Array.from({ length: sockets }, () => connect(relayUrl)));
  const relayWriter = await connect(relayUrl);
  const relayMs: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const frame = sample.replace('"row":"', `"row":"x${round}`);
    const delivered = waitAll(relayReceivers, (d) => d.includes(`"row":"x${round}`));
    const start = performance.now();
    relayWriter.send(frame);
    await delivered;
    relayMs.push(performance.now() - start);
  }
  for (const socket of [...relayReceivers, relayWriter]) socket.terminate();
  await new Promise<void>((resolve) => relay.close(() => resolve()));
  return { ms, relayMs, connected };
}

export async function run(options: BenchOptions): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'pocketsync-bench-'));
  try {
    const size = options.small ? { batches: 4, sockets: 20, rounds: 10 } : { batches: 40, sockets: 1000, rounds: 50 };
    const ingestRates = await ingest(dir, size.batches);
    const fan = await fanout(dir, size.sockets, size.rounds);
    const p99 = percentile(fan.ms, 99);
    const relayP99 = percentile(fan.relayMs, 99);
    const deliveries = (size.sockets * 1000) / median(fan.ms);
    const relayDeliveries = (size.sockets * 1000) / median(fan.relayMs);
    const metrics: Metric[] = [
      { metric: 'ingest-changes-per-s', value: ingestRates.store, unit: 'changes/s', baseline: ingestRates.plain, ratio: ingestRates.store / ingestRates.plain, target: '≥ 50,000' },
      { metric: 'fanout-sockets', value: fan.connected - 1, unit: 'sockets', baseline: size.sockets, ratio: (fan.connected - 1) / size.sockets, target: '1,000, every change delivered' },
      { metric: 'fanout-deliveries-per-s', value: deliveries, unit: 'deliveries/s', baseline: relayDeliveries, ratio: deliveries / relayDeliveries },
      { metric: 'fanout-p99-ms', value: p99, unit: 'ms', baseline: relayP99, ratio: p99 / relayP99, target: '≤ 100' },
      { metric: 'fanout-p50-ms', value: median(fan.ms), unit: 'ms', baseline: median(fan.relayMs), ratio: median(fan.ms) / median(fan.relayMs) },
    ];
    report(options.small ? 'server-small' : 'server', metrics);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
