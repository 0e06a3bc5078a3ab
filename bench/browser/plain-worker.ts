/** A database worker that does not share with other tabs: the single-tab baseline of bench/tabs.ts. */
import { expose } from 'comlink';
import { createWorkerApi } from '../../worker/worker-api.js';

expose(createWorkerApi());
