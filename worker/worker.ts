/** The Web Worker entry: the WorkerApi over Comlink, the database shared with the profile's other tabs. */
import { expose } from 'comlink';
import { shareAcrossTabs } from './tabs.js';
import { createWorkerApi } from './worker-api.js';

expose(shareAcrossTabs(createWorkerApi()));
