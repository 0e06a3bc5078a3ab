/**
 * `npm run test:chaos [-- --runs 5000] [--features basic|full|natural-keys|…] [--seed N --path P]
 * [--steps 60] [--minutes M]`: the chaos suite outside vitest, for long passes and replays. Exits 1
 * when it found a divergence, after printing the seed, the shrunk schedule and the replay command.
 */
import { FEATURE_SETS, formatReport, runChaos } from './run.js';

function arg(name: string): string | undefined {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 ? process.argv[at + 1] : undefined;
}

const featureName = arg('features') ?? 'basic';
const features = FEATURE_SETS[featureName];
if (!features) {
  console.error(`unknown feature set ${featureName}; one of: ${Object.keys(FEATURE_SETS).join(', ')}`);
  process.exit(2);
}
const seed = arg('seed');
const path = arg('path');
const steps = arg('steps');
const minutes = arg('minutes');
const report = await runChaos({
  runs: Number(arg('runs') ?? 200),
  features,
  featureName,
  ...(seed !== undefined ? { seed: Number(seed) } : {}),
  ...(path !== undefined ? { path } : {}),
  ...(steps !== undefined ? { maxSteps: Number(steps) } : {}),
  ...(minutes !== undefined ? { timeLimitMs: Number(minutes) * 60_000 } : {}),
});
console.log(formatReport(report, featureName));
process.exit(report.divergences > 0 ? 1 : 0);
