/**
 * The package as a new user meets it. The packages are packed (`npm pack`, which builds them), a
 * fresh Vite + TypeScript app is written in a temporary folder from the getting-started guide's
 * own files (docs/getting-started.md, so the guide cannot drift from what works), the tarballs are
 * installed into it, it is type-checked under `strict` and built; the packed server is installed
 * on its own and started by its bin on plain Node; and two Chromium profiles of one user, on OPFS,
 * sync through it. Installing the browser package must compile no native module.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run, start, stop, titledBlocks } from './consumer/files.js';
import { haveBrowser, newDevice, useBrowser } from './helpers/browser.js';

useBrowser();

const repo = fileURLToPath(new URL('..', import.meta.url));
const rootManifest = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { devDependencies: Record<string, string> };
const work = mkdtempSync(join(tmpdir(), 'pocketsync-consumer-'));
const appDir = join(work, 'my-app');
const serverDir = join(work, 'server');
const children: ChildProcess[] = [];
const INSTALL = ['install', '--no-audit', '--no-fund', '--prefer-offline'];
const ADMIN_KEY = 'consumer-test-admin-key';
/** The app's own backend: a job on plain Node that writes a todo for a user through pocketsync/backend. */
const BACKEND_JOB = `import { createBackendClient } from 'pocketsync/backend';
const [serverUrl, serviceKey, user, title] = process.argv.slice(2);
const backend = createBackendClient({ serverUrl, projectId: 'demo', serviceKey });
const { results } = await backend.write(user, [{ table: 'todos', id: 'from-the-backend', operation: 'insert', values: { title, done: 0 } }]);
const { rows } = await backend.rows('todos', { user });
console.log(JSON.stringify({ outcomes: results.map((r) => r.outcome), titles: rows.map((r) => r.values.title) }));
`;

interface Packed {
  readonly name: string;
  readonly filename: string;
  readonly files: ReadonlyArray<{ path: string }>;
}
let packed: Packed[] = [];
let appInstall = '';
let appUrl = '';
let serverUrl = '';

/** Every file under `dir` (following no links), relative to it. */
function filesUnder(dir: string, prefix = ''): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path, `${prefix}${name}/`) : [`${prefix}${name}`];
  });
}

function write(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text);
}

beforeAll(async () => {
  if (!haveBrowser) return;
  // npm pack runs each package's prepack, which builds it from this checkout.
  const pack = await run('npm', ['pack', '--json', '-w', 'pocketsync', '-w', 'pocketsync-server', '--pack-destination', work], { cwd: repo });
  packed = JSON.parse(pack.output.slice(pack.output.indexOf('[\n  {'))) as Packed[];
  const tarball = (name: string): string => join(work, packed.find((p) => p.name === name)!.filename);

  // The app: the guide's files, a manifest with the tarball, and the TypeScript settings of Vite's
  // vanilla-ts template (strict).
  const guide = titledBlocks(join(repo, 'docs/getting-started.md'));
  for (const name of ['vite.config.ts', 'index.html', 'src/main.ts']) {
    const text = guide.get(name);
    if (!text) throw new Error(`docs/getting-started.md has no block titled ${name}`);
    write(join(appDir, name), text);
  }
  write(join(appDir, 'src/vite-env.d.ts'), '/// <reference types="vite/client" />\n');
  write(
    join(appDir, 'package.json'),
    JSON.stringify({
      name: 'my-app',
      private: true,
      type: 'module',
      scripts: { build: 'tsc && vite build' },
      dependencies: { pocketsync: `file:${tarball('pocketsync')}` },
      devDependencies: { typescript: rootManifest.devDependencies.typescript, vite: rootManifest.devDependencies.vite },
    }),
  );
  write(
    join(appDir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'ES2022',
        useDefineForClassFields: true,
        module: 'ESNext',
        lib: ['ES2022', 'DOM', 'DOM.Iterable'],
        skipLibCheck: false,
        moduleResolution: 'bundler',
        allowImportingTsExtensions: true,
        verbatimModuleSyntax: true,
        moduleDetection: 'force',
        noEmit: true,
        strict: true,
        noUnusedLocals: true,
        noUnusedParameters: true,
        noFallthroughCasesInSwitch: true,
        noUncheckedSideEffectImports: true,
      },
      include: ['src'],
    }),
  );
  appInstall = (await run('npm', INSTALL, { cwd: appDir })).output;

  // The server, installed on its own as `npx pocketsync-server` would, then started by its bin.
  write(join(serverDir, 'package.json'), JSON.stringify({ name: 'server', private: true, dependencies: { 'pocketsync-server': `file:${tarball('pocketsync-server')}` } }));
  await run('npm', INSTALL, { cwd: serverDir, timeoutMs: 300_000 });
  const server = await start(join(serverDir, 'node_modules/.bin/pocketsync-server'), ['--dev', '--port', '0', '--data-dir', join(serverDir, 'data'), '--admin-key', ADMIN_KEY], {
    cwd: serverDir,
    ready: /PocketSync server: (http:\/\/\S+?)\/? \(/,
  });
  children.push(server.child);
  serverUrl = server.match[1]!;

  await run('npm', ['run', 'build'], { cwd: appDir, env: { VITE_POCKETSYNC_URL: serverUrl } });
  const preview = await start(join(appDir, 'node_modules/.bin/vite'), ['preview', '--port', '0'], { cwd: appDir, ready: /Local:\s+(http:\/\/localhost:\d+\/)/ });
  children.push(preview.child);
  appUrl = preview.match[1]!;
}, 600_000);

