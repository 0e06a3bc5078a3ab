/**
 * The PocketSync demo: a todo list on the local engine, using only the package's public API.
 * Every list on screen is a watch, so it updates from any write, wherever it came from.
 */
import { PocketSync, isPocketSyncError, type Row } from 'pocketsync';

interface Todo extends Row {
  ps_global_id: string;
  title: string;
  done: number;
}

const schema = {
  version: 1,
  migrations: [
    {
      version: 1,
      sql: ['CREATE TABLE todos (id INTEGER PRIMARY KEY, title TEXT NOT NULL, done INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL)'],
    },
  ],
};

const storageStatus = document.querySelector<HTMLElement>('#storage')!;
const syncState = document.querySelector<HTMLElement>('#sync-state')!;
/** `?user=NAME` signs in with a dev-mode token and syncs; without it the demo stays local. */
const user = new URLSearchParams(location.search).get('user');

async function devToken(name: string): Promise<string> {
  const res = await fetch('/v1/projects/demo/dev/token', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ user: name }),
  });
  if (!res.ok) throw new Error(`could not sign in as ${name} (${res.status})`);
  return ((await res.json()) as { token: string }).token;
}
const problem = document.querySelector<HTMLElement>('#problem')!;
const form = document.querySelector<HTMLFormElement>('#add-form')!;
const input = document.querySelector<HTMLInputElement>('#new-todo')!;
const list = document.querySelector<HTMLUListElement>('#todo-list')!;

function showProblem(message: string): void {
  problem.textContent = message;
  problem.hidden = false;
}

function render(todos: Todo[], pocketSync: PocketSync): void {
  list.replaceChildren(
    ...todos.map((todo) => {
      const item = document.createElement('li');
      item.classList.toggle('done', todo.done === 1);
      const id = `todo-${todo.ps_global_id}`;
      const checkbox = Object.assign(document.createElement('input'), { type: 'checkbox', id, checked: todo.done === 1 });
      checkbox.addEventListener('change', () => {
        pocketSync.database.update('todos', { done: checkbox.checked ? 1 : 0 }, { ps_global_id: todo.ps_global_id }).catch(report);
      });
      const label = Object.assign(document.createElement('label'), { htmlFor: id, textContent: todo.title });
      const remove = Object.assign(document.createElement('button'), { type: 'button', textContent: 'Delete' });
      remove.setAttribute('aria-label', `Delete ${todo.title}`);
      remove.addEventListener('click', () => {
        pocketSync.database.delete('todos', { ps_global_id: todo.ps_global_id }).catch(report);
      });
      item.append(checkbox, label, remove);
      return item;
    }),
  );
}

function report(error: unknown): void {
  showProblem(isPocketSyncError(error) ? `${error.kind}: ${error.message}` : String(error));
}

async function main(): Promise<void> {
  let pocketSync: PocketSync;
  try {
    pocketSync = await PocketSync.initialize({
      dbName: user ? `pocketsync-demo-${user}.sqlite3` : 'pocketsync-demo.sqlite3',
      schema,
      ...(user ? { serverUrl: location.origin, projectId: 'demo', authToken: () => devToken(user) } : {}),
    });
  } catch (error) {
    storageStatus.textContent = 'Not available';
    if (isPocketSyncError(error) && error.kind === 'storage' && /open in another tab/.test(error.message)) {
      // Until several tabs can share the database, the first tab keeps it.
      showProblem(`This demo is already open in another tab of this browser: close that tab, then reload this one. (${error.message})`);
    } else {
      report(error);
    }
    form.querySelector('button')!.disabled = true;
    return;
  }
  storageStatus.textContent = `Storage: ${pocketSync.storage}`;
  if (pocketSync.warning) {
    storageStatus.classList.add('warning');
    storageStatus.textContent += ` (${pocketSync.warning})`;
  }
  // For tinkering from the console (and for the browser tests).
  Object.assign(window, { pocketSync });
  if (pocketSync.sync.enabled) {
    syncState.hidden = false;
    pocketSync.sync.subscribe(({ state, pending }) => {
      syncState.dataset.state = state;
      syncState.textContent = `Sync: ${state}${pending > 0 ? `, ${pending} pending` : ''}`;
    });
  }

  pocketSync.database.watch<Todo>('SELECT ps_global_id, title, done FROM todos ORDER BY created_at, id', [], (todos) => render(todos, pocketSync));

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const title = input.value.trim();
    if (!title) return;
    input.value = '';
    pocketSync.database.insert('todos', { title, created_at: new Date().toISOString() }).catch(report);
  });
}

void main();
