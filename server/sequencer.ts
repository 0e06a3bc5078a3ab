/**
 * Live delivery in seq order when several processes commit to one project (a shared store).
 *
 * Each commit is a range of seqs. This process's own commits come with their effective changes;
 * another process's come as a notice (Store.watchCommits), and their changes are read from the
 * store. Either way a commit is handed to the hub only once every seq below it has been: one that
 * arrives ahead of an earlier one waits for it.
 *
 * Per project the sequencer knows the highest seq delivered and the highest known to exist (from
 * any commit or notice, or read from the store after the listening connection came back). While
 * the second is above the first, whatever is missing is read from the store after `gapMs` (a
 * notice lost, a read that failed, a commit that took a seq without a notice here), and again
 * until it is delivered: live delivery never stalls for longer, and nothing is handed on twice.
 */
import type { Subscriber } from './hub.js';
import type { ScopedRowChange, SeqRange } from './store/store.js';

interface Commit {
  readonly range: SeqRange;
  readonly changes: readonly ScopedRowChange[];
  readonly from?: Subscriber | undefined;
}

interface Order {
  /** The highest seq handed to the hub. */
  delivered: number;
  /** The highest seq known to be committed. */
  known: number;
  /** Commits waiting for an earlier one, by the seq they start above. */
  readonly held: Map<number, Commit>;
  gap: ReturnType<typeof setTimeout> | null;
}

export class Sequencer {
  readonly #deliver: (projectId: string, changes: readonly ScopedRowChange[], from?: Subscriber) => void;
  readonly #read: (projectId: string, range: SeqRange) => Promise<ScopedRowChange[]>;
  readonly #gapMs: number;
  readonly #orders = new Map<string, Order>();
  #stopped = false;

  constructor(
    deliver: (projectId: string, changes: readonly ScopedRowChange[], from?: Subscriber) => void,
    read: (projectId: string, range: SeqRange) => Promise<ScopedRowChange[]>,
    gapMs = 1000,
  ) {
    this.#deliver = deliver;
    this.#read = read;
    this.#gapMs = gapMs;
  }

  /**
   * Where a project's order starts: its seq when this process began listening (read after the
   * listening began, so every commit above it is heard of or made here). A project it has no
   * start for is one made since, whose seqs start at 0.
   */
  start(projectId: string, seq: number): void {
    if (!this.#orders.has(projectId)) this.#orders.set(projectId, { delivered: seq, known: seq, held: new Map(), gap: null });
  }

  /** The projects it keeps an order for. */
  projects(): string[] {
    return [...this.#orders.keys()];
  }

  /** A commit of this process, with its effective changes (`from`: the socket that pushed it). */
  local(projectId: string, range: SeqRange, changes: readonly ScopedRowChange[], from?: Subscriber): void {
    if (range.to > range.from) this.#add(projectId, { range, changes, from });
  }

  /** Another process's commit. */
  remote(projectId: string, range: SeqRange): void {
    const order = this.#order(projectId);
    order.known = Math.max(order.known, range.to);
    if (range.to <= order.delivered) return;
    this.#read(projectId, range).then(
      (changes) => this.#add(projectId, { range, changes }),
      // Left unread: the gap it leaves is read again after gapMs.
      () => this.#drain(projectId),
    );
  }

  /** The store is at `seq` now (read after the listening connection came back, or after a commit with no notice here). */
  committedUpTo(projectId: string, seq: number): void {
    const order = this.#order(projectId);
    order.known = Math.max(order.known, seq);
    this.#drain(projectId, 0);
  }

  /** A project deleted here: its order goes with it (one made again under its id starts at 0). */
  forget(projectId: string): void {
    const order = this.#orders.get(projectId);
    if (order?.gap) clearTimeout(order.gap);
    this.#orders.delete(projectId);
  }

  stop(): void {
    this.#stopped = true;
    for (const order of this.#orders.values()) if (order.gap) clearTimeout(order.gap);
  }

  #order(projectId: string): Order {
    let order = this.#orders.get(projectId);
    if (!order) this.#orders.set(projectId, (order = { delivered: 0, known: 0, held: new Map(), gap: null }));
    return order;
  }

  #add(projectId: string, commit: Commit): void {
    const order = this.#order(projectId);
    order.known = Math.max(order.known, commit.range.to);
    // What of it is not yet delivered: a gap read may overlap a commit delivered meanwhile.
    if (commit.range.to > order.delivered) {
      const from = Math.max(commit.range.from, order.delivered);
      const kept = order.held.get(from);
      if (!kept || kept.range.to < commit.range.to) {
        order.held.set(from, { ...commit, range: { from, to: commit.range.to }, changes: commit.changes.filter((change) => change.seq > from) });
      }
    }
    this.#drain(projectId);
  }

  #drain(projectId: string, gapMs = this.#gapMs): void {
    const order = this.#orders.get(projectId);
    if (!order) return;
    for (;;) {
      const next = order.held.get(order.delivered);
      if (!next) break;
      order.held.delete(order.delivered);
      const fresh = next.changes.filter((change) => change.seq > order.delivered);
      if (fresh.length > 0) this.#deliver(projectId, fresh, next.from);
      order.delivered = next.range.to;
    }
    for (const from of order.held.keys()) if (from < order.delivered) order.held.delete(from);
    if (order.gap) clearTimeout(order.gap);
    order.gap = null;
    if (order.known <= order.delivered || this.#stopped) return;
    order.gap = setTimeout(() => {
      order.gap = null;
      if (this.#orders.get(projectId) !== order) return;
      const ahead = [...order.held.keys()].filter((from) => from > order.delivered);
      const range = { from: order.delivered, to: ahead.length > 0 ? Math.min(...ahead) : order.known };
      this.#read(projectId, range).then(
        (changes) => this.#add(projectId, { range, changes }),
        () => this.#drain(projectId),
      );
    }, gapMs);
    order.gap.unref();
  }
}
