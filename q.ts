import init from '@sqlite.org/sqlite-wasm';
import { Engine } from './worker/engine.js';
const sqlite3 = await init();
const N = 10000;
const strict = 'id INTEGER PRIMARY KEY, title TEXT NOT NULL, done INTEGER NOT NULL, note TEXT, updated_at INTEGER';
const loose = 'id INTEGER PRIMARY KEY, title TEXT, done INTEGER, note TEXT, updated_at INTEGER';
function once(def: string, synced: boolean, mutate: (db: any) => void): number {
  const db = new sqlite3.oo1.DB(':memory:');
  const e = Engine.open(sqlite3, db, { deviceId: 'bench', schema: { version: 1, migrations: [{ version: 1, sql: [`CREATE TABLE items (${def})`] }] }, tables: synced ? ['items'] : [] });
  mutate(db);
  const t0 = performance.now();
  e.begin();
  for (let i = 0; i < N; i++) e.insert('items', { title: `item ${i}`, done: i % 2, note: 'a short note about this item', updated_at: 1_700_000_000_000 + i });
  e.commit();
  const ms = performance.now() - t0; e.close(); return ms * 1000 / N;
}
const cols = 'change_id, table_name, ps_global_id, operation, payload, clock, version';
const T = (body: string) => (db: any) => { db.exec('drop trigger __pocketsync_items_insert'); db.exec(`CREATE TRIGGER __pocketsync_items_insert AFTER INSERT ON items WHEN NEW.ps_global_id IS NOT NULL BEGIN ${body}; END`); };
const dropAll = (db: any) => { for (const k of ['insert', 'insert_without_id', 'update', 'delete']) db.exec(`drop trigger __pocketsync_items_${k}`); };
const variants: Record<string, [string, boolean, (db: any) => void]> = {
  'plain strict': [strict, false, () => {}],
  'synced strict': [strict, true, () => {}],
  'synced, no triggers': [strict, true, dropAll],
  'synced, no triggers no idx': [strict, true, (db) => { dropAll(db); db.exec('drop index __pocketsync_items_global_id'); }],
  'synced, no idx': [strict, true, (db) => { db.exec('drop index __pocketsync_items_global_id'); }],
};
const results: Record<string, number[]> = {};
for (let rep = 0; rep < 7; rep++) for (const [name, [d, s, m]] of Object.entries(variants)) (results[name] ??= []).push(once(d, s, m));
for (const [name, xs] of Object.entries(results)) { xs.sort((a, b) => a - b); console.log(name.padEnd(28), xs[3]!.toFixed(1), 'us/row'); }
