/** The Web Worker entry: the WorkerApi over Comlink, the database shared with the profile's other tabs. */
import { expose } from 'comlink';
import { indexedDbSnapshotStore } from './memory-snapshot.js';
import { canShareAcrossTabs, shareAcrossTabs } from './tabs.js';
import { createWorkerApi, loadSqlite, warmUp } from './worker-api.js';

// Compile SQLite while the tab waits for its turn: a follower that takes over then only opens the
// file (a failure here surfaces again at open).
loadSqlite().catch(() => undefined);
// The memory fallback is saved to IndexedDB only where the tabs take turns on a database: tabs that
// each held one of their own would overwrite each other's copy (memory-snapshot.ts).
const snapshots = canShareAcrossTabs() ? indexedDbSnapshotStore() : null;
expose(shareAcrossTabs(createWorkerApi({ snapshots }), { warmUp }));
