/**
 * The sync loop: one connection at a time to the project's sync endpoint, hello with the cursor,
 * catch-up, then live. It pushes the change log and applies what the server sends.
 *
 * Design notes:
 * - The transport is injected (./connection.ts): a Connector call is one attempt, and this loop
 *   owns every retry. Each attempt is: the token, then one connection, then the hello. Whatever
 *   ends an attempt short of a healthy connection (the token function failing, the connection not
 *   opening or closing, a malformed frame, an error frame) is reported in `status.error` with a
 *   kind, and the next attempt waits a growing delay (250 ms doubling to 30 s, with jitter, shown as
 *   `status.retryAt`). The delay starts over once the connection proved healthy: caught up with
 *   nothing to push, or a push acknowledged. So a connection that reaches live and then has its
 *   push refused, again and again, still backs off.
 * - Stopping for good (state 'error', until start()) only for what no retry can fix: the server
 *   refused the token twice in a row (one retry with a fresh token first), the protocol version, or
 *   an unknown project.
 * - Every down frame is parsed against lib/protocol/down.ts before anything of it is applied: a
 *   malformed frame is kind 'invalid', and the connection starts over (from the cursor).
 * - One push in flight at a time, in change-log order. Nothing is marked synced before its ack. A
 *   push lost with its connection is simply sent again after the reconnect, and the server answers
 *   'duplicate' for whatever it had already committed.
 * - A local write is pushed at once when no push is out; a burst coalesces behind the one in flight.
 * - The network (./network.ts) going away is state 'offline': the connection is closed, not left to
 *   hang (a lost network does not close a WebSocket for a long time, and Chromium's offline mode
 *   holds its frames without closing it) or to retry in vain. Its return connects at once, with the
 *   delay started over.
 * - Callbacks and frames of an attempt that was replaced or closed are ignored (`#attempt`): what
 *   they carried (an ack, a batch) comes again on the next connection, from the cursor.
 */
import type { ClientChange, LostWrite, QuarantineEntry } from '../../lib/protocol/change.js';
import { CloseCode } from '../../lib/protocol/close-codes.js';
import { parseDownFrame, type DownMessage } from '../../lib/protocol/down.js';
import { ErrorKind, type ErrorData } from '../../lib/protocol/error-kind.js';
import { PROTOCOL_VERSION } from '../../lib/protocol/protocol-version.js';
import { LIMITS, type DeviceStatus } from '../../lib/protocol/up.js';
import { LIBRARY_VERSION } from '../../lib/version.js';
import type { SyncState, SyncStatus } from '../../lib/protocol/worker-api.js';
import type { Engine } from '../engine.js';
import { toErrorData } from '../engine-error.js';
import type { Connection, Connector } from './connection.js';
import { platformNetwork, type Network } from './network.js';
import type { Replica } from './replica.js';
import { webSocketConnector } from './websocket-connection.js';

export type { SyncState, SyncStatus };

/** The delay before attempt n + 1 after n failed in a row: initialMs · 2^(n-1), at most maxMs, times 0.5–1 (jitter). */
export interface RetryOptions {
  readonly initialMs: number;
  readonly maxMs: number;
}

const RETRY: RetryOptions = { initialMs: 250, maxMs: 30_000 };

export interface SyncLoopOptions {
  /** The project's sync endpoint: ws(s)://host/v1/projects/<project>/sync. */
  readonly url: string;
  readonly token: () => string | Promise<string>;
  /** The transport: one attempt per call. A WebSocket (./websocket-connection.ts) by default. */
  readonly connect?: Connector;
  /** For the default connector, a WebSocket constructor where there is no global one (Node 20: `ws`). */
  readonly WebSocket?: unknown;
  readonly retry?: RetryOptions;
  readonly pushDelayMs?: number;
  readonly onStatus?: (status: SyncStatus) => void;
  /** Tables the applied remote changes touched (for watchers). */
  readonly onRemoteTables?: (tables: string[]) => void;
  /** A local write lost to another device's (reported by the server with the ack). */
  readonly onConflict?: (conflict: LostWrite) => void;
  /**
   * Changes newly kept in the quarantine instead of synced: remote rows the local schema refused,
   * local changes the server rejected (or too large to send). Sync goes on without them.
   */
  readonly onQuarantine?: (entries: readonly QuarantineEntry[]) => void;
  /**
   * Runs database work in turn with the app's own calls (the worker's call queue): a remote batch
   * must not land inside an app transaction. Immediate by default.
   */
  readonly run?: (work: () => void) => Promise<void>;
  /** Whether there is a network; the platform's (navigator.onLine) by default. */
  readonly network?: Network;
  /** The app's version, told to the server with the device's status. */
  readonly appVersion?: string;
  /** The least time between two status frames (default 1 s). */
  readonly statusEveryMs?: number;
}

