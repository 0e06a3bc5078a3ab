#!/usr/bin/env node
/**
 * pocketsync-server: the sync server with its embedded store. `--help` lists every flag.
 *
 * Each flag has an environment variable (PORT, HOST, and POCKETSYNC_ + the flag in capitals with
 * _ for -, e.g. POCKETSYNC_HELLO_TIMEOUT); flags win. Without an admin key, one is generated at the
 * first start, printed once, and kept in the data directory (admin-key, mode 600). In dev mode a
 * project named "demo" is created if missing, and the server mints user tokens for any name in
 * that project only (never use it in production).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { randomHex } from '../worker/random.js';
import { DEFAULT_LIMITS, DEFAULT_RETENTION, parseDuration, type Retention, type ServerLimits } from './limits.js';
import { createServer } from './server.js';

export const DEMO_PROJECT = 'demo';

type Kind = 'count' | 'duration';
/** The tunable limits: flag → where it goes, what it is, and what it says in --help. */
const TUNABLES: Record<string, { kind: Kind; limit?: keyof ServerLimits; retention?: keyof Retention; help: string }> = {
  'hello-timeout': { kind: 'duration', limit: 'helloTimeoutMs', help: 'close a socket that has not said hello by then' },
  'max-connections-per-address': { kind: 'count', limit: 'maxConnectionsPerAddress', help: 'open sockets from one client address' },
  'max-connections-per-user': { kind: 'count', limit: 'maxConnectionsPerUser', help: 'open sockets of one user in a project' },
  'hellos-per-minute': { kind: 'count', limit: 'hellosPerMinute', help: 'hellos one user may say per minute' },
  'requests-per-second': { kind: 'count', limit: 'requestsPerSecond', help: 'pushes, pulls and frames of one user per second' },
  'header-timeout': { kind: 'duration', limit: 'headersTimeoutMs', help: "an HTTP request's headers must arrive within this" },
  'request-timeout': { kind: 'duration', limit: 'requestTimeoutMs', help: 'a whole HTTP request must arrive within this' },
  'max-token-lifetime': { kind: 'duration', limit: 'maxTokenLifetimeSeconds', help: 'refuse tokens that expire later than this from now' },
  'change-retention': { kind: 'duration', retention: 'changeLogMs', help: 'keep change-log entries (duplicate detection) this long' },
  'conflict-retention': { kind: 'duration', retention: 'conflictsMs', help: 'keep recorded conflicts this long' },
  'tombstone-retention': { kind: 'duration', retention: 'tombstonesMs', help: "keep deleted rows' tombstones this long; older cursors re-sync" },
  'compact-every': { kind: 'duration', retention: 'compactEveryMs', help: 'how often compaction runs' },
};

const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    host: { type: 'string' },
    'data-dir': { type: 'string' },
    'admin-key': { type: 'string' },
    dev: { type: 'boolean' },
    static: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
    ...Object.fromEntries(Object.keys(TUNABLES).map((flag) => [flag, { type: 'string' as const }])),
  },
});

if (values.help) {
  const shown = (value: number, kind: Kind, seconds: boolean) => (kind === 'count' ? String(value) : formatDuration(seconds ? value * 1000 : value));
  const lines = [
    'pocketsync-server [flags]',
    '',
    '  --port N                 listen on N (PORT; default 8787; 0 picks a free one)',
    '  --host H                 listen on H (HOST; default 127.0.0.1)',
    '  --data-dir DIR           where the embedded store keeps its file (POCKETSYNC_DATA_DIR; default .pocketsync)',
    '  --admin-key KEY          the admin key (POCKETSYNC_ADMIN_KEY; generated and kept in DIR when absent)',
    '  --dev                    dev mode: a "demo" project, and tokens minted for it (POCKETSYNC_DEV=1)',
    '  --static DIR             serve DIR at / (the demo)',
    '',
    'Limits and retention (durations: 250ms, 10s, 5m, 12h, 30d):',
    ...Object.entries(TUNABLES).map(([flag, t]) => {
      const fallback = t.limit ? DEFAULT_LIMITS[t.limit] : DEFAULT_RETENTION[t.retention as keyof Retention];
      return `  --${`${flag} ${t.kind === 'count' ? 'N' : 'D'}`.padEnd(33)}${t.help} (${envName(flag)}; default ${shown(fallback, t.kind, t.limit === 'maxTokenLifetimeSeconds')})`;
    }),
  ];
  console.log(lines.join('\n'));
  process.exit(0);
}

const dataDir = resolve(values['data-dir'] ?? process.env.POCKETSYNC_DATA_DIR ?? '.pocketsync');
const port = Number(values.port ?? process.env.PORT ?? 8787);
const host = values.host ?? process.env.HOST ?? '127.0.0.1';
const dev = values.dev ?? process.env.POCKETSYNC_DEV === '1';
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`not a port: ${String(values.port ?? process.env.PORT)}`);
  process.exit(2);
}
const limits: Record<string, number> = {};
const retention: Record<string, number> = {};
for (const [flag, tunable] of Object.entries(TUNABLES)) {
  const text = (values as Record<string, string | boolean | undefined>)[flag] ?? process.env[envName(flag)];
  if (typeof text !== 'string' || text === '') continue;
  let value: number;
  try {
    value = tunable.kind === 'count' ? Number(text) : parseDuration(text);
    if (!Number.isInteger(value) || value < 1) throw new Error(`--${flag} must be a whole number of at least 1, not ${JSON.stringify(text)}`);
  } catch (error) {
    console.error(error instanceof Error ? error.message : String(error));
    process.exit(2);
  }
  if (tunable.limit) limits[tunable.limit] = tunable.limit === 'maxTokenLifetimeSeconds' ? Math.ceil(value / 1000) : value;
  else if (tunable.retention) retention[tunable.retention] = value;
}

mkdirSync(dataDir, { recursive: true });
// An empty key (an unset variable in a compose file, say) is no key: generate one.
const adminKey = values['admin-key'] || process.env.POCKETSYNC_ADMIN_KEY || storedAdminKey(dataDir);

const server = await createServer({
  dataDir,
  port,
  host,
  adminKey,
  ...(dev ? { devProject: DEMO_PROJECT } : {}),
  limits,
  retention,
  ...(values.static ? { staticDir: resolve(values.static) } : {}),
});
if (dev && !(await server.store.getProject(DEMO_PROJECT))) {
  await server.store.createProject({ id: DEMO_PROJECT, secret: randomHex(32), sharedTables: ['shared_todos'] });
}
console.log(`PocketSync server: ${server.url} (data in ${dataDir}${dev ? ', dev mode' : ''})`);
if (values.static) console.log(`Demo: ${server.url}`);
console.log('Press Ctrl+C to stop.');

let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    console.log(`${signal}: stopping`);
    void server.close().then(() => process.exit(0));
  });
}

function storedAdminKey(dir: string): string {
  const file = join(dir, 'admin-key');
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  const key = randomHex(24);
  writeFileSync(file, `${key}\n`, { mode: 0o600 });
  console.log(`Admin key (shown once; kept in ${file}): ${key}`);
  return key;
}

function envName(flag: string): string {
  return `POCKETSYNC_${flag.toUpperCase().replaceAll('-', '_')}`;
}

/** `ms` in the largest unit that holds it whole: 30d, 12h, 10s, 250ms. */
function formatDuration(ms: number): string {
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}
