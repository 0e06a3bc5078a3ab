/**
 * The device status the real client reports (protocol 2), as the server's operators see it through
 * the admin API: library and app version, protocol version, and pending changes.
 */
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LIBRARY_VERSION } from '../lib/version.js';
import { mintUserToken } from '../server/auth.js';
import type { RunningServer } from '../server/server.js';
import type { DeviceRecord, Project } from '../server/store/store.js';
import { Replica } from '../worker/sync/replica.js';
import { SyncLoop } from '../worker/sync/sync-loop.js';
import { openEngine, todoSchema } from './helpers/engine.js';
import { openInstance, waitFor } from './helpers/instance.js';
import { startTestServer, stopTestServer, syncUrl } from './helpers/server.js';

it('LIBRARY_VERSION is the version packages/pocketsync/package.json gives', () => {
  const pkg = JSON.parse(readFileSync(new URL('../packages/pocketsync/package.json', import.meta.url), 'utf8')) as { version: string };
  expect(LIBRARY_VERSION).toBe(pkg.version);
});

let server: RunningServer;
let project: Project;
const loops: SyncLoop[] = [];

beforeEach(async () => {
  ({ server, project } = await startTestServer());
});
afterEach(async () => {
  for (const loop of loops.splice(0)) loop.stop();
  await stopTestServer(server);
});

async function devices(user: string): Promise<DeviceRecord[]> {
  const res = await fetch(new URL(`/v1/admin/projects/p/users/${user}/devices`, server.url), { headers: { Authorization: 'Bearer admin' } });
  expect(res.status).toBe(200);
  return ((await res.json()) as { devices: DeviceRecord[] }).devices;
}

/** Polls until the user's one device matches `expected`. */
async function shows(user: string, expected: Partial<DeviceRecord>): Promise<DeviceRecord> {
  let last: DeviceRecord[] = [];
  const matches = () => last.length === 1 && Object.entries(expected).every(([key, value]) => last[0]![key as keyof DeviceRecord] === value);
  try {
    await waitFor(async () => {
      last = await devices(user);
      return matches();
    }, 5_000, `the device to show ${JSON.stringify(expected)}`);
  } catch (error) {
    throw new Error(`${String(error)}; last seen ${JSON.stringify(last)}`);
  }
  return last[0]!;
}

/** `ws`, with the pushes it would send held back until released: a push whose ack has not come. */
function holdingPushes() {
  let holding = false;
  const held: Array<() => void> = [];
  class Holding extends WebSocket {
    // The sync loop sends its frames as strings, with no options.
    override send(data: Parameters<WebSocket['send']>[0]): void {
      if (holding && typeof data === 'string' && (JSON.parse(data) as { type?: string }).type === 'push') {
        held.push(() => super.send(data));
        return;
      }
      super.send(data);
    }
  }
  return {
    WebSocket: Holding,
    hold: () => (holding = true),
    held: () => held.length,
    release: () => {
      holding = false;
      for (const send of held.splice(0)) send();
    },
  };
}

describe('the client reports its status', () => {
  it('a PocketSync instance: library, app and protocol version, and nothing pending', async () => {
    const token = await mintUserToken(project, 'alice');
    const a = await openInstance({ schema: todoSchema, serverUrl: server.url, projectId: 'p', authToken: token, appVersion: '4.5.6' });
    await waitFor(() => a.sync.status.state === 'live', 5_000, 'live');
    await shows('alice', { library: LIBRARY_VERSION, appVersion: '4.5.6', protocolVersion: 2, pending: 0, quarantined: 0, online: true });
    await a.database.insert('todos', { title: 'milk' });
    await waitFor(() => a.sync.status.pending === 0 && a.sync.status.state === 'live', 5_000, 'the ack');
    await shows('alice', { pending: 0, library: LIBRARY_VERSION });
  });

  it('the sync loop: the hello’s pending count, and a status frame when it changes', async () => {
    const token = await mintUserToken(project, 'alice');
    const engine = await openEngine({ schema: todoSchema, deviceId: 'loop-device' });
    const socket = holdingPushes();
    const options = { url: syncUrl(server), token: () => token, WebSocket: socket.WebSocket, statusEveryMs: 10 };

    // Written before it ever connected: the hello says one change is pending.
    engine.insert('todos', { title: 'offline' });
    socket.hold();
    const loop = new SyncLoop(engine, new Replica(engine), options);
    loops.push(loop);
    loop.start();
    await waitFor(() => loop.status.state === 'live', 5_000, 'live');
    await shows('alice', { pending: 1, quarantined: 0, library: LIBRARY_VERSION, protocolVersion: 2 });

    // Another write while the push is out: the status frame says two.
    engine.insert('todos', { title: 'live' });
    loop.localWrite();
    await waitFor(() => loop.status.pending === 2, 5_000, 'pending 2 locally');
    await shows('alice', { pending: 2 });
    expect(socket.held()).toBeGreaterThan(0);

    // The acks come: zero, told to the server.
    socket.release();
    await waitFor(() => loop.status.pending === 0, 5_000, 'the acks');
    await shows('alice', { pending: 0, library: LIBRARY_VERSION });
    expect(await server.store.currentSeq('p')).toBe(2);
  });
});
