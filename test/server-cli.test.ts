/**
 * `npm start`'s server: the CLI in dev mode serving a static app. It prints where the app is and how
 * to stop, creates its data directory and the demo project at the first start, keeps both at the
 * next, prints a generated admin key only once, and stops cleanly on SIGTERM.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { formatClock } from '../worker/hlc.js';
import { waitFor } from './helpers/instance.js';

const root = mkdtempSync(join(tmpdir(), 'pocketsync-cli-'));
const dataDir = join(root, 'data');
const staticDir = join(root, 'app');
const children: ChildProcess[] = [];
afterAll(() => {
  for (const child of children) child.kill('SIGKILL');
  rmSync(root, { recursive: true, force: true });
});

interface Started {
  readonly child: ChildProcess;
  readonly url: string;
  readonly output: () => string;
}

async function start(): Promise<Started> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'server/cli.ts', '--dev', '--static', staticDir, '--port', '0', '--data-dir', dataDir], {
    stdio: ['ignore', 'pipe', 'inherit'],
    // An empty variable counts as unset: the key is generated at the first start.
    env: { ...process.env, POCKETSYNC_ADMIN_KEY: '' },
  });
  children.push(child);
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  await waitFor(() => output.includes('Ctrl+C'), 20_000, 'the server to print how to stop');
  const url = /Demo: (http:\/\/localhost:\d+\/)/.exec(output)?.[1];
  if (!url) throw new Error(`no demo URL in:\n${output}`);
  return { child, url: url.replace('localhost', '127.0.0.1'), output: () => output };
}

async function stop(server: Started): Promise<number | null> {
  const exited = new Promise<number | null>((resolve) => server.child.once('exit', resolve));
  server.child.kill('SIGTERM');
  return exited;
}

async function token(url: string, user: string): Promise<string> {
  const res = await fetch(`${url}v1/projects/demo/dev/token`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ user }) });
  expect(res.status).toBe(200);
  return ((await res.json()) as { token: string }).token;
}

it('serves the app, prints its URL, and keeps its data directory across restarts', async () => {
  mkdirSync(staticDir);
  writeFileSync(join(staticDir, 'index.html'), '<!doctype html><title>the app</title>');
  expect(existsSync(dataDir)).toBe(false);

  let server = await start();
  expect(existsSync(dataDir)).toBe(true);
  expect(server.output()).toMatch(/Admin key \(shown once; kept in .*admin-key\): [0-9a-f]{48}/);
  expect(server.output()).toContain('dev mode');
  expect(await (await fetch(server.url)).text()).toContain('<title>the app</title>');

  // A change pushed in the first run…
  const ana = await token(server.url, 'ana');
  const pushed = await fetch(`${server.url}v1/projects/demo/push`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${ana}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ deviceId: 'laptop', changes: [{ id: 'c1', table: 'todos', row: 'r1', op: 'insert', clock: formatClock({ wall: 1_000, counter: 0, deviceId: 'laptop' }), values: { title: 'kept' } }] }),
  });
  expect(pushed.status).toBe(200);
  expect(await stop(server)).toBe(0);

  // …is there in the second, which reuses the directory, the project and the admin key.
  server = await start();
  expect(server.output()).not.toMatch(/admin key/i);
  const pulled = await fetch(`${server.url}v1/projects/demo/pull?cursor=0`, { headers: { Authorization: `Bearer ${await token(server.url, 'ana')}` } });
  const body = (await pulled.json()) as { changes: Array<{ row: string; values?: Record<string, unknown> }> };
  expect(body.changes.map((c) => [c.row, c.values?.title])).toEqual([['r1', 'kept']]);
  expect(await stop(server)).toBe(0);
});

/** Runs the CLI to its end (for flags that stop it at once). */
function run(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'server/cli.ts', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  children.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, stdout, stderr })));
}

it('--help lists every flag with its environment variable and its default', async () => {
  const { code, stdout } = await run(['--help']);
  expect(code).toBe(0);
  const flags = [...stdout.matchAll(/^ {2}--([a-z-]+)/gm)].map((m) => m[1]);
  expect(flags).toEqual(expect.arrayContaining(['port', 'host', 'data-dir', 'admin-key', 'cors-origin', 'dev', 'dev-project', 'static', 'hello-timeout', 'max-token-lifetime', 'compact-every', 'help']));
  // Each flag's line is followed by its variable and default.
  for (const flag of flags.filter((f) => f !== 'help')) {
    const entry = new RegExp(`^ {2}--${flag}\\b.*\\n {38}(\\S+); default (.+)$`, 'm').exec(stdout);
    expect(entry, `--${flag} has a variable and a default`).not.toBeNull();
  }
  expect(stdout).toMatch(/--port N .*\n +PORT; default 8787/);
  expect(stdout).toMatch(/--cors-origin LIST .*\n +POCKETSYNC_CORS_ORIGIN; default none/);
  expect(stdout).toMatch(/--hello-timeout D .*\n +POCKETSYNC_HELLO_TIMEOUT; default 10s/);
});

it.each([
  [['--bogus'], /^pocketsync-server: Unknown option '--bogus' \(see --help\)\n$/],
  [['stray'], /^pocketsync-server: Unexpected argument 'stray' \(see --help\)\n$/],
  [['--port', 'eighty'], /^pocketsync-server: --port must be a whole number from 0 to 65535, not "eighty" \(see --help\)\n$/],
  [['--hello-timeout', 'soon'], /^pocketsync-server: --hello-timeout: .+ \(see --help\)\n$/],
  [['--max-connections-per-user', '0'], /^pocketsync-server: --max-connections-per-user must be a whole number of at least 1, not "0" \(see --help\)\n$/],
  [['--cors-origin', 'app.example.com/path'], /^pocketsync-server: --cors-origin takes origins like .+ \(see --help\)\n$/],
  [['--dev', '--dev-project', 'no spaces'], /^pocketsync-server: --dev-project must be a project id .+ \(see --help\)\n$/],
  [['--store', 'mysql://root@localhost/db'], /^pocketsync-server: --store takes a postgres:\/\/ URL, not "mysql:\/\/root@localhost\/db" \(see --help\)\n$/],
])('%j is one clear line on stderr and exit code 2', async (args, message) => {
  const { code, stdout, stderr } = await run(args, { POCKETSYNC_DATA_DIR: join(root, 'unused') });
  expect(stderr).toMatch(message);
  expect(code).toBe(2);
  expect(stdout).toBe('');
  expect(existsSync(join(root, 'unused'))).toBe(false);
});

it('a bad value in an environment variable is refused the same way', async () => {
  const { code, stderr } = await run([], { PORT: '99999', POCKETSYNC_DATA_DIR: join(root, 'unused') });
  expect(stderr).toMatch(/^pocketsync-server: --port must be a whole number from 0 to 65535, not "99999" \(see --help\)\n$/);
  expect(code).toBe(2);
});