export class SyncLoop {
  readonly #engine: Engine;
  readonly #replica: Replica;
  readonly #options: SyncLoopOptions;
  readonly #network: Network;
  readonly #connector: Connector;
  readonly #retryOptions: RetryOptions;
  /** Between start() and stop(): the connection may still be null, while offline, waiting or after an error. */
  #running = false;
  #stopWatchingNetwork: (() => void) | null = null;
  #connection: Connection | null = null;
  /** The current attempt; callbacks of any other are stale. */
  #attempt = 0;
  #status: SyncStatus = { state: 'offline', pending: 0, lastSyncedAt: null, progress: null, error: null, retryAt: null, quarantined: 0 };
  #inFlight = false;
  #pushTimer: ReturnType<typeof setTimeout> | null = null;
  #authRetried = false;
  /** Attempts that failed since the connection was last healthy: the next delay. */
  #failures = 0;
  #retryTimer: ReturnType<typeof setTimeout> | null = null;
  #pushRetries = 0;
  #pushRetryTimer: ReturnType<typeof setTimeout> | null = null;
  #done = 0;
  /** The pending and quarantined counts the server was last told on this connection; null before the hello. */
  #reported: { pending: number; quarantined: number } | null = null;
  #statusTimer: ReturnType<typeof setTimeout> | null = null;
  /** Frames are handled one at a time, in arrival order. */
  #queue: Promise<void> = Promise.resolve();

  constructor(engine: Engine, replica: Replica, options: SyncLoopOptions) {
    this.#engine = engine;
    this.#replica = replica;
    this.#options = options;
    this.#network = options.network ?? platformNetwork();
    this.#connector = options.connect ?? webSocketConnector(options.WebSocket);
    this.#retryOptions = options.retry ?? RETRY;
    this.#status = { ...this.#status, lastSyncedAt: replica.lastSyncedAt, quarantined: replica.quarantineCount() };
  }

  get status(): SyncStatus {
    return this.#status;
  }

