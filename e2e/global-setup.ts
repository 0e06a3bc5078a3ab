/**
 * Browser tests' setup: serves the built demo on 127.0.0.1 and tells the tests where Chromium is.
 * In CI a missing Chromium is a failure; elsewhere the browser tests skip, saying why.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { TestProject } from 'vitest/node';
import { CHROMIUM_PATH as CHROMIUM } from '../scripts/chromium.js';
import { createStaticSite, listen } from '../server/static-site.js';

declare module 'vitest' {
  export interface ProvidedContext {
    demoUrl: string;
    chromium: string | null;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const demoDir = fileURLToPath(new URL('../demo/dist', import.meta.url));
  if (!existsSync(demoDir)) throw new Error('demo/dist is missing: run `npm run build:demo` first (npm run test:e2e does).');
  const haveChromium = existsSync(CHROMIUM);
  if (!haveChromium && process.env.CI) throw new Error(`Chromium is missing at ${CHROMIUM}; .ci/run installs it with apt-get.`);
  if (!haveChromium) console.warn(`Skipping browser tests: no Chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH).`);
  const site = await listen(createStaticSite(demoDir));
  project.provide('demoUrl', site.url);
  project.provide('chromium', haveChromium ? CHROMIUM : null);
  return () => site.close();
}
