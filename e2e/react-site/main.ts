/**
 * A small React app on pocketsync/react, for e2e/react.test.ts: a few components on the hooks, and
 * counters on `window` that the test reads — renders per component, and database.watch calls
 * (started, stopped, runs per SQL). `?user=<name>` syncs with the server that serves the page.
 */
import { createElement as h, StrictMode, useState, type ReactNode } from 'react';
import { createRoot } from 'react-dom/client';
import { PocketSync, type Row } from 'pocketsync';
import { PocketSyncProvider, useConflicts, useQuery, useSyncStatus, useUnsynced } from 'pocketsync/react';

const PROJECT = 'react';
const user = new URLSearchParams(location.search).get('user') ?? 'ann';

const probe = {
  renders: { todos: 0, count: 0, notes: 0, status: 0, conflicts: 0, unsynced: 0 },
  watches: { started: 0, active: 0, runs: {} as Record<string, number> },
  rerender: () => undefined as void,
  show: (_: { todos?: boolean; all?: boolean }) => undefined as void,
};
Object.assign(window, { probe });

function Todos(): ReactNode {
  probe.renders.todos++;
  // A new params array on every render: the watch must stay the same.
  const { rows, loading } = useQuery<{ title: string } & Row>('SELECT title FROM todos WHERE done = ? ORDER BY title', [0]);
  return h('ul', { id: 'todos', 'data-loading': String(loading) }, rows.map((row) => h('li', { key: row.title }, row.title)));
}

function Count(): ReactNode {
  probe.renders.count++;
  const { rows } = useQuery<{ n: number } & Row>('SELECT count(*) AS n FROM todos');
  return h('p', { id: 'count' }, String(rows[0]?.n ?? ''));
}

function Notes(): ReactNode {
  probe.renders.notes++;
  const { rows, error } = useQuery<{ body: string } & Row>('SELECT body FROM notes ORDER BY body');
  return h('p', { id: 'notes' }, error ? `error: ${error.kind}` : rows.map((row) => row.body).join(', '));
}

function Status(): ReactNode {
  probe.renders.status++;
  const status = useSyncStatus();
  return h('p', { id: 'status' }, `${status.state}, ${status.pending} pending`);
}

function Conflicts(): ReactNode {
  probe.renders.conflicts++;
  const { conflicts, clear } = useConflicts();
  return h('div', null, h('p', { id: 'conflicts' }, conflicts.map((c) => `${c.column ?? 'row'}: ${JSON.stringify(c.losing.value)} lost to ${JSON.stringify(c.winning.value)}`).join('; ')), h('button', { onClick: clear }, 'Clear conflicts'));
}

function Unsynced(): ReactNode {
  probe.renders.unsynced++;
  return h('p', { id: 'unsynced' }, String(useUnsynced('todos').size));
}

function App(): ReactNode {
  const [, setTick] = useState(0);
  const [shown, setShown] = useState({ todos: true, all: true });
  probe.rerender = () => setTick((tick) => tick + 1);
  probe.show = (change) => setShown((current) => ({ ...current, ...change }));
  if (!shown.all) return h('p', { id: 'empty' }, 'nothing mounted');
  return h('main', null, shown.todos ? h(Todos) : null, h(Count), h(Notes), h(Status), h(Conflicts), h(Unsynced));
}

async function devToken(): Promise<string> {
  const response = await fetch(`/v1/projects/${PROJECT}/dev/token`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ user }) });
  if (!response.ok) throw new Error(`no dev token: ${response.status}`);
  return ((await response.json()) as { token: string }).token;
}

const pocketSync = await PocketSync.initialize({
  dbName: `react-${user}.sqlite3`,
  schema: {
    version: 1,
    migrations: [{ version: 1, sql: ['CREATE TABLE todos (id INTEGER PRIMARY KEY, title TEXT NOT NULL, done INTEGER NOT NULL DEFAULT 0)', 'CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)'] }],
  },
  serverUrl: location.origin,
  projectId: PROJECT,
  authToken: devToken,
});

// Counts what the hooks ask of the database: each watch started and stopped, and each run.
const watch = pocketSync.database.watch.bind(pocketSync.database);
pocketSync.database.watch = ((sql: string, params: Parameters<typeof watch>[1], callback: (rows: Row[]) => void, options?: Parameters<typeof watch>[3]) => {
  probe.watches.started++;
  probe.watches.active++;
  const stop = watch(sql, params, (rows) => {
    probe.watches.runs[sql] = (probe.watches.runs[sql] ?? 0) + 1;
    callback(rows);
  }, options);
  return () => {
    probe.watches.active--;
    stop();
  };
}) as typeof pocketSync.database.watch;
Object.assign(window, { pocketSync });

createRoot(document.getElementById('root')!).render(h(StrictMode, null, h(PocketSyncProvider, { pocketSync }, h(App))));
