/**
 * One chaos run's world: the real sync server (createServer + SqliteStore on a temp FILE, so a
 * restart reopens what it committed, on the same port), and 3–6 devices of 2–3 users, each a real
 * Engine (SQLite-WASM in memory) + Replica + SyncLoop talking over a FaultyTransport.
 *
 * A device crash is real: the database's bytes are taken with sqlite3_serialize (what was
 * committed, nothing else), the loop and engine are dropped, and a fresh engine opens on those
 * bytes (sqlite3_deserialize), optionally with a newer schema version (a migration mid-run).
 *
 * The world also records what the checker needs: every write an app made (table, row, op, clock,
 * values), every conflict a device was told of, and the faults injected.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import init, { type Database, type Sqlite3Static } from '@sqlite.org/sqlite-wasm';
import type { LostWrite } from '../../lib/protocol/change.js';
import type { Schema, SqlValue } from '../../lib/protocol/worker-api.js';
import { mintUserToken } from '../../server/auth.js';
import type { Resolver, Strategy } from '../../server/merge.js';
import { createServer, type RunningServer } from '../../server/server.js';
import { SqliteStore } from '../../server/store/sqlite-store.js';
import type { Project } from '../../server/store/store.js';
import { Engine } from '../../worker/engine.js';
import type { Network } from '../../worker/sync/network.js';
import { Replica } from '../../worker/sync/replica.js';
import { SyncLoop, type SyncLoopOptions } from '../../worker/sync/sync-loop.js';
import { FaultyTransport, type Fault } from './transport.js';

/** Which parts of the world a run uses: the coordinator switches sets on as their fixes land. */
export interface Features {
  /** The project's strategy, or 'resolver' (column-lww with a resolver that picks by value). */
  readonly strategy: Strategy | 'resolver';
  /** settings (TEXT PRIMARY KEY, private) and labels (TEXT PRIMARY KEY, shared). */
  readonly naturalKeys: boolean;
  /** members (team, member) PRIMARY KEY, shared. */
  readonly compositeKeys: boolean;
  /** items: NOT NULL, UNIQUE, CHECK and a FOREIGN KEY to labels (needs naturalKeys). */
  readonly constraints: boolean;
  /** Blobs, unicode text, 64-bit integers beyond 2^53 in the values written. */
  readonly richValues: boolean;
  /** Devices start on schema version 1 or 2 and migrate mid-run. */
  readonly schemaSkew: boolean;
  readonly cuts: boolean;
  readonly lostAcks: boolean;
  readonly delays: boolean;
  readonly restarts: boolean;
  readonly crashes: boolean;
  /** Each device's clock off by up to ±10 minutes. */
  readonly clockSkew: boolean;
}

export const BASIC: Features = {
  strategy: 'column-lww',
  naturalKeys: false,
  compositeKeys: false,
  constraints: false,
  richValues: false,
  schemaSkew: false,
  cuts: true,
  lostAcks: true,
  delays: true,
  restarts: true,
  crashes: true,
  clockSkew: true,
};

export const FULL: Features = {
  ...BASIC,
  naturalKeys: true,
  compositeKeys: true,
  constraints: true,
  richValues: true,
  schemaSkew: true,
};

export const SHARED_TABLES = ['board', 'labels', 'members'];

export interface TableSpec {
  readonly name: string;
  /** Key columns for a table with a declared non-rowid key; null for a rowid table. */
  readonly key: readonly string[] | null;
  /** Columns an update may set, with the kind of value they take. */
  readonly columns: Readonly<Record<string, 'text' | 'int' | 'any'>>;
  /** The schema version that has it. */
  readonly since: number;
}

export function tablesOf(features: Features): TableSpec[] {
  const tables: TableSpec[] = [
    { name: 'notes', key: null, columns: { title: 'text', body: 'any', n: 'int' }, since: 1 },
    { name: 'board', key: null, columns: { title: 'text', n: 'int' }, since: 1 },
  ];
  if (features.naturalKeys) {
    tables.push({ name: 'settings', key: ['key'], columns: { value: 'any' }, since: 1 });
    tables.push({ name: 'labels', key: ['name'], columns: { color: 'text' }, since: 1 });
  }
  if (features.compositeKeys) tables.push({ name: 'members', key: ['team', 'member'], columns: { role: 'text' }, since: 1 });
  if (features.constraints && features.naturalKeys) {
    tables.push({ name: 'items', key: null, columns: { name: 'text', qty: 'int', label: 'text' }, since: 1 });
  }
  if (features.schemaSkew) tables.push({ name: 'extras', key: null, columns: { v: 'text' }, since: 2 });
  return tables;
}

/** The column version 2 adds to notes. */
export const V2_COLUMN = 'extra';

