/**
 * What PocketSync adds to an app's download: the smallest app that opens a synced database
 * (bench/size-app/), built by Vite from the packed entry (`pocketsync`, built here first), split
 * into what the page loads on the main thread, the worker's script, and SQLite's WebAssembly;
 * minified and gzipped (level 9). The worker's baseline is SQLite-WASM's own JavaScript, bundled
 * and measured the same way: the part of the worker that is PocketSync is the difference.
 *
 * A full run also rewrites the README's size table (between its `sizes` markers), so the figures
 * there are this script's, never typed in (test/readme-sizes.test.ts holds them to the results).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'vite';
import type { BenchOptions } from './run.js';
import { report, type Metric } from './report.js';

const repo = fileURLToPath(new URL('..', import.meta.url));

function gzipped(bytes: Buffer): number {
  return gzipSync(bytes, { level: 9 }).length;
}

/** Bundles `root` (an index.html) with Vite's defaults for an app; returns the emitted assets. */
async function bundle(root: string): Promise<Map<string, Buffer>> {
  const outDir = mkdtempSync(join(tmpdir(), 'pocketsync-size-'));
  await build({
    root,
    base: './',
    logLevel: 'warn',
    configFile: false,
    optimizeDeps: { exclude: ['pocketsync', '@sqlite.org/sqlite-wasm'] },
    worker: { format: 'es' },
    build: { outDir, emptyOutDir: true, target: 'es2022', minify: true },
  });
  const files = new Map<string, Buffer>();
  for (const name of readdirSync(join(outDir, 'assets'))) files.set(name, readFileSync(join(outDir, 'assets', name)));
  rmSync(outDir, { recursive: true, force: true });
  return files;
}

function only(files: Map<string, Buffer>, pattern: RegExp): Buffer {
  const matches = [...files].filter(([name]) => pattern.test(name));
  if (matches.length !== 1) throw new Error(`expected one asset matching ${pattern}, found ${matches.map(([n]) => n).join(', ') || 'none'}`);
  return matches[0]![1];
}

export async function run({ small }: BenchOptions): Promise<void> {
  execFileSync('npm', ['run', 'build', '-w', 'pocketsync'], { cwd: repo, stdio: 'ignore' });
  const app = await bundle(join(repo, 'bench/size-app'));
  const main = only(app, /^index-.*\.js$/);
  const worker = only(app, /^worker-.*\.js$/);
  const wasm = only(app, /\.wasm$/);

  // SQLite-WASM alone in a worker: its JavaScript, the floor of PocketSync's worker.
  const bare = mkdtempSync(join(tmpdir(), 'pocketsync-size-bare-'));
  writeFileSync(join(bare, 'index.html'), '<script type="module" src="./main.ts"></script>');
  writeFileSync(join(bare, 'main.ts'), "new Worker(new URL('./worker.ts', import.meta.url), { type: 'module' });");
  writeFileSync(join(bare, 'worker.ts'), "import sqlite3InitModule from '@sqlite.org/sqlite-wasm';\nconst sqlite3 = await sqlite3InitModule();\nnew sqlite3.oo1.DB(':memory:').exec('SELECT 1');");
  // Resolve the package from the repository's node_modules.
  writeFileSync(join(bare, 'package.json'), '{"type":"module"}');
  execFileSync('ln', ['-s', join(repo, 'node_modules'), join(bare, 'node_modules')]);
  const bareFiles = await bundle(bare);
  rmSync(bare, { recursive: true, force: true });
  const bareWorker = only(bareFiles, /^worker-.*\.js$/);

  const metrics: Metric[] = [
    { metric: 'main thread JS, min+gzip', value: gzipped(main) / 1000, unit: 'kB' },
    { metric: 'worker JS, min+gzip', value: gzipped(worker) / 1000, unit: 'kB', baseline: gzipped(bareWorker) / 1000, ratio: gzipped(worker) / gzipped(bareWorker) },
    { metric: 'worker JS beyond SQLite-WASM, min+gzip', value: (gzipped(worker) - gzipped(bareWorker)) / 1000, unit: 'kB' },
    { metric: 'sqlite3.wasm, gzip', value: gzipped(wasm) / 1000, unit: 'kB', baseline: wasm.length / 1000, ratio: gzipped(wasm) / wasm.length },
  ];
  report(small ? 'size-small' : 'size', metrics);
  if (!small) writeReadmeSizes(metrics);
}

export const SIZES_START = '<!-- sizes: written by `npm run bench -- size` -->';
export const SIZES_END = '<!-- /sizes -->';

/** The README's size table, from a run's metrics. */
export function sizesTable(metrics: ReadonlyArray<{ metric: string; value: number }>): string {
  const value = (name: string): string => {
    const found = metrics.find((m) => m.metric === name);
    if (!found) throw new Error(`no metric ${name}`);
    return `${found.value.toFixed(1)} kB`;
  };
  return [
    '| what the page downloads | min+gzip |',
    '|---|---|',
    `| main thread (the \`pocketsync\` entry) | ${value('main thread JS, min+gzip')} |`,
    `| worker script (of which SQLite-WASM's own JavaScript: the rest) | ${value('worker JS, min+gzip')} (${value('worker JS beyond SQLite-WASM, min+gzip')} PocketSync) |`,
    `| sqlite3.wasm (gzip) | ${value('sqlite3.wasm, gzip')} |`,
  ].join('\n');
}

function writeReadmeSizes(metrics: readonly Metric[]): void {
  const path = join(repo, 'README.md');
  const text = readFileSync(path, 'utf8');
  const start = text.indexOf(SIZES_START);
  const end = text.indexOf(SIZES_END);
  if (start < 0 || end < start) throw new Error(`README.md has no ${SIZES_START} … ${SIZES_END} block`);
  writeFileSync(path, `${text.slice(0, start + SIZES_START.length)}\n${sizesTable(metrics)}\n${text.slice(end)}`);
}
