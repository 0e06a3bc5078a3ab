/**
 * The operators' console (issue: console), on the real server:
 * - live view cost: one device pushes batches that N other devices of its user receive, with the
 *   console's live view closed, and open (S overview pages: each an event stream of the project,
 *   and a stats read after every second that had changes, as console/pages/overview.tsx does).
 *   Rounds alternate closed / open; the ratio is open over closed (target ≥ 0.9).
 * - overview: the server time of what the overview page reads (the project's stats, the last 24
 *   hours' activity) and of the users page's first page, for a project of D devices and C logged
 *   changes (10,000 and 1,000,000 at full size; target ≤ 300 ms).
 * - size: the console's JavaScript and CSS as the server ships them (console/vite.config.ts,
 *   minified), gzipped at level 9.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'vite';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type WebSocket from 'ws';
import { hello, waitAll } from './sockets.js';
import type { ClientChange } from '../lib/protocol/change.js';
import { mintUserToken } from '../server/auth.js';
import { createServer } from '../server/server.js';
import { SqliteStore } from '../server/store/sqlite-store.js';
import type { ActivitySample } from '../server/store/store.js';
import { formatClock } from '../worker/hlc.js';
import { median, percentile } from './stats.js';
import { report, type Metric } from './report.js';
import type { BenchOptions } from './run.js';

const ADMIN = 'console-bench-admin';
let n = 0;

function changes(count: number, device: string): ClientChange[] {
  return Array.from({ length: count }, () => {
    n++;
    return { id: `c${n}`, table: 'todos', row: `r${n}`, op: 'insert', clock: formatClock({ wall: 1_000_000 + n, counter: 0, deviceId: device }), values: { title: `todo ${n}`, done: 0 } };
  });
}

/** An overview page: the project's event stream, and its stats read after each busy second. */
async function openOverview(base: string, project: string): Promise<() => void> {
  const controller = new AbortController();
  const headers = { Authorization: `Bearer ${ADMIN}` };
  const response = await fetch(`${base}v1/admin/projects/${project}/live`, { headers, signal: controller.signal });
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  void (async () => {
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        const text = decoder.decode(value);
        if (/"changes":[1-9]/.test(text)) await (await fetch(`${base}v1/admin/projects/${project}`, { headers })).arrayBuffer();
      }
    } catch {
      // aborted
    }
  })();
  return () => controller.abort();
}

async function liveViewCost(dir: string, size: { receivers: number; pushes: number; pages: number; rounds: number }): Promise<{ closed: number[]; open: number[] }> {
  const server = await createServer({
    dataDir: join(dir, 'live'),
    adminKey: ADMIN,
    log: null,
    limits: { maxConnectionsPerUser: size.receivers + 2, hellosPerMinute: size.receivers + 2, requestsPerSecond: 100_000 },
  });
  try {
    const project = await server.store.createProject({ id: 'p', secret: 'z'.repeat(32) });
    const token = await mintUserToken(project, 'alice');
    const url = `${server.url.replace('http', 'ws')}v1/projects/p/sync`;
    const receivers: WebSocket[] = [];
    for (let i = 0; i < size.receivers; i++) receivers.push(await hello(url, token, `r${i}`));
    const writer = await hello(url, token, 'writer');
    /** Changes per second from the first push to the last receiver holding the last change. */
    const workload = async (): Promise<number> => {
      const start = performance.now();
      for (let i = 0; i < size.pushes; i++) {
        const push = { type: 'push', changes: changes(100, 'writer') };
        const last = push.changes.at(-1)!.row;
        const acked = waitAll([writer], (d) => d.startsWith('{"type":"ack"'));
        const delivered = waitAll(receivers, (d) => d.includes(`"row":"${last}"`));
        writer.send(JSON.stringify(push));
        await Promise.all([acked, delivered]);
      }
      return (size.pushes * 100 * 1000) / (performance.now() - start);
    };
    await workload(); // warm-up
    const closed: number[] = [];
    const open: number[] = [];
    const withPages = async () => {
      const pages = await Promise.all(Array.from({ length: size.pages }, () => openOverview(server.url, 'p')));
      open.push(await workload());
      for (const close of pages) close();
    };
    // Which goes first alternates: a round's second run meets a warmer process and a larger store.
    for (let round = 0; round < size.rounds * 2; round++) {
      if (round % 2 === 0) {
        closed.push(await workload());
        await withPages();
      } else {
        await withPages();
        closed.push(await workload());
      }
    }
    for (const socket of [...receivers, writer]) socket.terminate();
    return { closed, open };
  } finally {
    await server.close();
  }
}

