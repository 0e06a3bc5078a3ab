/**
 * `npm start`: serves the built demo on localhost and prints its URL.
 * PORT and HOST override the defaults (3000, 127.0.0.1).
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createStaticSite, listen } from '../server/static-site.js';

const demoDir = fileURLToPath(new URL('../demo/dist', import.meta.url));
if (!existsSync(demoDir)) {
  console.error('The demo is not built: run `npm start` (which builds it) or `npm run build:demo`.');
  process.exit(1);
}

const port = Number(process.env.PORT ?? 3000);
const host = process.env.HOST ?? '127.0.0.1';
const site = await listen(createStaticSite(demoDir), { host, port });
console.log(`PocketSync demo: ${site.url}`);
console.log('Press Ctrl+C to stop.');

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    void site.close().then(() => process.exit(0));
  });
}
