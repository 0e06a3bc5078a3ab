/** Engines on fresh in-memory SQLite-WASM databases, closed after each test. */
import init, { type Sqlite3Static } from '@sqlite.org/sqlite-wasm';
import { afterEach } from 'vitest';
import { Engine, type EngineOptions } from '../../worker/engine.js';

let sqlite3: Sqlite3Static | null = null;
const engines: Engine[] = [];

afterEach(() => {
  for (const engine of engines.splice(0)) engine.close();
});

export async function loadSqlite(): Promise<Sqlite3Static> {
  sqlite3 ??= await init();
  return sqlite3;
}

export async function openEngine(options: Partial<EngineOptions> = {}, setup?: string): Promise<Engine> {
  const module = await loadSqlite();
  const db = new module.oo1.DB(':memory:');
  if (setup) db.exec(setup);
  const engine = Engine.open(module, db, { deviceId: 'device-a', ...options });
  engines.push(engine);
  return engine;
}

export const todoSchema = {
  version: 1,
  migrations: [{ version: 1, sql: ['CREATE TABLE todos (id INTEGER PRIMARY KEY, title TEXT NOT NULL, done INTEGER NOT NULL DEFAULT 0)'] }],
};

export interface ChangeRow {
  id: number;
  change_id: string;
  table_name: string;
  ps_global_id: string;
  operation: 'insert' | 'update' | 'delete';
  payload: string;
  clock: string;
  version: number;
  synced: number;
}

export function changes(engine: Engine): ChangeRow[] {
  return engine.query('SELECT * FROM __pocketsync_changes ORDER BY id') as unknown as ChangeRow[];
}
