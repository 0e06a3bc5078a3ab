/**
 * The local engine: one SQLite connection with PocketSync's system tables, the app's migrations,
 * change capture on every synced table, and the typed operations of the client API.
 *
 * It is handed an open database and knows nothing of where it runs: the browser worker gives it an
 * OPFS database, Node tests an in-memory one. Everything here is synchronous, so one call never
 * interleaves with another; transactions spanning several calls are coordinated by the caller
 * (worker-api.ts).
 *
 * Design notes:
 * - Which tables a statement reads and writes comes from SQLite's authorizer, consulted while the
 *   statement is prepared (trigger bodies included), never from the SQL text. Prepared statements are
 *   cached with those sets, so the typed API pays the prepare and the authorizer once per shape; any
 *   schema change empties the cache, since a new trigger or view changes the sets.
 * - A DDL statement run through execute() runs inside a savepoint with PocketSync's triggers
 *   removed (they would block DROP COLUMN), and capture is re-installed before the savepoint is
 *   released: either the statement and the new triggers both land, or neither does.
 * - Changed tables accumulate until the connection is back in autocommit mode; the caller takes them
 *   with `takeChangedTables()` and notifies once per committed write.
 * - `applyWithoutCapture` makes the triggers' ps_capturing() false for the duration of a callback,
 *   so applying remote changes never records local ones.
 * - `recursive_triggers` is on, so that the delete an INSERT OR REPLACE performs fires the delete
 *   trigger and is captured like any other delete.
 * - The app's own transaction statements (BEGIN, COMMIT, SAVEPOINT, ...) are refused, known from the
 *   authorizer's transaction and savepoint actions: a transaction the caller's gate does not know
 *   about would let the sync loop push rows later rolled back. begin()/commit() are the way in.
 * - Row identity (row-identity.ts): a table with a declared non-rowid key gets ids derived from its
 *   key, a rowid table random ones; a migration that rebuilds a table gives its rows their ids back
 *   (migrations.ts).
 */
import type { Database as SqliteDb, PreparedStatement, Sqlite3Static } from '@sqlite.org/sqlite-wasm';
import { ErrorKind } from '../lib/protocol/error-kind.js';
import { IDENTIFIER, WIRE_RESERVED_NAMES } from '../lib/protocol/values.js';
import type { ExecuteResult, Params, Row, Schema, SqlValue, Where } from '../lib/protocol/worker-api.js';
import { EngineError, sqliteMessage } from './engine-error.js';
import { HybridLogicalClock } from './hlc.js';
import { randomHex } from './random.js';
import { restoreIdentities, snapshotIdentities, type IdentitySnapshot } from './migrations.js';
import { RawSqlite } from './raw-sqlite.js';
import { registerKeyIdFunction } from './row-identity.js';
import { isSystemName, quoteIdentifier, SYSTEM_PREFIX } from './sql.js';
import { SYSTEM_TABLES_SQL } from './system-tables.js';
import {
  createTriggersSql,
  GLOBAL_ID_COLUMN,
  GLOBAL_ID_INDEX_SUFFIX,
  globalIdIndexName,
  keyIdSql,
  keyOnlyIdSql,
  NEW_GLOBAL_ID_SQL,
  recordChangeSql,
  rowJsonSql,
  type TableInfo,
} from './triggers.js';

/** lib/protocol/values.ts IdSchema: what the wire accepts as a row id. */
const ID = /^[A-Za-z0-9_-]{1,64}$/;

export interface EngineOptions {
  /** The device id to adopt when the database has none yet. */
  readonly deviceId: string;
  readonly schema?: Schema | undefined;
  /** Tables to sync; all user tables when absent. */
  readonly tables?: readonly string[] | undefined;
  /** Wall clock for the HLC (tests). */
  readonly time?: () => number;
}

export interface RowIdentity {
  readonly key: readonly string[] | null;
  readonly localKey: string | null;
}

interface CachedStatement {
  readonly stmt: PreparedStatement;
  readonly reads: ReadonlySet<string>;
  readonly writes: ReadonlySet<string>;
  /** The statement changes the schema (CREATE, DROP, ALTER). */
  readonly ddl: boolean;
  /** The statement begins or ends a transaction or savepoint (BEGIN, COMMIT, SAVEPOINT, ...). */
  readonly transaction: boolean;
}

interface TableMeta {
  readonly info: TableInfo;
  /** Columns an insert or update may set. */
  readonly writable: ReadonlySet<string>;
  /** Columns a where object may test (generated ones and ps_global_id too). */
  readonly testable: ReadonlySet<string>;
  readonly synced: boolean;
}

// Authorizer action codes (sqlite3.h).
const SQLITE_CREATE_INDEX = 1;
const SQLITE_CREATE_TABLE = 2;
const SQLITE_CREATE_TRIGGER = 7;
const SQLITE_CREATE_VIEW = 8;
const SQLITE_DELETE = 9;
const SQLITE_DROP_INDEX = 10;
const SQLITE_DROP_TABLE = 11;
const SQLITE_DROP_TRIGGER = 16;
const SQLITE_DROP_VIEW = 17;
const SQLITE_INSERT = 18;
const SQLITE_READ = 20;
const SQLITE_TRANSACTION = 22;
const SQLITE_UPDATE = 23;
const SQLITE_ALTER_TABLE = 26;
const SQLITE_SAVEPOINT = 32;
const DDL_ACTIONS = new Set([
  SQLITE_CREATE_INDEX, SQLITE_CREATE_TABLE, SQLITE_CREATE_TRIGGER, SQLITE_CREATE_VIEW, SQLITE_DROP_INDEX,
  SQLITE_DROP_TABLE, SQLITE_DROP_TRIGGER, SQLITE_DROP_VIEW, SQLITE_ALTER_TABLE,
]);

