#!/usr/bin/env node
/**
 * pocketsync-server: the sync server with its embedded store. `--help` lists every flag.
 *
 * Each flag has an environment variable (PORT, HOST, and POCKETSYNC_ + the flag in capitals with
 * _ for -, e.g. POCKETSYNC_HELLO_TIMEOUT); flags win, and an empty variable counts as unset. An
 * unknown flag or a bad value is one line on stderr and exit code 2. Without an admin key, one is
 * generated at the first start, printed once, and kept in the data directory (admin-key, mode 600).
 * In dev mode the dev project (`demo` unless --dev-project names another) is created if missing,
 * the server mints user tokens for any name in that project only, and pages on localhost may call
 * it from any port (CORS): never use it in production.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import * as v from 'valibot';
import { randomHex } from '../worker/random.js';
import { IdSchema } from '../lib/protocol/values.js';
import { DEFAULT_LIMITS, DEFAULT_RETENTION, parseDuration, type Retention, type ServerLimits } from './limits.js';
import { createServer } from './server.js';
import { PostgresStore } from './store/postgres-store.js';

/** The dev project the demo uses, with the demo's shared table. */
export const DEMO_PROJECT = 'demo';

/** Every flag: its value's name in --help (none for a switch), its variable, default and meaning. */
interface Flag {
  readonly value?: string;
  readonly env?: string;
  readonly fallback: string;
  readonly help: string;
}

const BASIC: Record<string, Flag> = {
  port: { value: 'N', env: 'PORT', fallback: '8787', help: 'listen on port N (0 picks a free one)' },
  host: { value: 'HOST', env: 'HOST', fallback: '127.0.0.1', help: 'listen on this address (0.0.0.0 for every interface)' },
  'data-dir': { value: 'DIR', fallback: '.pocketsync', help: 'where the embedded store keeps its file and the admin key' },
  store: { value: 'URL', env: 'POCKETSYNC_DATABASE_URL', fallback: 'the embedded store in DIR', help: 'keep the data in PostgreSQL instead: postgres://user@host:5432/db' },
  'admin-key': { value: 'KEY', fallback: 'generated at the first start, kept in DIR', help: 'the key of the admin routes' },
  'cors-origin': { value: 'LIST', fallback: 'none', help: 'comma-separated origins whose pages may call the HTTP API (https://app.example.com; * for any)' },
  dev: { fallback: 'off', help: 'dev mode: mints user tokens for the dev project, allows localhost origins (POCKETSYNC_DEV=1)' },
  'dev-project': { value: 'ID', fallback: DEMO_PROJECT, help: 'the project dev mode creates and mints tokens for' },
  static: { value: 'DIR', fallback: 'none', help: 'serve DIR at / (an app, the demo)' },
};

type Kind = 'count' | 'duration';
/** The tunable limits: flag → where it goes and what it is. */
const TUNABLES: Record<string, { kind: Kind; limit?: keyof ServerLimits; retention?: keyof Retention; help: string }> = {
  'hello-timeout': { kind: 'duration', limit: 'helloTimeoutMs', help: 'close a socket that has not said hello by then' },
  'max-connections-per-address': { kind: 'count', limit: 'maxConnectionsPerAddress', help: 'open sockets from one client address' },
  'max-connections-per-user': { kind: 'count', limit: 'maxConnectionsPerUser', help: 'open sockets of one user in a project' },
  'hellos-per-minute': { kind: 'count', limit: 'hellosPerMinute', help: 'hellos one user may say per minute' },
  'requests-per-second': { kind: 'count', limit: 'requestsPerSecond', help: 'pushes, pulls and frames of one user per second' },
  'header-timeout': { kind: 'duration', limit: 'headersTimeoutMs', help: "an HTTP request's headers must arrive within this" },
  'request-timeout': { kind: 'duration', limit: 'requestTimeoutMs', help: 'a whole HTTP request must arrive within this' },
  'max-token-lifetime': { kind: 'duration', limit: 'maxTokenLifetimeSeconds', help: 'refuse tokens that expire later than this from now' },
  'admin-key-failures-per-minute': { kind: 'count', limit: 'adminKeyFailuresPerMinute', help: 'wrong admin keys one address may try per minute' },
  'change-retention': { kind: 'duration', retention: 'changeLogMs', help: 'keep change-log entries (duplicate detection) this long' },
  'conflict-retention': { kind: 'duration', retention: 'conflictsMs', help: 'keep recorded conflicts this long' },
  'tombstone-retention': { kind: 'duration', retention: 'tombstonesMs', help: "keep deleted rows' tombstones this long; older cursors re-sync" },
  'compact-every': { kind: 'duration', retention: 'compactEveryMs', help: 'how often compaction runs' },
};

const values = parseFlags();

if (values.help) {
  console.log(helpText());
  process.exit(0);
}

const dataDir = resolve(setting('data-dir') ?? '.pocketsync');
const port = Number(setting('port') ?? 8787);
if (!Number.isInteger(port) || port < 0 || port > 65535) usage(`--port must be a whole number from 0 to 65535, not ${JSON.stringify(setting('port'))}`);
const host = setting('host') ?? '127.0.0.1';
const dev = values.dev === true || process.env.POCKETSYNC_DEV === '1';
const devProject = setting('dev-project') ?? DEMO_PROJECT;
if (!v.is(IdSchema, devProject)) usage(`--dev-project must be a project id (letters, digits, _ and -), not ${JSON.stringify(devProject)}`);
const corsOrigins = (setting('cors-origin') ?? '').split(',').map((origin) => origin.trim()).filter((origin) => origin !== '');
for (const origin of corsOrigins) {
  if (origin !== '*' && !/^https?:\/\/[^/\s]+$/.test(origin)) usage(`--cors-origin takes origins like https://app.example.com (no path), not ${JSON.stringify(origin)}`);
}

