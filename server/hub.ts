/**
 * The fan-out: which sockets are connected to which project and scopes, and delivery of committed
 * effective changes to them, in seq order.
 *
 * A socket that is still catching up (reading batches from the store) buffers live changes; when
 * its catch-up ends at cursor C, the buffered changes with seq > C are sent and it goes live. The
 * store commits in seq order and publish() is called in commit order, so every socket sees every
 * change of its scopes exactly once, in seq order.
 */
import type { Changes } from '../lib/protocol/down.js';
import type { RowChange } from '../lib/protocol/change.js';
import type { ErrorKind } from '../lib/protocol/error-kind.js';
import type { ScopedRowChange } from './store/store.js';

export interface Subscriber {
  readonly projectId: string;
  readonly userId: string;
  readonly deviceId: string;
  /** The signing key its token was verified with. */
  readonly kid: string;
  readonly scopes: ReadonlySet<string>;
  send(message: Changes): void;
  /** Ends its socket with an error frame saying why (an operator's action). */
  close(kind: ErrorKind, message: string, code: number): void;
}

interface Entry {
  readonly subscriber: Subscriber;
  /** Live changes held back while catching up; null once live. */
  buffer: ScopedRowChange[] | null;
}

export class Hub {
  readonly #projects = new Map<string, Map<Subscriber, Entry>>();
  /** Subscribers per project and user (the per-user connection cap). */
  readonly #perUser = new Map<string, number>();

  /** Adds a subscriber in catch-up mode: live changes are held until `live()`. */
  add(subscriber: Subscriber): void {
    let entries = this.#projects.get(subscriber.projectId);
    if (!entries) this.#projects.set(subscriber.projectId, (entries = new Map<Subscriber, Entry>()));
    if (entries.has(subscriber)) return;
    entries.set(subscriber, { subscriber, buffer: [] });
    const key = userKey(subscriber.projectId, subscriber.userId);
    this.#perUser.set(key, (this.#perUser.get(key) ?? 0) + 1);
  }

  /** How many subscribers `userId` has in the project. */
  connectionsOf(projectId: string, userId: string): number {
    return this.#perUser.get(userKey(projectId, userId)) ?? 0;
  }

  /** Catch-up ended at `cursor`: sends what was held back beyond it, then delivers live. */
  live(subscriber: Subscriber, cursor: number): void {
    const entry = this.#projects.get(subscriber.projectId)?.get(subscriber);
    if (!entry || entry.buffer === null) return;
    const held = entry.buffer.filter((change) => change.seq > cursor);
    entry.buffer = null;
    if (held.length > 0) deliver(subscriber, held);
  }

  remove(subscriber: Subscriber): void {
    const entries = this.#projects.get(subscriber.projectId);
    if (!entries?.delete(subscriber)) return;
    if (entries.size === 0) this.#projects.delete(subscriber.projectId);
    const key = userKey(subscriber.projectId, subscriber.userId);
    const left = (this.#perUser.get(key) ?? 1) - 1;
    if (left === 0) this.#perUser.delete(key);
    else this.#perUser.set(key, left);
  }

  /**
   * Delivers committed effective changes to every subscriber of their scopes but the socket that
   * pushed them (its ack answers it). Told apart by subscriber, never by device id: a device id is
   * only what a client says it is, and two sockets may carry the same one.
   */
  publish(projectId: string, changes: readonly ScopedRowChange[], from?: Subscriber): void {
    const entries = this.#projects.get(projectId);
    if (!entries) return;
    for (const entry of entries.values()) {
      if (entry.subscriber === from) continue;
      const visible = changes.filter((change) => entry.subscriber.scopes.has(change.scope));
      if (visible.length === 0) continue;
      if (entry.buffer !== null) entry.buffer.push(...visible);
      else deliver(entry.subscriber, visible);
    }
  }

  /** Closes every subscriber of the project that `which` picks; how many. */
  disconnect(projectId: string, which: (subscriber: Subscriber) => boolean, kind: ErrorKind, message: string, code: number): number {
    const picked = [...(this.#projects.get(projectId)?.keys() ?? [])].filter(which);
    for (const subscriber of picked) subscriber.close(kind, message, code);
    return picked.length;
  }

  /** The project's subscribers now (the console's "online"). */
  subscribers(projectId: string): Subscriber[] {
    return [...(this.#projects.get(projectId)?.keys() ?? [])];
  }

  /** Subscribers per project, now. */
  connectionsByProject(): Map<string, number> {
    return new Map([...this.#projects].map(([projectId, entries]) => [projectId, entries.size]));
  }

  get connections(): number {
    let count = 0;
    for (const entries of this.#projects.values()) count += entries.size;
    return count;
  }
}

function userKey(projectId: string, userId: string): string {
  return `${projectId}\u0000${userId}`;
}

function deliver(subscriber: Subscriber, changes: readonly ScopedRowChange[]): void {
  const rows: RowChange[] = changes.map(({ scope: _scope, ...change }) => change);
  subscriber.send({ type: 'changes', changes: rows, cursor: rows.at(-1)?.seq ?? 0, hasMore: false, remaining: 0 });
}