const STATEMENT_CACHE_SIZE = 64;
const ROWID_ALIASES = ['rowid', '_rowid_', 'oid'];

/**
 * A new ps_global_id, the same form as the triggers' NEW_GLOBAL_ID_SQL: the time in milliseconds
 * (12 hex digits), then 80 random bits. Time first, so ids made together sort together and the
 * server's tables keyed by them grow at one end instead of at random pages (triggers.ts).
 */
export function newGlobalId(): string {
  return Date.now().toString(16).padStart(12, '0') + randomHex(10);
}

export class Engine {
  readonly deviceId: string;
  readonly clock: HybridLogicalClock;
  readonly #sqlite3: Sqlite3Static;
  readonly #db: SqliteDb;
  readonly #raw: RawSqlite;
  readonly #statements = new Map<string, CachedStatement>();
  /** INSERT SQL by table and column list (cleared whenever table metadata is rebuilt). */
  readonly #insertStatements = new Map<string, string>();
  readonly #changedTables = new Set<string>();
  #tables = new Map<string, TableMeta>();
  /** Synced table names by the id their triggers pass to ps_version(). */
  #tablesById = new Map<number, string>();
  /** Live per-table versions (see system-tables.ts). */
  readonly #versions = new Map<string, number>();
  #capturing = true;
  readonly #functionPointers: number[] = [];
  #collector: { reads: Set<string>; writes: Set<string>; ddl: boolean; transaction: boolean } | null = null;
  #schemaVersion = 0;
  /** The schema changed inside the current transaction: a rollback must re-read table metadata. */
  #schemaChangedInTx = false;
  #savepointDepth = 0;
  #closed = false;
  /** Ids taken before a migration's steps, restored by the capture install that follows. */
  #identitySnapshot: IdentitySnapshot[] | null = null;
  readonly #only: readonly string[] | undefined;

  /** Opens the engine on `db`: system tables, migrations, capture. Throws EngineError. */
  static open(sqlite3: Sqlite3Static, db: SqliteDb, options: EngineOptions): Engine {
    return new Engine(sqlite3, db, options);
  }

  private constructor(sqlite3: Sqlite3Static, db: SqliteDb, options: EngineOptions) {
    this.#sqlite3 = sqlite3;
    this.#db = db;
    this.#raw = new RawSqlite(sqlite3);
    this.#only = options.tables;
    this.#registerCaptureFunctions();
    this.#installAuthorizer();

    db.exec('PRAGMA recursive_triggers = ON');
    db.exec(SYSTEM_TABLES_SQL);
    db.exec({ sql: 'INSERT OR IGNORE INTO __pocketsync_device_state (id, device_id) VALUES (1, ?)', bind: [options.deviceId] });
    this.deviceId = text(db.selectValue('SELECT device_id FROM __pocketsync_device_state WHERE id = 1'));
    this.clock = new HybridLogicalClock(this.deviceId, options.time);
    // The newest stamp this device issued or saw: in the log, or (once the log is pruned, which the
    // sync loop does) in the device state.
    const lastClock = db.selectValue(
      `SELECT max(c) FROM (SELECT last_clock AS c FROM __pocketsync_device_state
       UNION ALL SELECT max(clock) FROM __pocketsync_changes)`,
    );
    if (typeof lastClock === 'string') this.clock.receive(lastClock);
    const versions = db.selectArrays(
      `SELECT table_name, max(version) FROM (SELECT table_name, version FROM __pocketsync_version
       UNION ALL SELECT table_name, max(version) FROM __pocketsync_changes GROUP BY table_name) GROUP BY table_name`,
    );
    for (const [table, version] of versions) this.#versions.set(text(table), Number(version));

    this.#migrateAndInstall(options.schema);
  }

  get schemaVersion(): number {
    return this.#schemaVersion;
  }