afterAll(() => {
  for (const child of children) stop(child);
  rmSync(work, { recursive: true, force: true });
});

describe.skipIf(!haveBrowser)('a new user’s app, from the packed packages', () => {
  it('packs what an app needs: built entries for every export, sourcemaps with their sources, the licence', () => {
    const client = packed.find((p) => p.name === 'pocketsync')!;
    const paths = client.files.map((f) => f.path);
    expect(paths).toEqual(expect.arrayContaining(['LICENSE', 'README.md', 'package.json', 'dist/lib/index.js', 'dist/lib/index.d.ts', 'dist/worker/worker.js']));
    expect(paths.filter((p) => p.endsWith('.ts') && !p.endsWith('.d.ts'))).toEqual([]);
    expect(paths.some((p) => p.startsWith('dist/server'))).toBe(false);
    const installed = join(appDir, 'node_modules/pocketsync');
    const manifest = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8')) as { exports: Record<string, string | Record<string, string>>; repository: unknown; homepage: string; dependencies: Record<string, string> };
    expect(Object.keys(manifest.exports)).toEqual(['.', './worker', './react', './backend', './package.json']);
    for (const target of Object.values(manifest.exports).flatMap((t) => (typeof t === 'string' ? [t] : Object.values(t)))) {
      expect(existsSync(join(installed, target)), target).toBe(true);
    }
    expect(manifest.repository).toBeTruthy();
    expect(manifest.homepage).toMatch(/^https:/);
    for (const map of filesUnder(join(installed, 'dist')).filter((p) => p.endsWith('.js.map'))) {
      const { sources, sourcesContent } = JSON.parse(readFileSync(join(installed, 'dist', map), 'utf8')) as { sources: string[]; sourcesContent?: string[] };
      expect(sourcesContent?.length, map).toBe(sources.length);
    }
    const server = packed.find((p) => p.name === 'pocketsync-server')!;
    expect(server.files.map((f) => f.path)).toEqual(expect.arrayContaining(['LICENSE', 'dist/server/cli.js', 'dist/server/index.js']));
  });

  it('installs the browser package without compiling a native module or any server dependency', () => {
    // Nothing in the app's install ran an install script (what compiles a native module)…
    const lock = JSON.parse(readFileSync(join(appDir, 'package-lock.json'), 'utf8')) as { packages: Record<string, { hasInstallScript?: boolean; dependencies?: Record<string, string> }> };
    expect(Object.entries(lock.packages).filter(([, p]) => p.hasInstallScript).map(([path]) => path)).toEqual([]);
    expect(appInstall).not.toMatch(/gyp|prebuild/i);
    // …and pocketsync's own dependencies carry no native binary at all (Vite's tools do: prebuilt).
    const closure = new Set<string>();
    const visit = (name: string): void => {
      if (closure.has(name)) return;
      closure.add(name);
      for (const dep of Object.keys(lock.packages[`node_modules/${name}`]?.dependencies ?? {})) visit(dep);
    };
    visit('pocketsync');
    expect([...closure].sort()).toEqual(['@sqlite.org/sqlite-wasm', 'comlink', 'idb-keyval', 'pocketsync', 'valibot']);
    for (const name of closure) {
      const files = filesUnder(join(appDir, 'node_modules', name));
      expect(files.filter((p) => p.endsWith('.node') || p.endsWith('binding.gyp')), name).toEqual([]);
    }
    for (const serverOnly of ['better-sqlite3', 'hono', 'ws', '@hono/node-server', 'rate-limiter-flexible']) {
      expect(existsSync(join(appDir, 'node_modules', serverOnly)), serverOnly).toBe(false);
    }
  });

  it('runs the server’s createServer export on plain Node', async () => {
    const { output } = await run('node', ['--input-type=module', '-e', "import { createServer } from 'pocketsync-server'; console.log(typeof createServer)"], { cwd: serverDir });
    expect(output.trim()).toBe('function');
  });

  it('syncs two browser profiles of one user through the packed server, on OPFS', async () => {
    const [a, b] = await Promise.all([newDevice(), newDevice()]);
    const [pageA, pageB] = await Promise.all([a.newPage(), b.newPage()]);
    for (const page of [pageA, pageB]) {
      await page.goto(`${appUrl}?user=zoe`);
      await page.getByRole('status').filter({ hasText: /^live, 0 pending, storage opfs-sahpool$/ }).waitFor({ timeout: 30_000 });
    }
    await pageA.getByRole('textbox', { name: 'New todo' }).fill('written on A');
    await pageA.getByRole('button', { name: 'Add' }).click();
    await pageB.getByRole('listitem').filter({ hasText: 'written on A' }).waitFor({ timeout: 15_000 });

    await pageB.getByRole('listitem').filter({ hasText: 'written on A' }).getByRole('checkbox').check();
    await pageA.locator('li input:checked').waitFor({ timeout: 15_000 });
    await pageA.getByRole('status').filter({ hasText: /^live, 0 pending/ }).waitFor({ timeout: 15_000 });

    // Persisted in OPFS: a reload shows the row before any sync could bring it back.
    await pageA.reload();
    await pageA.getByRole('listitem').filter({ hasText: 'written on A' }).waitFor({ timeout: 15_000 });
    expect(await pageA.locator('li input:checked').count()).toBe(1);
  });

  it('lets the app’s backend, on plain Node, write a user’s todo through pocketsync/backend: it shows on the user’s page live', async () => {
    const page = await (await newDevice()).newPage();
    await page.goto(`${appUrl}?user=xia`);
    await page.getByRole('status').filter({ hasText: /^live, 0 pending/ }).waitFor({ timeout: 30_000 });
    const created = await fetch(new URL('v1/admin/projects/demo/service-keys', serverUrl), {
      method: 'POST',
      headers: { Authorization: `Bearer ${ADMIN_KEY}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: 'consumer test' }),
    });
    expect(created.status).toBe(201);
    const { key } = (await created.json()) as { key: string };
    write(join(appDir, 'backend-job.mjs'), BACKEND_JOB);
    const { output } = await run('node', ['backend-job.mjs', serverUrl, key, 'xia', 'from the backend'], { cwd: appDir });
    expect(JSON.parse(output) as unknown).toEqual({ outcomes: ['applied'], titles: ['from the backend'] });
    await page.getByRole('listitem').filter({ hasText: 'from the backend' }).waitFor({ timeout: 15_000 });
  });

  it('runs under `vite` (dev) too, with none of its warnings about the package', async () => {
    const dev = await start(join(appDir, 'node_modules/.bin/vite'), ['--port', '0'], { cwd: appDir, env: { VITE_POCKETSYNC_URL: serverUrl }, ready: /Local:\s+(http:\/\/localhost:\d+\/)/ });
    children.push(dev.child);
    const page = await (await newDevice()).newPage();
    await page.goto(`${dev.match[1]!}?user=yan`);
    await page.getByRole('status').filter({ hasText: /^live, 0 pending, storage opfs-sahpool$/ }).waitFor({ timeout: 30_000 });
    stop(dev.child);
    expect(dev.output()).not.toMatch(/sourcemap|warn|error/i);
  });
});
