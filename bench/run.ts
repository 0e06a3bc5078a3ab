/**
 * `npm run bench` runs every benchmark; `npm run bench -- capture` runs one.
 * `--size=small` runs each at a small size (CI does, so that benchmarks cannot rot); small runs
 * write bench/results/<name>-small.json and leave the recorded figures alone.
 */
export interface BenchOptions {
  readonly small: boolean;
}

const benchmarks: Record<string, () => Promise<{ run: (options: BenchOptions) => Promise<void> }>> = {
  capture: () => import('./capture.js'),
  console: () => import('./console.js'),
  load: () => import('./load.js'),
  server: () => import('./server.js'),
  size: () => import('./size.js'),
  sync: () => import('./sync.js'),
  tabs: () => import('./tabs.js'),
};

const args = process.argv.slice(2);
const small = args.includes('--size=small');
const names = args.filter((a) => !a.startsWith('--'));
const unknown = names.filter((n) => !(n in benchmarks));
if (unknown.length > 0) {
  console.error(`Unknown benchmark(s): ${unknown.join(', ')}. Available: ${Object.keys(benchmarks).join(', ')}`);
  process.exit(2);
}
for (const name of names.length > 0 ? names : Object.keys(benchmarks)) {
  const bench = await benchmarks[name]!();
  await bench.run({ small });
}