  get syncedTables(): string[] {
    return [...this.#tables.values()].filter((t) => t.synced).map((t) => t.info.name);
  }

  /**
   * How a synced table's rows are identified across devices (row-identity.ts), null for a table that
   * does not sync: `key`, the primary-key columns its ps_global_id is derived from (null for a rowid
   * table); `localKey`, a rowid table's INTEGER PRIMARY KEY, a local row number each device hands
   * out itself (null when there is none, and for every keyed table, WITHOUT ROWID ones included).
   */
  rowIdentity(table: string): RowIdentity | null {
    const meta = this.#tables.get(table);
    if (meta?.synced !== true) return null;
    const { identityKey, stableKey } = meta.info;
    return { key: identityKey, localKey: identityKey === null && stableKey !== null ? (stableKey[0] ?? null) : null };
  }

  get inTransaction(): boolean {
    return this.#raw.exports.sqlite3_get_autocommit(this.#pointer) === 0;
  }

  /**
   * Runs one statement with `params`, or a script of several statements without params; a script
   * runs atomically (inside a savepoint).
   */
  execute(sql: string, params?: Params): ExecuteResult {
    return this.#run(sql, params);
  }

  query(sql: string, params?: Params): Row[] {
    return this.#run(sql, params).rows;
  }

  /** Inserts a row; returns its ps_global_id (null for a table that does not sync). */
  insert(table: string, values: Row): string | null {
    const meta = this.#table(table);
    const columns = definedKeys(values);
    const params = columns.map((c) => values[c] as SqlValue);
    if (!meta.synced) {
      this.#run(this.#insertSql(meta, columns), params);
      return null;
    }
    const at = columns.indexOf(GLOBAL_ID_COLUMN);
    const given = at >= 0 ? params[at] : null;
    if (given !== null && (typeof given !== 'string' || !ID.test(given))) {
      throw new EngineError(ErrorKind.Invalid, `${GLOBAL_ID_COLUMN} must be 1-64 characters of A-Z a-z 0-9 _ -`);
    }
    const key = meta.info.identityKey;
    if (key !== null) {
      // The triggers give the row its key's id (and a random one when the key holds a NULL).
      const result = this.#run(this.#insertSql(meta, columns, key), params);
      const derived = result.rows[0]?.[GLOBAL_ID_COLUMN];
      if (typeof derived === 'string') return derived;
      if (given !== null) return given;
      const stored = this.#db.selectValue(`SELECT ${GLOBAL_ID_COLUMN} FROM ${quoteIdentifier(table)} WHERE rowid = ?`, [result.lastInsertRowid]);
      return text(stored);
    }
    let gid = given;
    if (gid === null) {
      gid = newGlobalId();
      if (at >= 0) params[at] = gid;
      else {
        columns.push(GLOBAL_ID_COLUMN);
        params.push(gid);
      }
    }
    this.#run(this.#insertSql(meta, columns), params);
    return gid;
  }

  update(table: string, values: Row, where: Where, whereParams?: readonly SqlValue[]): number {
    const meta = this.#table(table);
    const columns = this.#checkColumns(meta, definedKeys(values), meta.writable);
    if (columns.length === 0) throw new EngineError(ErrorKind.Invalid, 'update needs at least one column to set');
    const [condition, conditionParams] = this.#where(meta, where, whereParams);
    const sql = `UPDATE ${quoteIdentifier(table)} SET ${columns.map((c) => `${quoteIdentifier(c)} = ?`).join(', ')} WHERE ${condition}`;
    return this.#run(sql, [...columns.map((c) => values[c] as SqlValue), ...conditionParams]).changes;
  }

  delete(table: string, where: Where, whereParams?: readonly SqlValue[]): number {
    const meta = this.#table(table);
    const [condition, conditionParams] = this.#where(meta, where, whereParams);
    return this.#run(`DELETE FROM ${quoteIdentifier(table)} WHERE ${condition}`, conditionParams).changes;
  }

  begin(): void {
    this.#run('BEGIN IMMEDIATE', undefined, { control: true });
    this.#schemaChangedInTx = false;
  }

  commit(): void {
    this.#run('COMMIT', undefined, { control: true });
    this.#schemaChangedInTx = false;
  }

  /** Rolls back the open transaction, if any (SQLite may have rolled it back already). */
  rollback(): void {
    if (this.inTransaction) {
      this.#db.exec('ROLLBACK');
      this.#changedTables.clear();
    }
    if (this.#schemaChangedInTx) this.#schemaRolledBack();
  }

  /**
   * Runs `fn` inside a savepoint of the engine's own (the sync replica's batches and rows): all of
   * it lands, or, when it throws, none of it, and the error goes on. Savepoints nest. If SQLite
   * ended the whole transaction (a full disk, say), there is nothing to roll back to and
   * `inTransaction` says so.
   */
  savepoint<T>(fn: () => T): T {
    const name = `__pocketsync_savepoint_${this.#savepointDepth}`;
    const schemaChanged = this.#schemaChangedInTx;
    this.#run(`SAVEPOINT ${name}`, undefined, { control: true });
    this.#savepointDepth++;
    try {
      const result = fn();
      this.#run(`RELEASE ${name}`, undefined, { control: true });
      return result;
    } catch (error) {
      if (this.inTransaction) {
        this.#run(`ROLLBACK TO ${name}`, undefined, { control: true });
        this.#run(`RELEASE ${name}`, undefined, { control: true });
        if (this.#schemaChangedInTx && !schemaChanged) this.#schemaRolledBack();
      }
      throw error;
    } finally {
      this.#savepointDepth--;
    }
  }

  /** Runs `fn` with change capture off: what it writes is not recorded as local changes. */
  applyWithoutCapture<T>(fn: () => T): T {
    const previous = this.#capturing;
    this.#capturing = false;
    try {
      return fn();
    } finally {
      this.#capturing = previous;
    }
  }

  /** The tables a statement reads, as SQLite's authorizer reports them while preparing it. */
  readTables(sql: string): string[] {
    const entry = this.#prepare(sql);
    if (entry.ddl) entry.stmt.finalize();
    return [...entry.reads];
  }

  /**
   * The tables written since the last call, once the connection is back in autocommit mode (so a
   * transaction reports at commit); empty inside a transaction.
   */
  takeChangedTables(): string[] {
    if (this.inTransaction || this.#changedTables.size === 0) return [];
    const tables = [...this.#changedTables];
    this.#changedTables.clear();
    return tables;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#clearStatements();
    this.#sqlite3.capi.sqlite3_set_authorizer(this.#pointer, 0 as never, 0);
    this.#db.close();
    for (const pointer of this.#functionPointers) this.#sqlite3.wasm.uninstallFunction(pointer);
  }

  // ---- capture functions and the authorizer ----

  /**
   * ps_capturing(), ps_tick() and ps_version(id), called by the triggers once per captured row. They
   * are registered as raw WebAssembly callbacks taking and returning integers through the module's
   * exports: the convenience wrappers' argument and string conversions cost more than the capture.
   */
  #registerCaptureFunctions(): void {
    const { capi, wasm } = this.#sqlite3;
    const raw = this.#raw;
    const capturing = wasm.installFunction('v(pip)', (ctx: number) => {
      raw.exports.sqlite3_result_int(ctx, this.#capturing ? 1 : 0);
    });
    const tick = wasm.installFunction('v(pip)', (ctx: number) => {
      raw.exports.sqlite3_result_int64(ctx, BigInt(this.clock.tick()));
    });
    const version = wasm.installFunction('v(pip)', (ctx: number, _argc: number, argv: number) => {
      const table = this.#tablesById.get(raw.firstIntArgument(argv)) ?? '';
      const next = (this.#versions.get(table) ?? 0) + 1;
      this.#versions.set(table, next);
      raw.exports.sqlite3_result_int64(ctx, BigInt(next));
    });
    this.#functionPointers.push(capturing, tick, version, registerKeyIdFunction(this.#sqlite3, this.#pointer));
    capi.sqlite3_create_function_v2(this.#pointer, 'ps_capturing', 0, capi.SQLITE_UTF8, 0, capturing, 0, 0, 0);
    capi.sqlite3_create_function_v2(this.#pointer, 'ps_tick', 0, capi.SQLITE_UTF8, 0, tick, 0, 0, 0);
    capi.sqlite3_create_function_v2(this.#pointer, 'ps_version', 1, capi.SQLITE_UTF8, 0, version, 0, 0, 0);
  }

  #installAuthorizer(): void {
    this.#sqlite3.capi.sqlite3_set_authorizer(
      this.#pointer,
      (_arg, action, arg1, arg2) => {
        const collector = this.#collector;
        if (collector === null) return 0;
        if (action === SQLITE_READ && arg1) collector.reads.add(arg1);
        else if (action === SQLITE_TRANSACTION || action === SQLITE_SAVEPOINT) collector.transaction = true;
        else if ((action === SQLITE_INSERT || action === SQLITE_UPDATE || action === SQLITE_DELETE) && arg1) {
          collector.writes.add(arg1);
        } else if (DDL_ACTIONS.has(action)) {
          collector.ddl = true;
          // The table is the first argument for CREATE/DROP TABLE, the second for the others.
          const table = action === SQLITE_CREATE_TABLE || action === SQLITE_DROP_TABLE ? arg1 : arg2;
          if (table && !table.startsWith('sqlite_')) collector.writes.add(table);
        }
        return 0;
      },
      0,
    );
  }

  // ---- statements ----

  get #pointer(): number {
    const pointer = this.#db.pointer;
    if (pointer === undefined) throw new EngineError(ErrorKind.Closed, 'the database is closed');
    return pointer;
  }

  #prepare(sql: string): CachedStatement {
    const cached = this.#statements.get(sql);
    if (cached) {
      // Move to the most-recently-used end.
      this.#statements.delete(sql);
      this.#statements.set(sql, cached);
      return cached;
    }
    const collector = { reads: new Set<string>(), writes: new Set<string>(), ddl: false, transaction: false };
    this.#collector = collector;
    let stmt: PreparedStatement;
    try {
      stmt = this.#db.prepare(sql);
    } catch (error) {
      throw new EngineError(ErrorKind.Database, sqliteMessage(error));
    } finally {
      this.#collector = null;
    }
    const entry: CachedStatement = { stmt, reads: collector.reads, writes: collector.writes, ddl: collector.ddl, transaction: collector.transaction };
    // DDL statements are not kept: they run once, and change the schema under everything cached.
    if (!entry.ddl) {
      this.#statements.set(sql, entry);
      if (this.#statements.size > STATEMENT_CACHE_SIZE) {
        const oldest = this.#statements.keys().next().value as string;
        this.#statements.get(oldest)?.stmt.finalize();
        this.#statements.delete(oldest);
      }
    }
    return entry;
  }

  #clearStatements(): void {
    for (const { stmt } of this.#statements.values()) stmt.finalize();
    this.#statements.clear();
  }

  /**
   * Runs SQL of the app or of the engine. Transaction control (`control`) is the engine's own: the
   * app's BEGIN / COMMIT / SAVEPOINT would open a transaction that the transaction gate
   * (worker-api.ts) and the sync loop do not know about, so the sync loop could push rows later
   * rolled back, and a remote batch would fail to begin its own.
   */
  #run(sql: string, params?: Params, { control = false }: { control?: boolean } = {}): ExecuteResult {
    if (this.#closed) throw new EngineError(ErrorKind.Closed, 'the database is closed');
    if (!this.#statements.has(sql)) {
      const statements = splitStatements(this.#sqlite3, sql);
      if (statements.length > 1) {
        if (params !== undefined) throw new EngineError(ErrorKind.Invalid, 'parameters can only be given with a single statement');
        return this.#runScript(statements);
      }
    }
    const entry = this.#prepare(sql);
    if (entry.transaction && !control) {
      throw new EngineError(
        ErrorKind.Invalid,
        'transaction statements (BEGIN, COMMIT, ROLLBACK, SAVEPOINT, RELEASE) cannot be run with execute(); use db.transaction() to run several statements atomically',
      );
    }
    if (entry.ddl) return this.#runDdl(entry, params);
    return this.#step(entry, params);
  }

  #step(entry: CachedStatement, params: Params | undefined): ExecuteResult {
    const capi = this.#sqlite3.capi;
    const raw = this.#raw.exports;
    const pointer = entry.stmt.pointer as number;
    const db = this.#pointer;
    const before = raw.sqlite3_total_changes(db);
    const rows: Row[] = [];
    try {
      if (params !== undefined) this.#raw.bind(pointer, params);
      let names: string[] | null = null;
      for (;;) {
        const rc = raw.sqlite3_step(pointer);
        if (rc === capi.SQLITE_DONE) break;
        if (rc !== capi.SQLITE_ROW) throw new EngineError(ErrorKind.Database, capi.sqlite3_errmsg(this.#pointer));
        // Names are read per run, not cached: a SELECT * grows when a column is added.
        names ??= Array.from({ length: capi.sqlite3_column_count(pointer) }, (_, i) => capi.sqlite3_column_name(pointer, i) ?? '');
        const row: Row = {};
        for (let i = 0; i < names.length; i++) {
          let value = capi.sqlite3_column_js(pointer, i) as SqlValue;
          // sqlite3_column_js gives null for an empty BLOB (a zero-length blob has no pointer).
          if (value === null && capi.sqlite3_column_type(pointer, i) === capi.SQLITE_BLOB) value = new Uint8Array(0);
          row[names[i] as string] = value;
        }
        rows.push(row);
      }
    } catch (error) {
      if (error instanceof EngineError) throw error;
      throw new EngineError(ErrorKind.Database, sqliteMessage(error));
    } finally {
      raw.sqlite3_reset(pointer);
      raw.sqlite3_clear_bindings(pointer);
    }
    const changed = raw.sqlite3_total_changes(db) !== before;
    if (changed) for (const table of entry.writes) this.#changedTables.add(table);
    return {
      rows,
      changes: changed ? raw.sqlite3_changes(db) : 0,
      lastInsertRowid: safeInteger(raw.sqlite3_last_insert_rowid(db)),
    };
  }

  /** A schema change: with PocketSync's triggers out of the way, and capture re-installed after. */
  #runDdl(entry: CachedStatement, params: Params | undefined): ExecuteResult {
    try {
      return this.#inSavepoint(() => {
        this.#dropAllTriggers();
        const result = this.#step(entry, params);
        try {
          this.#installCapture({ tolerateMissing: true });
        } catch (error) {
          if (error instanceof EngineError) throw error;
          throw new EngineError(ErrorKind.Database, `the statement was undone: PocketSync could not capture changes after it (${sqliteMessage(error)})`);
        }
        for (const table of entry.writes) this.#changedTables.add(table);
        return result;
      });
    } finally {
      entry.stmt.finalize();
      if (this.inTransaction) this.#schemaChangedInTx = true;
    }
  }

  #runScript(statements: string[]): ExecuteResult {
    return this.#inSavepoint(() => {
      let last: ExecuteResult = { rows: [], changes: 0, lastInsertRowid: 0 };
      for (const statement of statements) last = this.#run(statement);
      return last;
    });
  }

  /** Runs `fn` inside a savepoint: all of it lands, or none of it (and the schema state is restored). */
  #inSavepoint<T>(fn: () => T): T {
    this.#db.exec('SAVEPOINT __pocketsync_statement');
    try {
      const result = fn();
      this.#db.exec('RELEASE __pocketsync_statement');
      return result;
    } catch (error) {
      if (this.inTransaction) {
        this.#db.exec('ROLLBACK TO __pocketsync_statement; RELEASE __pocketsync_statement');
      }
      this.#schemaRolledBack();
      throw error;
    }
  }

  /** The schema went back to an earlier state: re-read the table metadata it implies. */
  #schemaRolledBack(): void {
    this.#schemaChangedInTx = false;
    this.#clearStatements();
    this.#loadTables({ tolerateMissing: true });
  }

