/** The Web Worker entry: the WorkerApi over Comlink. */
import { expose } from 'comlink';
import { createWorkerApi } from './worker-api.js';

expose(createWorkerApi());
