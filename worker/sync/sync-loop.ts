/**
 * The sync loop: one WebSocket per database (partysocket, reconnecting with backoff), hello with
 * the cursor, catch-up, then live. It pushes the change log and applies what the server sends.
 *
 * Design notes:
 * - One push in flight at a time, in change-log order. Nothing is marked synced before its ack. A
 *   push lost with its connection is simply sent again after the reconnect, and the server answers
 *   'duplicate' for whatever it had already committed.
 * - A local write is pushed at once when no push is out; a burst coalesces behind the one in flight.
 * - An auth failure gets one more try with a fresh token (authToken may be a function). A second
 *   one in a row is state 'error' with kind 'auth', and the socket stays closed: no reconnect storm.
 * - The network (./network.ts) going away is state 'offline': the socket is closed, not left to
 *   hang (a lost network does not close a WebSocket for a long time, and Chromium's offline mode
 *   holds its frames without closing it) or to retry in vain. Its return connects a fresh socket at
 *   once rather than after the backoff the failed attempts built up.
 * - Frames of a socket that was replaced or closed are ignored: what they carried (an ack, a batch)
 *   comes again on the next connection, from the cursor, and the server answers 'duplicate' for
 *   what it had already committed.
 */
import { WebSocket as ReconnectingWebSocket } from 'partysocket';
import type { LostWrite } from '../../lib/protocol/change.js';
import type { DownMessage } from '../../lib/protocol/down.js';
import { ErrorKind, type ErrorData } from '../../lib/protocol/error-kind.js';
import { PROTOCOL_VERSION } from '../../lib/protocol/protocol-version.js';
import { LIMITS } from '../../lib/protocol/up.js';
import type { SyncState, SyncStatus } from '../../lib/protocol/worker-api.js';
import type { Engine } from '../engine.js';
import { toErrorData } from '../engine-error.js';
import { platformNetwork, type Network } from './network.js';
import type { Replica } from './replica.js';

export type { SyncState, SyncStatus };

export interface SyncLoopOptions {
  /** The project's sync endpoint: ws(s)://host/v1/projects/<project>/sync. */
  readonly url: string;
  readonly token: () => string | Promise<string>;
  /** A WebSocket constructor where there is no global one (Node: `ws`). */
  readonly WebSocket?: unknown;
  readonly pushDelayMs?: number;
  readonly onStatus?: (status: SyncStatus) => void;
  /** Tables the applied remote changes touched (for watchers). */
  readonly onRemoteTables?: (tables: string[]) => void;
  /** A local write lost to another device's (reported by the server with the ack). */
  readonly onConflict?: (conflict: LostWrite) => void;
  /**
   * Runs database work in turn with the app's own calls (the worker's call queue): a remote batch
   * must not land inside an app transaction. Immediate by default.
   */
  readonly run?: (work: () => void) => Promise<void>;
  /** Whether there is a network; the platform's (navigator.onLine) by default. */
  readonly network?: Network;
}

const CLOSE_AUTH = 4001;
const CLOSE_VERSION = 4002;

export class SyncLoop {
  readonly #engine: Engine;
  readonly #replica: Replica;
  readonly #options: SyncLoopOptions;
  readonly #network: Network;
  /** Between start() and stop(): the socket may still be null, while offline or after an error. */
  #running = false;
  #stopWatchingNetwork: (() => void) | null = null;
  #socket: ReconnectingWebSocket | null = null;
  #status: SyncStatus = { state: 'offline', pending: 0, lastSyncedAt: null, progress: null, error: null };
  #inFlight = false;
  #pushTimer: ReturnType<typeof setTimeout> | null = null;
  #authRetried = false;
  #pushRetries = 0;
  #retryTimer: ReturnType<typeof setTimeout> | null = null;
  #done = 0;
  /** Frames are handled one at a time, in arrival order. */
  #queue: Promise<void> = Promise.resolve();

