import { useEffect, useState } from 'preact/hooks';
import { Choice } from './fields.js';
import { api, attempt, json, project as path, query, time } from '../api.js';

export interface ChangeRow {
  changeId: string;
  deviceId: string;
  userId: string;
  table: string;
  row: string;
  op: string;
  values: Record<string, unknown> | null;
  clock: string;
  outcome: string;
  seq: number | null;
  receivedAt: number;
  message: string | null;
}

interface Filter {
  table: string;
  user: string;
  device: string;
  op: string;
  outcome: string;
  from: string;
  to: string;
}

const EMPTY: Filter = { table: '', user: '', device: '', op: '', outcome: '', from: '', to: '' };

export function Changes({ project }: { project: string }) {
  const [draft, setDraft] = useState<Filter>(EMPTY);
  const [filter, setFilter] = useState<Filter>(EMPTY);
  const [changes, setChanges] = useState<ChangeRow[]>([]);
  const [next, setNext] = useState<string | null>(null);
  const [tail, setTail] = useState(true);
  const params = (before?: string) =>
    query({
      ...filter,
      from: filter.from ? new Date(filter.from).toISOString() : '',
      to: filter.to ? new Date(filter.to).toISOString() : '',
      before,
      limit: 50,
    });
  const load = async (before?: string) => {
    const data = await attempt(() => api<{ changes: ChangeRow[]; next: string | null }>('GET', path(project, `/changes${params(before)}`)));
    if (!data) return;
    setChanges(before ? [...changes, ...data.changes] : data.changes);
    setNext(data.next);
  };
  useEffect(() => void load(), [project, filter]);
  useEffect(() => {
    if (!tail) return;
    // Live tail: the newest page again whenever the live stream says changes came in.
    const source = new EventSource(path(project, '/live'));
    source.addEventListener('second', (event) => {
      const second = JSON.parse((event as MessageEvent<string>).data) as { changes: number };
      if (second.changes > 0) void load();
    });
    return () => source.close();
  }, [project, filter, tail]);
  const set = (name: keyof Filter) => (e: { currentTarget: HTMLInputElement }) => setDraft({ ...draft, [name]: e.currentTarget.value });
  const field = (name: keyof Filter, label: string) => (
    <label>
      {label}
      <input type="text" value={draft[name]} onInput={set(name)} />
    </label>
  );
  const timeField = (name: keyof Filter, label: string) => (
    <label>
      {label}
      <input type="datetime-local" value={draft[name]} onInput={set(name)} />
    </label>
  );
  return (
    <>
      <form
        class="panel fields"
        aria-label="Filter changes"
        onSubmit={(e) => {
          e.preventDefault();
          setFilter(draft);
        }}
      >
        {field('table', 'Table')}
        {field('user', 'User')}
        {field('device', 'Device')}
        <Choice label="Operation" value={draft.op} options={['insert', 'update', 'delete']} any="any" onChange={(op) => setDraft({ ...draft, op })} />
        <Choice label="Outcome" value={draft.outcome} options={['applied', 'superseded', 'duplicate', 'rejected']} any="any" onChange={(outcome) => setDraft({ ...draft, outcome })} />
        {timeField('from', 'From')}
        {timeField('to', 'To')}
        <button type="submit">Filter</button>
        <label class="inline">
          <input type="checkbox" checked={tail} onChange={(e) => setTail(e.currentTarget.checked)} /> Live tail
        </label>
      </form>
      <ChangeTable changes={changes} caption="Recent changes, newest first" />
      {next && (
        <button type="button" onClick={() => void load(next)}>
          Older changes
        </button>
      )}
    </>
  );
}

export function ChangeTable({ changes, caption, project }: { changes: ChangeRow[]; caption: string; project?: string }) {
  return (
    <table class="changes">
      <caption>{caption}</caption>
      <thead>
        <tr>
          <th scope="col">Received</th>
          <th scope="col">Seq</th>
          <th scope="col">Outcome</th>
          <th scope="col">Operation</th>
          <th scope="col">Table / row</th>
          <th scope="col">Values</th>
          <th scope="col">Clock</th>
          <th scope="col">User / device</th>
        </tr>
      </thead>
      <tbody>
        {changes.map((c) => (
          <tr key={`${c.deviceId}:${c.changeId}`}>
            <td>{time(c.receivedAt)}</td>
            <td class="num">{c.seq ?? '—'}</td>
            <td>
              <span class={`badge ${c.outcome === 'applied' ? 'good' : c.outcome === 'rejected' ? 'bad' : 'warn'}`}>{c.outcome}</span>
              {c.message && <p class="detail">{c.message}</p>}
            </td>
            <td>{c.op}</td>
            <td>
              {c.table} / {project ? <a href={`#/p/${encodeURIComponent(project)}/rows?table=${c.table}&row=${c.row}`}>{c.row}</a> : <code>{c.row}</code>}
            </td>
            <td>
              <code class="values">{c.values === null ? '—' : json(c.values)}</code>
            </td>
            <td>
              <code>{c.clock || '—'}</code>
            </td>
            <td>
              {c.userId} / <code>{c.deviceId}</code>
            </td>
          </tr>
        ))}
        {changes.length === 0 && (
          <tr>
            <td colSpan={8}>No changes match.</td>
          </tr>
        )}
      </tbody>
    </table>
  );
}
