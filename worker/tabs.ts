/**
 * Several tabs, one database. Only one connection can hold an opfs-sahpool file, so the tabs of a
 * browser profile take turns with a Web Lock per database. The tab holding it leads: its worker
 * opens the database and runs sync (one socket per profile, not per tab). Every other tab's worker
 * follows: it relays its main thread's calls to the leader over a BroadcastChannel and passes the
 * leader's notifications on, so watch, transactions and the sync status work in every tab. The main
 * thread talks to its own worker either way; the leader's own calls take no extra hop.
 *
 * Handover. Followers queue for the lock. When the leader closes (it closes the database and lets go
 * of the pool before releasing the lock) or dies (the browser releases the lock with its worker, and
 * the pool's handles possibly a little later: storage.ts retries), the next tab in the queue takes
 * the lock, announces itself, opens the database and makes every watch re-run.
 *
 * Exactly once. A relayed call is addressed to one leader, and only that leader runs it; it is
 * never sent again unless the addressee answered that it did not run it, or it changes nothing
 * (reading a query's tables, which watches do when they start). A follower learns that its
 * leader is gone from the leader's own tab lock (granted to the follower when that worker ends)
 * or from a new leader's announcement; the calls still waiting for that leader then fail with
 * kind 'closed': each ran once or not at all. A transaction belongs to the leader that began it
 * and to the tab that began it: under another leader its calls fail with kind 'closed', and the
 * leader rolls it back when that tab goes away (it waits on the tab's lock).
 */
import { ErrorKind, type Result } from '../lib/protocol/error-kind.js';
import type { JoinResult, RelayedMethod, TabMessage } from '../lib/protocol/tabs.js';
import type { Notification, NotificationPort, OpenOptions, OpenResult, SyncStatus, TxId, WorkerApi } from '../lib/protocol/worker-api.js';
import { randomHex } from './random.js';

/** Which argument carries the transaction id, for the methods that take one. */
const TX_ARGUMENT: Partial<Record<RelayedMethod, number>> = { execute: 2, query: 2, insert: 2, update: 4, delete: 3, commit: 0, rollback: 0 };
/** Calls that change nothing, so one cut off by a handover is simply sent to the next leader. */
const REPEATABLE: ReadonlySet<RelayedMethod> = new Set(['readTables', 'syncQuarantined']);
/** How often a tab that does not know the leader asks again (a leader may be starting up). */
const ASK_AGAIN_MS = 250;
/** How long a tab that took over, but could not open the database, waits before it tries again. */
const REOPEN_RETRY_MS = 2_000;

const HANDOVER = 'the tab that held the database went away during this call, which ran once or not at all; retry if it did not';

type AnyMethod = (...args: unknown[]) => Promise<Result<unknown>>;
/** How a relayed call ended: its result, or 'not-run' (the addressee no longer led), or 'cut' (the addressee went away). */
type Outcome = Result<unknown> | 'not-run' | 'cut';

/** True where the tabs of a profile can coordinate (a browser with Web Locks and BroadcastChannel). */
export function canShareAcrossTabs(): boolean {
  return typeof navigator !== 'undefined' && navigator.locks !== undefined && typeof BroadcastChannel !== 'undefined';
}

export interface TabsDeps {
  /** Prepares a follower to take over (worker-api.ts warmUp); run once it has joined. */
  readonly warmUp?: (options: OpenOptions) => Promise<void>;
}

/**
 * The WorkerApi of one tab's worker, sharing the database with the other tabs of the profile.
 * A memory database (asked for explicitly) stays private to its tab, as without this wrapper.
 */
export function shareAcrossTabs(local: WorkerApi, deps: TabsDeps = {}): WorkerApi {
  let session: TabSession | null = null;
  const relay =
    <M extends RelayedMethod>(method: M) =>
    (...args: unknown[]) =>
      (session ? session.call(method, args) : (local[method] as AnyMethod)(...args)) as ReturnType<WorkerApi[M]>;
  return {
    async open(options, notifications, token) {
      if (session || options.storage === 'memory' || !canShareAcrossTabs()) return local.open(options, notifications, token);
      const opening = new TabSession(local, options, notifications, token);
      const result = await opening.open();
      if (!result.ok) {
        await opening.close();
        return result;
      }
      session = opening;
      if (!opening.leads && deps.warmUp) deps.warmUp(options).catch(() => undefined);
      return result;
    },
    close: () => (session ? session.close() : local.close()),
    // Only the tab holding the database has anything unsaved; in a follower this finds nothing open.
    flush: () => local.flush(),
    reset: relay('reset'),
    syncStart: relay('syncStart'),
    syncStop: relay('syncStop'),
    syncQuarantined: relay('syncQuarantined'),
    execute: relay('execute'),
    query: relay('query'),
    insert: relay('insert'),
    update: relay('update'),
    delete: relay('delete'),
    begin: relay('begin'),
    commit: relay('commit'),
    rollback: relay('rollback'),
    readTables: relay('readTables'),
  };
}