  constructor(engine: Engine, replica: Replica, options: SyncLoopOptions) {
    this.#engine = engine;
    this.#replica = replica;
    this.#options = options;
    this.#network = options.network ?? platformNetwork();
    this.#status = { ...this.#status, lastSyncedAt: replica.lastSyncedAt };
  }

  get status(): SyncStatus {
    return this.#status;
  }

  /** Connects, or waits for the network; after an error, tries again. */
  start(): void {
    if (this.#running && this.#status.state !== 'error') return;
    this.#running = true;
    this.#stopWatchingNetwork ??= this.#network.watch((online) => this.#networkChanged(online));
    const online = this.#network.online;
    this.#update({ state: online ? 'connecting' : 'offline', error: null, progress: null, pending: this.#replica.pendingCount() });
    if (online) this.#connect();
  }

  stop(): void {
    this.#running = false;
    this.#stopWatchingNetwork?.();
    this.#stopWatchingNetwork = null;
    this.#disconnect();
    if (this.#pushTimer) clearTimeout(this.#pushTimer);
    this.#pushTimer = null;
    this.#update({ state: 'offline', progress: null });
  }

  /** A fresh socket: its first attempt is immediate (partysocket waits only before retries). */
  #connect(): void {
    this.#disconnect();
    const socket = new ReconnectingWebSocket(this.#options.url, [], {
      ...(this.#options.WebSocket ? { WebSocket: this.#options.WebSocket } : {}),
      maxEnqueuedMessages: 0,
      minReconnectionDelay: 200 + Math.random() * 300,
      maxReconnectionDelay: 15_000,
      reconnectionDelayGrowFactor: 1.6,
      shouldReconnectOnClose: (event) => event.code !== CLOSE_AUTH && event.code !== CLOSE_VERSION,
    });
    const current = (): boolean => socket === this.#socket;
    socket.addEventListener('open', () => {
      if (current()) void this.#hello();
    });
    socket.addEventListener('message', (event: MessageEvent) => {
      const run = this.#options.run ?? ((work: () => void) => Promise.resolve(work()));
      this.#queue = this.#queue.then(() => (current() ? run(() => this.#message(event.data)) : undefined)).catch(() => undefined);
    });
    socket.addEventListener('close', (event: CloseEvent) => {
      if (current()) this.#closed(event.code);
    });
    this.#socket = socket;
  }

  /** Closes the socket for good (it does not reconnect); a push in flight is sent again later. */
  #disconnect(): void {
    const socket = this.#socket;
    this.#socket = null;
    this.#inFlight = false;
    this.#clearRetry();
    socket?.close();
  }

  #networkChanged(online: boolean): void {
    if (!this.#running || this.#status.state === 'error') return;
    if (!online) {
      this.#disconnect();
      this.#update({ state: 'offline', progress: null });
    } else if (this.#status.state === 'offline' || this.#status.state === 'connecting') {
      this.#update({ state: 'connecting', progress: null });
      this.#connect();
    }
  }

  /**
   * A local write committed: pushed at once when no push is out. A burst coalesces behind the
   * push in flight (what is written meanwhile goes with the next push, sent on its ack), so no
   * delay is needed for that; the pending count, a count over the change log and too much to pay
   * on every write, is refreshed once per burst, `pushDelayMs` (5 ms) after its first write.
   */
  localWrite(): void {
    // Right after the caller's work, not inside it: the app's committed write must not report a
    // failure of the push.
    queueMicrotask(() => this.#push());
    if (this.#pushTimer !== null) return;
    this.#pushTimer = setTimeout(() => {
      this.#pushTimer = null;
      this.#update({ pending: this.#replica.pendingCount() });
      this.#push();
    }, this.#options.pushDelayMs ?? 5);
  }

  async #hello(): Promise<void> {
    this.#inFlight = false;
    this.#done = 0;
    this.#update({ state: 'catching-up', progress: { done: 0, total: 0 } });
    const token = await this.#options.token();
    this.#send({ type: 'hello', protocolVersion: PROTOCOL_VERSION, deviceId: this.#engine.deviceId, cursor: this.#replica.cursor, token });
  }