async function overview(dir: string, size: { devices: number; changes: number; reads: number }): Promise<{ overview: number[]; users: number[]; list: number[] }> {
  const file = join(dir, 'overview.db');
  const store = new SqliteStore(file);
  await store.createProject({ id: 'big', secret: 'b'.repeat(32) });
  // Devices of users of ten devices each, every one with a reported status.
  for (let i = 0; i < size.devices; i++) {
    await store.touchDevice({ projectId: 'big', userId: `user-${Math.floor(i / 10)}`, deviceId: `device-${i}`, cursor: i, status: { pending: i % 7, library: '0.1.0', protocolVersion: 2 } });
  }
  // The change log: pushes of 500 spread over those devices.
  for (let done = 0; done < size.changes; done += 500) {
    const device = Math.floor((done / 500) % size.devices);
    await store.push({ projectId: 'big', userId: `user-${Math.floor(device / 10)}`, deviceId: `device-${device}`, deviceCursor: 0, changes: changes(Math.min(500, size.changes - done), `device-${device}`) });
  }
  // A week of minutes, as the server would have counted them.
  const now = Math.floor(Date.now() / 60_000) * 60_000;
  const week: ActivitySample[] = Array.from({ length: 7 * 24 * 60 }, (_, i) => ({
    projectId: 'big', minute: now - i * 60_000, pushes: 10, changes: 500, applied: 490, conflicts: 3, rejected: 1, catchUpRows: 50, connections: 40,
  }));
  await store.addActivity(week);
  await store.close();

  const server = await createServer({ dataDir: join(dir, 'unused'), store: new SqliteStore(file), adminKey: ADMIN, log: null });
  const headers = { Authorization: `Bearer ${ADMIN}` };
  const get = async (path: string): Promise<number> => {
    const start = performance.now();
    const response = await fetch(`${server.url}${path}`, { headers });
    if (!response.ok) throw new Error(`${path}: ${response.status} ${await response.text()}`);
    await response.arrayBuffer();
    return performance.now() - start;
  };
  const times = { overview: [] as number[], users: [] as number[], list: [] as number[] };
  try {
    for (let i = 0; i < size.reads + 2; i++) {
      // What the overview page reads when it opens: the stats, then the chart's 24 hours.
      const overviewMs = (await get('v1/admin/projects/big')) + (await get('v1/admin/projects/big/activity?range=24h'));
      const usersMs = await get('v1/admin/projects/big/users?limit=50');
      const listMs = await get('v1/admin/projects');
      if (i < 2) continue; // warm-up
      times.overview.push(overviewMs);
      times.users.push(usersMs);
      times.list.push(listMs);
    }
  } finally {
    await server.close();
    await server.store.close();
  }
  return times;
}

/** The console's build, gzipped: JavaScript and CSS bytes. */
async function consoleSize(dir: string): Promise<{ js: number; css: number }> {
  const outDir = join(dir, 'console-ui');
  await build({ configFile: fileURLToPath(new URL('../console/vite.config.ts', import.meta.url)), logLevel: 'warn', build: { outDir, emptyOutDir: true } });
  const total = { js: 0, css: 0 };
  for (const name of readdirSync(join(outDir, 'assets'))) {
    const bytes = gzipSync(readFileSync(join(outDir, 'assets', name)), { level: 9 }).length;
    if (name.endsWith('.js')) total.js += bytes;
    else if (name.endsWith('.css')) total.css += bytes;
  }
  return total;
}

export async function run(options: BenchOptions): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'pocketsync-bench-console-'));
  try {
    const live = await liveViewCost(dir, options.small ? { receivers: 5, pushes: 10, pages: 2, rounds: 1 } : { receivers: 50, pushes: 60, pages: 3, rounds: 5 });
    const big = options.small ? { devices: 1000, changes: 20_000, reads: 5 } : { devices: 10_000, changes: 1_000_000, reads: 20 };
    const read = await overview(dir, big);
    const size = await consoleSize(dir);
    const closed = median(live.closed);
    const open = median(live.open);
    // Each round's open run against its closed run beside it in time: the machine's drift between
    // rounds (this one's speed moves by a fifth from minute to minute) cancels out.
    const ratios = live.open.map((rate, i) => rate / live.closed[i]!);
    console.log(`live view: closed ${live.closed.map(Math.round).join(', ')}; open ${live.open.map(Math.round).join(', ')} changes/s`);
    const metrics: Metric[] = [
      { metric: 'live-view-closed-changes-per-s', value: closed, unit: 'changes/s' },
      { metric: 'live-view-open-changes-per-s', value: open, unit: 'changes/s', baseline: closed, ratio: median(ratios), target: 'ratio ≥ 0.9 (median of rounds)' },
      { metric: `overview-ms-p50 (${big.devices} devices, ${big.changes} changes)`, value: median(read.overview), unit: 'ms', target: '≤ 300' },
      { metric: 'overview-ms-p99', value: percentile(read.overview, 99), unit: 'ms' },
      { metric: 'users-page-ms-p50', value: median(read.users), unit: 'ms' },
      { metric: 'projects-list-ms-p50', value: median(read.list), unit: 'ms' },
      { metric: 'console-js-gzip', value: size.js / 1024, unit: 'KiB' },
      { metric: 'console-css-gzip', value: size.css / 1024, unit: 'KiB' },
    ];
    report(options.small ? 'console-small' : 'console', metrics);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
