import { useEffect, useState } from 'preact/hooks';
import { StrategySelect } from './fields.js';
import { api, attempt, project as path, time } from '../api.js';

interface SigningKey {
  kid: string;
  createdAt: number;
  lastUsedAt: number | null;
  revokedAt: number | null;
}

interface ServiceKey {
  id: string;
  name: string;
  createdAt: number;
}

interface Settings {
  id: string;
  strategy: string;
  sharedTables: string[];
}


export function Keys({ project }: { project: string }) {
  return (
    <>
      <SigningKeys project={project} />
      <ServiceKeys project={project} />
      <ProjectSettings project={project} />
    </>
  );
}

function SigningKeys({ project }: { project: string }) {
  const [keys, setKeys] = useState<SigningKey[]>([]);
  const [created, setCreated] = useState<{ kid: string; secret: string } | null>(null);
  const [said, setSaid] = useState('');
  const load = async () => {
    const data = await attempt(() => api<{ keys: SigningKey[] }>('GET', path(project, '/keys')));
    if (data) setKeys(data.keys);
  };
  useEffect(() => void load(), [project]);
  const create = async () => {
    const data = await attempt(() => api<{ key: SigningKey; secret: string }>('POST', path(project, '/keys')));
    if (data) setCreated({ kid: data.key.kid, secret: data.secret });
    await load();
  };
  const revoke = async (kid: string) => {
    const data = await attempt(() => api<{ closed: number }>('DELETE', path(project, `/keys/${encodeURIComponent(kid)}`)));
    if (data) setSaid(`Revoked ${kid}: its tokens are refused, ${data.closed} socket(s) closed.`);
    await load();
  };
  return (
    <section class="panel" aria-labelledby="signing-heading">
      <h2 id="signing-heading">Signing keys</h2>
      <p>
        The app's backend signs user tokens with one of these (HS256, the key's id as the token's <code>kid</code>). To rotate: create a
        key, sign new tokens with it, then revoke the old one once its tokens have expired, or at once to refuse them.
      </p>
      <p role="status">{said}</p>
      {created && (
        <div class="secret" role="region" aria-label="New key">
          <p>
            Key <code>{created.kid}</code> created. Its secret is shown once: keep it in your backend's configuration.
          </p>
          <code class="block" data-secret>{created.secret}</code>
        </div>
      )}
      <table>
        <caption class="sr-only">Signing keys of {project}</caption>
        <thead>
          <tr>
            <th scope="col">kid</th>
            <th scope="col">Created</th>
            <th scope="col">Last used</th>
            <th scope="col">State</th>
            <th scope="col">Action</th>
          </tr>
        </thead>
        <tbody>
          {keys.map((k) => (
            <tr key={k.kid}>
              <th scope="row">
                <code>{k.kid}</code>
              </th>
              <td>{time(k.createdAt)}</td>
              <td>{time(k.lastUsedAt)}</td>
              <td>{k.revokedAt ? <span class="badge bad">revoked {time(k.revokedAt)}</span> : <span class="badge good">active</span>}</td>
              <td>
                {!k.revokedAt && (
                  <button type="button" class="danger" onClick={() => void revoke(k.kid)} aria-label={`Revoke key ${k.kid}`}>
                    Revoke
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <button type="button" onClick={() => void create()}>
        Create a signing key
      </button>
    </section>
  );
}

function ServiceKeys({ project }: { project: string }) {
  const [keys, setKeys] = useState<ServiceKey[]>([]);
  const [name, setName] = useState('');
  const [created, setCreated] = useState<string | null>(null);
  const load = async () => {
    const data = await attempt(() => api<{ keys: ServiceKey[] }>('GET', path(project, '/service-keys')));
    if (data) setKeys(data.keys);
  };
  useEffect(() => void load(), [project]);
  const create = async (event: Event) => {
    event.preventDefault();
    const data = await attempt(() => api<{ key: string }>('POST', path(project, '/service-keys'), { name }));
    if (data) setCreated(data.key);
    setName('');
    await load();
  };
  const remove = async (id: string) => {
    await attempt(() => api('DELETE', path(project, `/service-keys/${encodeURIComponent(id)}`)));
    await load();
  };
  return (
    <section class="panel" aria-labelledby="service-heading">
      <h2 id="service-heading">Service keys (backend API)</h2>
      {created && (
        <div class="secret" role="region" aria-label="New service key">
          <p>The new service key, shown once:</p>
          <code class="block">{created}</code>
        </div>
      )}
      <table>
        <caption class="sr-only">Service keys of {project}</caption>
        <thead>
          <tr>
            <th scope="col">Id</th>
            <th scope="col">Name</th>
            <th scope="col">Created</th>
            <th scope="col">Action</th>
          </tr>
        </thead>
        <tbody>
          {keys.map((k) => (
            <tr key={k.id}>
              <th scope="row">
                <code>{k.id}</code>
              </th>
              <td>{k.name || '—'}</td>
              <td>{time(k.createdAt)}</td>
              <td>
                <button type="button" class="danger" onClick={() => void remove(k.id)} aria-label={`Delete service key ${k.id}`}>
                  Delete
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <form onSubmit={(e) => void create(e)} class="fields">
        <label>
          Name
          <input value={name} onInput={(e) => setName(e.currentTarget.value)} placeholder="e.g. nightly-jobs" />
        </label>
        <button type="submit">Create a service key</button>
      </form>
    </section>
  );
}

function ProjectSettings({ project }: { project: string }) {
  const [settings, setSettings] = useState<Settings | null>(null);
  const [strategy, setStrategy] = useState('');
  const [shared, setShared] = useState('');
  const [confirm, setConfirm] = useState('');
  const [said, setSaid] = useState('');
  useEffect(() => {
    void attempt(() => api<{ project: Settings }>('GET', path(project))).then((data) => {
      if (!data) return;
      setSettings(data.project);
      setStrategy(data.project.strategy);
      setShared(data.project.sharedTables.join(', '));
    });
  }, [project]);
  const save = async (event: Event) => {
    event.preventDefault();
    const sharedTables = shared.split(',').map((t) => t.trim()).filter((t) => t !== '');
    const data = await attempt(() => api<{ project: Settings }>('PATCH', path(project), { strategy, sharedTables }));
    if (data) {
      setSettings(data.project);
      setSaid('Saved.');
    }
  };
  const remove = async (event: Event) => {
    event.preventDefault();
    const done = await attempt(() => api('DELETE', path(project), { confirm }));
    if (done !== undefined || confirm === project) location.hash = '#/';
  };
  if (!settings) return null;
  return (
    <>
      <form class="panel" onSubmit={(e) => void save(e)} aria-labelledby="settings-heading">
        <h2 id="settings-heading">Settings</h2>
        <div class="fields">
          <StrategySelect value={strategy} onChange={setStrategy} />
          <label>
            Shared tables (a table with rows keeps its scope)
            <input value={shared} onInput={(e) => setShared(e.currentTarget.value)} />
          </label>
        </div>
        <button type="submit">Save settings</button>
        <p role="status">{said}</p>
      </form>
      <form class="panel danger-zone" onSubmit={(e) => void remove(e)} aria-labelledby="delete-project-heading">
        <h2 id="delete-project-heading">Delete this project</h2>
        <p>Removes every row, change, device and key of {project} and closes its sockets. There is no undo.</p>
        <label>
          <span>
            Type <code>{project}</code> to confirm
          </span>
          <input value={confirm} onInput={(e) => setConfirm(e.currentTarget.value)} />
        </label>
        <button type="submit" class="danger" disabled={confirm !== project}>
          Delete project {project}
        </button>
      </form>
    </>
  );
}
