/**
 * PocketSync on the main thread: starts the database worker, opens the database through it, and
 * hands out the `database` API. The worker holds SQLite; this side holds no data. With several tabs
 * of one profile, one tab's worker holds the database and the others' workers relay to it
 * (worker/tabs.ts); this side is the same in every tab.
 */
import { proxy, transfer, wrap, type Endpoint } from 'comlink';
import { Database } from './database.js';
import { PocketSyncError } from './errors.js';
import { ErrorKind } from './protocol/error-kind.js';
import type { Notification as WorkerNotification, OpenResult, Schema, StorageKind, SyncStatusMessage, WorkerApi } from './protocol/worker-api.js';
import { Sync } from './sync.js';
import { Watches } from './watch.js';
import { WorkerClient } from './worker-client.js';

export interface PocketSyncOptions {
  /** The database file in this origin's storage; use one per app and signed-in user. */
  readonly dbName: string;
  /** The app's tables: the version it expects and the migrations that build it. */
  readonly schema?: Schema;
  /** The tables to sync; every user table when absent. */
  readonly tables?: readonly string[];
  /**
   * The sync server (http(s)://host), the app's project there, and the user's token, or a function
   * that returns a fresh one (called at each connection, and again after an auth failure). Sync runs
   * when all three are given; without them the database is local only.
   */
  readonly serverUrl?: string;
  readonly projectId?: string;
  readonly authToken?: string | (() => string | Promise<string>);
  /** The app's version (e.g. '2.3.1'): the server's operators see which version each device runs. */
  readonly appVersion?: string;
  /** Force a storage kind; by default the best available (opfs-sahpool, then opfs, then memory). */
  readonly storage?: StorageKind;
  /**
   * Where the WorkerApi runs. By default a module Worker on this package's worker script; pass a
   * Worker built by your bundler, or any Comlink endpoint whose other side exposes the WorkerApi.
   */
  readonly worker?: Endpoint | (() => Endpoint);
}

type TablesListener = (tables: readonly string[]) => void;

function defaultWorker(): Worker {
  return new Worker(new URL('../worker/worker.js', import.meta.url), { type: 'module', name: 'pocketsync' });
}

export class PocketSync {
  /**
   * Where the data lives: 'opfs-sahpool' or 'opfs' persist; 'memory' does not, except that where
   * memory is the fallback for a missing OPFS it is saved to IndexedDB after each write (`warning`).
   */
  readonly storage: StorageKind;
  #warning: string | undefined;
  #deviceId: string;
  readonly schemaVersion: number;
  readonly syncedTables: readonly string[];
  readonly database: Database;
  /** Sync status and control. */
  readonly sync: Sync;
  readonly options: PocketSyncOptions;

  readonly #client: WorkerClient;
  readonly #endpoint: Endpoint;
  readonly #port: MessagePort;
  readonly #listeners = new Set<TablesListener>();
  readonly #warningListeners = new Set<(warning: string) => void>();

  /** Starts the worker, opens (and migrates) the database, and resolves to the instance. */
  static async initialize(options: PocketSyncOptions): Promise<PocketSync> {
    const endpoint = typeof options.worker === 'function' ? options.worker() : (options.worker ?? defaultWorker());
    const client = new WorkerClient(wrap<WorkerApi>(endpoint));
    const channel = new MessageChannel();
    const syncUrl = syncEndpoint(options);
    // Status messages can arrive before the instance exists; keep the latest.
    let early: SyncStatusMessage['status'] | null = null;
    channel.port1.onmessage = (event: MessageEvent<SyncStatusMessage>) => {
      if (event.data?.type === 'sync-status') early = event.data.status;
    };
    let opened: OpenResult;
    try {
      const openOptions = {
        dbName: options.dbName,
        ...(options.schema ? { schema: options.schema } : {}),
        ...(options.tables ? { tables: options.tables } : {}),
        ...(options.storage ? { storage: options.storage } : {}),
        ...(syncUrl ? { syncUrl } : {}),
        ...(options.appVersion !== undefined ? { appVersion: options.appVersion } : {}),
      };
      const authToken = options.authToken;
      const token = syncUrl && authToken !== undefined ? proxy(async () => (typeof authToken === 'function' ? await authToken() : authToken)) : undefined;
      opened = await client.call((api) => api.open(openOptions, transfer(channel.port2, [channel.port2]), token));
    } catch (error) {
      client.markClosed('initialization failed');
      channel.port1.close();
      terminate(endpoint);
      throw error;
    }
    if (opened.warning) console.warn(`PocketSync: ${opened.warning}`);
    // The memory fallback's copy lives in IndexedDB, which persistence protects from eviction too.
    if (opened.storage !== 'memory' || options.storage === undefined) void requestPersistence();
    const instance = new PocketSync(options, endpoint, client, channel.port1, opened, syncUrl !== undefined);
    if (early) instance.sync.received(early);
    return instance;
  }

