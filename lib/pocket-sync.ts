/**
 * PocketSync on the main thread: starts the database worker, opens the database through it, and
 * hands out the `database` API. The worker holds SQLite; this side holds no data.
 */
import { transfer, wrap, type Endpoint } from 'comlink';
import { Database } from './database.js';
import { PocketSyncError } from './errors.js';
import { ErrorKind } from './protocol/error-kind.js';
import type { OpenResult, Schema, StorageKind, TablesChangedMessage, WorkerApi } from './protocol/worker-api.js';
import { Watches } from './watch.js';
import { WorkerClient } from './worker-client.js';

export interface PocketSyncOptions {
  /** The database file in this origin's storage; use one per app and signed-in user. */
  readonly dbName: string;
  /** The app's tables: the version it expects and the migrations that build it. */
  readonly schema?: Schema;
  /** The tables to sync; every user table when absent. */
  readonly tables?: readonly string[];
  /** The sync server, the app's project there and the user's token (used once sync is enabled). */
  readonly serverUrl?: string;
  readonly projectId?: string;
  readonly authToken?: string | (() => string | Promise<string>);
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
  /** Where the data lives: 'opfs-sahpool' or 'opfs' persist; 'memory' does not. */
  readonly storage: StorageKind;
  /** Why data will not persist, when it will not. */
  readonly warning: string | undefined;
  readonly deviceId: string;
  readonly schemaVersion: number;
  readonly syncedTables: readonly string[];
  readonly database: Database;
  readonly options: PocketSyncOptions;

  readonly #client: WorkerClient;
  readonly #endpoint: Endpoint;
  readonly #port: MessagePort;
  readonly #listeners = new Set<TablesListener>();

  /** Starts the worker, opens (and migrates) the database, and resolves to the instance. */
  static async initialize(options: PocketSyncOptions): Promise<PocketSync> {
    const endpoint = typeof options.worker === 'function' ? options.worker() : (options.worker ?? defaultWorker());
    const client = new WorkerClient(wrap<WorkerApi>(endpoint));
    const channel = new MessageChannel();
    let opened: OpenResult;
    try {
      const openOptions = {
        dbName: options.dbName,
        ...(options.schema ? { schema: options.schema } : {}),
        ...(options.tables ? { tables: options.tables } : {}),
        ...(options.storage ? { storage: options.storage } : {}),
      };
      opened = await client.call((api) => api.open(openOptions, transfer(channel.port2, [channel.port2])));
    } catch (error) {
      client.markClosed('initialization failed');
      channel.port1.close();
      terminate(endpoint);
      throw error;
    }
    if (opened.warning) console.warn(`PocketSync: ${opened.warning}`);
    if (opened.storage !== 'memory') void requestPersistence();
    return new PocketSync(options, endpoint, client, channel.port1, opened);
  }

  private constructor(options: PocketSyncOptions, endpoint: Endpoint, client: WorkerClient, port: MessagePort, opened: OpenResult) {
    this.options = options;
    this.#endpoint = endpoint;
    this.#client = client;
    this.#port = port;
    this.storage = opened.storage;
    this.warning = opened.warning;
    this.deviceId = opened.deviceId;
    this.schemaVersion = opened.schemaVersion;
    this.syncedTables = opened.syncedTables;
    const watches = new Watches(client);
    this.database = new Database(client, watches);
    this.#listeners.add((tables) => watches.tablesChanged(tables));
    port.onmessage = (event: MessageEvent<TablesChangedMessage>) => {
      if (event.data?.type !== 'tables-changed') return;
      for (const listener of this.#listeners) listener(event.data.tables);
    };
    if ('addEventListener' in endpoint && endpoint instanceof EventTarget) {
      endpoint.addEventListener('error', () => client.markClosed('the database worker failed'));
    }
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
      terminate(this.#endpoint);
    }
  }

  /** Same as close(). */
  dispose(): Promise<void> {
    return this.close();
  }
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
