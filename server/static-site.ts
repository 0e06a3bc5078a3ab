/**
 * Serves a built web app (the demo, later the web interface) from a directory, with Hono on
 * @hono/node-server. The sync server will mount its API beside it.
 */
import { serve, type ServerType } from '@hono/node-server';
import { serveStatic } from '@hono/node-server/serve-static';
import { Hono } from 'hono';

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
