/**
 * The worker side of the WorkerApi contract (lib/protocol/worker-api.ts): it opens the storage and
 * the engine, runs each call against it, and turns every outcome into a Result.
 *
 * Concurrency: the engine is synchronous, so calls never interleave within themselves; what needs
 * care is a transaction spanning several calls. While one is open, calls that do not carry its id
 * wait (in arrival order) until it commits or rolls back, so nothing from outside reads its
 * uncommitted rows or writes into it. Change notifications are posted on the port handed to `open`
 * once the connection is back in autocommit mode, so a transaction notifies once, at commit. The
 * memory fallback's copy in IndexedDB (memory-snapshot.ts) hears of commits in the same place.
 */
import init, { type Sqlite3Static } from '@sqlite.org/sqlite-wasm';
import { releaseProxy } from 'comlink';
import { ErrorKind, type Result } from '../lib/protocol/error-kind.js';
import type { ConflictMessage, NotificationPort, QuarantineMessage, OpenOptions, OpenResult, Row, SyncStatusMessage, TablesChangedMessage, TxId, WarningMessage, WorkerApi } from '../lib/protocol/worker-api.js';
import { forgetDeviceId, rememberDeviceId, rememberedDeviceId } from './device-id.js';
import { Engine } from './engine.js';
import { EngineError, toErrorData } from './engine-error.js';
import type { MemorySnapshot, SnapshotStore } from './memory-snapshot.js';
import { deleteDatabase, openStorage, releaseStorage } from './storage.js';
import { Replica } from './sync/replica.js';
import { SyncLoop } from './sync/sync-loop.js';

let sqlite3: Promise<Sqlite3Static> | null = null;

/** Loads SQLite-WASM once per worker; the worker entry starts it early (see worker.ts). */
export function loadSqlite(): Promise<Sqlite3Static> {
  sqlite3 ??= init();
  return sqlite3;
}

/**
 * Opens the app's schema once on a throwaway in-memory database, so that a worker which may have to
 * take over the database later has the open path compiled already (V8 compiles and optimizes
 * WebAssembly and JavaScript lazily, as they run). Measured here, a takeover then takes about half
 * the time (bench/README.md). Failures do not matter: the real open reports its own.
 */
export async function warmUp(options: OpenOptions): Promise<void> {
  const module = await loadSqlite();
  const db = new module.oo1.DB(':memory:');
  let engine: Engine | null = null;
  try {
    engine = Engine.open(module, db, { deviceId: 'warm-up', schema: options.schema, tables: options.tables });
    engine.query('SELECT 1');
    const table = engine.syncedTables[0];
    if (table !== undefined) {
      engine.begin();
      try {
        engine.insert(table, {});
      } catch {
        // A NOT NULL column without a default refuses it; preparing it was the point.
      }
      engine.rollback();
    }
  } catch {
    // Nothing to report: the real open reports its own failures.
  } finally {
    if (engine) engine.close();
    else db.close();
  }
}

export interface WorkerApiDeps {
  /** A WebSocket constructor where there is no global one (Node 20: the `ws` package). */
  readonly WebSocket?: unknown;
  /**
   * Where the memory fallback keeps its copy (memory-snapshot.ts); without one it is memory only.
   * Give one only where a Web Lock lets one tab at a time open the database (worker.ts).
   */
  readonly snapshots?: SnapshotStore | null;
}

