/**
 * createServer(): the sync server in one process: the HTTP API, the WebSocket endpoint with its
 * fan-out, and optionally a static site (the demo, the web interface), on @hono/node-server.
 *
 *   GET /v1/projects/:project/sync   (WebSocket upgrade; see socket.ts)
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { serve, type ServerType } from '@hono/node-server';
import { serveStatic } from '@hono/node-server/serve-static';
import { createNodeWebSocket } from '@hono/node-ws';
import { CloseCode } from '../lib/protocol/close-codes.js';
import { ErrorKind } from '../lib/protocol/error-kind.js';
import { createApp } from './app.js';
import { Hub } from './hub.js';
import { findProject } from './push.js';
import type { Resolver } from './merge.js';
import { SyncSocket } from './socket.js';
import { SqliteStore } from './store/sqlite-store.js';
import type { Store } from './store/store.js';

export interface ServerOptions {
  /** Where the embedded store keeps its file (created if missing). Ignored when `store` is given. */
  readonly dataDir?: string;
  readonly store?: Store;
  readonly port?: number;
  /** 127.0.0.1 unless told otherwise. */
  readonly host?: string;
  readonly adminKey: string;
  readonly dev?: boolean;
  readonly resolver?: Resolver;
  /** Rows per catch-up batch (default 1,000). */
  readonly batchSize?: number;
  /** Serves this directory at / (the demo). */
  readonly staticDir?: string;
  /** One structured log line per connection and per error; console by default, silent with null. */
  readonly log?: ((line: Record<string, unknown>) => void) | null;
}

export interface RunningServer {
  readonly url: string;
  readonly port: number;
  readonly store: Store;
  readonly hub: Hub;
  close(): Promise<void>;
}

export async function createServer(options: ServerOptions): Promise<RunningServer> {
  const store = options.store ?? openDataDir(options.dataDir ?? '.pocketsync');
  const hub = new Hub();
  const log = options.log === null ? () => undefined : (options.log ?? ((line) => console.log(JSON.stringify({ time: new Date().toISOString(), ...line }))));
  const app = createApp({
    store,
    adminKey: options.adminKey,
    ...(options.dev ? { dev: true } : {}),
    ...(options.resolver ? { resolver: options.resolver } : {}),
    onCommit: (projectId, changes) => hub.publish(projectId, changes),
    log,
  });
  const nodeWs = createNodeWebSocket({ app });
  const { wss } = nodeWs;
  const deps = { store, hub, resolver: options.resolver, batchSize: options.batchSize ?? 1000, log };

  app.get(
    '/v1/projects/:project/sync',
    nodeWs.upgradeWebSocket(async (c) => {
      const id = c.req.param('project') ?? '';
      const project = await findProject(store, id);
      let socket: SyncSocket | null = null;
      return {
        onOpen: (_event, ws) => {
          if (!project) {
            ws.send(JSON.stringify({ type: 'error', kind: ErrorKind.NotFound, message: `no such project: ${id}` }));
            ws.close(CloseCode.notFound, 'not-found');
            return;
          }
          socket = new SyncSocket(deps, project, ws);
        },
        onMessage: (event) => socket?.message(event.data),
        onClose: () => socket?.closed(),
        onError: (event) => log({ event: 'socket-error', project: id, message: event.type }),
      };
    }),
  );
  if (options.staticDir) app.use('/*', serveStatic({ root: options.staticDir }));

  const host = options.host ?? '127.0.0.1';
  const server = await new Promise<ServerType>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, hostname: host, port: options.port ?? 0 }, () => resolve(s));
    s.on('error', reject);
  });
  nodeWs.injectWebSocket(server);
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : (options.port ?? 0);
  const shownHost = host === '127.0.0.1' || host === '0.0.0.0' ? 'localhost' : host;
  return {
    url: `http://${shownHost}:${port}/`,
    port,
    store,
    hub,
    close: async () => {
      await new Promise<void>((resolve) => {
        // Sockets first: server.close() waits for open connections.
        for (const client of wss.clients) client.terminate();
        if ('closeAllConnections' in server) (server as { closeAllConnections(): void }).closeAllConnections();
        server.close(() => resolve());
      });
      if (!options.store) await store.close();
    },
  };
}

function openDataDir(dir: string): SqliteStore {
  mkdirSync(dir, { recursive: true });
  return new SqliteStore(join(dir, 'pocketsync.db'));
}
