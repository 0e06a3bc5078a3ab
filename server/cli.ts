#!/usr/bin/env node
/**
 * pocketsync-server: the sync server with its embedded store.
 *
 *   pocketsync-server [--port 8787] [--host 127.0.0.1] [--data-dir .pocketsync] [--admin-key KEY]
 *                     [--dev] [--static DIR]
 *
 * Environment: PORT, HOST, POCKETSYNC_DATA_DIR, POCKETSYNC_ADMIN_KEY, POCKETSYNC_DEV=1. Flags win.
 * Without an admin key, one is generated at the first start, printed once, and kept in the data
 * directory (admin-key, mode 600). In dev mode a project named "demo" is created if missing, and
 * the server mints user tokens for any name (never use it in production).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { randomHex } from '../worker/random.js';
import { createServer } from './server.js';

export const DEMO_PROJECT = 'demo';

const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    host: { type: 'string' },
    'data-dir': { type: 'string' },
    'admin-key': { type: 'string' },
    dev: { type: 'boolean' },
    static: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});

if (values.help) {
  console.log('pocketsync-server [--port N] [--host H] [--data-dir DIR] [--admin-key KEY] [--dev] [--static DIR]');
  process.exit(0);
}

const dataDir = resolve(values['data-dir'] ?? process.env.POCKETSYNC_DATA_DIR ?? '.pocketsync');
const port = Number(values.port ?? process.env.PORT ?? 8787);
const host = values.host ?? process.env.HOST ?? '127.0.0.1';
const dev = values.dev ?? process.env.POCKETSYNC_DEV === '1';
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`not a port: ${String(values.port ?? process.env.PORT)}`);
  process.exit(2);
}

mkdirSync(dataDir, { recursive: true });
// An empty key (an unset variable in a compose file, say) is no key: generate one.
const adminKey = values['admin-key'] || process.env.POCKETSYNC_ADMIN_KEY || storedAdminKey(dataDir);

const server = await createServer({ dataDir, port, host, adminKey, dev, ...(values.static ? { staticDir: resolve(values.static) } : {}) });
if (dev && !(await server.store.getProject(DEMO_PROJECT))) {
  await server.store.createProject({ id: DEMO_PROJECT, secret: randomHex(32), sharedTables: ['shared_todos'] });
}
console.log(`PocketSync server: ${server.url} (data in ${dataDir}${dev ? ', dev mode' : ''})`);
if (values.static) console.log(`Demo: ${server.url}`);
console.log('Press Ctrl+C to stop.');

let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    console.log(`${signal}: stopping`);
    void server.close().then(() => process.exit(0));
  });
}

function storedAdminKey(dir: string): string {
  const file = join(dir, 'admin-key');
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  const key = randomHex(24);
  writeFileSync(file, `${key}\n`, { mode: 0o600 });
  console.log(`Admin key (shown once; kept in ${file}): ${key}`);
  return key;
}
