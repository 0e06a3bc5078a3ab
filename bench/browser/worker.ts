/** Runs the capture workload inside a dedicated worker on opfs-sahpool, as the real engine does. */
import init from '@sqlite.org/sqlite-wasm';
import { Engine } from '../../worker/engine.js';
import { deleteStoredDatabase, openStorage } from '../../worker/storage.js';
import { CAPTURE_SCHEMA, CAPTURE_TABLES, runCaptureWorkload, type CaptureSizes } from '../capture-workload.js';

onmessage = async (event: MessageEvent<CaptureSizes>) => {
  try {
    const sqlite3 = await init();
    const timings = await runCaptureWorkload(
      event.data,
      async (name) => {
        await deleteStoredDatabase(sqlite3, name);
        const { db, storage } = await openStorage(sqlite3, name, 'opfs-sahpool');
        if (storage !== 'opfs-sahpool') throw new Error(`expected opfs-sahpool, got ${storage}`);
        return Engine.open(sqlite3, db, { deviceId: 'bench', schema: CAPTURE_SCHEMA, tables: CAPTURE_TABLES });
      },
      async (engine, name) => {
        engine.close();
        await deleteStoredDatabase(sqlite3, name);
      },
    );
    postMessage({ ok: true, timings });
  } catch (error) {
    postMessage({ ok: false, error: String(error) });
  }
};
