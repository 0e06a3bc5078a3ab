/**
 * `pocketSync.sync`: the state of syncing with the server, to show and to subscribe to, and the
 * switch to pause it. The worker runs the sync loop; this side mirrors its status.
 */
import type { LostWrite, QuarantineEntry } from './protocol/change.js';
import type { SyncStatus } from './protocol/worker-api.js';
import type { Watches } from './watch.js';
import type { WorkerClient } from './worker-client.js';

export type { SyncState, SyncStatus } from './protocol/worker-api.js';
export type { LostWrite as Conflict, QuarantineEntry } from './protocol/change.js';

/** A row with changes this device made that the server has not acknowledged yet. */
export interface UnsyncedRow {
  readonly table: string;
  /** The row's ps_global_id. */
  readonly id: string;
}

// The local change log holds only changes not yet acknowledged (an ack deletes them); synced = 0
// leaves out those already sent in a push whose ack is due. Quarantined local changes are not in
// it: `quarantined()` lists them, with why.
const UNSYNCED_SQL = 'SELECT DISTINCT table_name AS "table", ps_global_id AS id FROM __pocketsync_changes WHERE synced = 0';
const UNSYNCED_IN_TABLE_SQL = 'SELECT DISTINCT ps_global_id AS id FROM __pocketsync_changes WHERE synced = 0 AND table_name = ?';

const OFFLINE: SyncStatus = { state: 'offline', pending: 0, lastSyncedAt: null, progress: null, error: null, retryAt: null, quarantined: 0 };

export class Sync {
  readonly #client: WorkerClient;
  readonly #watches: Watches;
  readonly #enabled: boolean;
  #status: SyncStatus = OFFLINE;
  readonly #subscribers = new Set<(status: SyncStatus) => void>();
  readonly #conflictListeners = new Set<(conflict: LostWrite) => void>();
  readonly #quarantineListeners = new Set<(entries: readonly QuarantineEntry[]) => void>();

  constructor(client: WorkerClient, watches: Watches, enabled: boolean) {
    this.#client = client;
    this.#watches = watches;
    this.#enabled = enabled;
  }

  /** False when the instance was initialized without serverUrl, projectId and authToken. */
  get enabled(): boolean {
    return this.#enabled;
  }

  /**
   * State (offline | connecting | catching-up | live | error), pending count, last synced, progress,
   * the error that stopped or slows sync (with its kind), when the next attempt is due, and the
   * quarantine's count.
   */
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

  /**
   * Calls `listener` with the changes newly kept in the quarantine instead of synced: a remote row
   * this database refused (a constraint, a type: direction 'remote'), or a local change the server
   * rejected or that is too large to send ('local'), each with its error. Sync goes on without
   * them; `status.quarantined` counts them, and `quarantined()` lists them.
   */
  onQuarantine(listener: (entries: readonly QuarantineEntry[]) => void): () => void {
    this.#quarantineListeners.add(listener);
    return () => this.#quarantineListeners.delete(listener);
  }

  /** Everything in the quarantine, oldest first. */
  quarantined(): Promise<QuarantineEntry[]> {
    return this.#client.call((api) => api.syncQuarantined());
  }

  /**
   * The rows that have changes of this device the server has not acknowledged yet (written
   * offline, or on their way), in every synced table or in one. A row leaves the list when the
   * server's ack for its changes is stored. For a live "not yet synced" mark, use watchUnsynced().
   */
  async unsynced(table?: string): Promise<UnsyncedRow[]> {
    if (table === undefined) return (await this.#client.call((api) => api.query(UNSYNCED_SQL, []))) as unknown as UnsyncedRow[];
    const rows = await this.#client.call((api) => api.query(UNSYNCED_IN_TABLE_SQL, [table]));
    return rows.map((row) => ({ table, id: row.id as string }));
  }

  /**
   * Calls `callback` with the ps_global_ids of `table`'s unsynced rows (see unsynced()) now and
   * whenever that set changes: after a write, and after an ack. Returns the function that stops it.
   */
  watchUnsynced(table: string, callback: (ids: ReadonlySet<string>) => void): () => void {
    let last: ReadonlySet<string> | null = null;
    return this.#watches.add(UNSYNCED_IN_TABLE_SQL, [table], (rows) => {
      const ids = new Set(rows.map((row) => row.id as string));
      if (last && last.size === ids.size && [...ids].every((id) => last?.has(id))) return;
      last = ids;
      callback(ids);
    });
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

  /** @internal Entries newly quarantined, from the worker. */
  quarantinedNow(entries: readonly QuarantineEntry[]): void {
    for (const listener of this.#quarantineListeners) listener(entries);
  }

  /** @internal A status from the worker. */
  received(status: SyncStatus): void {
    this.#status = status;
    for (const callback of this.#subscribers) callback(status);
  }
}
