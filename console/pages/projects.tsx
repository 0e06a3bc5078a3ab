import { useEffect, useState } from 'preact/hooks';
import { StrategySelect } from './fields.js';
import { api, attempt, type ProjectRow } from '../api.js';


export function Projects() {
  const [projects, setProjects] = useState<ProjectRow[] | null>(null);
  const load = async () => {
    const data = await attempt(() => api<{ projects: ProjectRow[] }>('GET', '/v1/admin/projects'));
    if (data) setProjects(data.projects);
  };
  useEffect(() => void load(), []);
  return (
    <>
      <table>
        <caption>Every project on this server, with today's counts (UTC)</caption>
        <thead>
          <tr>
            <th scope="col">Project</th>
            <th scope="col">Strategy</th>
            <th scope="col">Users</th>
            <th scope="col">Devices</th>
            <th scope="col">Online now</th>
            <th scope="col">Changes today</th>
            <th scope="col">Conflicts today</th>
          </tr>
        </thead>
        <tbody>
          {projects?.map((p) => (
            <tr key={p.id}>
              <th scope="row">
                <a href={`#/p/${encodeURIComponent(p.id)}/overview`}>{p.id}</a>
              </th>
              <td>{p.strategy}</td>
              <td class="num">{p.users}</td>
              <td class="num">{p.devices}</td>
              <td class="num">{p.online}</td>
              <td class="num">{p.changesToday}</td>
              <td class="num">{p.conflictsToday}</td>
            </tr>
          ))}
          {projects?.length === 0 && (
            <tr>
              <td colSpan={7}>No projects yet: create one below.</td>
            </tr>
          )}
        </tbody>
      </table>
      <CreateProject onCreated={(id) => (location.hash = `#/p/${encodeURIComponent(id)}/integration`)} />
    </>
  );
}

function CreateProject({ onCreated }: { onCreated: (id: string) => void }) {
  const [id, setId] = useState('');
  const [shared, setShared] = useState('');
  const [strategy, setStrategy] = useState('column-lww');
  const submit = async (event: Event) => {
    event.preventDefault();
    const sharedTables = shared.split(',').map((t) => t.trim()).filter((t) => t !== '');
    const created = await attempt(() => api<{ id: string }>('POST', '/v1/admin/projects', { id, strategy, sharedTables }));
    if (created) onCreated(created.id);
  };
  return (
    <form class="panel" onSubmit={(e) => void submit(e)} aria-labelledby="create-heading">
      <h2 id="create-heading">Create a project</h2>
      <div class="fields">
        <label>
          Project id
          <input name="id" required pattern="[A-Za-z0-9_\-]{1,64}" value={id} onInput={(e) => setId(e.currentTarget.value)} />
        </label>
        <label>
          Shared tables (comma-separated)
          <input name="shared" value={shared} onInput={(e) => setShared(e.currentTarget.value)} placeholder="e.g. shared_todos" />
        </label>
        <StrategySelect value={strategy} onChange={setStrategy} />
      </div>
      <button type="submit">Create project</button>
    </form>
  );
}
