/** Benchmark results: a printed table and bench/results/<name>.json (format in DEVELOPERS.md). */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';

export interface Metric {
  readonly metric: string;
  readonly value: number;
  readonly unit: string;
  /** The limit or peer measured in the same run, when the metric is compared against one. */
  readonly baseline?: number;
  /** value / baseline. */
  readonly ratio?: number;
  /** The target, for the table only. */
  readonly target?: string;
}

export function report(name: string, metrics: readonly Metric[]): void {
  const round = (x: number | undefined) => (x === undefined ? undefined : Math.round(x * 1000) / 1000);
  console.log(`\n${name}`);
  console.table(
    metrics.map((m) => ({ metric: m.metric, value: round(m.value), unit: m.unit, baseline: round(m.baseline) ?? '', ratio: round(m.ratio) ?? '', target: m.target ?? '' })),
  );
  const file = new URL(`./results/${name}.json`, import.meta.url);
  mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  const json = {
    name,
    date: new Date().toISOString(),
    node: process.version,
    cpus: cpus().length,
    metrics: metrics.map(({ target: _target, ...m }) => ({ ...m, value: round(m.value), ...(m.baseline !== undefined ? { baseline: round(m.baseline) } : {}), ...(m.ratio !== undefined ? { ratio: round(m.ratio) } : {}) })),
  };
  writeFileSync(file, JSON.stringify(json, null, 2) + '\n');
  console.log(`wrote ${file.pathname}`);
}
