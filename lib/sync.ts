/**
 * `pocketSync.sync`: the state of syncing with the server, to show and to subscribe to, and the
 * switch to pause it. The worker runs the sync loop; this side mirrors its status.
 */
import type { LostWrite } from './protocol/change.js';
import type { SyncStatus } from './protocol/worker-api.js';
import type { WorkerClient } from './worker-client.js';

export type { SyncState, SyncStatus } from './protocol/worker-api.js';
export type { LostWrite as Conflict } from './protocol/change.js';

const OFFLINE: SyncStatus = { state: 'offline', pending: 0, lastSyncedAt: null, progress: null, error: null, retryAt: null };

export class Sync {
  readonly #client: WorkerClient;
  readonly #enabled: boolean;
  #status: SyncStatus = OFFLINE;
  readonly #subscribers = new Set<(status: SyncStatus) => void>();
  readonly #conflictListeners = new Set<(conflict: LostWrite) => void>();

  constructor(client: WorkerClient, enabled: boolean) {
    this.#client = client;
    this.#enabled = enabled;
  }

  /** False when the instance was initialized without serverUrl, projectId and authToken. */
  get enabled(): boolean {
    return this.#enabled;
  }

  /** State (offline | connecting | catching-up | live | error), pending count, last synced, progress. */
  get status(): SyncStatus {
    return this.#status;
  }

  /** Calls `callback` now and on every status change; returns the unsubscribe function. */
  subscribe(callback: (status: SyncStatus) => void): () => void {
    this.#subscribers.add(callback);
    callback(this.#status);
    return () => this.#subscribers.delete(callback);
  }

  /**
   * Calls `listener` whenever a write of this device lost to another device's: the table, the row
   * (ps_global_id), the column (null for the whole row), and the losing and winning values.
   */
  onConflict(listener: (conflict: LostWrite) => void): () => void {
    this.#conflictListeners.add(listener);
    return () => this.#conflictListeners.delete(listener);
  }

  /** Connects (again) after stop(); it starts on its own at initialize. */
  start(): Promise<void> {
    return this.#client.call((api) => api.syncStart());
  }

  /** Disconnects; local reads and writes go on, and writes queue until start(). */
  stop(): Promise<void> {
    return this.#client.call((api) => api.syncStop());
  }

  /** @internal A conflict from the worker. */
  conflicted(conflict: LostWrite): void {
    for (const listener of this.#conflictListeners) listener(conflict);
  }

  /** @internal A status from the worker. */
  received(status: SyncStatus): void {
    this.#status = status;
    for (const callback of this.#subscribers) callback(status);
  }
}