const storeUrl = setting('store');
if (storeUrl !== undefined && !/^postgres(ql)?:\/\//.test(storeUrl)) usage(`--store takes a postgres:// URL, not ${JSON.stringify(storeUrl)}`);

const limits: Record<string, number> = {};
const retention: Record<string, number> = {};
for (const [flag, tunable] of Object.entries(TUNABLES)) {
  const text = setting(flag);
  if (text === undefined) continue;
  let value = Number.NaN;
  try {
    value = tunable.kind === 'count' ? Number(text) : parseDuration(text);
  } catch (error) {
    usage(`--${flag}: ${error instanceof Error ? error.message : String(error)}`);
  }
  if (!Number.isInteger(value) || value < 1) usage(`--${flag} must be a whole number of at least 1, not ${JSON.stringify(text)}`);
  if (tunable.limit) limits[tunable.limit] = tunable.limit === 'maxTokenLifetimeSeconds' ? Math.ceil(value / 1000) : value;
  else if (tunable.retention) retention[tunable.retention] = value;
}

mkdirSync(dataDir, { recursive: true });
const adminKey = setting('admin-key') ?? storedAdminKey(dataDir);
const staticDir = setting('static');

const store = storeUrl === undefined ? undefined : new PostgresStore({ connectionString: storeUrl });
try {
  await store?.ready();
} catch (error) {
  console.error(`pocketsync-server: PostgreSQL at ${storeUrl?.replace(/\/\/[^@]*@/, '//…@')} could not be used: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
}
const server = await createServer({
  dataDir,
  ...(store ? { store } : {}),
  port,
  host,
  adminKey,
  ...(dev ? { devProject } : {}),
  cors: { origins: corsOrigins, localhost: dev },
  limits,
  retention,
  ...(staticDir ? { staticDir: resolve(staticDir) } : {}),
});
if (dev && !(await server.store.getProject(devProject))) {
  await server.store.createProject({ id: devProject, secret: randomHex(32), ...(devProject === DEMO_PROJECT ? { sharedTables: ['shared_todos'] } : {}) });
}
console.log(`PocketSync server: ${server.url} (data in ${store ? 'PostgreSQL' : dataDir}${dev ? `, dev mode: project ${devProject}` : ''})`);
if (staticDir) console.log(`Demo: ${server.url}`);
if (server.consoleUrl) console.log(`Console: ${server.consoleUrl} (sign in with the admin key${setting('admin-key') ? ' you gave' : `, kept in ${join(dataDir, 'admin-key')}`})`);
console.log('Press Ctrl+C to stop.');

let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    console.log(`${signal}: stopping`);
    void server.close().then(() => store?.close()).then(() => process.exit(0));
  });
}

/** The command line, strictly: an unknown flag, a missing value or a stray argument ends the run. */
function parseFlags(): Record<string, string | boolean | undefined> {
  try {
    return parseArgs({
      options: {
        help: { type: 'boolean', short: 'h' },
        dev: { type: 'boolean' },
        ...Object.fromEntries(
          [...Object.keys(BASIC), ...Object.keys(TUNABLES)].filter((flag) => flag !== 'dev').map((flag) => [flag, { type: 'string' as const }]),
        ),
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (error) {
    // parseArgs says e.g. "Unknown option '--bogus'. To specify a positional argument starting
    // with a '-', place it at the end of the command after '--', as in '-- \"--bogus\"": the
    // first sentence is the news.
    return usage((error instanceof Error ? error.message : String(error)).split('. ')[0]!.replace(/\.$/, ''));
  }
}

/** A flag's value, else its environment variable's; an empty one counts as unset. */
function setting(flag: string): string | undefined {
  const given = values[flag];
  if (typeof given === 'string' && given !== '') return given;
  const fromEnv = process.env[BASIC[flag]?.env ?? envName(flag)];
  return fromEnv === undefined || fromEnv === '' ? undefined : fromEnv;
}

/** One line on stderr and exit code 2: what a script calling us can act on. */
function usage(message: string): never {
  console.error(`pocketsync-server: ${message} (see --help)`);
  process.exit(2);
}

function helpText(): string {
  const row = (flag: string, value: string | undefined, help: string, env: string, fallback: string) =>
    `  --${`${flag}${value ? ` ${value}` : ''}`.padEnd(34)}${help}\n${' '.repeat(38)}${env}; default ${fallback}`;
  const shown = (ms: number, kind: Kind, seconds: boolean) => (kind === 'count' ? String(ms) : formatDuration(seconds ? ms * 1000 : ms));
  return [
    'pocketsync-server [flags]: the PocketSync sync server with its embedded store',
    '',
    'Every flag can be set by its environment variable instead; a flag wins over its variable.',
    '',
    ...Object.entries(BASIC).map(([flag, f]) => row(flag, f.value, f.help, flag === 'dev' ? 'POCKETSYNC_DEV=1' : (f.env ?? envName(flag)), f.fallback)),
    '  --help, -h                          this text',
    '',
    'Limits and retention (durations: 250ms, 10s, 5m, 12h, 30d):',
    ...Object.entries(TUNABLES).map(([flag, t]) => {
      const fallback = t.limit ? DEFAULT_LIMITS[t.limit] : DEFAULT_RETENTION[t.retention as keyof Retention];
      return row(flag, t.kind === 'count' ? 'N' : 'D', t.help, envName(flag), shown(fallback, t.kind, t.limit === 'maxTokenLifetimeSeconds'));
    }),
  ].join('\n');
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