export function createWorkerApi(deps: WorkerApiDeps = {}): WorkerApi {
  let engine: Engine | null = null;
  let port: NotificationPort | null = null;
  /** The token function open() was given (a Comlink proxy when it came from a page). */
  let tokenSource: (() => Promise<string>) | null = null;
  let sync: SyncLoop | null = null;
  let replica: Replica | null = null;
  /** How the database was opened, for reset(). */
  let opened: { options: OpenOptions; storage: OpenResult['storage'] } | null = null;
  /** The memory fallback's copy in IndexedDB, when it has one. */
  let snapshot: MemorySnapshot | null = null;
  const snapshotOptions = deps.snapshots
    ? { store: deps.snapshots, onWarning: (warning: string) => port?.postMessage({ type: 'warning', warning } satisfies WarningMessage) }
    : undefined;

  /** Opens storage and engine; the caller owns the result. */
  async function openEngine(options: OpenOptions): Promise<{ engine: Engine; result: OpenResult; snapshot: MemorySnapshot | null }> {
    const module = await loadSqlite();
    const storage = await openStorage(module, options.dbName, options.storage, snapshotOptions);
    let created: Engine;
    try {
      created = Engine.open(module, storage.db, {
        deviceId: await rememberedDeviceId(options.dbName, storage.storage),
        schema: options.schema,
        tables: options.tables,
      });
    } catch (error) {
      storage.db.close();
      throw error;
    }
    await rememberDeviceId(options.dbName, created.deviceId, storage.storage);
    // The open itself may have changed it (the first open, a migration).
    storage.snapshot?.changed();
    return {
      engine: created,
      snapshot: storage.snapshot ?? null,
      result: {
        storage: storage.storage,
        deviceId: created.deviceId,
        schemaVersion: created.schemaVersion,
        syncedTables: created.syncedTables,
        ...(storage.warning ? { warning: storage.warning } : {}),
      },
    };
  }
  let activeTx: TxId | null = null;
  let nextTx = 1;
  let waiting: Array<() => void> = [];

  function current(): Engine {
    if (engine === null) throw new EngineError(ErrorKind.Closed, 'the database is not open');
    return engine;
  }

  /**
   * Tells the page which tables the last call changed, and the sync loop when the app wrote
   * something to push. The loop's own work (applying a batch, pruning an ack) changes tables too,
   * but writes nothing to push: `byApp` is false for it.
   */
  function notify(byApp = true): void {
    if (engine === null || port === null) return;
    const tables = engine.takeChangedTables();
    if (tables.length === 0) return;
    port.postMessage({ type: 'tables-changed', tables } satisfies TablesChangedMessage);
    snapshot?.changed();
    // A committed local write: the sync loop pushes it (a burst coalesces there).
    if (byApp && tables.includes('__pocketsync_changes')) sync?.localWrite();
  }

  /** Work of the sync loop, in turn with the app's calls (never inside an app transaction). */
  async function inTurn(work: () => void): Promise<void> {
    await turn(undefined);
    try {
      work();
    } finally {
      notify(false);
    }
  }

  /** Waits until no transaction other than `tx` is open. */
  async function turn(tx: TxId | undefined): Promise<void> {
    if (tx !== undefined) {
      if (tx !== activeTx) throw new EngineError(ErrorKind.Closed, 'the transaction has already ended');
      return;
    }
    while (activeTx !== null) await new Promise<void>((resolve) => waiting.push(resolve));
  }

  function endTransaction(): void {
    activeTx = null;
    const resume = waiting;
    waiting = [];
    for (const resolve of resume) resolve();
  }

  /**
   * SQLite can end a transaction on its own (RAISE(ROLLBACK), OR ROLLBACK, a full disk), and raw SQL
   * can COMMIT it. Its later calls must then fail, not run one by one in autocommit mode.
   */
  function checkTransactionAlive(tx: TxId | undefined): void {
    if (tx === undefined || tx !== activeTx || engine === null || engine.inTransaction) return;
    endTransaction();
    engine.rollback();
  }

  async function run<T>(tx: TxId | undefined, fn: (engine: Engine) => T): Promise<Result<T>> {
    try {
      checkTransactionAlive(tx);
      await turn(tx);
      const value = fn(current());
      checkTransactionAlive(tx);
      notify();
      return { ok: true, value };
    } catch (error) {
      checkTransactionAlive(tx);
      notify();
      return { ok: false, error: toErrorData(error) };
    }
  }

  return {
    async open(options: OpenOptions, notifications: NotificationPort, token?: () => Promise<string>): Promise<Result<OpenResult>> {
      try {
        if (engine !== null) throw new EngineError(ErrorKind.Invalid, 'the database is already open');
        if (typeof options.dbName !== 'string' || options.dbName.length === 0) {
          throw new EngineError(ErrorKind.Invalid, 'dbName must be a non-empty string');
        }
        if (options.syncUrl !== undefined && (!/^wss?:\/\//.test(options.syncUrl) || token === undefined)) {
          throw new EngineError(ErrorKind.Invalid, 'sync needs a ws:// or wss:// URL and a token');
        }
        const fresh = await openEngine(options);
        engine = fresh.engine;
        snapshot = fresh.snapshot;
        opened = { options, storage: fresh.result.storage };
        port = notifications;
        tokenSource = token ?? null;
        notify();
        if (options.syncUrl !== undefined && token !== undefined) {
          const statusPort = notifications;
          replica = new Replica(engine);
          sync = new SyncLoop(engine, replica, {
            url: options.syncUrl,
            token,
            ...(options.appVersion !== undefined ? { appVersion: options.appVersion } : {}),
            run: inTurn,
            ...(deps.WebSocket ? { WebSocket: deps.WebSocket } : {}),
            onStatus: (status) => statusPort.postMessage({ type: 'sync-status', status } satisfies SyncStatusMessage),
            onConflict: (conflict) => statusPort.postMessage({ type: 'conflict', conflict } satisfies ConflictMessage),
            onQuarantine: (entries) => statusPort.postMessage({ type: 'quarantine', entries } satisfies QuarantineMessage),
          });
          sync.start();
        }
        return { ok: true, value: fresh.result };
      } catch (error) {
        return { ok: false, error: toErrorData(error) };
      }
    },
    execute: (sql, params, tx) => run(tx, (e) => e.execute(sql, params)),
    query: (sql, params, tx) => run<Row[]>(tx, (e) => e.query(sql, params)),
    insert: (table, values, tx) => run(tx, (e) => e.insert(table, values)),
    update: (table, values, where, whereParams, tx) => run(tx, (e) => e.update(table, values, where, whereParams)),
    delete: (table, where, whereParams, tx) => run(tx, (e) => e.delete(table, where, whereParams)),
    readTables: (sql) => run(undefined, (e) => e.readTables(sql)),
    async reset() {
      try {
        await turn(undefined);
        if (engine === null || opened === null) throw new EngineError(ErrorKind.Closed, 'the database is not open');
        const tables = engine.syncedTables;
        // First, while the database is intact: a copy left behind would come back at the next open.
        await snapshot?.discard();
        snapshot = null;
        sync?.stop();
        sync = null;
        replica = null;
        engine.close();
        engine = null;
        const { options, storage } = opened;
        await deleteDatabase(await loadSqlite(), options.dbName, storage);
        await forgetDeviceId(options.dbName, storage);
        const fresh = await openEngine(options);
        engine = fresh.engine;
        snapshot = fresh.snapshot;
        // Every watcher of the old data re-runs (and finds it gone).
        port?.postMessage({ type: 'tables-changed', tables: [...tables, '__pocketsync_changes'] } satisfies TablesChangedMessage);
        port?.postMessage({
          type: 'sync-status',
          status: { state: 'offline', pending: 0, lastSyncedAt: null, progress: null, error: null, retryAt: null, quarantined: 0 },
        } satisfies SyncStatusMessage);
        return { ok: true, value: fresh.result };
      } catch (error) {
        return { ok: false, error: toErrorData(error) };
      }
    },
    syncStart: () =>
      run(undefined, () => {
        if (!sync) throw new EngineError(ErrorKind.Invalid, 'this database was opened without sync');
        sync.start();
      }),
    syncStop: () =>
      run(undefined, () => {
        sync?.stop();
      }),
    syncQuarantined: () => run(undefined, () => replica?.quarantined() ?? []),
    async begin() {
      return run(undefined, (e) => {
        e.begin();
        activeTx = nextTx++;
        return activeTx;
      });
    },
    async commit(tx) {
      const result = await run(tx, (e) => {
        try {
          e.commit();
        } catch (error) {
          e.rollback();
          throw error;
        }
      });
      if (activeTx === tx) endTransaction();
      notify();
      return result;
    },
    async rollback(tx) {
      const result = await run(tx, (e) => e.rollback());
      if (activeTx === tx) endTransaction();
      return result;
    },
    async flush() {
      await snapshot?.save();
      return { ok: true, value: undefined };
    },
    async close() {
      try {
        // An open transaction is rolled back; calls waiting on it then find the database closed.
        if (activeTx !== null) {
          engine?.rollback();
          endTransaction();
        }
        sync?.stop();
        sync = null;
        replica = null;
        // The next open (a reload, or the tab that takes over) finds every committed write.
        await snapshot?.close();
        snapshot = null;
        engine?.close();
        engine = null;
        port?.close();
        port = null;
        // The token function is the page's, proxied by Comlink: let go of its port too.
        (tokenSource as Partial<Record<typeof releaseProxy, () => void>> | null)?.[releaseProxy]?.();
        tokenSource = null;
        if (opened?.storage === 'opfs-sahpool') await releaseStorage();
        return { ok: true, value: undefined };
      } catch (error) {
        return { ok: false, error: toErrorData(error) };
      }
    },
  };
}