  // ---- schema, migrations, capture ----

  #migrateAndInstall(schema: Schema | undefined): void {
    const db = this.#db;
    db.exec('BEGIN IMMEDIATE');
    try {
      const current = Number(db.selectValue('PRAGMA user_version') ?? 0);
      this.#schemaVersion = current;
      if (schema) {
        const pending = pendingMigrations(schema, current);
        if (pending.length > 0) {
          // Triggers would block DROP COLUMN and capture the migration's own data fixes; they are
          // re-created below, and rows a migration inserted get their ps_global_id and sync then.
          // Rows of a table the migration rebuilds get their own ids back (migrations.ts).
          this.#identitySnapshot = snapshotIdentities(db, this.#identifiedTables());
          this.#dropAllTriggers();
          for (const step of pending) {
            for (const sql of step.sql) {
              try {
                db.exec(sql);
              } catch (error) {
                throw new EngineError(ErrorKind.Schema, `migration to version ${step.version} failed: ${sqliteMessage(error)}`);
              }
            }
          }
          db.exec(`PRAGMA user_version = ${schema.version}`);
          this.#schemaVersion = schema.version;
        }
      }
      this.#installCapture({ tolerateMissing: false });
      db.exec('COMMIT');
    } catch (error) {
      db.exec('ROLLBACK');
      this.#identitySnapshot = null;
      if (error instanceof EngineError) throw error;
      throw new EngineError(ErrorKind.Schema, sqliteMessage(error));
    }
  }

  #dropAllTriggers(): void {
    const triggers = this.#db.selectValues(
      "SELECT name FROM sqlite_schema WHERE type = 'trigger' AND substr(name, 1, ?) = ?",
      [SYSTEM_PREFIX.length, SYSTEM_PREFIX],
    );
    for (const name of triggers) this.#db.exec(`DROP TRIGGER IF EXISTS ${quoteIdentifier(text(name))}`);
  }

  /**
   * (Re)installs ps_global_id and the triggers on every synced table, then re-reads table metadata.
   * At open a listed table that does not exist is an error; after a runtime DROP or RENAME it is
   * simply no longer synced.
   */
  #installCapture({ tolerateMissing }: { tolerateMissing: boolean }): void {
    const db = this.#db;
    this.#dropAllTriggers();
    for (const name of this.#syncedNames(tolerateMissing)) {
      this.#ensureGlobalId(name);
      db.exec({
        sql: `INSERT OR IGNORE INTO __pocketsync_version (table_name, table_id)
              VALUES (?, (SELECT coalesce(max(table_id), 0) + 1 FROM __pocketsync_version))`,
        bind: [name],
      });
    }
    this.#loadTables({ tolerateMissing });
    const snapshot = this.#identitySnapshot;
    if (snapshot !== null) {
      this.#identitySnapshot = null;
      restoreIdentities(db, snapshot, (name) => {
        const meta = this.#tables.get(name);
        return meta?.synced === true ? meta.info : null;
      });
    }
    for (const meta of this.#tables.values()) {
      if (!meta.synced) continue;
      checkWireNames(meta.info);
      this.#backfill(meta.info);
      db.exec(createTriggersSql(meta.info, this.deviceId));
    }
    this.#clearStatements();
  }

  /** Synced tables as they are now that already carry ps_global_id (before a migration). */
  #identifiedTables(): TableInfo[] {
    return this.#syncedNames(true)
      .filter((name) => this.#db.selectValue('SELECT 1 FROM pragma_table_xinfo(?) WHERE name = ?', [name, GLOBAL_ID_COLUMN]) !== undefined)
      .map((name) => this.#tableInfo(name, 0));
  }

  #userTables(): string[] {
    return this.#db
      .selectValues("SELECT name FROM pragma_table_list WHERE schema = 'main' AND type = 'table'")
      .map(text)
      .filter((name) => !isSystemName(name));
  }

  #syncedNames(tolerateMissing: boolean): string[] {
    const userTables = this.#userTables();
    if (!this.#only) return userTables;
    const missing = this.#only.filter((name) => !userTables.includes(name));
    if (missing.length > 0 && !tolerateMissing) {
      throw new EngineError(ErrorKind.Schema, `tables to sync do not exist: ${missing.join(', ')}`);
    }
    return this.#only.filter((name) => userTables.includes(name));
  }

  /** Table metadata from the schema as it is now (reads only). */
  #loadTables({ tolerateMissing }: { tolerateMissing: boolean }): void {
    const synced = new Set(this.#syncedNames(tolerateMissing));
    const ids = new Map(
      this.#db.selectArrays('SELECT table_name, table_id FROM __pocketsync_version').map(([name, id]) => [text(name), Number(id)]),
    );
    const tables = new Map<string, TableMeta>();
    const tablesById = new Map<number, string>();
    for (const name of this.#userTables()) {
      const id = ids.get(name);
      const isSynced = synced.has(name) && id !== undefined;
      const info = this.#tableInfo(name, id ?? 0);
      if (isSynced) tablesById.set(info.id, name);
      const all = this.#db.selectValues('SELECT name FROM pragma_table_xinfo(?)', [name]).map(text);
      tables.set(name, { info, writable: new Set(info.columns), testable: new Set(all), synced: isSynced });
    }
    this.#tables = tables;
    this.#tablesById = tablesById;
    this.#insertStatements.clear();
  }

  #tableInfo(name: string, id: number): TableInfo {
    const columns = this.#db.selectObjects('SELECT name, type, pk, hidden FROM pragma_table_xinfo(?)', [name]);
    const names = new Set(columns.map((c) => text(c.name)));
    const withoutRowid = Boolean(this.#db.selectValue("SELECT wr FROM pragma_table_list WHERE schema = 'main' AND name = ?", [name]));
    const keyColumns = columns
      .filter((c) => Number(c.pk) > 0)
      .sort((a, b) => Number(a.pk) - Number(b.pk))
      .map((c) => text(c.name));
    const rowidAlias = withoutRowid ? null : (ROWID_ALIASES.find((alias) => !names.has(alias)) ?? null);
    if (!withoutRowid && rowidAlias === null) {
      throw new EngineError(ErrorKind.Schema, `table ${name} has columns named rowid, _rowid_ and oid, which hides its rowid from PocketSync`);
    }
    return {
      name,
      id,
      // hidden: 0 = ordinary, 1 = virtual-table hidden, 2/3 = generated (derived, never synced).
      columns: columns.filter((c) => Number(c.hidden) === 0 && c.name !== GLOBAL_ID_COLUMN).map((c) => text(c.name)),
      rowidAlias,
      withoutRowidKey: withoutRowid ? keyColumns : null,
      identityKey: withoutRowid || (keyColumns.length > 0 && !isRowidAlias(columns, keyColumns)) ? keyColumns : null,
      stableKey: keyColumns.length > 0 ? keyColumns : null,
    };
  }

  /** The ps_global_id column and its unique index, named after the table (moved after a RENAME). */
  #ensureGlobalId(table: string): void {
    const db = this.#db;
    const has = db.selectValue('SELECT 1 FROM pragma_table_xinfo(?) WHERE name = ?', [table, GLOBAL_ID_COLUMN]);
    if (!has) db.exec(`ALTER TABLE ${quoteIdentifier(table)} ADD COLUMN ${GLOBAL_ID_COLUMN} TEXT`);
    const wanted = globalIdIndexName(table);
    // Our indexes that are on this table under another name (it was renamed), or that carry this
    // table's name but sit on another table (that one was renamed away): dropped, then re-created.
    const stale = db.selectValues(
      `SELECT name FROM sqlite_schema WHERE type = 'index' AND substr(name, 1, ?1) = ?2 AND substr(name, -?3) = ?4
         AND ((tbl_name = ?5 AND name <> ?6) OR (tbl_name <> ?5 AND name = ?6))`,
      [SYSTEM_PREFIX.length, SYSTEM_PREFIX, GLOBAL_ID_INDEX_SUFFIX.length, GLOBAL_ID_INDEX_SUFFIX, table, wanted],
    );
    for (const name of stale) db.exec(`DROP INDEX ${quoteIdentifier(text(name))}`);
    db.exec(`CREATE UNIQUE INDEX IF NOT EXISTS ${quoteIdentifier(wanted)} ON ${quoteIdentifier(table)} (${GLOBAL_ID_COLUMN})`);
  }

  /** Rows without a ps_global_id (pre-existing, or inserted while triggers were off) get one and are recorded once as inserts. */
  #backfill(info: TableInfo): void {
    const db = this.#db;
    const t = quoteIdentifier(info.name);
    const ids = db.selectValues(
      `UPDATE ${t} SET ${GLOBAL_ID_COLUMN} = ${info.identityKey === null ? NEW_GLOBAL_ID_SQL : keyIdSql(info.identityKey, '')}
       WHERE ${GLOBAL_ID_COLUMN} IS NULL RETURNING ${GLOBAL_ID_COLUMN}`,
    );
    if (ids.length === 0) return;
    const record = db.prepare(
      recordChangeSql(info, this.deviceId, GLOBAL_ID_COLUMN, 'insert', `json_object('row', ${rowJsonSql(info.columns, '')})`, `${t} WHERE ${GLOBAL_ID_COLUMN} = ?`),
    );
    try {
      for (const gid of ids) record.bind([gid]).stepReset();
    } finally {
      record.finalize();
    }
    this.#changedTables.add(info.name).add('__pocketsync_changes');
  }

  // ---- typed-API helpers ----

  #table(name: string): TableMeta {
    const meta = this.#tables.get(name);
    if (!meta) throw new EngineError(ErrorKind.Invalid, `no such table: ${name}`);
    return meta;
  }

  #checkColumns(meta: TableMeta, columns: string[], allowed: ReadonlySet<string>): string[] {
    for (const column of columns) {
      if (!allowed.has(column)) throw new EngineError(ErrorKind.Invalid, `table ${meta.info.name} has no column named ${column}`);
    }
    return columns;
  }

  /**
   * The INSERT statement for a table and column list, built (and checked) once per shape; for a keyed
   * table it returns the id its key gives the row.
   */
  #insertSql(meta: TableMeta, columns: string[], identityKey: readonly string[] | null = null): string {
    const key = `${meta.info.name}\u0000${columns.join('\u0000')}`;
    let sql = this.#insertStatements.get(key);
    if (sql === undefined) {
      const allowed = meta.synced ? new Set([...meta.writable, GLOBAL_ID_COLUMN]) : meta.writable;
      this.#checkColumns(meta, columns, allowed);
      const t = quoteIdentifier(meta.info.name);
      sql =
        columns.length === 0
          ? `INSERT INTO ${t} DEFAULT VALUES`
          : `INSERT INTO ${t} (${columns.map(quoteIdentifier).join(', ')}) VALUES (${columns.map(() => '?').join(', ')})`;
      if (identityKey !== null) sql += ` RETURNING ${keyOnlyIdSql(identityKey, '')} AS ${GLOBAL_ID_COLUMN}`;
      if (this.#insertStatements.size >= STATEMENT_CACHE_SIZE) this.#insertStatements.clear();
      this.#insertStatements.set(key, sql);
    }
    return sql;
  }

  /** A where clause: column equalities (null meaning IS NULL), or a SQL condition with its params. */
  #where(meta: TableMeta, where: Where, params: readonly SqlValue[] | undefined): [string, SqlValue[]] {
    if (typeof where === 'string') {
      if (where.trim() === '') throw new EngineError(ErrorKind.Invalid, "where must not be empty (use '1' to match every row)");
      if (params !== undefined && !Array.isArray(params)) throw new EngineError(ErrorKind.Invalid, 'where parameters must be an array');
      return [`(${where})`, params === undefined ? [] : Array.from<SqlValue>(params)];
    }
    if (where === null || typeof where !== 'object') throw new EngineError(ErrorKind.Invalid, 'where must be an object of column values or a SQL condition');
    const entries = Object.entries(where);
    if (entries.length === 0) throw new EngineError(ErrorKind.Invalid, "where needs at least one column (use '1' to match every row)");
    for (const [column, value] of entries) {
      if (value === undefined) throw new EngineError(ErrorKind.Invalid, `where.${column} is undefined`);
    }
    const columns = this.#checkColumns(meta, entries.map(([c]) => c), meta.testable);
    return [columns.map((c) => `${quoteIdentifier(c)} IS ?`).join(' AND '), entries.map(([, v]) => v)];
  }
}

