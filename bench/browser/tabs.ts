/**
 * One tab of the tabs benchmark: PocketSync on opfs-sahpool through the package's own worker entry
 * (shared with the profile's other tabs), or, with `?plain`, through a worker that does not share
 * (a single tab as it was before tabs could share: the baseline for the leader's round trip).
 */
import { PocketSync } from '../../lib/index.js';

const SCHEMA = { version: 1, migrations: [{ version: 1, sql: ['CREATE TABLE items (id INTEGER PRIMARY KEY, title TEXT NOT NULL)'] }] };
const plain = new URLSearchParams(location.search).has('plain');

function worker(): Worker {
  return plain
    ? new Worker(new URL('./plain-worker.ts', import.meta.url), { type: 'module' })
    : new Worker(new URL('../../worker/worker.ts', import.meta.url), { type: 'module' });
}

let pocketSync: PocketSync | null = null;

function instance(): PocketSync {
  if (!pocketSync) throw new Error('open() first');
  return pocketSync;
}

const tabsBench = {
  /** Opens (or joins) the database and makes sure it holds the row the queries read. */
  async open(dbName: string): Promise<void> {
    pocketSync = await PocketSync.initialize({ dbName, schema: SCHEMA, worker });
    if (pocketSync.storage !== 'opfs-sahpool') throw new Error(`expected opfs-sahpool, got ${pocketSync.storage}`);
    await pocketSync.database.execute("INSERT OR IGNORE INTO items (id, title) VALUES (1, 'one')");
  },
  /** Round trips of a one-row query, one after another, in milliseconds. */
  async queryRoundTrips(count: number): Promise<number[]> {
    const { database } = instance();
    const times: number[] = [];
    for (let i = 0; i < count; i++) {
      const start = performance.now();
      await database.query('SELECT id, title FROM items WHERE id = ?', [1]);
      times.push(performance.now() - start);
    }
    return times;
  },
  /** Writes until a write resolves, retrying those a handover cut off; resolves to Date.now() then. */
  async writeUntilDone(): Promise<number> {
    const { database } = instance();
    for (;;) {
      try {
        await database.insert('items', { title: 'after the handover' });
        return Date.now();
      } catch (error) {
        if ((error as { kind?: string }).kind !== 'closed') throw error;
      }
    }
  },
};

Object.assign(window, { tabsBench });
export type TabsBench = typeof tabsBench;