export function schemaOf(features: Features, version: 1 | 2): Schema {
  const v1 = [
    'CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT, body, n INTEGER)',
    'CREATE TABLE board (id INTEGER PRIMARY KEY, title TEXT, n INTEGER)',
  ];
  if (features.naturalKeys) {
    v1.push('CREATE TABLE settings (key TEXT PRIMARY KEY, value)');
    v1.push('CREATE TABLE labels (name TEXT PRIMARY KEY, color TEXT)');
  }
  if (features.compositeKeys) v1.push('CREATE TABLE members (team TEXT NOT NULL, member TEXT NOT NULL, role TEXT, PRIMARY KEY (team, member))');
  if (features.constraints && features.naturalKeys) {
    v1.push('CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, qty INTEGER NOT NULL CHECK (qty >= 0), label TEXT REFERENCES labels(name))');
  }
  const migrations = [{ version: 1, sql: v1 }];
  if (version === 2) migrations.push({ version: 2, sql: [`ALTER TABLE notes ADD COLUMN ${V2_COLUMN} TEXT`, 'CREATE TABLE extras (id INTEGER PRIMARY KEY, v TEXT)'] });
  return { version, migrations };
}

/** A write an app made, as its device's change log recorded it. */
export interface WriteRecord {
  readonly device: number;
  readonly user: string;
  readonly table: string;
  readonly row: string;
  readonly op: 'insert' | 'update' | 'delete';
  readonly clock: string;
  readonly changeId: string;
  /** The columns it set (insert, update). */
  readonly values: Readonly<Record<string, SqlValue>>;
}

export interface WorldStats {
  operations: number;
  rejectedByApp: number;
  cuts: number;
  droppedAcks: number;
  delayedFrames: number;
  restarts: number;
  crashes: number;
  migrations: number;
  offline: number;
}

class SwitchNetwork implements Network {
  online = true;
  readonly #listeners = new Set<(online: boolean) => void>();
  watch(listener: (online: boolean) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
  set(online: boolean): void {
    if (this.online === online) return;
    this.online = online;
    for (const listener of [...this.#listeners]) listener(online);
  }
}

export interface Device {
  readonly index: number;
  readonly name: string;
  readonly user: string;
  version: 1 | 2;
  db: Database;
  engine: Engine;
  replica: Replica;
  loop: SyncLoop;
  readonly transport: FaultyTransport;
  readonly network: SwitchNetwork;
  readonly skewMs: number;
  readonly conflicts: LostWrite[];
}

let sqlite3: Sqlite3Static | null = null;
export async function loadSqlite(): Promise<Sqlite3Static> {
  sqlite3 ??= await init();
  return sqlite3;
}

const PROJECT = 'chaos';

/** A resolver that decides by value, not clock: the larger JSON wins. */
export const byValueResolver: Resolver = ({ column, current, change }) => {
  if (column === null) return undefined;
  const incoming = JSON.stringify(change.values?.[column] ?? null);
  const existing = JSON.stringify(current.values[column] ?? null);
  return incoming > existing ? 'incoming' : 'current';
};

export class World {
  readonly features: Features;
  readonly devices: Device[] = [];
  readonly writes: WriteRecord[] = [];
  readonly stats: WorldStats = { operations: 0, rejectedByApp: 0, cuts: 0, droppedAcks: 0, delayedFrames: 0, restarts: 0, crashes: 0, migrations: 0, offline: 0 };
  /** Rowid-table rows by slot, as an app would address a row it knows (shared by all devices). */
  readonly slots = new Map<string, string>();
  readonly #dir: string;
  readonly #file: string;
  #store!: SqliteStore;
  #server!: RunningServer;
  #project!: Project;
  #port = 0;
  #sqlite3!: Sqlite3Static;
  #tokens = new Map<string, string>();

  private constructor(features: Features) {
    this.features = features;
    this.#dir = mkdtempSync(join(tmpdir(), 'pocketsync-chaos-'));
    this.#file = join(this.#dir, 'server.db');
  }

  static async create(features: Features, deviceUsers: readonly number[], skews: readonly number[], versions: readonly (1 | 2)[]): Promise<World> {
    const world = new World(features);
    world.#sqlite3 = await loadSqlite();
    world.#store = new SqliteStore(world.#file);
    const strategy = features.strategy === 'resolver' ? 'column-lww' : features.strategy;
    world.#project = await world.#store.createProject({ id: PROJECT, secret: 'c'.repeat(32), strategy, sharedTables: SHARED_TABLES });
    await world.#startServer();
    deviceUsers.forEach((user, i) => {
      const version = features.schemaSkew ? (versions[i] ?? 1) : 1;
      world.devices.push(world.#openDevice(i, `u${user}`, features.clockSkew ? (skews[i] ?? 0) : 0, version, null));
    });
    for (const device of world.devices) device.loop.start();
    return world;
  }

  get store(): SqliteStore {
    return this.#store;
  }

  get projectId(): string {
    return PROJECT;
  }

  get url(): string {
    return `ws://127.0.0.1:${this.#port}/v1/projects/${PROJECT}/sync`;
  }

  async #startServer(): Promise<void> {
    this.#server = await createServer({
      store: this.#store,
      adminKey: 'admin',
      log: null,
      port: this.#port,
      ...(this.features.strategy === 'resolver' ? { resolver: byValueResolver } : {}),
    });
    this.#port = this.#server.port;
  }

  async restartServer(): Promise<void> {
    this.stats.restarts++;
    await this.#server.close();
    await this.#store.close();
    this.#store = new SqliteStore(this.#file);
    await this.#startServer();
  }

  async #token(user: string): Promise<string> {
    let token = this.#tokens.get(user);
    if (!token) {
      token = await mintUserToken(this.#project, user);
      this.#tokens.set(user, token);
    }
    return token;
  }

  #openDevice(index: number, user: string, skewMs: number, version: 1 | 2, bytes: Uint8Array | null, previous?: Device): Device {
    const s = this.#sqlite3;
    const db = new s.oo1.DB(':memory:');
    if (bytes) {
      const pointer = s.wasm.allocFromTypedArray(bytes);
      const rc = s.capi.sqlite3_deserialize(db.pointer!, 'main', pointer, bytes.length, bytes.length, s.capi.SQLITE_DESERIALIZE_FREEONCLOSE | s.capi.SQLITE_DESERIALIZE_RESIZEABLE);
      if (rc !== 0) throw new Error(`sqlite3_deserialize failed: ${rc}`);
    }
    const name = `dev-${index}`;
    const engine = Engine.open(s, db, { deviceId: name, schema: schemaOf(this.features, version), time: () => Date.now() + skewMs });
    const replica = new Replica(engine);
    const transport = previous?.transport ?? new FaultyTransport();
    const network = previous?.network ?? new SwitchNetwork();
    const conflicts = previous?.conflicts ?? [];
    const options: SyncLoopOptions = {
      url: this.url,
      token: () => this.#token(user),
      connect: transport.connect,
      network,
      onConflict: (conflict) => conflicts.push(conflict),
    };
    const loop = new SyncLoop(engine, replica, options);
    const device: Device = { index, name, user, version, db, engine, replica, loop, transport, network, skewMs, conflicts };
    return device;
  }

