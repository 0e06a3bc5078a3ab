import { useEffect, useState } from 'preact/hooks';
import { api, attempt, json, project as path, query, time } from '../api.js';

export interface Side {
  op: string;
  clock: string | null;
  value?: unknown;
}

export interface ConflictRow {
  id: number;
  at: number;
  table: string;
  row: string;
  column: string | null;
  rule: string;
  losing: Side;
  winning: Side;
  changeId: string | null;
  deviceId: string | null;
  userId: string | null;
}

/** The device a clock was stamped by (a clock is `<time><counter>-<device>`). */
export const deviceOf = (clock: string | null): string => (clock === null ? '—' : clock.slice(clock.indexOf('-') + 1) || '—');

export function Conflicts({ project }: { project: string }) {
  const [table, setTable] = useState('');
  const [from, setFrom] = useState('');
  const [to, setTo] = useState('');
  const [filter, setFilter] = useState({ table: '', from: '', to: '' });
  const [conflicts, setConflicts] = useState<ConflictRow[]>([]);
  const [next, setNext] = useState<number | null>(null);
  const load = async (before?: number) => {
    const params = query({
      table: filter.table,
      from: filter.from ? new Date(filter.from).toISOString() : '',
      to: filter.to ? new Date(filter.to).toISOString() : '',
      before,
      limit: 50,
    });
    const data = await attempt(() => api<{ conflicts: ConflictRow[]; next: number | null }>('GET', path(project, `/conflicts${params}`)));
    if (!data) return;
    setConflicts(before ? [...conflicts, ...data.conflicts] : data.conflicts);
    setNext(data.next);
  };
  useEffect(() => {
    void load();
    const timer = setInterval(() => void load(), 3000);
    return () => clearInterval(timer);
  }, [project, filter]);
  return (
    <>
      <form
        class="panel fields"
        aria-label="Filter conflicts"
        onSubmit={(e) => {
          e.preventDefault();
          setFilter({ table, from, to });
        }}
      >
        <label>
          Table
          <input value={table} onInput={(e) => setTable(e.currentTarget.value)} />
        </label>
        <label>
          From
          <input type="datetime-local" value={from} onInput={(e) => setFrom(e.currentTarget.value)} />
        </label>
        <label>
          To
          <input type="datetime-local" value={to} onInput={(e) => setTo(e.currentTarget.value)} />
        </label>
        <button type="submit">Filter</button>
      </form>
      <ConflictTable conflicts={conflicts} project={project} />
      {next !== null && (
        <button type="button" onClick={() => void load(next)}>
          Older conflicts
        </button>
      )}
    </>
  );
}

export function ConflictTable({ conflicts, project }: { conflicts: ConflictRow[]; project: string }) {
  return (
    <table class="conflicts">
      <caption>Writes that lost, newest first: both sides and the rule that decided</caption>
      <thead>
        <tr>
          <th scope="col">When</th>
          <th scope="col">Table / row / column</th>
          <th scope="col">Rule</th>
          <th scope="col">Lost</th>
          <th scope="col">Won</th>
        </tr>
      </thead>
      <tbody>
        {conflicts.map((c) => (
          <tr key={c.id} data-conflict={c.id}>
            <td>{time(c.at)}</td>
            <td>
              {c.table} / <a href={`#/p/${encodeURIComponent(project)}/rows?table=${c.table}&row=${c.row}`}>{c.row}</a> / {c.column ?? '(whole row)'}
            </td>
            <td>{c.rule}</td>
            <td class="side lost">
              <SideView side={c.losing} device={c.deviceId ?? deviceOf(c.losing.clock)} user={c.userId} />
            </td>
            <td class="side won">
              <SideView side={c.winning} device={deviceOf(c.winning.clock)} user={null} />
            </td>
          </tr>
        ))}
        {conflicts.length === 0 && (
          <tr>
            <td colSpan={5}>No conflicts recorded.</td>
          </tr>
        )}
      </tbody>
    </table>
  );
}

function SideView({ side, device, user }: { side: Side; device: string; user: string | null }) {
  return (
    <dl>
      <dt>value</dt>
      <dd>
        <code>{'value' in side ? json(side.value) : side.op}</code>
      </dd>
      <dt>clock</dt>
      <dd>
        <code>{side.clock ?? '—'}</code>
      </dd>
      <dt>device</dt>
      <dd>
        <code>{device}</code>
        {user ? ` (user ${user})` : ''}
      </dd>
    </dl>
  );
}
