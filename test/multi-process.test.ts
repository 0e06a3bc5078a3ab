/**
 * Several server processes on one PostgreSQL database (issue 14): real `pocketsync-server`
 * processes (the CLI, --store), real sockets on 127.0.0.1. A write made through one process
 * reaches a device of another live, in seq order; a process killed with SIGKILL loses nothing it
 * acknowledged, and its device resumes on another from its cursor.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { ClientChange } from '../lib/protocol/change.js';
import type { Changes } from '../lib/protocol/down.js';
import { PROTOCOL_VERSION } from '../lib/protocol/protocol-version.js';
import { mintUserToken } from '../server/auth.js';
import type { Project } from '../server/store/store.js';
import { formatClock } from '../worker/hlc.js';
import { waitFor } from './helpers/instance.js';
import { isType, TestSocket } from './helpers/socket.js';

const BASE = process.env.POCKETSYNC_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const database = `ps_multi_${process.pid}_${Date.now().toString(36)}`;
const url = BASE.replace(/\/[^/]*$/, `/${database}`);
const dir = mkdtempSync(join(tmpdir(), 'pocketsync-multi-'));
const children: ChildProcess[] = [];
const sockets: TestSocket[] = [];

async function admin(query: string): Promise<void> {
  const client = new pg.Client({ connectionString: BASE });
  await client.connect();
  await client.query(query);
  await client.end();
}

beforeAll(async () => {
  await admin(`CREATE DATABASE ${database}`);
});

afterAll(async () => {
  for (const socket of sockets) socket.close();
  for (const child of children) child.kill('SIGKILL');
  await Promise.all(children.map((child) => (child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((resolve) => child.once('exit', resolve)))));
  await admin(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
  rmSync(dir, { recursive: true, force: true });
});

/** A server process on the shared database: its URL once it says it listens. */
async function serverProcess(name: string): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'server/cli.ts', '--port', '0', '--store', url, '--admin-key', 'admin', '--data-dir', join(dir, name)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  await waitFor(() => /PocketSync server: http:\/\/localhost:\d+\//.test(output), 20_000, `server ${name} to start`);
  return { child, url: /PocketSync server: (http:\/\/localhost:\d+\/)/.exec(output)![1]!.replace('localhost', '127.0.0.1') };
}

let n = 0;
const insert = (device: string): ClientChange => {
  n++;
  return { id: `c${n}`, table: 'todos', row: `r${n}`, op: 'insert', clock: formatClock({ wall: Date.now(), counter: n, deviceId: device }), values: { title: `todo ${n}` } };
};

async function device(server: string, project: Project, deviceId: string, cursor = 0): Promise<TestSocket> {
  const socket = await TestSocket.open(server, project.id);
  sockets.push(socket);
  socket.send({ type: 'hello', protocolVersion: PROTOCOL_VERSION, deviceId, cursor, token: await mintUserToken(project, 'alice') });
  await socket.next((m): m is Changes => m.type === 'changes' && !m.hasMore, 0, 10_000);
  return socket;
}

/** Every row (by id) the socket was sent, with the seqs in the order they came. */
function received(socket: TestSocket): { rows: Set<string>; seqs: number[] } {
  const pages = socket.received.filter(isType('changes'));
  return { rows: new Set(pages.flatMap((p) => p.changes.map((c) => c.row))), seqs: pages.flatMap((p) => p.changes.map((c) => c.seq)) };
}

it('two processes: writes through each reach the other’s device live, in seq order; one killed loses nothing acknowledged', { timeout: 120_000 }, async () => {
  const [a, b] = await Promise.all([serverProcess('a'), serverProcess('b')]);
  const created = await fetch(`${a.url}v1/admin/projects`, { method: 'POST', headers: { Authorization: 'Bearer admin', 'Content-Type': 'application/json' }, body: JSON.stringify({ id: 'shared' }) });
  expect(created.status).toBe(201);
  const secret = ((await created.json()) as { secret: string }).secret;
  const project: Project = { id: 'shared', secret, strategy: 'column-lww', sharedTables: [], createdAt: 0, keys: [{ kid: 'default', secret }] };

  const onA = await device(a.url, project, 'device-a');
  const onB = await device(b.url, project, 'device-b');
  const acked: string[] = [];
  const pushedBy = new Map<string, string>();
  // Writes through both processes, interleaved.
  for (let round = 0; round < 10; round++) {
    for (const [socket, name] of [[onA, 'device-a'], [onB, 'device-b']] as const) {
      const changes = [insert(name), insert(name)];
      const from = socket.received.length;
      socket.send({ type: 'push', changes });
      const ack = await socket.next(isType('ack'), from, 10_000);
      expect(ack.results.map((r) => r.outcome)).toEqual(['applied', 'applied']);
      acked.push(...changes.map((c) => c.row));
      for (const change of changes) pushedBy.set(change.row, name);
    }
  }
  // A device knows its own rows from its acks; the other's must come live.
  const rowsOf = (socket: TestSocket, own: string) => [...received(socket).rows, ...acked.filter((row) => pushedBy.get(row) === own)];
  // Each device holds every row: its own from its acks, the other's sent live.
  await waitFor(() => new Set(rowsOf(onA, 'device-a')).size === 40 && new Set(rowsOf(onB, 'device-b')).size === 40, 10_000, 'both devices to hold all 40 rows');
  for (const socket of [onA, onB]) {
    const { seqs } = received(socket);
    expect(seqs).toEqual([...seqs].sort((x, y) => x - y));
    expect(new Set(seqs).size).toBe(seqs.length);
  }

  // Process A dies at once; its device comes back on B, from its cursor, and misses nothing.
  a.child.kill('SIGKILL');
  await onA.closed(10_000);
  const cursor = Math.max(0, ...received(onA).seqs);
  const again = await device(b.url, project, 'device-a', cursor);
  const after = received(again).rows;
  const has = new Set([...received(onA).rows, ...after, ...acked.filter((row) => pushedBy.get(row) === 'device-a')]);
  expect(has.size).toBe(40);
  const all = await device(b.url, project, 'device-c');
  expect(received(all).rows.size).toBe(40);
});
