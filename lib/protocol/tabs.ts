/**
 * What the workers of several tabs on one database say to each other (worker/tabs.ts), over a
 * BroadcastChannel named after the database. Every tab receives every message; `to` says whom a
 * request or a reply is for.
 */
import type { Result } from './error-kind.js';
import type { Notification, OpenResult, SyncStatus, WorkerApi } from './worker-api.js';

/** The WorkerApi calls a follower relays to the leader; `open`, `flush` and `close` stay in each tab. */
export type RelayedMethod = Exclude<keyof WorkerApi, 'open' | 'flush' | 'close'>;

/** The leader's answer to a tab that joins: how the database was opened, and the sync status now. */
export interface JoinResult {
  readonly opened: OpenResult;
  readonly status: SyncStatus | null;
}

export type TabMessage =
  /** From a tab that needs to know who leads; the leader answers with `leader`. */
  | { readonly type: 'who-leads' }
  /** From the leader, when it takes the lock and when asked. */
  | { readonly type: 'leader'; readonly leader: string }
  /** `join` carries the joining tab's schema version; the others carry the method's arguments. */
  | { readonly type: 'request'; readonly id: number; readonly from: string; readonly to: string; readonly method: RelayedMethod | 'join'; readonly args: readonly unknown[] }
  /** `result` null: the addressee did not run the call (it no longer leads), so it may go to the next leader. */
  | { readonly type: 'reply'; readonly id: number; readonly to: string; readonly result: Result<unknown> | null }
  /** A notification of the leader's database, for every tab's main thread. */
  | { readonly type: 'notify'; readonly from: string; readonly message: Notification };
