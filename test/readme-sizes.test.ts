/** The README's bundle sizes are the size benchmark's last recorded run, not figures typed in. */
import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { SIZES_END, SIZES_START, sizesTable } from '../bench/size.js';

it('the README shows the sizes bench/results/size.json recorded', () => {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  const block = readme.slice(readme.indexOf(SIZES_START) + SIZES_START.length, readme.indexOf(SIZES_END)).trim();
  const recorded = JSON.parse(readFileSync(new URL('../bench/results/size.json', import.meta.url), 'utf8')) as { metrics: Array<{ metric: string; value: number }> };
  expect(block).toBe(sizesTable(recorded.metrics));
});
