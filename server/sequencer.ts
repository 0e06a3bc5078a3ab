/**
 * Live delivery in seq order when several processes commit to one project (a shared store).
 *
 * Each commit is a range of seqs. This process's own commits come with their effective changes;
 * another process's come as a notice (Store.watchCommits), and their changes are read from the
 * store. Either way a commit is handed to the hub only once every seq below it has been: one that
 * arrives ahead of an earlier one waits for it. A gap that stays open (a notice lost while the
 * listening connection was down, or a commit that took a seq without a notice of its own here)
 * is read from the store after `gapMs`, so live delivery never stalls for longer.
 */
import type { Subscriber } from './hub.js';
import type { ScopedRowChange, SeqRange } from './store/store.js';

interface Commit {
  readonly range: SeqRange;
  readonly changes: readonly ScopedRowChange[];
  readonly from?: Subscriber | undefined;
}

export class Sequencer {
  readonly #deliver: (projectId: string, changes: readonly ScopedRowChange[], from?: Subscriber) => void;
  readonly #read: (projectId: string, range: SeqRange) => Promise<ScopedRowChange[]>;
  readonly #gapMs: number;
  /** The highest seq handed to the hub, per project. */
  readonly #delivered = new Map<string, number>();
  /** Commits waiting for an earlier one, per project, by the seq they start above. */
  readonly #held = new Map<string, Map<number, Commit>>();
  readonly #gaps = new Map<string, ReturnType<typeof setTimeout>>();

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
    if (!this.#delivered.has(projectId)) this.#delivered.set(projectId, seq);
  }

  /** A commit of this process, with its effective changes (`from`: the socket that pushed it). */
  local(projectId: string, range: SeqRange, changes: readonly ScopedRowChange[], from?: Subscriber): void {
    if (range.to > range.from) this.#add(projectId, { range, changes, from });
  }

  /** Another process's commit. */
  remote(projectId: string, range: SeqRange): void {
    if (range.to <= (this.#delivered.get(projectId) ?? -1)) return;
    this.#read(projectId, range).then(
      (changes) => this.#add(projectId, { range, changes }),
      // Unread now: the gap it leaves is read again after gapMs.
      () => this.#add(projectId, { range: { from: range.from, to: range.from }, changes: [] }),
    );
  }

  stop(): void {
    for (const timer of this.#gaps.values()) clearTimeout(timer);
    this.#gaps.clear();
  }

  #add(projectId: string, commit: Commit): void {
    const delivered = this.#delivered.get(projectId) ?? 0;
    if (commit.range.to > delivered && commit.range.to > commit.range.from) {
      let held = this.#held.get(projectId);
      if (!held) this.#held.set(projectId, (held = new Map<number, Commit>()));
      held.set(commit.range.from, commit);
    }
    this.#drain(projectId, delivered);
  }

  #drain(projectId: string, start: number): void {
    let delivered = start;
    const held = this.#held.get(projectId);
    for (;;) {
      const next = held?.get(delivered);
      if (!next) break;
      held!.delete(delivered);
      const fresh = next.changes.filter((change) => change.seq > delivered);
      if (fresh.length > 0) this.#deliver(projectId, fresh, next.from);
      delivered = next.range.to;
    }
    this.#delivered.set(projectId, delivered);
    const gap = this.#gaps.get(projectId);
    if (gap) clearTimeout(gap);
    this.#gaps.delete(projectId);
    if (!held || held.size === 0) {
      this.#held.delete(projectId);
      return;
    }
    const timer = setTimeout(() => {
      this.#gaps.delete(projectId);
      const upTo = Math.min(...held.keys());
      const range = { from: this.#delivered.get(projectId) ?? delivered, to: upTo };
      this.#read(projectId, range).then(
        (changes) => this.#add(projectId, { range, changes }),
        () => this.#drain(projectId, this.#delivered.get(projectId) ?? delivered),
      );
    }, this.#gapMs);
    timer.unref();
    this.#gaps.set(projectId, timer);
  }
}
