/**
 * Durability: kill -9 the server process in the middle of a stream of pushes, restart it on the same
 * data directory, and every change it acknowledged is there.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import type { ClientChange } from '../lib/protocol/change.js';
import { formatClock } from '../worker/hlc.js';
import { waitFor } from './helpers/instance.js';

const dataDir = mkdtempSync(join(tmpdir(), 'pocketsync-crash-'));
const ADMIN = 'crash-test-admin-key';
const children: ChildProcess[] = [];
afterAll(() => {
  for (const child of children) child.kill('SIGKILL');
  rmSync(dataDir, { recursive: true, force: true });
});

/** Starts the CLI on a free port and resolves once it has printed where it listens. */
async function start(): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'server/cli.ts', '--port', '0', '--data-dir', dataDir, '--admin-key', ADMIN], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  await waitFor(() => /PocketSync server: http:\/\/localhost:\d+\//.test(output), 20_000, 'the server to start');
  const port = /localhost:(\d+)/.exec(output)?.[1];
  return { child, url: `http://127.0.0.1:${port}` };
}

it('keeps every acknowledged change through a kill -9', async () => {
  let server = await start();
  const created = await fetch(`${server.url}/v1/admin/projects`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${ADMIN}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ id: 'crash' }),
  });
  const project = (await created.json()) as { secret: string };
  const { sign } = await import('hono/jwt');
  const token = await sign({ sub: 'alice', project: 'crash', exp: Math.floor(Date.now() / 1000) + 600 }, project.secret, 'HS256');

  const acked = new Set<string>();
  let n = 0;
  const pushOne = async (): Promise<void> => {
    const changes: ClientChange[] = Array.from({ length: 20 }, () => {
      n++;
      return { id: `c${n}`, table: 'todos', row: `r${n}`, op: 'insert', clock: formatClock({ wall: 1_000 + n, counter: 0, deviceId: 'd' }), values: { n } };
    });
    const res = await fetch(`${server.url}/v1/projects/crash/push`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ deviceId: 'd', changes }),
    });
    const ack = (await res.json()) as { results: Array<{ id: string; outcome: string }> };
    for (const result of ack.results) if (result.outcome === 'applied') acked.add(result.id);
  };

  // A stream of pushes, with the process killed while it runs.
  const stream = (async () => {
    for (;;) await pushOne();
  })().catch(() => undefined);
  await waitFor(() => acked.size >= 400, 20_000, '400 acknowledged changes');
  server.child.kill('SIGKILL');
  await stream;
  expect(acked.size).toBeGreaterThanOrEqual(400);

  server = await start();
  const rows = new Set<string>();
  let cursor = 0;
  for (;;) {
    const res = await fetch(`${server.url}/v1/projects/crash/pull?cursor=${cursor}&limit=5000`, { headers: { Authorization: `Bearer ${token}` } });
    const batch = (await res.json()) as { changes: Array<{ row: string }>; cursor: number; hasMore: boolean };
    for (const change of batch.changes) rows.add(change.row);
    cursor = batch.cursor;
    if (!batch.hasMore) break;
  }
  const missing = [...acked].map((id) => `r${id.slice(1)}`).filter((row) => !rows.has(row));
  expect(missing).toEqual([]);
  // The store accepts writes again after recovery.
  await pushOne();
  server.child.kill('SIGKILL');
}, 60_000);
