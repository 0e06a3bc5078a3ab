/** The sync loop: engines on in-memory SQLite-WASM syncing live through a real server's WebSocket. */
import WebSocket from 'ws';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { QuarantineEntry } from '../lib/protocol/change.js';
import { LIMITS } from '../lib/protocol/up.js';
import type { Schema } from '../lib/protocol/worker-api.js';
import { parseClock } from '../worker/hlc.js';
import { mintUserToken } from '../server/auth.js';
import type { RunningServer } from '../server/server.js';
import type { Project } from '../server/store/store.js';
import type { Engine } from '../worker/engine.js';
import type { Network } from '../worker/sync/network.js';
import { Replica } from '../worker/sync/replica.js';
import { SyncLoop, type SyncLoopOptions, type SyncState } from '../worker/sync/sync-loop.js';
import { openEngine, todoSchema } from './helpers/engine.js';
import { waitFor } from './helpers/instance.js';
import { startTestServer, stopTestServer, syncUrl } from './helpers/server.js';

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

interface Device {
  engine: Engine;
  loop: SyncLoop;
  states: SyncState[];
  remoteTables: string[][];
  /** What onQuarantine reported, in order. */
  quarantined: QuarantineEntry[];
}

/** A network the test takes away and gives back (Node's is always there). */
class SwitchableNetwork implements Network {
  online = true;
  readonly #listeners = new Set<(online: boolean) => void>();

