/**
 * The store contract on PostgreSQL (server/store/postgres-store.ts): the conformance suite, each
 * test on a schema of its own in the database at POCKETSYNC_TEST_DATABASE_URL (the machine's
 * PostgreSQL by default), dropped afterwards. PostgreSQL must be there: CI starts it, and a run
 * without it fails rather than skipping.
 */
import pg from 'pg';
import { afterAll, expect, it } from 'vitest';
import { POSTGRES_SCHEMA_VERSION, PostgresStore } from '../server/store/postgres-store.js';
import { mintUserToken } from '../server/auth.js';
import { createServer } from '../server/server.js';
import { todoSchema } from './helpers/engine.js';
import { openInstance, waitFor } from './helpers/instance.js';
import { describeStore } from './store-conformance.js';

const URL_ = process.env.POCKETSYNC_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const schemas: string[] = [];
let n = 0;

function open(): Promise<PostgresStore> {
  const schema = `ps_test_${process.pid}_${Date.now().toString(36)}_${++n}`;
  schemas.push(schema);
  const store = new PostgresStore({ connectionString: URL_, schema, max: 4 });
  return store.ready().then(() => store);
}

afterAll(async () => {
  const client = new pg.Client({ connectionString: URL_ });
  await client.connect();
  for (const schema of schemas) await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await client.end();
});

describeStore('postgres', open);

it('migrates a new schema to the current version, and a second store on it changes nothing', async () => {
  const first = await open();
  const schema = schemas.at(-1)!;
  await first.createProject({ id: 'p', secret: 's'.repeat(32) });
  const second = new PostgresStore({ connectionString: URL_, schema });
  await second.ready();
  expect((await second.getProject('p'))?.id).toBe('p');
  const client = new pg.Client({ connectionString: URL_ });
  await client.connect();
  expect((await client.query(`SELECT version FROM ${schema}.pocketsync_schema`)).rows).toEqual([{ version: POSTGRES_SCHEMA_VERSION }]);
  await client.end();
  await Promise.all([first.close(), second.close()]);
});

it('serves sync on PostgreSQL: two real devices converge through the real server', async () => {
  const store = await open();
  const project = await store.createProject({ id: 'p', secret: 's'.repeat(32) });
  const server = await createServer({ store, adminKey: 'admin', log: null });
  const [a, b] = await Promise.all([
    openInstance({ schema: todoSchema, serverUrl: server.url, projectId: 'p', authToken: () => mintUserToken(project, 'ann') }),
    openInstance({ schema: todoSchema, serverUrl: server.url, projectId: 'p', authToken: () => mintUserToken(project, 'ann') }),
  ]);
  try {
    for (let i = 0; i < 20; i++) await a.database.execute('INSERT INTO todos (title, done) VALUES (?, 0)', [`todo ${i}`]);
    await waitFor(async () => (await b.database.query<{ n: number }>('SELECT count(*) AS n FROM todos'))[0]?.n === 20, 20_000, 'B to hold A’s 20 todos');
    await b.database.execute("UPDATE todos SET done = 1 WHERE title = 'todo 3'");
    await waitFor(async () => (await a.database.query<{ done: number }>("SELECT done FROM todos WHERE title = 'todo 3'"))[0]?.done === 1, 20_000, 'A to see B’s edit');
    expect(await store.currentSeq('p')).toBe(21);
  } finally {
    await Promise.all([a.close(), b.close()]);
    await server.close();
    await store.close();
  }
});

it('pushes from several stores at once (as several processes would) get gap-free seqs in commit order', async () => {
  const first = await open();
  const schema = schemas.at(-1)!;
  await first.createProject({ id: 'p', secret: 's'.repeat(32) });
  const others = [new PostgresStore({ connectionString: URL_, schema, max: 4 }), new PostgresStore({ connectionString: URL_, schema, max: 4 })];
  const stores = [first, ...others];
  try {
    let n = 0;
    const pushes = Array.from({ length: 30 }, (_, i) => {
      const store = stores[i % stores.length]!;
      const changes = Array.from({ length: 10 }, () => {
        n++;
        return { id: `c${n}`, table: 'todos', row: `r${n}`, op: 'insert' as const, clock: `${String(1_000_000 + n).padStart(21, '0')}-d${i}`, values: { title: `t${n}` } };
      });
      return store.push({ projectId: 'p', userId: 'u', deviceId: `d${i}`, deviceCursor: 0, changes });
    });
    const outs = await Promise.all(pushes);
    const seqs = outs.flatMap((out) => out.results.map((r) => r.seq!));
    expect([...seqs].sort((x, y) => x - y)).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
    // Each push's seqs are one run: nothing of another push committed in between.
    for (const out of outs) {
      const own = out.results.map((r) => r.seq!);
      expect(own).toEqual(Array.from({ length: 10 }, (_, i) => own[0]! + i));
    }
    const pulled = await first.pull({ projectId: 'p', scopes: ['shared', 'user:u'], cursor: 0, limit: 1000 });
    expect(pulled.changes.map((c) => c.seq)).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
    expect(await others[1]!.currentSeq('p')).toBe(300);
  } finally {
    await Promise.all(stores.map((s) => s.close()));
  }
});

it('a long schema name still carries commit notices; a value jsonb would refuse does not break a column search', async () => {
  const schema = `ps_test_${'x'.repeat(40)}_${Date.now().toString(36)}`.slice(0, 63);
  schemas.push(schema);
  const writer = new PostgresStore({ connectionString: URL_, schema });
  const listener = new PostgresStore({ connectionString: URL_, schema });
  const heard: Array<[string, number, number]> = [];
  const stop = await listener.watchCommits((projectId, range) => heard.push([projectId, range.from, range.to]));
  try {
    await writer.createProject({ id: 'p', secret: 's'.repeat(32) });
    const clock = (n: number) => `${String(1_000_000 + n).padStart(21, '0')}-d`;
    await writer.push({ projectId: 'p', userId: 'u', deviceId: 'd', deviceCursor: 0, changes: [
      { id: 'c1', table: 'todos', row: 'r1', op: 'insert', clock: clock(1), values: { title: 'nul \u0000 inside' } },
      { id: 'c2', table: 'todos', row: 'r2', op: 'insert', clock: clock(2), values: { title: 'good' } },
    ] });
    await waitFor(() => heard.length === 1, 5000, 'the notice');
    expect(heard).toEqual([['p', 0, 2]]);
    const found = await writer.rows({ projectId: 'p', scope: 'user:u', table: 'todos', limit: 10, where: { column: 'title', value: 'good' } });
    expect(found.rows.map((r) => r.row)).toEqual(['r2']);
  } finally {
    await stop();
    await Promise.all([writer.close(), listener.close()]);
  }
});