/**
 * A synced table's name and columns travel in every change; the server refuses names outside the
 * wire's identifiers (lib/protocol/values.ts), and would refuse every change of the table forever.
 */
function checkWireNames(info: TableInfo): void {
  const fix = 'rename it, or leave the table out of sync with the `tables` option';
  if (!isWireName(info.name)) {
    throw new EngineError(ErrorKind.Schema, `table ${JSON.stringify(info.name)} cannot be synced: ${IDENTIFIER_RULE}; ${fix}`);
  }
  for (const column of info.columns) {
    if (!isWireName(column)) {
      throw new EngineError(ErrorKind.Schema, `column ${JSON.stringify(column)} of table ${info.name} cannot be synced: ${IDENTIFIER_RULE}; ${fix}`);
    }
  }
}

const IDENTIFIER_RULE =
  'a synced name must be letters, digits and _, not start with a digit, have at most 63 characters, and not be __proto__, constructor or prototype';

function isWireName(name: string): boolean {
  return IDENTIFIER.test(name) && !WIRE_RESERVED_NAMES.has(name);
}

/**
 * A rowid table's single INTEGER PRIMARY KEY column is its rowid under another name (exactly the
 * declared type INTEGER, as SQLite decides it): a local row number, not an identity.
 */
function isRowidAlias(columns: ReadonlyArray<Record<string, unknown>>, key: readonly string[]): boolean {
  if (key.length !== 1) return false;
  const column = columns.find((c) => c.name === key[0]);
  return typeof column?.type === 'string' && column.type.toUpperCase() === 'INTEGER';
}