  #message(data: unknown): void {
    let message: DownMessage;
    try {
      message = JSON.parse(String(data)) as DownMessage;
    } catch {
      return;
    }
    switch (message.type) {
      case 'changes': {
        try {
          this.#replica.apply(message.changes, message.cursor);
        } catch (error) {
          // The batch was rolled back and the cursor did not move; stop rather than loop on it.
          this.#disconnect();
          this.#update({ state: 'error', progress: null, error: toErrorData(error) });
          return;
        }
        const tables = [...new Set(message.changes.map((c) => c.table))];
        if (tables.length > 0) this.#options.onRemoteTables?.(tables);
        if (this.#status.state === 'catching-up') {
          this.#done += message.changes.length;
          if (message.hasMore) {
            this.#update({ progress: { done: this.#done, total: this.#done + message.remaining } });
          } else {
            this.#authRetried = false;
            this.#update({ state: 'live', progress: null, lastSyncedAt: Date.now(), error: null });
            this.#push();
          }
        } else {
          this.#update({ lastSyncedAt: Date.now() });
        }
        return;
      }
      case 'ack': {
        this.#replica.acknowledge(message.results.map((r) => r.id), message.rows ?? []);
        for (const conflict of message.conflicts ?? []) this.#options.onConflict?.(conflict);
        this.#inFlight = false;
        this.#pushRetries = 0;
        this.#update({ pending: this.#replica.pendingCount(), lastSyncedAt: Date.now(), error: null });
        this.#push();
        return;
      }
      case 'error': {
        if (message.kind === ErrorKind.Auth || message.kind === ErrorKind.Version) this.#refused(message);
        else this.#pushFailed(message);
        return;
      }
    }
  }

  #refused(error: ErrorData): void {
    if (error.kind === ErrorKind.Auth && !this.#authRetried) {
      // One more try: the token function may mint a fresh token.
      this.#authRetried = true;
      this.#socket?.reconnect();
      return;
    }
    this.#disconnect();
    this.#update({ state: 'error', error, progress: null });
  }

  /**
   * The server refused the push in flight, and stored none of it. A server fault ('internal') is
   * retried after a growing delay; anything else (a clock far ahead, a change the server will never
   * take) would fail the same way again, so sync stops in state 'error' with the server's reason,
   * and the changes stay queued until the app calls start() again.
   */
  #pushFailed(error: ErrorData): void {
    if (error.kind === ErrorKind.Internal) {
      this.#update({ error });
      const delay = Math.min(30_000, 500 * 2 ** this.#pushRetries++);
      this.#retryTimer = setTimeout(() => {
        this.#retryTimer = null;
        this.#inFlight = false;
        this.#push();
      }, delay);
      return;
    }
    this.#disconnect();
    this.#update({ state: 'error', error, progress: null });
  }

  #clearRetry(): void {
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
  }

  #closed(code: number): void {
    this.#inFlight = false;
    this.#clearRetry();
    if (this.#status.state === 'error') return;
    if (code === CLOSE_AUTH || code === CLOSE_VERSION) return; // #refused decides
    this.#update({ state: 'connecting', progress: null });
  }

  #push(): void {
    if (this.#status.state !== 'live' || this.#inFlight) return;
    const changes = this.#replica.pending(LIMITS.maxChangesPerPush);
    if (changes.length === 0) return;
    this.#inFlight = true;
    this.#send({ type: 'push', cursor: this.#replica.cursor, changes });
  }

  #send(message: unknown): void {
    this.#socket?.send(JSON.stringify(message));
  }

  #update(patch: Partial<SyncStatus>): void {
    this.#status = { ...this.#status, ...patch };
    this.#options.onStatus?.(this.#status);
  }
}