  /** Connects, or waits for the network; after an error, tries again. */
  start(): void {
    if (this.#running && this.#status.state !== 'error') return;
    this.#running = true;
    this.#failures = 0;
    this.#authRetried = false;
    this.#stopWatchingNetwork ??= this.#network.watch((online) => this.#networkChanged(online));
    const online = this.#network.online;
    this.#update({ state: online ? 'connecting' : 'offline', error: null, progress: null, retryAt: null, pending: this.#replica.pendingCount() });
    if (online) this.#connect();
  }

  stop(): void {
    this.#running = false;
    this.#stopWatchingNetwork?.();
    this.#stopWatchingNetwork = null;
    this.#disconnect();
    if (this.#pushTimer) clearTimeout(this.#pushTimer);
    this.#pushTimer = null;
    this.#update({ state: 'offline', progress: null, retryAt: null });
  }

  /** Starts an attempt now: the token, then the connection (so a failing token opens no socket). */
  #connect(): void {
    this.#disconnect();
    const attempt = this.#attempt;
    this.#update({ state: 'connecting', progress: null, retryAt: null });
    void this.#open(attempt);
  }

  async #open(attempt: number): Promise<void> {
    let token: string;
    try {
      token = await this.#options.token();
      if (typeof token !== 'string' || token === '') throw new Error('it gave no token');
    } catch (error) {
      if (attempt === this.#attempt) this.#retry({ kind: ErrorKind.Auth, message: `the token function failed: ${messageOf(error)}` });
      return;
    }
    if (attempt !== this.#attempt) return;
    let opened = false;
    const connection = this.#connector(this.#options.url, {
      onOpen: () => {
        if (attempt !== this.#attempt) return;
        opened = true;
        this.#hello(attempt, token);
      },
      onMessage: (frame) => {
        if (attempt === this.#attempt) this.#inTurn(() => attempt === this.#attempt && this.#received(frame));
      },
      onClose: (code, reason) => {
        if (attempt === this.#attempt) this.#closed(code, reason, opened);
      },
    });
    if (attempt === this.#attempt) this.#connection = connection;
    else connection.close();
  }

  #hello(attempt: number, token: string): void {
    this.#inFlight = false;
    this.#done = 0;
    this.#update({ state: 'catching-up', progress: { done: 0, total: 0 } });
    this.#inTurn(() => {
      if (attempt !== this.#attempt) return;
      const replica = this.#replica;
      const status: DeviceStatus = {
        pending: replica.pendingCount(),
        quarantined: replica.quarantineCount(),
        library: LIBRARY_VERSION,
        ...(this.#options.appVersion !== undefined ? { appVersion: this.#options.appVersion.slice(0, 64) } : {}),
      };
      this.#reported = { pending: status.pending, quarantined: status.quarantined ?? 0 };
      this.#send({ type: 'hello', protocolVersion: PROTOCOL_VERSION, deviceId: this.#engine.deviceId, cursor: replica.cursor, fresh: replica.fresh, token, status });
    });
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

  /** Ends the current attempt (it never reconnects by itself) and any wait for the next. */
  #disconnect(): void {
    this.#attempt++;
    const connection = this.#connection;
    this.#connection = null;
    this.#inFlight = false;
    this.#clearTimers();
    connection?.close();
  }

  #networkChanged(online: boolean): void {
    if (!this.#running || this.#status.state === 'error') return;
    if (!online) {
      this.#disconnect();
      this.#update({ state: 'offline', progress: null, retryAt: null });
    } else if (this.#status.state === 'offline' || this.#status.state === 'connecting') {
      this.#failures = 0;
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

  /** A frame, handled; a fault in handling it (a bug) is reported and retried like any failure, never swallowed. */
  #received(frame: string): void {
    try {
      this.#message(frame);
    } catch (error) {
      this.#retry(toErrorData(error));
    }
  }

  #message(frame: string): void {
    const parsed = parseDownFrame(frame);
    if (!parsed.ok) {
      this.#retry({ kind: ErrorKind.Invalid, message: parsed.message });
      return;
    }
    const message: DownMessage = parsed.message;
    switch (message.type) {
      case 'changes': {
        const catchingUp = this.#status.state === 'catching-up';
        const resyncEnds = catchingUp && !message.hasMore && (message.resync === true || this.#replica.resyncing);
        try {
          this.#quarantined(this.#replica.apply(message.changes, message.cursor, { resync: message.resync === true, done: catchingUp && !message.hasMore }));
        } catch (error) {
          // The batch was rolled back and the cursor did not move: the next attempt gets it again.
          this.#retry(toErrorData(error));
          return;
        }
        // A re-sync's end may drop rows of any synced table.
        const tables = resyncEnds ? this.#engine.syncedTables : [...new Set(message.changes.map((c) => c.table))];
        if (tables.length > 0) this.#options.onRemoteTables?.(tables);
        if (this.#status.state === 'catching-up') {
          this.#done += message.changes.length;
          if (message.hasMore) {
            this.#update({ progress: { done: this.#done, total: this.#done + message.remaining } });
          } else {
            this.#authRetried = false;
            const pending = this.#replica.pendingCount();
            if (pending === 0) this.#failures = 0;
            this.#update({ state: 'live', progress: null, lastSyncedAt: Date.now(), error: null, retryAt: null, pending });
            this.#push();
          }
        } else {
          this.#update({ lastSyncedAt: Date.now() });
        }
        return;
      }
      case 'ack': {
        if (!this.#inFlight) {
          this.#retry({ kind: ErrorKind.Invalid, message: 'the server sent an ack with no push out' });
          return;
        }
        try {
          // A rejected change moves into the quarantine; the rest of the push was acknowledged.
          this.#quarantined(this.#replica.acknowledge(message.results, message.rows ?? []));
        } catch (error) {
          // Rolled back: the changes stay in the log, and the server answers 'duplicate' when they
          // are pushed again on the next connection.
          this.#retry(toErrorData(error));
          return;
        }
        for (const conflict of message.conflicts ?? []) this.#options.onConflict?.(conflict);
        this.#inFlight = false;
        this.#pushRetries = 0;
        this.#failures = 0;
        this.#update({ pending: this.#replica.pendingCount(), lastSyncedAt: Date.now(), error: null });
        this.#push();
        return;
      }
      case 'error': {
        if (message.kind === ErrorKind.Auth) this.#refusedToken(message);
        else if (message.kind === ErrorKind.Version || message.kind === ErrorKind.NotFound) this.#fail(message);
        else if ((message.kind === ErrorKind.Internal || message.kind === ErrorKind.RateLimited) && this.#inFlight) this.#pushFailed(message);
        // A push refused whole, or a fault during catch-up: per-change outcomes make a refused
        // push a protocol error, so the connection starts over, later.
        else this.#retry(message);
        return;
      }
    }
  }

  /** The server refused the token: one more try at once (the function may mint a fresh one), then stop. */
  #refusedToken(error: ErrorData): void {
    if (!this.#authRetried) {
      this.#authRetried = true;
      this.#update({ error });
      this.#connect();
      return;
    }
    this.#fail(error);
  }

  /** Stops in state 'error' with `error`: no connection until start(). */
  #fail(error: ErrorData): void {
    this.#disconnect();
    this.#update({ state: 'error', error, progress: null, retryAt: null });
  }

  /** Ends the attempt, says why, and starts the next one after the back-off delay. */
  #retry(error: ErrorData): void {
    this.#disconnect();
    if (!this.#running) return;
    if (!this.#network.online) {
      this.#update({ state: 'offline', error, progress: null, retryAt: null });
      return;
    }
    const delay = this.#delay(this.#failures++);
    this.#update({ state: 'connecting', error, progress: null, retryAt: Date.now() + delay });
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      this.#connect();
    }, delay);
  }

  #delay(failures: number): number {
    const { initialMs, maxMs } = this.#retryOptions;
    return Math.min(maxMs, initialMs * 2 ** failures) * (0.5 + Math.random() / 2);
  }

