/**
 * createServer(): the sync server in one process: the HTTP API, the WebSocket endpoint with its
 * fan-out, and optionally a static site (the demo, the web interface), on @hono/node-server.
 *
 *   GET /v1/projects/:project/sync   (WebSocket upgrade; see socket.ts)
 *
 * The upgrade is handled here with `ws` directly rather than through a Hono adapter, so that every
 * limit applies before the work: the per-address connection cap before the handshake, and the
 * frame size limit (`maxPayload`) inside the WebSocket parser, before a frame is buffered. (The
 * adapter kept the library's 100 MiB default and, on Node 20, threw `ErrorEvent is not defined` on
 * a socket error.)
 */
import { existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { join } from 'node:path';
import { serve, type ServerType } from '@hono/node-server';
import { serveStatic } from '@hono/node-server/serve-static';
import { WebSocketServer, type WebSocket } from 'ws';
import { CloseCode } from '../lib/protocol/close-codes.js';
import { ErrorKind } from '../lib/protocol/error-kind.js';
import { LIMITS } from '../lib/protocol/up.js';
import { createApp } from './app.js';
import type { CorsOptions } from './cors.js';
import { Hub, type Subscriber } from './hub.js';
import { Sequencer } from './sequencer.js';
import { Metrics } from './metrics.js';
import { DEFAULT_LIMITS, DEFAULT_RETENTION, RateLimiter, type Retention, type ServerLimits } from './limits.js';
import { findProject, observeAll } from './push.js';
import { Activity } from './activity.js';
import type { Resolver } from './merge.js';
import { SyncSocket, type SocketDeps } from './socket.js';
import { mountConsole } from './static-site.js';
import { SqliteStore } from './store/sqlite-store.js';
import type { PushOutput, Store } from './store/store.js';

export interface ServerOptions {
  /** Where the embedded store keeps its file (created if missing). Ignored when `store` is given. */
  readonly dataDir?: string;
  readonly store?: Store;
  readonly port?: number;
  /** 127.0.0.1 unless told otherwise. */
  readonly host?: string;
  readonly adminKey: string;
  /** Dev mode: the server mints user tokens, for this project only. Never in production. */
  readonly devProject?: string;
  /** Which web pages may call the HTTP API from another origin (server/cors.ts); none by default. */
  readonly cors?: CorsOptions;
  readonly resolver?: Resolver;
  /** Rows per catch-up batch (default 1,000). */
  readonly batchSize?: number;
  /** Limits on connections, rates and time (server/limits.ts); each defaults. */
  readonly limits?: Partial<ServerLimits>;
  /** How long history is kept, and how often it is compacted (server/limits.ts); each defaults. */
  readonly retention?: Partial<Retention>;
  /** Serves this directory at / (the demo). */
  readonly staticDir?: string;
  /**
   * Serves the operators' console at /console/ from this build of it; by default the one this
   * package ships (dist/console-ui, when it is there), none with null.
   */
  readonly consoleDir?: string | null;
  /** One structured log line per connection and per error; console by default, silent with null. */
  readonly log?: ((line: Record<string, unknown>) => void) | null;
}

export interface RunningServer {
  readonly url: string;
  readonly port: number;
  readonly store: Store;
  readonly hub: Hub;
  /** What each project does, per second and per minute (the console's counts). */
  readonly activity: Activity;
  /** Where the operators' console is, or null when this server serves none. */
  readonly consoleUrl: string | null;
  /** Runs one compaction now (it also runs every `retention.compactEveryMs`). */
  compact(): Promise<void>;
  close(): Promise<void>;
}

const SYNC_PATH = /^\/v1\/projects\/([^/]+)\/sync$/;

export async function createServer(options: ServerOptions): Promise<RunningServer> {
  const store: Store = options.store ?? openDataDir(options.dataDir ?? '.pocketsync');
  const hub = new Hub();
  const limits: ServerLimits = { ...DEFAULT_LIMITS, ...options.limits };
  const retention: Retention = { ...DEFAULT_RETENTION, ...options.retention };
  const log = options.log === null ? () => undefined : (options.log ?? ((line) => console.log(JSON.stringify({ time: new Date().toISOString(), ...line }))));
  const requests = new RateLimiter(limits.requestsPerSecond, 1);
  // A store several processes share tells of the others' commits: all commits then reach the hub
  // through the sequencer, in seq order; an embedded store's commits are this process's alone.
  const sequencer = store.watchCommits ? new Sequencer((projectId, changes, from) => hub.publish(projectId, changes, from), (projectId, range) => store.committed(projectId, range)) : null;
  /** The store's seq for each project now, for the sequencer to read what it has not been told of. */
  const resync = async (projectIds: readonly string[]): Promise<void> => {
    for (const projectId of projectIds) sequencer?.committedUpTo(projectId, await store.currentSeq(projectId));
  };
  const stopWatching = store.watchCommits
    ? await store.watchCommits(
        (projectId, range) => sequencer!.remote(projectId, range),
        () => void resync(sequencer!.projects()).catch((error: unknown) => log({ event: 'error', kind: ErrorKind.Internal, message: `reading the commits missed while not listening: ${String(error)}` })),
      )
    : null;
  // Each project's order starts at its seq now, read after the listening began.
  if (sequencer) for (const project of await store.listProjects()) sequencer.start(project.id, await store.currentSeq(project.id));
  const publish = (projectId: string, out: PushOutput, from?: Subscriber): void => {
    if (sequencer) sequencer.local(projectId, out.range, out.effective, from);
    else if (out.effective.length > 0) hub.publish(projectId, out.effective, from);
  };
  const metrics = new Metrics(() => hub.connectionsByProject());
  const activity = new Activity(store, () => hub.connectionsByProject());
  const observe = observeAll(metrics, activity);
  const app = createApp({
    store,
    adminKey: options.adminKey,
    ...(options.devProject !== undefined ? { devProject: options.devProject } : {}),
    ...(options.cors ? { cors: options.cors } : {}),
    ...(options.resolver ? { resolver: options.resolver } : {}),
    limits,
    requests,
    metrics,
    observe,
    hub,
    activity,
    // A commit that took a seq without a push (a user's data deleted), and a project deleted.
    onSeqTaken: (projectId) => void resync([projectId]).catch(() => undefined),
    onProjectDeleted: (projectId) => sequencer?.forget(projectId),
    onCommit: (projectId, out) => publish(projectId, out),
    log,
  });
  const deps: SocketDeps = {
    store,
    hub,
    publish,
    resolver: options.resolver,
    batchSize: options.batchSize ?? 1000,
    limits,
    hellos: new RateLimiter(limits.hellosPerMinute, 60),
    requests,
    log,
    metrics: observe,
  };
  const consoleDir = options.consoleDir === undefined ? shippedConsole() : options.consoleDir;
  if (consoleDir !== null) mountConsole(app, consoleDir);
  if (options.staticDir) app.use('/*', serveStatic({ root: options.staticDir }));

  const host = options.host ?? '127.0.0.1';
  const server = await new Promise<ServerType>((resolve, reject) => {
    const s = serve(
      {
        fetch: app.fetch,
        hostname: host,
        port: options.port ?? 0,
        // A request whose headers or body trickle in is dropped; checked every second.
        serverOptions: { headersTimeout: limits.headersTimeoutMs, requestTimeout: limits.requestTimeoutMs, connectionsCheckingInterval: 1000 },
      },
      () => resolve(s),
    );
    s.on('error', reject);
  });

  const wss = new WebSocketServer({ noServer: true, maxPayload: LIMITS.maxMessageBytes });
  const perAddress = new Map<string, number>();
  server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    // Node removes its own error listener from an upgraded socket: without this one, a client that
    // resets the connection while its upgrade is answered or refused would crash the process.
    socket.on('error', (error: Error & { code?: string }) => {
      log({ event: 'socket-error', path: request.url, code: error.code, message: error.message });
      socket.destroy();
    });
    const path = SYNC_PATH.exec(new URL(request.url ?? '/', 'http://localhost').pathname);
    if (!path) return refuseUpgrade(socket, 404, ErrorKind.NotFound, `no WebSocket endpoint at ${request.url ?? ''}`);
    const address = request.socket.remoteAddress ?? '';
    const open = perAddress.get(address) ?? 0;
    if (open >= limits.maxConnectionsPerAddress) {
      log({ event: 'refused', reason: 'connections-per-address', address });
      return refuseUpgrade(socket, 429, ErrorKind.RateLimited, `this address already has ${limits.maxConnectionsPerAddress} open connections (the limit)`);
    }
    // Counted from now, so that upgrades in flight count against the cap too.
    perAddress.set(address, open + 1);
    let counted = true;
    const release = () => {
      if (!counted) return;
      counted = false;
      const left = (perAddress.get(address) ?? 1) - 1;
      if (left === 0) perAddress.delete(address);
      else perAddress.set(address, left);
    };
    socket.once('close', release);
    const id = safeDecode(path[1] ?? '');
    findProject(store, id).then(
      (project) => {
        if (socket.destroyed) return release();
        wss.handleUpgrade(request, socket, head, (ws) => {
          ws.once('close', release);
          if (!project) {
            ws.send(JSON.stringify({ type: 'error', kind: ErrorKind.NotFound, message: `no such project: ${id}` }));
            ws.close(CloseCode.notFound, 'not-found');
            return;
          }
          attach(ws, new SyncSocket(deps, project, ws, request.headers['user-agent']), id);
        });
      },
      (error: unknown) => {
        log({ event: 'error', path: request.url, kind: ErrorKind.Internal, message: String(error) });
        release();
        refuseUpgrade(socket, 500, ErrorKind.Internal, 'internal error');
      },
    );
  });

  function attach(ws: WebSocket, socket: SyncSocket, projectId: string): void {
    ws.on('message', (data) => socket.message(data));
    ws.on('close', () => socket.closed());
    // A frame over maxPayload, a broken frame: `ws` closes the socket (1009, 1002) after this.
    ws.on('error', (error: Error & { code?: string }) => log({ event: 'socket-error', project: projectId, code: error.code, message: error.message }));
  }

  let compacting: Promise<void> | null = null;
  const compact = (): Promise<void> =>
    (compacting ??= store
      .compact(retention)
      .then((result) => {
        if (result.changes + result.conflicts + result.tombstones > 0) log({ event: 'compact', ...result });
      })
      .catch((error: unknown) => log({ event: 'error', kind: ErrorKind.Internal, message: `compaction failed: ${String(error)}` }))
      .finally(() => (compacting = null)));
  const compactTimer = setInterval(() => void compact(), retention.compactEveryMs);
  compactTimer.unref();

  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : (options.port ?? 0);
  const shownHost = host === '127.0.0.1' || host === '0.0.0.0' ? 'localhost' : host;
  return {
    url: `http://${shownHost}:${port}/`,
    port,
    store,
    hub,
    activity,
    consoleUrl: consoleDir === null ? null : `http://${shownHost}:${port}/console/`,
    compact,
    close: async () => {
      clearInterval(compactTimer);
      sequencer?.stop();
      await stopWatching?.();
      await compacting;
      await activity.close();
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

/** Answers an upgrade request with an HTTP error (`{ kind, message }`) and drops the connection. */
function refuseUpgrade(socket: Duplex, status: number, kind: ErrorKind, message: string): void {
  const body = JSON.stringify({ kind, message });
  const reason = status === 429 ? 'Too Many Requests' : status === 404 ? 'Not Found' : 'Internal Server Error';
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** The console this package ships beside its server (dist/server → dist/console-ui), if it was built. */
function shippedConsole(): string | null {
  const dir = fileURLToPath(new URL('../console-ui/', import.meta.url));
  return existsSync(join(dir, 'index.html')) ? dir : null;
}

function openDataDir(dir: string): SqliteStore {
  mkdirSync(dir, { recursive: true });
  return new SqliteStore(join(dir, 'pocketsync.db'));
}
