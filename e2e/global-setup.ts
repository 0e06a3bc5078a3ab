/**
 * Browser tests' setup: the real sync server (dev mode, embedded store in a temporary directory)
 * serving the built demo on 127.0.0.1, with the demo's project; and where Chromium is.
 * In CI a missing Chromium is a failure; elsewhere the browser tests skip, saying why.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestProject } from 'vitest/node';
import { CHROMIUM_PATH as CHROMIUM } from '../scripts/chromium.js';
import { createServer } from '../server/server.js';

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
  const dataDir = mkdtempSync(join(tmpdir(), 'pocketsync-e2e-'));
  // Small catch-up batches, so that a catch-up of a few thousand rows takes several (sync-offline.test.ts).
  const server = await createServer({ dataDir, adminKey: 'e2e-admin', devProject: 'demo', staticDir: demoDir, log: null, batchSize: 250 });
  await server.store.createProject({ id: 'demo', secret: 'e2e-demo-secret-e2e-demo-secret-0000', sharedTables: ['shared_todos'] });
  project.provide('demoUrl', server.url);
  project.provide('chromium', haveChromium ? CHROMIUM : null);
  return async () => {
    await server.close();
    rmSync(dataDir, { recursive: true, force: true });
  };
}