  /**
   * The server failed on the push in flight (kind 'internal'), or refused it for its rate
   * ('rate-limited'), and stored none of it: the push is sent again on this connection after a
   * growing delay, staying live.
   */
  #pushFailed(error: ErrorData): void {
    const delay = this.#delay(this.#pushRetries++);
    this.#update({ error });
    if (this.#pushRetryTimer) clearTimeout(this.#pushRetryTimer);
    const attempt = this.#attempt;
    this.#pushRetryTimer = setTimeout(() => {
      this.#pushRetryTimer = null;
      this.#inTurn(() => {
        if (attempt !== this.#attempt) return;
        this.#inFlight = false;
        this.#push();
      });
    }, delay);
  }

  #clearTimers(): void {
    this.#reported = null;
    if (this.#statusTimer) clearTimeout(this.#statusTimer);
    this.#statusTimer = null;
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    if (this.#pushRetryTimer) clearTimeout(this.#pushRetryTimer);
    this.#pushRetryTimer = null;
  }

  #closed(code: number, reason: string, opened: boolean): void {
    this.#connection = null;
    const said = reason ? `: ${reason}` : '';
    // The server says why in an error frame before it closes (handled above, which ended this
    // attempt); a close with the code alone means the same.
    if (code === CloseCode.auth) this.#refusedToken({ kind: ErrorKind.Auth, message: `the server refused the token${said}` });
    else if (code === CloseCode.version) this.#fail({ kind: ErrorKind.Version, message: `the server speaks another protocol version${said}` });
    else if (code === CloseCode.notFound) this.#fail({ kind: ErrorKind.NotFound, message: `the server has no such project${said}` });
    else if (opened) this.#retry({ kind: ErrorKind.Closed, message: `the connection to the server closed (code ${code}${said})` });
    else this.#retry({ kind: ErrorKind.Closed, message: `could not connect to ${this.#options.url} (code ${code}${said})` });
  }

  /**
   * Sends the oldest pending changes: as many as a push may carry, and fewer when their frame would
   * be over the server's size limit (long texts, blobs). A single change too large to send at all
   * is rejected here, as the server would reject it: it goes into the quarantine with kind
   * 'invalid' (the error names it), and the next changes are pushed.
   */
  #push(): void {
    // Never from inside a transaction (a raw BEGIN): its changes may yet be rolled back. The
    // write that ends it pushes.
    if (this.#status.state !== 'live' || this.#inFlight || this.#engine.inTransaction) return;
    // A clock that ran fast and was set right: the HLC never goes back, so what it stamped and
    // stamps are still ahead, and the server would reject them until real time caught up. They
    // are stamped again from the physical clock, which restarts the HLC (Replica.restampIfAhead).
    this.#replica.restampIfAhead(this.#engine.clock.physical() + LIMITS.maxClockAheadMs);
    let limit: number = LIMITS.maxChangesPerPush;
    for (;;) {
      const changes = this.#replica.pending(limit);
      if (changes.length === 0) return;
      const frame = JSON.stringify({ type: 'push', cursor: this.#replica.cursor, changes });
      if (fitsInFrame(frame)) {
        this.#inFlight = true;
        this.#connection?.send(frame);
        return;
      }
      if (changes.length === 1) {
        const [change] = changes as [ClientChange];
        const error = { kind: ErrorKind.Invalid, message: `change ${change.id} (${change.op} of a row of ${change.table}) is over the server's ${LIMITS.maxMessageBytes}-byte limit for a message, so it cannot be synced` };
        this.#quarantined(this.#replica.acknowledge([{ id: change.id, outcome: 'rejected', seq: null, error }]));
        this.#update({ pending: this.#replica.pendingCount() });
        limit = LIMITS.maxChangesPerPush;
        continue;
      }
      limit = Math.ceil(changes.length / 2);
    }
  }

  /** Reports entries newly in the quarantine, and the count. */
  #quarantined(entries: readonly QuarantineEntry[]): void {
    if (entries.length === 0) return;
    this.#update({ quarantined: this.#replica.quarantineCount() });
    this.#options.onQuarantine?.(entries);
  }

  #send(message: unknown): void {
    this.#connection?.send(JSON.stringify(message));
  }

  #update(patch: Partial<SyncStatus>): void {
    this.#status = { ...this.#status, ...patch };
    this.#options.onStatus?.(this.#status);
    this.#reportStatus();
  }

  /**
   * Tells the server the pending and quarantined counts when they differ from what it was last
   * told on this connection: at most one status frame per `statusEveryMs`, with the counts as they
   * stand when it goes.
   */
  #reportStatus(): void {
    const reported = this.#reported;
    if (reported === null || this.#statusTimer !== null) return;
    const { pending, quarantined } = this.#status;
    if (reported.pending === pending && reported.quarantined === quarantined) return;
    const attempt = this.#attempt;
    this.#statusTimer = setTimeout(() => {
      this.#statusTimer = null;
      if (attempt !== this.#attempt || this.#reported === null) return;
      const now = { pending: this.#status.pending, quarantined: this.#status.quarantined };
      if (now.pending !== this.#reported.pending || now.quarantined !== this.#reported.quarantined) {
        this.#reported = now;
        this.#send({ type: 'status', ...now });
      }
      this.#reportStatus();
    }, this.#options.statusEveryMs ?? 1000);
  }
}

function messageOf(error: unknown): string {
  if (error instanceof Error) return error.message;
  if (typeof error === 'object' && error !== null && typeof (error as { message?: unknown }).message === 'string') return (error as { message: string }).message;
  return String(error);
}

/** Whether a frame is within the message limit: a UTF-16 length a third of it needs no counting. */
function fitsInFrame(frame: string): boolean {
  if (frame.length * 3 <= LIMITS.maxMessageBytes) return true;
  return new TextEncoder().encode(frame).length <= LIMITS.maxMessageBytes;
}
