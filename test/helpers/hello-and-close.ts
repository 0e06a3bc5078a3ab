/**
 * For test/server-limits.test.ts, in its own process: a server (hello deadline one minute), one
 * device that says hello, catches up and closes, then the server closed. Prints "closed"; the
 * process should then exit by itself, with nothing of the server left running.
 */
import WebSocket from 'ws';
import { PROTOCOL_VERSION } from '../../lib/protocol/protocol-version.js';
import { mintUserToken } from '../../server/auth.js';
import { createServer } from '../../server/server.js';
import { SqliteStore } from '../../server/store/sqlite-store.js';
import { syncUrl } from './server.js';

const store = new SqliteStore(':memory:');
const project = await store.createProject({ id: 'p', secret: 's'.repeat(32) });
const server = await createServer({ store, adminKey: 'admin', log: null, limits: { helloTimeoutMs: 60_000 } });
const ws = new WebSocket(syncUrl(server));
await new Promise((resolve) => ws.once('open', resolve));
ws.send(JSON.stringify({ type: 'hello', protocolVersion: PROTOCOL_VERSION, deviceId: 'd1', cursor: 0, token: await mintUserToken(project, 'alice') }));
await new Promise<void>((resolve) => ws.on('message', (data: Buffer) => (data.toString('utf8').includes('"hasMore":false') ? resolve() : undefined)));
ws.close();
await new Promise((resolve) => ws.once('close', resolve));
while (server.hub.connections > 0) await new Promise((resolve) => setImmediate(resolve));
await server.close();
await store.close();
console.log('closed');