  private constructor(options: PocketSyncOptions, endpoint: Endpoint, client: WorkerClient, port: MessagePort, opened: OpenResult, syncEnabled: boolean) {
    this.options = options;
    this.#endpoint = endpoint;
    this.#client = client;
    this.#port = port;
    this.storage = opened.storage;
    this.#warning = opened.warning;
    this.#deviceId = opened.deviceId;
    this.schemaVersion = opened.schemaVersion;
    this.syncedTables = opened.syncedTables;
    const watches = new Watches(client);
    this.database = new Database(client, watches);
    this.sync = new Sync(client, watches, syncEnabled);
    this.#listeners.add((tables) => watches.tablesChanged(tables));
    port.onmessage = (event: MessageEvent<WorkerNotification>) => {
      if (event.data?.type === 'tables-changed') for (const listener of this.#listeners) listener(event.data.tables);
      else if (event.data?.type === 'sync-status') this.sync.received(event.data.status);
      else if (event.data?.type === 'conflict') this.sync.conflicted(event.data.conflict);
      else if (event.data?.type === 'quarantine') this.sync.quarantinedNow(event.data.entries);
      else if (event.data?.type === 'warning') this.#warned(event.data.warning);
    };
    if ('addEventListener' in endpoint && endpoint instanceof EventTarget) {
      endpoint.addEventListener('error', () => client.markClosed('the database worker failed'));
    }
    if (opened.storage === 'memory' && typeof window !== 'undefined') window.addEventListener('pagehide', this.#pageHidden);
  }

  /**
   * A memory fallback saves its copy a little after each write; a page going away asks for the
   * save at once. Best effort: the browser may stop the worker before the write is through.
   */
  readonly #pageHidden = (): void => {
    if (!this.#client.isClosed) this.#client.call((api) => api.flush()).catch(() => undefined);
  };

  /**
   * Why data may not persist, when it may not: memory storage because OPFS is missing (then saved
   * to IndexedDB, with what that means), and whether saving it there fails. See `onWarning`.
   */
  get warning(): string | undefined {
    return this.#warning;
  }

  /** Calls `listener` with the whole new warning whenever it changes after initialize. */
  onWarning(listener: (warning: string) => void): () => void {
    this.#warningListeners.add(listener);
    return () => this.#warningListeners.delete(listener);
  }

  #warned(warning: string): void {
    if (warning === this.#warning) return;
    this.#warning = warning;
    console.warn(`PocketSync: ${warning}`);
    for (const listener of this.#warningListeners) listener(warning);
  }

  /** This database's device id (random; a reset() gives a new one). */
  get deviceId(): string {
    return this.#deviceId;
  }

  /**
   * Sign-out: deletes the local database (rows, unsynced changes, cursor; for the memory fallback,
   * its copy in IndexedDB too) and the device id, and leaves an empty database open with sync
   * stopped. Watchers re-run and find nothing.
   */
  async reset(): Promise<void> {
    const result = await this.#client.call((api) => api.reset());
    this.#deviceId = result.deviceId;
    if (result.warning !== undefined) this.#warned(result.warning);
  }

  /** Calls `listener` with the names of the tables each committed write changed. */
  onTablesChanged(listener: TablesListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Closes the database and stops the worker. Later calls fail with kind 'closed'. */
  async close(): Promise<void> {
    try {
      if (!this.#client.isClosed) await this.#client.call((api) => api.close());
    } finally {
      this.#client.markClosed('PocketSync was closed');
      this.#port.close();
      this.#listeners.clear();
      this.#warningListeners.clear();
      if (typeof window !== 'undefined') window.removeEventListener('pagehide', this.#pageHidden);
      terminate(this.#endpoint);
    }
  }

  /** Same as close(). */
  dispose(): Promise<void> {
    return this.close();
  }
}

/** ws(s)://host/v1/projects/<project>/sync from the options, when sync is configured. */
function syncEndpoint(options: PocketSyncOptions): string | undefined {
  if (!options.serverUrl || !options.projectId || options.authToken === undefined) return undefined;
  const url = new URL(`v1/projects/${encodeURIComponent(options.projectId)}/sync`, options.serverUrl.endsWith('/') ? options.serverUrl : `${options.serverUrl}/`);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.toString();
}

function terminate(endpoint: Endpoint): void {
  if (typeof Worker !== 'undefined' && endpoint instanceof Worker) endpoint.terminate();
}

async function requestPersistence(): Promise<void> {
  try {
    if (typeof navigator !== 'undefined' && navigator.storage?.persist) await navigator.storage.persist();
  } catch {
    // Best effort: the browser may refuse, and the data is still stored.
  }
}

export { ErrorKind, PocketSyncError };
