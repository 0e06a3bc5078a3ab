/**
 * The operators' console: sign-in, then projects and, per project, its overview, users and
 * devices, changes, rows, conflicts, keys and settings, and integration. Hash routes
 * (#/p/<project>/<page>) so that the server serves one page and every view has an address.
 */
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { api, attempt, problem, signedIn } from './api.js';
import { Changes } from './pages/changes.js';
import { Conflicts } from './pages/conflicts.js';
import { Integration } from './pages/integration.js';
import { Keys } from './pages/keys.js';
import { Overview } from './pages/overview.js';
import { Projects } from './pages/projects.js';
import { Rows } from './pages/rows.js';
import { Users } from './pages/users.js';
import './style.css';

const PAGES = [
  ['overview', 'Overview'],
  ['users', 'Users and devices'],
  ['changes', 'Changes'],
  ['rows', 'Rows'],
  ['conflicts', 'Conflicts'],
  ['keys', 'Keys and settings'],
  ['integration', 'Integration'],
] as const;
type Page = (typeof PAGES)[number][0];

interface Route {
  readonly project: string | null;
  readonly page: Page;
}

function parseRoute(hash: string): Route {
  const match = /^#\/p\/([^/]+)(?:\/([a-z]+))?/.exec(hash);
  if (!match) return { project: null, page: 'overview' };
  const page = PAGES.some(([name]) => name === match[2]) ? (match[2] as Page) : 'overview';
  return { project: decodeURIComponent(match[1]!), page };
}

function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const changed = () => setRoute(parseRoute(location.hash));
    addEventListener('hashchange', changed);
    return () => removeEventListener('hashchange', changed);
  }, []);
  return route;
}

function SignIn() {
  const [key, setKey] = useState('');
  const [busy, setBusy] = useState(false);
  const submit = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    const done = await attempt(() => api('POST', '/v1/console/session', { key }));
    setBusy(false);
    if (done !== undefined) {
      setKey('');
      signedIn.value = true;
    }
  };
  return (
    <main class="sign-in">
      <h1>PocketSync console</h1>
      <form onSubmit={(e) => void submit(e)} aria-labelledby="sign-in-heading">
        <h2 id="sign-in-heading">Sign in</h2>
        <p>
          Sign in with the server's admin key: <code>pocketsync-server</code> prints it at its first start and keeps it in{' '}
          <code>&lt;data dir&gt;/admin-key</code>.
        </p>
        <label for="admin-key">Admin key</label>
        <input id="admin-key" type="password" autocomplete="current-password" required value={key} onInput={(e) => setKey(e.currentTarget.value)} />
        <button type="submit" disabled={busy}>
          Sign in
        </button>
        <Problem />
      </form>
    </main>
  );
}

export function Problem() {
  return (
    <p class="problem" role="alert">
      {problem.value ?? ''}
    </p>
  );
}

function Shell() {
  const route = useRoute();
  const signOut = async () => {
    await attempt(() => api('DELETE', '/v1/console/session'));
    signedIn.value = false;
  };
  useEffect(() => {
    problem.value = null;
  }, [route.project, route.page]);
  const title = route.project === null ? 'Projects' : (PAGES.find(([name]) => name === route.page)?.[1] ?? '');
  useEffect(() => {
    document.title = `${title}${route.project ? ` · ${route.project}` : ''} · PocketSync console`;
  }, [title, route.project]);
  return (
    <>
      <header class="top">
        <a class="brand" href="#/">
          PocketSync console
        </a>
        {route.project !== null && (
          <span class="crumb">
            project <strong>{route.project}</strong>
          </span>
        )}
        <button type="button" class="link" onClick={() => void signOut()}>
          Sign out
        </button>
      </header>
      <div class="layout">
        {route.project !== null && (
          <nav aria-label="Project">
            <ul>
              <li>
                <a href="#/">All projects</a>
              </li>
              {PAGES.map(([name, label]) => (
                <li key={name}>
                  <a href={`#/p/${encodeURIComponent(route.project!)}/${name}`} aria-current={route.page === name ? 'page' : undefined}>
                    {label}
                  </a>
                </li>
              ))}
            </ul>
          </nav>
        )}
        <main>
          <h1>{title}</h1>
          <Problem />
          {route.project === null ? <Projects /> : <ProjectPage project={route.project} page={route.page} />}
        </main>
      </div>
    </>
  );
}

function ProjectPage({ project, page }: { project: string; page: Page }) {
  switch (page) {
    case 'overview':
      return <Overview project={project} />;
    case 'users':
      return <Users project={project} />;
    case 'changes':
      return <Changes project={project} />;
    case 'rows':
      return <Rows project={project} />;
    case 'conflicts':
      return <Conflicts project={project} />;
    case 'keys':
      return <Keys project={project} />;
    case 'integration':
      return <Integration project={project} />;
  }
}

function App() {
  useEffect(() => {
    api('GET', '/v1/console/session').then(
      () => (signedIn.value = true),
      () => (signedIn.value = false),
    );
  }, []);
  if (signedIn.value === null) return <p class="loading">Loading…</p>;
  return signedIn.value ? <Shell /> : <SignIn />;
}

render(<App />, document.getElementById('app')!);
