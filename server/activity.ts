/**
 * What each project does, counted as it happens: per second for the last five minutes (in
 * memory, for the console's live chart) and per minute for good (added to the store every few
 * seconds, for the 24-hour and 7-day charts and the daily counts). Nothing is ever recounted from
 * the change log.
 *
 * A tick each second closes the second (pushes, changes, catch-up rows, and the sockets open at
 * its end) and tells the listeners (the console's live streams).
 */
import type { PushOutput, ActivitySample, Store } from './store/store.js';

/** One second of one project. */
export interface Second {
  /** The second's start, ms since the epoch. */
  readonly at: number;
  readonly pushes: number;
  readonly changes: number;
  readonly conflicts: number;
  readonly rejected: number;
  readonly catchUpRows: number;
  /** Sockets open at the second's end. */
  readonly connections: number;
}

/** Seconds kept per project: the live chart's five minutes. */
export const SECONDS_KEPT = 300;
const MINUTE = 60_000;

type Counts = { pushes: number; changes: number; applied: number; conflicts: number; rejected: number; catchUpRows: number };
const zero = (): Counts => ({ pushes: 0, changes: 0, applied: 0, conflicts: 0, rejected: 0, catchUpRows: 0 });

/** Each second as it closes; null once the project is gone (the stream ends). */
export type SecondListener = (second: Second | null) => void;

export class Activity {
  readonly #store: Store;
  readonly #connections: () => ReadonlyMap<string, number>;
  /** The second being counted, per project. */
  readonly #current = new Map<string, Counts>();
  readonly #seconds = new Map<string, Second[]>();
  /** Counts not yet added to the store, per project and minute. */
  readonly #unsaved = new Map<string, ActivitySample>();
  /** Counts being written by the save in progress: still counted by unsaved() until they are. */
  #inFlight: readonly ActivitySample[] = [];
  /** The live streams of each project: a watched project gets a second every second, idle or not. */
  readonly #listeners = new Map<string, Set<SecondListener>>();
  readonly #tick: ReturnType<typeof setInterval>;
  readonly #flush: ReturnType<typeof setInterval>;
  #saving: Promise<void> = Promise.resolve();
  /** Projects that had sockets at the last tick: their next idle second is still worth a point. */
  #connected = new Set<string>();

  constructor(store: Store, connections: () => ReadonlyMap<string, number>, saveEveryMs = 5000) {
    this.#store = store;
    this.#connections = connections;
    this.#tick = setInterval(() => this.tick(), 1000);
    this.#tick.unref();
    this.#flush = setInterval(() => void this.save(), saveEveryMs);
    this.#flush.unref();
  }

  pushed(projectId: string, out: PushOutput): void {
    const counts = this.#counts(projectId);
    counts.pushes++;
    counts.changes += out.results.length;
    for (const result of out.results) {
      if (result.outcome === 'applied') counts.applied++;
      else if (result.outcome === 'rejected') counts.rejected++;
    }
    counts.conflicts += out.conflicts.length;
  }

  caughtUp(projectId: string, rows: number): void {
    if (rows > 0) this.#counts(projectId).catchUpRows += rows;
  }

  /** The project's last five minutes, oldest first. */
  recent(projectId: string): readonly Second[] {
    return this.#seconds.get(projectId) ?? [];
  }

