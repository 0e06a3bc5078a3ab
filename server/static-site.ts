/**
 * Serves built web apps from a directory, with Hono on @hono/node-server: a site at / (the demo),
 * and the operators' console at /console/ beside the sync server's API.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { serve, type ServerType } from '@hono/node-server';
import { serveStatic } from '@hono/node-server/serve-static';
import { Hono } from 'hono';
import { ErrorKind } from '../lib/protocol/error-kind.js';

/**
 * The console's content security policy: scripts, styles and connections (the API, its event
 * stream) of this origin only, and no framing, so another site can neither run code in it nor
 * overlay it to steal a click.
 */
const CONSOLE_POLICY = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/** The console's build at /console/ (its page for every path under it: the console routes by hash). */
export function mountConsole(app: Hono, dir: string): void {
  const index = join(dir, 'index.html');
  app.get('/console', (c) => c.redirect('/console/', 301));
  app.use('/console/*', async (c, next) => {
    if (!existsSync(index)) return c.json({ kind: ErrorKind.NotFound, message: `the console is not built (no ${index}): npm run build` }, 404);
    await next();
    c.header('Content-Security-Policy', CONSOLE_POLICY);
    c.header('X-Frame-Options', 'DENY');
    c.header('Referrer-Policy', 'no-referrer');
    c.header('X-Content-Type-Options', 'nosniff');
    c.header('Cache-Control', c.req.path.startsWith('/console/assets/') ? 'public, max-age=31536000, immutable' : 'no-cache');
  });
  const rewriteRequestPath = (path: string) => path.replace(/^\/console/, '');
  app.use('/console/*', serveStatic({ root: dir, rewriteRequestPath }));
  app.use('/console/*', serveStatic({ root: dir, rewriteRequestPath: () => '/index.html' }));
}

export function createStaticSite(root: string): Hono {
  const app = new Hono();
  app.use('*', async (c, next) => {
    await next();
    // The app shell changes with every build; the hashed assets under /assets do not.
    c.header('Cache-Control', c.req.path.startsWith('/assets/') ? 'public, max-age=31536000, immutable' : 'no-cache');
  });
  app.use('/*', serveStatic({ root }));
  return app;
}

export interface Listening {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

/** Listens on host:port (port 0 picks a free one) and resolves once the socket is bound. */
export function listen(app: Hono, { host = '127.0.0.1', port = 0 }: { host?: string; port?: number } = {}): Promise<Listening> {
  return new Promise((resolve, reject) => {
    let server: ServerType;
    try {
      server = serve({ fetch: app.fetch, hostname: host, port }, (info) => {
        const shownHost = host === '127.0.0.1' || host === '0.0.0.0' ? 'localhost' : host;
        resolve({
          url: `http://${shownHost}:${info.port}/`,
          port: info.port,
          close: () => new Promise<void>((done) => server.close(() => done())),
        });
      });
      server.on('error', reject);
    } catch (error) {
      reject(error instanceof Error ? error : new Error(String(error)));
    }
  });
}