  watch(listener: (online: boolean) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  set(online: boolean): void {
    this.online = online;
    for (const listener of this.#listeners) listener(online);
  }
}

/** `ws`, counting the connections the loop opens. */
function countingWebSocket(): { WebSocket: unknown; opened: () => number } {
  let count = 0;
  class Counting extends WebSocket {
    constructor(address: string | URL, protocols?: string | string[]) {
      super(address, protocols);
      count++;
    }
  }
  return { WebSocket: Counting, opened: () => count };
}

interface DeviceOptions {
  readonly network?: Network;
  readonly socket?: unknown;
  /** The device's clock (Date.now by default). */
  readonly time?: () => number;
  readonly run?: SyncLoopOptions['run'];
  readonly pushDelayMs?: number;
  /** Another endpoint than project p's. */
  readonly url?: string;
  readonly schema?: Schema;
}

async function device(name: string, token: () => string | Promise<string>, { network, socket = WebSocket, time, run, pushDelayMs, url, schema = todoSchema }: DeviceOptions = {}): Promise<Device> {
  const engine = await openEngine({ schema, deviceId: name, ...(time ? { time } : {}) });
  const states: SyncState[] = [];
  const remoteTables: string[][] = [];
  const quarantined: QuarantineEntry[] = [];
  const loop = new SyncLoop(engine, new Replica(engine), {
    url: url ?? syncUrl(server),
    token,
    WebSocket: socket,
    ...(network ? { network } : {}),
    ...(run ? { run } : {}),
    ...(pushDelayMs !== undefined ? { pushDelayMs } : {}),
    onStatus: (status) => {
      if (states.at(-1) !== status.state) states.push(status.state);
    },
    onRemoteTables: (tables) => remoteTables.push(tables),
    onQuarantine: (entries) => quarantined.push(...entries),
  });
  loops.push(loop);
  return { engine, loop, states, remoteTables, quarantined };
}

const titles = (engine: Engine) => engine.query('SELECT title FROM todos ORDER BY title').map((r) => r.title);

describe('sync loop', () => {
  it('carries a write on A to B live, and tells B which tables changed', async () => {
    const token = await mintUserToken(project, 'alice');
    const a = await device('device-a', () => token);
    const b = await device('device-b', () => token);
    a.loop.start();
    b.loop.start();
    await waitFor(() => a.loop.status.state === 'live' && b.loop.status.state === 'live', 5_000, 'both live');
    a.engine.insert('todos', { title: 'milk' });
    a.loop.localWrite();
    await waitFor(() => titles(b.engine).includes('milk'), 5_000, 'the write to reach B');
    await waitFor(() => a.loop.status.pending === 0, 5_000, 'A’s ack');
    expect(b.remoteTables).toContainEqual(['todos']);
    expect(b.states).toEqual(['connecting', 'catching-up', 'live']);
  });

  it('remembers when it last synced: a new loop on the same database reports it before connecting', async () => {
    const token = await mintUserToken(project, 'alice');
    const a = await device('device-a', () => token);
    const b = await device('device-b', () => token);
    a.loop.start();
    b.loop.start();
    await waitFor(() => b.loop.status.state === 'live', 5_000, 'B live');
    a.engine.insert('todos', { title: 'milk' });
    a.loop.localWrite();
    await waitFor(() => titles(b.engine).includes('milk'), 5_000, 'the write to reach B');
    b.loop.stop();
    const reopened = new SyncLoop(b.engine, new Replica(b.engine), { url: 'ws://127.0.0.1:9/unused', token: () => token });
    expect(reopened.status.state).toBe('offline');
    expect(reopened.status.lastSyncedAt).toBeGreaterThan(Date.now() - 60_000);
  });

  it('catches up a device that was offline, and pushes what it wrote offline', async () => {
    const token = await mintUserToken(project, 'alice');
    const a = await device('device-a', () => token);
    const b = await device('device-b', () => token);
    a.loop.start();
    await waitFor(() => a.loop.status.state === 'live');
    for (let i = 0; i < 30; i++) a.engine.insert('todos', { title: `a${String(i).padStart(2, '0')}` });
    a.loop.localWrite();
    b.engine.insert('todos', { title: 'written offline on b' });
    await waitFor(() => a.loop.status.pending === 0, 5_000, 'A’s pushes');
    b.loop.start();
    await waitFor(() => titles(b.engine).length === 31 && titles(a.engine).length === 31, 5_000, 'both to converge');
    expect(titles(a.engine)).toEqual(titles(b.engine));
  });

  it('asks for a fresh token once after an auth failure, then gives up with state error', async () => {
    const good = await mintUserToken(project, 'alice');
    let calls = 0;
    const refreshed = await device('device-a', () => (++calls === 1 ? 'expired-or-garbage' : good));
    refreshed.loop.start();
    await waitFor(() => refreshed.loop.status.state === 'live', 5_000, 'live after a refreshed token');
    expect(calls).toBe(2);

    let badCalls = 0;
    const hopeless = await device('device-b', () => {
      badCalls++;
      return 'never-valid';
    });
    hopeless.loop.start();
    await waitFor(() => hopeless.loop.status.state === 'error', 5_000, 'state error');
    expect(hopeless.loop.status.error).toMatchObject({ kind: 'auth' });
    expect(badCalls).toBe(2);
    // No reconnect storm: the socket stays closed.
    expect(server.hub.connections).toBe(1);
  });

  it('when its token expires on an open socket, asks for a fresh one and carries on from its cursor', async () => {
    let calls = 0;
    // Tokens that live two seconds: the server closes the socket when each one expires.
    const shortLived = () => (calls++, mintUserToken(project, 'alice', 2));
    const hellos: Array<{ cursor: number }> = [];
    class Recording extends WebSocket {
      override send(data: string): void {
        const frame = JSON.parse(data) as { type: string; cursor: number };
        if (frame.type === 'hello') hellos.push(frame);
        super.send(data);
      }
    }
    const a = await device('device-a', shortLived, { socket: Recording });
    const longToken = await mintUserToken(project, 'alice');
    const b = await device('device-b', () => longToken);
    b.loop.start();
    for (let i = 0; i < 5; i++) b.engine.insert('todos', { title: `before ${i}` });
    b.loop.localWrite();
    await waitFor(() => b.loop.status.state === 'live' && b.loop.status.pending === 0, 5_000, "B's writes acknowledged");
    a.loop.start();
    await waitFor(() => titles(a.engine).length === 5, 5_000, 'A caught up');
    await waitFor(() => hellos.length >= 2 && a.loop.status.state === 'live', 10_000, 'A reconnected with a fresh token');
    expect(calls).toBeGreaterThanOrEqual(2);
    expect(hellos[0]!.cursor).toBe(0);
    expect(hellos[1]!.cursor).toBeGreaterThanOrEqual(5);
    b.engine.insert('todos', { title: 'after' });
    b.loop.localWrite();
    await waitFor(() => titles(a.engine).includes('after'), 5_000, "B's later write to reach A");
    expect(titles(a.engine)).toEqual(titles(b.engine));
  });

  it('quarantines a change the server rejects (a clock hours fast) with the server\'s reason, and goes on syncing', async () => {
    const token = await mintUserToken(project, 'alice');
    let ahead = 2 * 3_600_000;
    const fast = await device('device-fast', () => token, { time: () => Date.now() + ahead });
    fast.loop.start();
    await waitFor(() => fast.loop.status.state === 'live', 5_000, 'live');
    const row = fast.engine.insert('todos', { title: 'from the future' });
    fast.loop.localWrite();
    await waitFor(() => fast.loop.status.quarantined === 1, 5_000, 'the rejection to be quarantined');
    expect(fast.quarantined).toEqual([
      expect.objectContaining({ direction: 'local', table: 'todos', row, error: { kind: 'invalid', message: expect.stringMatching(/clock: 120 minutes ahead/) } }),
    ]);
    expect(fast.loop.status).toMatchObject({ state: 'live', pending: 0, error: null });
    expect(await server.store.currentSeq('p')).toBe(0);

    // The clock is set right: later writes are stamped from the right time and go through.
    ahead = 0;
    fast.engine.insert('todos', { title: 'from the present' });
    fast.loop.localWrite();
    await waitFor(async () => (await server.store.currentSeq('p')) === 1, 5_000, 'the later write at the server');
    const pulled = await server.store.pull({ projectId: 'p', scopes: ['user:alice'], cursor: 0, limit: 10 });
    expect(pulled.changes.map((c) => c.values?.title)).toEqual(['from the present']);
    expect(parseClock(Object.values(pulled.changes[0]?.clocks ?? {})[0]!).wall).toBeLessThanOrEqual(Date.now());
  });

  it('a push with a rejected change goes on: the rest is acknowledged, the rejected one quarantined, later pushes flow', async () => {
    const token = await mintUserToken(project, 'alice');
    const a = await device('device-a', () => token);
    const b = await device('device-b', () => token);
    a.loop.start();
    b.loop.start();
    await waitFor(() => a.loop.status.state === 'live' && b.loop.status.state === 'live', 5_000, 'both live');
    // One push: a row whose id, given by raw SQL, the wire refuses, between two it takes.
    a.engine.insert('todos', { title: 'before' });
    a.engine.execute("INSERT INTO todos (ps_global_id, title) VALUES ('has space', 'kept here')");
    a.engine.insert('todos', { title: 'after' });
    a.loop.localWrite();
    await waitFor(() => a.loop.status.pending === 0 && a.loop.status.quarantined === 1, 5_000, 'the ack');
    expect(a.quarantined).toEqual([expect.objectContaining({ direction: 'local', table: 'todos', row: 'has space', error: expect.objectContaining({ kind: 'invalid' }) })]);
    expect(a.loop.status).toMatchObject({ state: 'live', error: null });
    a.engine.insert('todos', { title: 'later' });
    a.loop.localWrite();
    await waitFor(() => titles(b.engine).length === 3, 5_000, 'the accepted writes on B');
    expect(titles(b.engine)).toEqual(['after', 'before', 'later']);
    expect(titles(a.engine)).toEqual(['after', 'before', 'kept here', 'later']);
  });

  it('carries REAL infinities exactly: a value JSON has no number for arrives as itself, not as null', async () => {
    const token = await mintUserToken(project, 'alice');
    const schema: Schema = {
      version: 1,
      migrations: [{ version: 1, sql: [...todoSchema.migrations[0]!.sql, 'CREATE TABLE readings (id INTEGER PRIMARY KEY, value REAL)'] }],
    };
    const a = await device('device-a', () => token, { schema });
    const b = await device('device-b', () => token, { schema });
    a.loop.start();
    b.loop.start();
    await waitFor(() => a.loop.status.state === 'live' && b.loop.status.state === 'live', 5_000, 'both live');
    a.engine.insert('readings', { value: Number.POSITIVE_INFINITY });
    a.engine.insert('readings', { value: Number.NEGATIVE_INFINITY });
    a.engine.insert('readings', { value: 1.5 });
    a.loop.localWrite();
    const values = (engine: Engine) => engine.query('SELECT value FROM readings ORDER BY value').map((r) => r.value);
    await waitFor(() => values(b.engine).length === 3, 5_000, 'the readings on B');
    expect(values(b.engine)).toEqual([Number.NEGATIVE_INFINITY, 1.5, Number.POSITIVE_INFINITY]);
    expect(a.loop.status.quarantined).toBe(0);
  });

  it('quarantines a remote row this database refuses (UNIQUE), reports it, and applies the rest', async () => {
    const token = await mintUserToken(project, 'alice');
    const schema: Schema = {
      version: 1,
      migrations: [{ version: 1, sql: [...todoSchema.migrations[0]!.sql, 'CREATE TABLE tags (id INTEGER PRIMARY KEY, name TEXT UNIQUE)'] }],
    };
    const a = await device('device-a', () => token, { schema });
    const b = await device('device-b', () => token, { schema });
    // Both offline: the same tag name on each, under different rows.
    a.engine.insert('tags', { name: 'urgent' });
    a.engine.insert('todos', { title: 'from a' });
    b.engine.insert('tags', { name: 'urgent' });
    a.loop.start();
    await waitFor(() => a.loop.status.state === 'live' && a.loop.status.pending === 0, 5_000, 'A’s push');
    b.loop.start();
    await waitFor(() => b.loop.status.state === 'live' && b.loop.status.pending === 0 && b.loop.status.quarantined === 1, 5_000, 'B live with the refused row quarantined');
    expect(b.quarantined).toEqual([expect.objectContaining({ direction: 'remote', table: 'tags', error: expect.objectContaining({ message: expect.stringMatching(/UNIQUE/) }) })]);
    expect(titles(b.engine)).toEqual(['from a']);
    expect(b.loop.status.error).toBeNull();
  });

  it('goes offline with the network: closes its socket, keeps writes pending, and pushes them when it returns', async () => {
    const token = await mintUserToken(project, 'alice');
    const network = new SwitchableNetwork();
    const a = await device('device-a', () => token);
    const b = await device('device-b', () => token, { network });
    a.loop.start();
    b.loop.start();
    await waitFor(() => a.loop.status.state === 'live' && b.loop.status.state === 'live', 5_000, 'both live');

    network.set(false);
    expect(b.loop.status.state).toBe('offline');
    await waitFor(() => server.hub.connections === 1, 5_000, 'the server to see B’s socket close');
    b.engine.insert('todos', { title: 'written on b without a network' });
    b.loop.localWrite();
    await waitFor(() => b.loop.status.pending === 1, 5_000, 'B to count its pending write');
    a.engine.insert('todos', { title: 'written on a meanwhile' });
    a.loop.localWrite();
    await waitFor(() => a.loop.status.pending === 0, 5_000, 'A’s push');
    expect(b.loop.status.state).toBe('offline');
    expect(titles(b.engine)).toEqual(['written on b without a network']);

    network.set(true);
    await waitFor(() => b.loop.status.state === 'live' && b.loop.status.pending === 0, 5_000, 'B live with nothing pending');
    await waitFor(() => titles(a.engine).length === 2 && titles(b.engine).length === 2, 5_000, 'both to converge');
    expect(titles(a.engine)).toEqual(titles(b.engine));
    expect(b.states).toEqual(['connecting', 'catching-up', 'live', 'offline', 'connecting', 'catching-up', 'live']);
  });

  it('started without a network, stays offline without trying to connect, and connects when it comes', async () => {
    const token = await mintUserToken(project, 'alice');
    const network = new SwitchableNetwork();
    network.online = false;
    const counting = countingWebSocket();
    const b = await device('device-b', () => token, { network, socket: counting.WebSocket });
    b.loop.start();
    expect(b.loop.status.state).toBe('offline');
    expect(counting.opened()).toBe(0);

    network.set(true);
    await waitFor(() => b.loop.status.state === 'live', 5_000, 'B live');
    expect(counting.opened()).toBe(1);
    expect(b.states).toEqual(['offline', 'connecting', 'catching-up', 'live']);
  });

  it('never pushes from inside an app transaction: a rolled-back write never reaches the server, and no later change is lost', async () => {
    const token = await mintUserToken(project, 'alice');
    // The app's transactions, as the worker's call queue sees them: loop work waits for the end.
    let appTransaction: Promise<void> | null = null;
    const run = async (work: () => void): Promise<void> => {
      while (appTransaction) await appTransaction;
      work();
    };
    const a = await device('device-a', () => token, { run, pushDelayMs: 100 });
    a.loop.start();
    await waitFor(() => a.loop.status.state === 'live', 5_000, 'live');
    a.engine.insert('todos', { title: 'committed' });
    a.loop.localWrite(); // pushed at once; its pending recount is due in 100 ms
    await waitFor(async () => (await server.store.currentSeq('p')) === 1, 5_000, 'the first write at the server');

    let endTransaction = (): void => undefined;
    appTransaction = new Promise((resolve) => (endTransaction = resolve));
    const began = Date.now();
    a.engine.begin();
    a.engine.insert('todos', { title: 'rolled back' });
    // The loop's timer fires while the transaction is open (it is due 100 ms after the first write).
    await waitFor(() => Date.now() - began > 150, 1_000, 'the timer to be due');
    a.engine.rollback();
    appTransaction = null;
    endTransaction();

    a.engine.insert('todos', { title: 'after' });
    a.loop.localWrite();
    await waitFor(() => a.loop.status.pending === 0 && a.engine.query('SELECT count(*) AS n FROM __pocketsync_changes')[0]?.n === 0, 5_000, 'the ack');
    await waitFor(async () => (await server.store.currentSeq('p')) === 2, 5_000, 'the second write at the server');
    const pulled = await server.store.pull({ projectId: 'p', scopes: ['user:alice'], cursor: 0, limit: 100 });
    expect(pulled.changes.map((c) => c.values?.title).sort()).toEqual(['after', 'committed']);
  });

  it('splits a push that would be over the message limit, and quarantines a change too large to send, going on with the rest', async () => {
    const token = await mintUserToken(project, 'alice');
    const a = await device('device-a', () => token);
    a.loop.start();
    await waitFor(() => a.loop.status.state === 'live', 5_000, 'live');
    // Three changes of ~400 KB: together over the 1 MiB a message may carry, one by one within it.
    for (const name of ['x', 'y', 'z']) a.engine.insert('todos', { title: name.repeat(400_000) });
    a.loop.localWrite();
    await waitFor(async () => (await server.store.currentSeq('p')) === 3, 10_000, 'all three at the server');
    await waitFor(() => a.loop.status.pending === 0, 5_000, 'the acks');

    const huge = a.engine.insert('todos', { title: 'w'.repeat(LIMITS.maxMessageBytes + 1) });
    a.engine.insert('todos', { title: 'after the huge one' });
    a.loop.localWrite();
    await waitFor(async () => (await server.store.currentSeq('p')) === 4, 5_000, 'the next write at the server');
    await waitFor(() => a.loop.status.pending === 0, 5_000, 'nothing pending');
    expect(a.loop.status).toMatchObject({ state: 'live', quarantined: 1 });
    expect(a.quarantined).toEqual([
      expect.objectContaining({ direction: 'local', table: 'todos', row: huge, error: { kind: 'invalid', message: expect.stringMatching(/^change \S+ \(insert of a row of todos\) is over the server's 1048576-byte limit/) } }),
    ]);
  });

  it('retries a push the server failed on (kind internal), staying live, until it goes through', async () => {
    const token = await mintUserToken(project, 'alice');
    const a = await device('device-a', () => token);
    a.loop.start();
    await waitFor(() => a.loop.status.state === 'live', 5_000, 'live');
    // A fault in the server's store, once: the push is refused whole, and the next try is stored.
    const store = server.store;
    const push = store.push.bind(store);
    let faults = 1;
    store.push = (input) => (faults-- > 0 ? Promise.reject(new Error('disk I/O error (injected)')) : push(input));
    a.engine.insert('todos', { title: 'milk' });
    a.loop.localWrite();
    await waitFor(() => a.loop.status.error?.kind === 'internal', 5_000, 'the fault to be reported');
    expect(a.loop.status.state).toBe('live');
    expect(await server.store.currentSeq('p')).toBe(0);
    await waitFor(() => a.loop.status.pending === 0, 5_000, 'the retried push');
    expect(await server.store.currentSeq('p')).toBe(1);
    expect(a.loop.status.error).toBeNull();
    expect(faults).toBe(-1);
  });
});

describe('sync loop failures: every one reaches status.error with a kind, and every retry backs off', () => {
  /** Waits for `n` events of `times` (ms timestamps), then returns the gaps between them. */
  async function gapsOf(times: number[], n: number, what: string): Promise<number[]> {
    await waitFor(() => times.length >= n, 15_000, what);
    return times.slice(1, n).map((t, i) => t - times[i]!);
  }

  it('a token function that throws is reported as kind auth, opens no socket, and is asked again only after a growing delay', async () => {
    const counting = countingWebSocket();
    const calls: number[] = [];
    const failing = await device('device-a', () => {
      calls.push(Date.now());
      throw new Error('the user id "Ann Smith" is not allowed');
    }, { socket: counting.WebSocket });
    const started = Date.now();
    failing.loop.start();
    await waitFor(() => failing.loop.status.error !== null, 5_000, 'the failure to be reported');
    expect(failing.loop.status.error).toEqual({ kind: 'auth', message: expect.stringMatching(/token function failed: the user id "Ann Smith" is not allowed/) });
    expect(failing.loop.status.state).toBe('connecting');
    expect(failing.loop.status.retryAt).toBeGreaterThan(Date.now() - 50);
    // Five calls in a row wait at least 125 + 250 + 500 + 1000 ms (250 ms doubling, jitter 0.5-1);
    // without back-off it was about 600 calls (and sockets) in 10 s.
    const gaps = await gapsOf(calls, 5, 'five token calls');
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_800);
    for (let i = 1; i < gaps.length; i++) expect(gaps[i]!).toBeGreaterThanOrEqual(gaps[i - 1]! * 0.9);
    expect(counting.opened()).toBe(0);
  });

  it('an unknown project stops sync in state error with kind not-found after one attempt', async () => {
    const token = await mintUserToken(project, 'alice');
    const counting = countingWebSocket();
    let calls = 0;
    const lost = await device('device-a', () => (calls++, token), { socket: counting.WebSocket, url: syncUrl(server, 'no-such-project') });
    lost.loop.start();
    await waitFor(() => lost.loop.status.state === 'error', 5_000, 'state error');
    expect(lost.loop.status.error).toMatchObject({ kind: 'not-found', message: expect.stringMatching(/no-such-project/) });
    expect(lost.loop.status.retryAt).toBeNull();
    expect(counting.opened()).toBe(1);
    expect(calls).toBe(1);
  });

  it('an endpoint that refuses the upgrade (HTTP 404) is reported after the first attempt, and retried with back-off', async () => {
    const token = await mintUserToken(project, 'alice');
    const attempts: number[] = [];
    const refused = await device('device-a', () => (attempts.push(Date.now()), token), { url: `${server.url.replace('http', 'ws')}v1/nowhere` });
    refused.loop.start();
    await waitFor(() => refused.loop.status.error !== null, 5_000, 'the failure to be reported');
    expect(attempts).toHaveLength(1);
    expect(refused.loop.status).toMatchObject({ state: 'connecting', error: { kind: 'closed', message: expect.stringMatching(/could not connect to ws:.*nowhere/) } });
    expect(refused.loop.status.retryAt).not.toBeNull();
    const started = attempts[0]!;
    await gapsOf(attempts, 4, 'four attempts');
    expect(attempts[3]! - started).toBeGreaterThanOrEqual(125 + 250 + 500 - 20);
  });
});