  /**
   * What was counted since `since` and is not in the store yet (the current second, the minutes
   * not yet saved): added to the store's counts, a page shows every change at once.
   */
  unsaved(projectId: string, since: number): { changes: number; conflicts: number; rejected: number } {
    const totals = { changes: 0, conflicts: 0, rejected: 0 };
    const add = (counts: { changes: number; conflicts: number; rejected: number }) => {
      totals.changes += counts.changes;
      totals.conflicts += counts.conflicts;
      totals.rejected += counts.rejected;
    };
    for (const sample of [...this.#unsaved.values(), ...this.#inFlight]) if (sample.projectId === projectId && sample.minute >= since) add(sample);
    const current = this.#current.get(projectId);
    if (current) add(current);
    return totals;
  }

  /** Calls `listener` with each second of the project as it closes; returns the way to stop. */
  listen(projectId: string, listener: SecondListener): () => void {
    let listeners = this.#listeners.get(projectId);
    if (!listeners) this.#listeners.set(projectId, (listeners = new Set()));
    listeners.add(listener);
    return () => {
      listeners.delete(listener);
      if (listeners.size === 0 && this.#listeners.get(projectId) === listeners) this.#listeners.delete(projectId);
    };
  }

  /** Closes the current second of every project (called each second; tests call it directly). */
  tick(now = Date.now()): void {
    const at = Math.floor(now / 1000) * 1000 - 1000;
    const connections = this.#connections();
    const projects = new Set([...this.#current.keys(), ...connections.keys(), ...this.#connected, ...this.#listeners.keys()]);
    this.#connected = new Set(connections.keys());
    for (const projectId of projects) {
      const counts = this.#current.get(projectId) ?? zero();
      this.#current.delete(projectId);
      const second: Second = {
        at, pushes: counts.pushes, changes: counts.changes, conflicts: counts.conflicts, rejected: counts.rejected,
        catchUpRows: counts.catchUpRows, connections: connections.get(projectId) ?? 0,
      };
      let seconds = this.#seconds.get(projectId);
      if (!seconds) this.#seconds.set(projectId, (seconds = []));
      seconds.push(second);
      if (seconds.length > SECONDS_KEPT) seconds.splice(0, seconds.length - SECONDS_KEPT);
      this.#add(projectId, Math.floor(at / MINUTE) * MINUTE, counts, second.connections);
      for (const listener of this.#listeners.get(projectId) ?? []) listener(second);
    }
  }

  /** Adds what was counted to the store's minutes; at most one save at a time. */
  save(): Promise<void> {
    this.#saving = this.#saving.then(async () => {
      if (this.#unsaved.size === 0) return;
      const samples = [...this.#unsaved.values()];
      this.#unsaved.clear();
      this.#inFlight = samples;
      try {
        await this.#store.addActivity(samples);
        this.#inFlight = [];
      } catch (error) {
        this.#inFlight = [];
        // Counts only, and never the data: said once per failed save, and the next save goes on.
        console.error(JSON.stringify({ event: 'error', kind: 'internal', message: `activity counts were not saved: ${String(error)}` }));
      }
    });
    return this.#saving;
  }

  /** Forgets a deleted project: its counts, and its streams, which end. */
  forget(projectId: string): void {
    for (const listener of this.#listeners.get(projectId) ?? []) listener(null);
    this.#listeners.delete(projectId);
    this.#current.delete(projectId);
    this.#seconds.delete(projectId);
    this.#connected.delete(projectId);
    for (const [key, sample] of this.#unsaved) if (sample.projectId === projectId) this.#unsaved.delete(key);
  }

  /** Counts the current second and saves everything. */
  async close(): Promise<void> {
    clearInterval(this.#tick);
    clearInterval(this.#flush);
    this.tick(Date.now() + 1000);
    await this.save();
  }

  #counts(projectId: string): Counts {
    let counts = this.#current.get(projectId);
    if (!counts) this.#current.set(projectId, (counts = zero()));
    return counts;
  }

  #add(projectId: string, minute: number, counts: Counts, connections: number): void {
    const key = `${projectId}\u0000${minute}`;
    const sample = this.#unsaved.get(key);
    this.#unsaved.set(key, {
      projectId,
      minute,
      pushes: (sample?.pushes ?? 0) + counts.pushes,
      changes: (sample?.changes ?? 0) + counts.changes,
      applied: (sample?.applied ?? 0) + counts.applied,
      conflicts: (sample?.conflicts ?? 0) + counts.conflicts,
      rejected: (sample?.rejected ?? 0) + counts.rejected,
      catchUpRows: (sample?.catchUpRows ?? 0) + counts.catchUpRows,
      connections: Math.max(sample?.connections ?? 0, connections),
    });
  }
}
