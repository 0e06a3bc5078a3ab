/** The benchmarks' browser pages (bench/browser/), built with Vite and served on 127.0.0.1. */
import { fileURLToPath } from 'node:url';
import { Hono } from 'hono';
import { build } from 'vite';
import { createStaticSite, listen, type Listening } from '../server/static-site.js';

/**
 * `isolated` serves the pages cross-origin isolated (COOP/COEP), where performance.now() has a
 * resolution of microseconds rather than 100 µs: needed to time one round trip of well under 1 ms.
 */
export async function serveBenchPages({ isolated = false }: { isolated?: boolean } = {}): Promise<Listening> {
  const root = fileURLToPath(new URL('./browser/', import.meta.url));
  await build({ configFile: fileURLToPath(new URL('./browser/vite.config.ts', import.meta.url)), root });
  const site = createStaticSite(`${root}dist`);
  if (!isolated) return listen(site);
  const app = new Hono();
  app.use('*', async (c, next) => {
    await next();
    c.header('Cross-Origin-Opener-Policy', 'same-origin');
    c.header('Cross-Origin-Embedder-Policy', 'require-corp');
  });
  app.route('/', site);
  return listen(app);
}
