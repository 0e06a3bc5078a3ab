/**
 * A PocketSync instance for Node tests: the real WorkerApi (real SQLite-WASM, in memory) exposed
 * over Comlink on a MessageChannel, so the client and worker code run exactly as in a browser,
 * minus the Worker thread.
 */
import { expose } from 'comlink';
import WebSocket from 'ws';
import { afterEach } from 'vitest';
import { PocketSync, type PocketSyncOptions } from '../../lib/index.js';
import { createWorkerApi } from '../../worker/worker-api.js';

const open: PocketSync[] = [];
let counter = 0;

afterEach(async () => {
  await Promise.all(open.splice(0).map((instance) => instance.close().catch(() => undefined)));
});

export async function openInstance(options: Partial<PocketSyncOptions> = {}): Promise<PocketSync> {
  const { port1, port2 } = new MessageChannel();
  expose(createWorkerApi({ WebSocket }), port1);
  const instance = await PocketSync.initialize({
    dbName: `test-${process.pid}-${++counter}`,
    storage: 'memory',
    worker: port2,
    ...options,
  });
  open.push(instance);
  return instance;
}

/** Polls `condition` until it holds or the deadline passes (no fixed sleeps in tests). */
export async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs = 5_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
