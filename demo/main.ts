/**
 * The PocketSync demo: two todo lists, a private one (this user's devices) and a shared one (every
 * user of the project), using only the package's public API as an app that installed it would.
 *
 * Who is signed in: `?user=NAME` signs in directly (links, tests); otherwise the name given in the
 * sign-in form, remembered in localStorage. `?local` runs without a server. Signing in uses the dev
 * server's token endpoint, so any name works; a real app would get its token from its own login.
 */
/// <reference types="vite/client" />
import { PocketSync, isPocketSyncError } from 'pocketsync';
import { mountSyncPanel } from './sync-panel.js';
import { mountTodoList } from './todo-list.js';

const TODO_COLUMNS = 'id INTEGER PRIMARY KEY, title TEXT NOT NULL, done INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL';
const schema = {
  version: 2,
  migrations: [
    { version: 1, sql: [`CREATE TABLE todos (${TODO_COLUMNS})`] },
    { version: 2, sql: [`CREATE TABLE shared_todos (${TODO_COLUMNS}, author TEXT)`] },
  ],
};
const params = new URLSearchParams(location.search);
/**
 * The dev project, whose tokens the server mints for any name; or, with ?project=…&token=…, any
 * project with a token its backend (or the console's "mint a test token") made.
 */
const PROJECT = params.get('project') ?? 'demo';
const GIVEN_TOKEN = params.get('token');
const USER_KEY = PROJECT === 'demo' ? 'pocketsync-demo-user' : `pocketsync-demo-user-${PROJECT}`;
const problem = document.getElementById('problem')!;

function showProblem(message: string): void {
  problem.textContent = message;
  problem.hidden = false;
}

function report(error: unknown): void {
  showProblem(isPocketSyncError(error) ? `${error.kind}: ${error.message}` : String(error));
}

async function devToken(user: string): Promise<string> {
  if (GIVEN_TOKEN !== null) return GIVEN_TOKEN;
  const res = await fetch(`/v1/projects/${PROJECT}/dev/token`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ user }),
  });
  if (!res.ok) throw new Error(`could not sign in as ${user} (${res.status})`);
  return ((await res.json()) as { token: string }).token;
}

/** The user a token is for (its `sub`), read without checking: the server checks it. */
function tokenSubject(token: string): string {
  try {
    const payload = JSON.parse(atob((token.split('.')[1] ?? '').replace(/-/g, '+').replace(/_/g, '/'))) as { sub?: unknown };
    return typeof payload.sub === 'string' ? payload.sub : 'unknown';
  } catch {
    return 'unknown';
  }
}

/** The signed-in user: from the URL, else remembered; null shows the sign-in form. */
function signedInUser(): string | null {
  const fromUrl = params.get('user')?.trim();
  if (fromUrl) return fromUrl;
  if (GIVEN_TOKEN !== null) return tokenSubject(GIVEN_TOKEN);
  return localStorage.getItem(USER_KEY);
}

function showSignIn(): void {
  const section = document.getElementById('sign-in')!;
  const form = document.getElementById('sign-in-form') as HTMLFormElement;
  const input = document.getElementById('sign-in-name') as HTMLInputElement;
  section.hidden = false;
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const user = input.value.trim();
    if (!user) return;
    localStorage.setItem(USER_KEY, user);
    section.hidden = true;
    void start(user);
  });
  input.focus();
}

/** Opens this user's database (one per user in this browser) and shows the lists. */
async function start(user: string | null): Promise<void> {
  let pocketSync: PocketSync;
  try {
    pocketSync = await PocketSync.initialize({
      dbName: user ? `pocketsync-${PROJECT === 'demo' ? 'demo' : `demo-${PROJECT}`}-${encodeURIComponent(user)}.sqlite3` : 'pocketsync-demo.sqlite3',
      schema,
      appVersion: 'demo 0.1.0',
      ...(user ? { serverUrl: location.origin, projectId: PROJECT, authToken: () => devToken(user) } : {}),
    });
  } catch (error) {
    report(error);
    return;
  }
  // For tinkering from the console (and for the browser tests).
  Object.assign(window, { pocketSync });
  document.getElementById('app')!.hidden = false;
  if (user) showUser(user, pocketSync);
  mountSyncPanel(pocketSync);
  mountTodoList({
    section: document.getElementById('private')!,
    name: 'Private',
    description: user ? `Only ${user}'s devices see these.` : 'Only this browser sees these.',
    table: 'todos',
    pocketSync,
    author: user,
    onError: report,
  });
  mountTodoList({
    section: document.getElementById('shared')!,
    name: 'Shared',
    description: user ? 'Every user of this demo sees these.' : 'Shared with every user once you sign in.',
    table: 'shared_todos',
    pocketSync,
    author: user,
    onError: report,
  });
}

/** Who is signed in, and signing out: the local copy is deleted (the server keeps the data). */
function showUser(user: string, pocketSync: PocketSync): void {
  document.getElementById('user-name')!.textContent = user;
  document.getElementById('who')!.hidden = false;
  document.getElementById('sign-out')!.addEventListener('click', () => {
    const { pending } = pocketSync.sync.status;
    if (pending > 0 && !confirm(`${pending} change(s) have not reached the server yet and will be lost. Sign out anyway?`)) return;
    void (async () => {
      await pocketSync.reset();
      await pocketSync.close();
      localStorage.removeItem(USER_KEY);
      location.assign(location.pathname);
    })().catch(report);
  });
}

/** The app shell is cached by a service worker, so the app loads with the network off. */
function registerServiceWorker(): void {
  if (!('serviceWorker' in navigator) || !import.meta.env.PROD) return;
  navigator.serviceWorker.register('./sw.js').catch((error: unknown) => console.warn('PocketSync demo: no offline shell', error));
}

registerServiceWorker();
if (params.has('local')) void start(null);
else {
  const user = signedInUser();
  if (user) void start(user);
  else showSignIn();
}