/** A 64-bit integer as a number when that is exact, else as a bigint. */
function safeInteger(value: number | bigint): number | bigint {
  return typeof value === 'bigint' && value <= BigInt(Number.MAX_SAFE_INTEGER) && value >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(value) : value;
}

/** The keys of an object whose values are not undefined (an undefined value means "not given"). */
function definedKeys(values: Row): string[] {
  if (values === null || typeof values !== 'object') throw new EngineError(ErrorKind.Invalid, 'values must be an object');
  return Object.keys(values).filter((key) => values[key] !== undefined);
}

/** A TEXT value read back from SQLite's own catalog. */
function text(value: unknown): string {
  if (typeof value !== 'string') throw new EngineError(ErrorKind.Internal, `expected text from SQLite, got ${typeof value}`);
  return value;
}

function pendingMigrations(schema: Schema, current: number): Schema['migrations'] {
  if (!Number.isInteger(schema.version) || schema.version < 0) {
    throw new EngineError(ErrorKind.Schema, `schema.version must be a non-negative integer, got ${String(schema.version)}`);
  }
  if (current > schema.version) {
    throw new EngineError(ErrorKind.Schema, `the database is at schema version ${current}, newer than the app's ${schema.version}`);
  }
  let previous = 0;
  for (const step of schema.migrations) {
    if (!Number.isInteger(step.version) || step.version <= previous || step.version > schema.version) {
      throw new EngineError(ErrorKind.Schema, `migration versions must increase from 1 up to schema.version; got ${String(step.version)} after ${previous}`);
    }
    previous = step.version;
  }
  return schema.migrations.filter((step) => step.version > current);
}

/** Removes comments, to tell a piece of SQL that holds nothing but comments and semicolons. */
function isBlank(sql: string): boolean {
  return sql.replace(/--[^\n]*|\/\*[\s\S]*?(\*\/|$)/g, '').replace(/;/g, '').trim() === '';
}

/**
 * Splits SQL into statements where SQLite itself says one is complete (sqlite3_complete, which knows
 * about strings, comments and trigger bodies), dropping pieces that hold only comments.
 */
export function splitStatements(sqlite3: Sqlite3Static, sql: string): string[] {
  if (!sql.includes(';')) return [sql];
  const statements: string[] = [];
  let current = '';
  const pieces = sql.split(';');
  pieces.forEach((piece, i) => {
    current += i < pieces.length - 1 ? `${piece};` : piece;
    if (i === pieces.length - 1 || sqlite3.capi.sqlite3_complete(current)) {
      if (!isBlank(current)) statements.push(current);
      current = '';
    }
  });
  return statements.length > 0 ? statements : [sql];
}
