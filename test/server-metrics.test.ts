/** GET /metrics on a real server: the admin key, and the counts of real pushes, catch-ups and sockets. */
import { afterEach, beforeEach, expect, it } from 'vitest';
import { ErrorKind } from '../lib/protocol/error-kind.js';
import { mintUserToken } from '../server/auth.js';
import { MAX_PROJECT_LABELS } from '../server/metrics.js';
import type { RunningServer } from '../server/server.js';
import type { Project } from '../server/store/store.js';
import { formatClock } from '../worker/hlc.js';
import { todoSchema } from './helpers/engine.js';
import { openInstance, waitFor } from './helpers/instance.js';
import { startTestServer, stopTestServer } from './helpers/server.js';

let server: RunningServer;
let project: Project;

beforeEach(async () => {
  ({ server, project } = await startTestServer());
});
afterEach(() => stopTestServer(server));

async function scrape(key = 'admin'): Promise<{ status: number; text: string; type: string | null }> {
  const response = await fetch(new URL('metrics', server.url), { headers: { Authorization: `Bearer ${key}` } });
  return { status: response.status, text: await response.text(), type: response.headers.get('content-type') };
}

/** The value of one series in a scrape, or undefined. */
function value(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

it('refuses a scrape without the admin key, with kind auth', async () => {
  const refused = await scrape('wrong');
  expect(refused.status).toBe(401);
  expect((JSON.parse(refused.text) as { kind: string }).kind).toBe(ErrorKind.Auth);
});

it('counts pushes, changes by outcome, conflicts, catch-up rows, push latency and open sockets', async () => {
  const token = await mintUserToken(project, 'alice');
  const options = { schema: todoSchema, serverUrl: server.url, projectId: 'p', authToken: token };
  const a = await openInstance(options);
  await waitFor(() => a.sync.status.state === 'live', 5_000, 'a live');
  await a.database.transaction(async (tx) => {
    for (let i = 0; i < 5; i++) await tx.insert('todos', { title: `t${i}` });
  });
  await waitFor(() => a.sync.status.pending === 0, 5_000, 'the push');
  // A push over HTTP with one change that loses (an older clock) and one that is rejected.
  const [row] = await a.database.query<{ id: string }>('SELECT ps_global_id AS id FROM todos LIMIT 1');
  const http = await fetch(new URL('v1/projects/p/push', server.url), {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ deviceId: 'old-device', changes: [
      { id: 'c1', table: 'todos', row: row?.id, op: 'update', clock: formatClock({ wall: 1_000, counter: 0, deviceId: 'old-device' }), values: { title: 'stale' } },
      { id: 'c2', table: 'todos', row: 'r2', op: 'insert', clock: 'not a clock', values: {} },
    ] }),
  });
  expect(http.status).toBe(200);
  const b = await openInstance(options);
  await waitFor(async () => (await b.database.query('SELECT 1 FROM todos')).length === 5, 5_000, 'b’s catch-up');

  const { status, text, type } = await scrape();
  expect(status).toBe(200);
  expect(type).toMatch(/^text\/plain/);
  expect(value(text, 'pocketsync_pushes_total{project="p"}')).toBe(2);
  expect(value(text, 'pocketsync_changes_total{project="p",outcome="applied"}')).toBe(5);
  expect(value(text, 'pocketsync_changes_total{project="p",outcome="superseded"}')).toBe(1);
  expect(value(text, 'pocketsync_changes_total{project="p",outcome="rejected"}')).toBe(1);
  expect(value(text, 'pocketsync_conflicts_total{project="p"}')).toBe(1);
  expect(value(text, 'pocketsync_catchup_rows_total{project="p"}')).toBe(5);
  expect(value(text, 'pocketsync_push_duration_seconds_count{project="p"}')).toBe(2);
  expect(value(text, 'pocketsync_connections{project="p"}')).toBe(2);
  expect(text).toContain('pocketsync_process_resident_memory_bytes');

  await b.close();
  await waitFor(async () => value((await scrape()).text, 'pocketsync_connections{project="p"}') === 1, 5_000, 'one socket left');
});

it('keeps the project label bounded: past the cap, projects share _other', async () => {
  for (let i = 0; i <= MAX_PROJECT_LABELS; i++) {
    const other = await server.store.createProject({ id: `q${i}`, secret: 'q'.repeat(32) });
    const response = await fetch(new URL(`v1/projects/${other.id}/push`, server.url), {
      method: 'POST',
      headers: { Authorization: `Bearer ${await mintUserToken(other, 'u')}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ deviceId: 'd1', changes: [] }),
    });
    expect(response.status).toBe(200);
  }
  const { text } = await scrape();
  const labelled = new Set([...text.matchAll(/^pocketsync_pushes_total\{project="([^"]+)"\}/gm)].map((m) => m[1]));
  expect(labelled.size).toBe(MAX_PROJECT_LABELS + 1);
  expect(labelled.has('_other')).toBe(true);
  expect(value(text, 'pocketsync_pushes_total{project="_other"}')).toBe(1);
});