  /** Crashes a device and opens it again on what it had committed, on `version` (a migration). */
  crash(index: number, version?: 1 | 2): void {
    const old = this.devices[index]!;
    const bytes = this.#sqlite3.capi.sqlite3_js_db_export(old.db);
    old.loop.stop();
    old.engine.close();
    const next = this.#openDevice(index, old.user, old.skewMs, version ?? old.version, bytes, old);
    if (next.version !== old.version) this.stats.migrations++;
    else this.stats.crashes++;
    this.devices[index] = next;
    next.loop.start();
  }

  setOnline(index: number, online: boolean): void {
    const device = this.devices[index]!;
    if (!online && device.network.online) this.stats.offline++;
    device.network.set(online);
  }

  arm(index: number, fault: Fault): void {
    this.devices[index]!.transport.arm(fault);
  }

  cut(index: number): void {
    this.devices[index]!.transport.cut();
  }

  /** Records the newest change the device's log holds for a row, after an app write. */
  /** The id of the newest change logged for a row, before a write: record() tells a new one from it. */
  lastChangeId(device: Device, table: string, row: string | undefined): string | null {
    if (row === undefined) return null;
    const [change] = device.engine.query('SELECT change_id FROM __pocketsync_changes WHERE table_name = ? AND ps_global_id = ? ORDER BY id DESC LIMIT 1', [table, row]);
    return change ? String(change.change_id) : null;
  }

  /** Records the write just made, if it logged a change (an UPDATE to the values a row has logs none). */
  record(device: Device, table: string, row: string, op: WriteRecord['op'], values: Record<string, SqlValue>, before: string | null): void {
    const [change] = device.engine.query('SELECT change_id, clock, operation FROM __pocketsync_changes WHERE table_name = ? AND ps_global_id = ? ORDER BY id DESC LIMIT 1', [table, row]);
    if (!change || String(change.change_id) === before) return;
    this.writes.push({ device: device.index, user: device.user, table, row, op: change.operation as WriteRecord['op'], clock: String(change.clock), changeId: String(change.change_id), values: op === 'delete' ? {} : values });
  }

  async close(): Promise<void> {
    for (const device of this.devices) {
      device.loop.stop();
      try {
        device.engine.close();
      } catch {
        // already closed
      }
    }
    await this.#server.close();
    await this.#store.close();
    rmSync(this.#dir, { recursive: true, force: true });
  }

  collectTransportStats(): void {
    this.stats.cuts = 0;
    this.stats.droppedAcks = 0;
    this.stats.delayedFrames = 0;
    for (const device of this.devices) {
      this.stats.cuts += device.transport.stats.cuts;
      this.stats.droppedAcks += device.transport.stats.droppedAcks;
      this.stats.delayedFrames += device.transport.stats.delayedFrames;
    }
  }
}
