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
import type { ClientChange, LostWrite } from '../../lib/protocol/change.js';
import { CloseCode } from '../../lib/protocol/close-codes.js';
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
  /** Connections opened so far: a hello is for the connection it started on, and no other. */
  #opens = 0;
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
    // A clock that ran fast and was set right: what it stamped meanwhile is stamped again, or the
    // server would refuse it until real time caught up (Replica.restampIfAhead).
    this.#replica.restampIfAhead(this.#engine.clock.physical() + LIMITS.maxClockAheadMs);
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
      shouldReconnectOnClose: (event) => event.code !== CloseCode.auth && event.code !== CloseCode.version,
    });
    const current = (): boolean => socket === this.#socket;
    socket.addEventListener('open', () => {
      this.#opens++;
      if (current()) void this.#hello(socket);
    });
    socket.addEventListener('message', (event: MessageEvent) => {
      this.#inTurn(() => {
        if (current()) this.#message(event.data);
      });
    });
    socket.addEventListener('close', (event: CloseEvent) => {
      if (current()) this.#closed(event.code);
    });
    this.#socket = socket;
  }

  /**
   * Database work of the loop, after the frames before it and never inside an app transaction
   * (`run` waits for the app's calls; a push read in the middle of one would send changes that
   * may yet be rolled back).
   */
  #inTurn(work: () => void): void {
    const run = this.#options.run ?? ((w: () => void) => Promise.resolve(w()));
    this.#queue = this.#queue.then(() => run(work)).catch(() => undefined);
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
      this.#inTurn(() => {
        this.#update({ pending: this.#replica.pendingCount() });
        this.#push();
      });
    }, this.#options.pushDelayMs ?? 5);
  }

  /**
   * Says hello on a socket that just opened. The token may take a while (a fetch): if the socket
   * was replaced or reopened meanwhile, the hello belongs to the newer connection, which says its
   * own. A token function that fails is a connection that failed: partysocket tries again.
   */
  async #hello(socket: ReconnectingWebSocket): Promise<void> {
    this.#inFlight = false;
    this.#done = 0;
    this.#update({ state: 'catching-up', progress: { done: 0, total: 0 } });
    const opened = this.#opens;
    let token: string;
    try {
      token = await this.#options.token();
    } catch {
      if (socket === this.#socket) socket.reconnect();
      return;
    }
    if (socket !== this.#socket || this.#opens !== opened || socket.readyState !== socket.OPEN) return;
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
          this.#fail(toErrorData(error));
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
        try {
          this.#replica.acknowledge(message.results.map((r) => r.id), message.rows ?? []);
        } catch (error) {
          // Rolled back: the changes stay in the log, and the server answers 'duplicate' when they
          // are pushed again. Stop, saying why, rather than wait for an ack that has come.
          this.#fail(toErrorData(error));
          return;
        }
        for (const conflict of message.conflicts ?? []) this.#options.onConflict?.(conflict);
        this.#inFlight = false;
        this.#pushRetries = 0;
        this.#update({ pending: this.#replica.pendingCount(), lastSyncedAt: Date.now(), error: null });
        this.#push();
        return;
      }
      case 'error': {
        if (message.kind === ErrorKind.Auth || message.kind === ErrorKind.Version) this.#refused(message);
        else if (this.#inFlight) this.#pushFailed(message);
        // Not about a push (a fault during catch-up, say): start the connection over.
        else this.#socket?.reconnect();
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
    this.#fail(error);
  }

  /** Stops in state 'error' with `error`: the socket stays closed until start(). */
  #fail(error: ErrorData): void {
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
      this.#clearRetry();
      this.#retryTimer = setTimeout(() => {
        this.#retryTimer = null;
        this.#inTurn(() => {
          this.#inFlight = false;
          this.#push();
        });
      }, delay);
      return;
    }
    this.#fail(error);
  }

  #clearRetry(): void {
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
  }

  #closed(code: number): void {
    this.#inFlight = false;
    this.#clearRetry();
    if (this.#status.state === 'error') return;
    if (code === CloseCode.auth || code === CloseCode.version) return; // #refused decides
    this.#update({ state: 'connecting', progress: null });
  }

  /**
   * Sends the oldest pending changes: as many as a push may carry, and fewer when their frame would
   * be over the server's size limit (long texts, blobs). A single change too large to send at all
   * stops sync with an error that names it, rather than a refusal the server would repeat forever.
   */
  #push(): void {
    if (this.#status.state !== 'live' || this.#inFlight) return;
    let limit: number = LIMITS.maxChangesPerPush;
    for (;;) {
      const changes = this.#replica.pending(limit);
      if (changes.length === 0) return;
      const frame = JSON.stringify({ type: 'push', cursor: this.#replica.cursor, changes });
      if (fitsInFrame(frame)) {
        this.#inFlight = true;
        this.#socket?.send(frame);
        return;
      }
      if (changes.length === 1) {
        const [change] = changes as [ClientChange];
        this.#fail({ kind: ErrorKind.Invalid, message: `change ${change.id} (${change.op} of a row of ${change.table}) is over the server's ${LIMITS.maxMessageBytes}-byte limit for a message, so it cannot be synced` });
        return;
      }
      limit = Math.ceil(changes.length / 2);
    }
  }

  #send(message: unknown): void {
    this.#socket?.send(JSON.stringify(message));
  }

  #update(patch: Partial<SyncStatus>): void {
    this.#status = { ...this.#status, ...patch };
    this.#options.onStatus?.(this.#status);
  }
}

/** Whether a frame is within the message limit: a UTF-16 length a third of it needs no counting. */
function fitsInFrame(frame: string): boolean {
  if (frame.length * 3 <= LIMITS.maxMessageBytes) return true;
  return new TextEncoder().encode(frame).length <= LIMITS.maxMessageBytes;
}
