/** The Web Worker entry: the WorkerApi over Comlink, the database shared with the profile's other tabs. */
import { expose } from 'comlink';
import { shareAcrossTabs } from './tabs.js';
import { createWorkerApi, loadSqlite, warmUp } from './worker-api.js';

// Compile SQLite while the tab waits for its turn: a follower that takes over then only opens the
// file (a failure here surfaces again at open).
loadSqlite().catch(() => undefined);
expose(shareAcrossTabs(createWorkerApi(), { warmUp }));