class TabSession {
  readonly #id = randomHex(8);
  readonly #local: WorkerApi;
  readonly #options: OpenOptions;
  readonly #port: NotificationPort;
  readonly #token: (() => Promise<string>) | undefined;
  readonly #channel: BroadcastChannel;
  readonly #leaderLock: string;

  /** The leader as last learned (this tab's id when it leads); null while unknown. */
  #leader: string | null = null;
  #leaderChanged: Array<() => void> = [];
  /** Cancels the wait for the current leader's tab lock (how a follower learns it is gone). */
  #leaderWatch: AbortController | null = null;
  /** Set when this tab leads: the database opening, then open. */
  #ready: Promise<Result<OpenResult>> | null = null;
  #status: SyncStatus | null = null;
  /** The storage's warning as it changed since the open (a memory fallback that could not save). */
  #warning: string | null = null;
  #releaseLeadership: (() => void) | null = null;
  #releaseTab: (() => void) | null = null;
  /** Cancels this tab's place in the queue for leadership. */
  readonly #queue = new AbortController();
  #closed = false;

  #nextRequest = 1;
  readonly #pending = new Map<number, { readonly leader: string; readonly settle: (outcome: Outcome) => void }>();
  /** This tab's transaction handles → the leader that began each, and its id there. */
  #nextHandle = 1;
  readonly #transactions = new Map<TxId, { readonly leader: string; readonly tx: TxId }>();
  /** While leading: each open transaction's tab, and the wait on that tab's lock. */
  readonly #owners = new Map<TxId, { readonly tab: string; readonly watch: AbortController | null }>();

