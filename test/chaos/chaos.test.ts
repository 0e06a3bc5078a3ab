/**
 * The chaos suite at CI size (part of `npm test`): CHAOS_RUNS runs (200 by default) of the
 * CHAOS_FEATURES set ('basic' by default; see FEATURE_SETS in run.ts) against the real server
 * and sync loop. `npm run test:chaos -- --runs 5000` runs more, outside vitest.
 */
import { expect, it } from 'vitest';
import { FEATURE_SETS, formatReport, runChaos } from './run.js';

const runs = Number(process.env.CHAOS_RUNS ?? 200);
const featureName = process.env.CHAOS_FEATURES ?? 'basic';

it(`${runs} chaos runs (${featureName}) converge with no divergence`, async () => {
  const features = FEATURE_SETS[featureName];
  if (!features) throw new Error(`unknown CHAOS_FEATURES ${featureName}`);
  const report = await runChaos({ runs, features, featureName, timeLimitMs: 170_000 });
  console.log(formatReport(report, featureName));
  expect(report.failure).toBeNull();
  expect(report.runs).toBe(runs);
}, 180_000);