  constructor(local: WorkerApi, options: OpenOptions, port: NotificationPort, token: (() => Promise<string>) | undefined) {
    this.#local = local;
    this.#options = options;
    this.#port = port;
    this.#token = token;
    const name = options.dbName.replace(/^\//, '');
    this.#channel = new BroadcastChannel(`pocketsync:${name}`);
    this.#leaderLock = `pocketsync:${name}:leader`;
  }

  /** Leads if no tab does, and otherwise joins the leader and queues to take over from it. */
  async open(): Promise<Result<OpenResult>> {
    this.#channel.onmessage = (event: MessageEvent<TabMessage>) => this.#received(event.data);
    this.#releaseTab = await holdLock(tabLock(this.#id), {});
    const release = await holdLock(this.#leaderLock, { ifAvailable: true });
    if (release) {
      this.#lead(release, false);
    } else {
      holdLock(this.#leaderLock, { signal: this.#queue.signal }).then(
        (granted) => {
          if (granted) this.#lead(granted, true);
        },
        () => undefined, // the queue was left at close
      );
    }
    return this.#join();
  }

  /** True once this tab holds the database. */
  get leads(): boolean {
    return this.#ready !== null;
  }

  /** A call from this tab's main thread: run here when leading, relayed otherwise. */
  async call(method: RelayedMethod, args: unknown[]): Promise<Result<unknown>> {
    for (;;) {
      if (this.#closed) return closed('PocketSync was closed');
      const leader = this.#leader ?? (await this.#nextLeader(null));
      const sent = this.#withLeaderTx(method, args, leader);
      if (!sent) return closed('the transaction has already ended');
      const outcome = leader === this.#id ? await this.#serve(this.#id, method, sent) : await this.#request(leader, method, sent);
      if (outcome === 'not-run' || (outcome === 'cut' && REPEATABLE.has(method))) {
        await this.#nextLeader(leader);
        continue;
      }
      if (outcome === 'cut') return closed(HANDOVER);
      return this.#settleTransaction(method, args, leader, outcome);
    }
  }

  /**
   * Leaves: a leader closes the database and lets go of the pool before the lock, so the next
   * leader opens at once; a follower's open transaction is rolled back by the leader.
   */
  async close(): Promise<Result<void>> {
    if (this.#closed) return { ok: true, value: undefined };
    this.#closed = true;
    this.#queue.abort();
    let result: Result<void> = { ok: true, value: undefined };
    if (this.#ready) {
      await this.#ready;
      result = await this.#local.close();
    } else {
      this.#port.close();
    }
    this.#releaseLeadership?.();
    this.#setLeader(null);
    for (const { watch } of this.#owners.values()) watch?.abort();
    this.#owners.clear();
    this.#channel.close();
    this.#releaseTab?.();
    return result;
  }

  // ---- leading ----

  #lead(release: () => void, takingOver: boolean): void {
    if (this.#closed) {
      release();
      return;
    }
    this.#releaseLeadership = release;
    this.#setLeader(this.#id);
    this.#post({ type: 'leader', leader: this.#id });
    this.#openUntilOpen(takingOver);
  }

  /**
   * A takeover that cannot open (the old worker holding the files past the deadline, say) tries
   * again every few seconds: this tab keeps the lock, so without a retry every tab's calls would
   * fail until the tabs reload. Calls meanwhile get the error, which they may retry.
   */
  #openUntilOpen(takingOver: boolean): void {
    const attempt = this.#openDatabase(takingOver);
    this.#ready = attempt;
    void attempt.then((result) => {
      if (result.ok || !takingOver) return;
      setTimeout(() => {
        if (!this.#closed && this.#ready === attempt) this.#openUntilOpen(true);
      }, REOPEN_RETRY_MS);
    });
  }

  async #openDatabase(takingOver: boolean): Promise<Result<OpenResult>> {
    const sink: NotificationPort = {
      postMessage: (message) => this.#notify(message),
      close: () => this.#port.close(),
    };
    const result = await this.#local.open(this.#options, sink, this.#token);
    // Writes of the previous leader may have gone unannounced, and this tab's watches were fed by it.
    // The tabs joined with the previous leader's warning (a memory copy that could not be read, say).
    if (result.ok && takingOver) {
      const tables = await this.#local.query("SELECT name FROM sqlite_schema WHERE type = 'table'", undefined);
      if (tables.ok) this.#notify({ type: 'tables-changed', tables: tables.value.map((row) => String(row.name)) });
      if (result.value.warning !== undefined) this.#notify({ type: 'warning', warning: result.value.warning });
    }
    return result;
  }

  /** Runs a call of tab `from` (this one or a follower) on the database. */
  async #serve(from: string, method: RelayedMethod | 'join', args: readonly unknown[]): Promise<Outcome> {
    if (!this.#ready || this.#closed) return 'not-run';
    const opened = await this.#ready;
    if (!opened.ok) return opened;
    if (method === 'join') return this.#joined(opened.value, args[0]);
    const at = TX_ARGUMENT[method];
    const tx = at === undefined ? undefined : (args[at] as TxId | undefined);
    if (tx !== undefined && this.#owners.get(tx)?.tab !== from) return closed('the transaction has already ended');
    const result = await (this.#local[method] as AnyMethod)(...args);
    if (method === 'begin' && result.ok) this.#own(result.value as TxId, from);
    if ((method === 'commit' || method === 'rollback') && tx !== undefined) {
      this.#owners.get(tx)?.watch?.abort();
      this.#owners.delete(tx);
    }
    return result;
  }

  #joined(opened: OpenResult, schemaVersion: unknown): Result<JoinResult> {
    if (typeof schemaVersion === 'number' && schemaVersion > opened.schemaVersion) {
      const message = `another tab runs an older version of this app (schema ${opened.schemaVersion}, this one expects ${schemaVersion}): reload or close it`;
      return { ok: false, error: { kind: ErrorKind.Schema, message } };
    }
    return { ok: true, value: { opened: this.#warning === null ? opened : { ...opened, warning: this.#warning }, status: this.#status } };
  }

  /** Records who began a transaction; a follower's is rolled back if its tab goes away first. */
  #own(tx: TxId, tab: string): void {
    if (tab === this.#id) {
      this.#owners.set(tx, { tab, watch: null });
      return;
    }
    const watch = new AbortController();
    this.#owners.set(tx, { tab, watch });
    holdLock(tabLock(tab), { signal: watch.signal }).then(
      (release) => {
        release?.();
        if (this.#owners.get(tx)?.tab !== tab) return;
        this.#owners.delete(tx);
        void this.#local.rollback(tx);
      },
      () => undefined, // the transaction ended first
    );
  }

  #notify(message: Notification): void {
    if (message.type === 'sync-status') this.#status = message.status;
    if (message.type === 'warning') this.#warning = message.warning;
    this.#port.postMessage(message);
    this.#post({ type: 'notify', from: this.#id, message });
  }

  // ---- following ----

  /** Opens through the leader (or as the leader, once this tab becomes it). */
  async #join(): Promise<Result<OpenResult>> {
    for (;;) {
      if (this.#ready) return this.#ready;
      if (this.#closed) return closed('PocketSync was closed');
      const leader = this.#leader ?? (await this.#nextLeader(null));
      if (leader === this.#id) continue;
      const outcome = await this.#request(leader, 'join', [this.#options.schema?.version ?? 0]);
      if (outcome === 'not-run' || outcome === 'cut') {
        await this.#nextLeader(leader);
        continue;
      }
      if (!outcome.ok) return outcome;
      const joined = outcome.value as JoinResult;
      if (joined.status) this.#port.postMessage({ type: 'sync-status', status: joined.status });
      return { ok: true, value: joined.opened };
    }
  }

  #request(leader: string, method: RelayedMethod | 'join', args: readonly unknown[]): Promise<Outcome> {
    return new Promise((settle) => {
      const id = this.#nextRequest++;
      this.#pending.set(id, { leader, settle });
      this.#post({ type: 'request', id, from: this.#id, to: leader, method, args });
    });
  }

  /** Swaps this tab's transaction handle for the leader's id; null when that leader is gone. */
  #withLeaderTx(method: RelayedMethod, args: unknown[], leader: string): unknown[] | null {
    const at = TX_ARGUMENT[method];
    if (at === undefined || args[at] === undefined) return args;
    const tx = this.#transactions.get(args[at] as TxId);
    if (!tx || tx.leader !== leader) return null;
    return args.map((arg, i) => (i === at ? tx.tx : arg));
  }

  /** Hands out a handle for a transaction begun, and forgets one that ended. */
  #settleTransaction(method: RelayedMethod, args: unknown[], leader: string, result: Result<unknown>): Result<unknown> {
    if (method === 'commit' || method === 'rollback') this.#transactions.delete(args[0] as TxId);
    if (method !== 'begin' || !result.ok) return result;
    const handle = this.#nextHandle++;
    this.#transactions.set(handle, { leader, tx: result.value as TxId });
    return { ok: true, value: handle };
  }

  #received(message: TabMessage): void {
    switch (message.type) {
      case 'who-leads':
        if (this.#ready && !this.#closed) this.#post({ type: 'leader', leader: this.#id });
        break;
      case 'leader':
        if (message.leader !== this.#leader && !this.#ready) this.#setLeader(message.leader);
        break;
      case 'request':
        if (message.to === this.#id) void this.#answer(message.id, message.from, message.method, message.args);
        break;
      case 'reply':
        if (message.to === this.#id) this.#settle(message.id, message.result ?? 'not-run');
        break;
      case 'notify':
        if (message.from === this.#leader && message.from !== this.#id) this.#port.postMessage(message.message);
        break;
    }
  }

  async #answer(id: number, from: string, method: RelayedMethod | 'join', args: readonly unknown[]): Promise<void> {
    const outcome = await this.#serve(from, method, args);
    this.#post({ type: 'reply', id, to: from, result: outcome === 'not-run' || outcome === 'cut' ? null : outcome });
  }

  #settle(id: number, outcome: Outcome): void {
    const pending = this.#pending.get(id);
    if (!pending) return;
    this.#pending.delete(id);
    pending.settle(outcome);
  }

  /**
   * A new leader (or none known): calls waiting on another one are cut off, and a follower watches
   * the new leader's tab lock to learn when it goes away.
   */
  #setLeader(leader: string | null): void {
    this.#leader = leader;
    this.#leaderWatch?.abort();
    this.#leaderWatch = null;
    for (const [id, pending] of this.#pending) if (pending.leader !== leader) this.#settle(id, 'cut');
    for (const [handle, tx] of this.#transactions) if (tx.leader !== leader) this.#transactions.delete(handle);
    if (leader !== null && leader !== this.#id && !this.#closed) {
      const watch = new AbortController();
      this.#leaderWatch = watch;
      holdLock(tabLock(leader), { signal: watch.signal }).then(
        (release) => {
          release?.();
          if (this.#leader === leader) this.#setLeader(null);
        },
        () => undefined, // another leader came first
      );
    }
    const waiting = this.#leaderChanged;
    this.#leaderChanged = [];
    for (const wake of waiting) wake();
  }

  /** Resolves to the leader once one other than `previous` is known, asking the tabs meanwhile. */
  async #nextLeader(previous: string | null): Promise<string> {
    while (this.#leader === null || this.#leader === previous) {
      if (this.#closed) return previous ?? this.#id;
      if (this.#leader === null) this.#post({ type: 'who-leads' });
      await new Promise<void>((wake) => {
        this.#leaderChanged.push(wake);
        setTimeout(wake, ASK_AGAIN_MS);
      });
    }
    return this.#leader;
  }

  #post(message: TabMessage): void {
    if (!this.#closed || message.type === 'reply') {
      try {
        this.#channel.postMessage(message);
      } catch {
        // The channel closed under a late reply; its caller learns of the handover from the lock.
      }
    }
  }
}

/** Takes a Web Lock and holds it until the returned function is called; null if `ifAvailable` found it taken. */
function holdLock(name: string, options: LockOptions): Promise<(() => void) | null> {
  return new Promise((resolve, reject) => {
    navigator.locks
      .request(name, options, (lock) => {
        if (!lock) {
          resolve(null);
          return undefined;
        }
        return new Promise<void>((release) => resolve(() => release()));
      })
      .catch(reject);
  });
}

function tabLock(tab: string): string {
  return `pocketsync:tab:${tab}`;
}

function closed(message: string): Result<never> {
  return { ok: false, error: { kind: ErrorKind.Closed, message } };
}
