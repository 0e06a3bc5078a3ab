import { useEffect, useState } from 'preact/hooks';
import { api, attempt, json, project as path, query, time } from '../api.js';
import type { ChangeRow } from './changes.js';
import type { ConflictRow } from './conflicts.js';

interface TableRow {
  table: string;
  rows: number;
  deleted: number;
  shared: boolean;
}

interface StoredRow {
  row: string;
  seq: number;
  deleted: boolean;
  values?: Record<string, unknown>;
  clocks?: Record<string, string>;
  deleteClock?: string;
}

/** The hash's own query (#/p/x/rows?table=…&row=…): a row can be linked to. */
const hashParams = (): URLSearchParams => new URLSearchParams(location.hash.split('?')[1] ?? '');

export function Rows({ project }: { project: string }) {
  const [tables, setTables] = useState<TableRow[]>([]);
  const [table, setTable] = useState(hashParams().get('table') ?? '');
  const [scopeUser, setScopeUser] = useState(hashParams().get('user') ?? '');
  const [column, setColumn] = useState('');
  const [value, setValue] = useState('');
  const [id, setId] = useState(hashParams().get('row') ?? '');
  const [rows, setRows] = useState<StoredRow[]>([]);
  const [next, setNext] = useState<string | null>(null);
  const [history, setHistory] = useState<string | null>(hashParams().get('row'));
  useEffect(() => {
    void attempt(() => api<{ tables: TableRow[] }>('GET', path(project, '/tables'))).then((data) => {
      if (!data) return;
      setTables(data.tables);
      if (!table && data.tables[0]) setTable(data.tables[0].table);
    });
  }, [project]);
  const shared = tables.find((t) => t.table === table)?.shared ?? false;
  const load = async (after?: string) => {
    if (!table || (!shared && !scopeUser)) return;
    const params = query({ table, scope: shared ? 'shared' : `user:${scopeUser}`, after, id: id || undefined, column: column || undefined, value: column ? value : undefined, limit: 50 });
    const data = await attempt(() => api<{ rows: StoredRow[]; next: string | null }>('GET', path(project, `/rows${params}`)));
    if (!data) return;
    setRows(after ? [...rows, ...data.rows] : data.rows);
    setNext(data.next);
  };
  const columns = [...new Set(rows.flatMap((r) => Object.keys(r.values ?? {})))];
  return (
    <>
      <section aria-labelledby="browse-heading">
        <h2 id="browse-heading">Browse the row state</h2>
        <form
          class="panel fields"
          onSubmit={(e) => {
            e.preventDefault();
            void load();
          }}
        >
          <label>
            Table
            <select value={table} onChange={(e) => setTable(e.currentTarget.value)}>
              {tables.map((t) => (
                <option key={t.table} value={t.table}>
                  {t.table} ({t.rows} rows{t.shared ? ', shared' : ''})
                </option>
              ))}
            </select>
          </label>
          {!shared && (
            <label>
              User (the scope of a private table)
              <input value={scopeUser} onInput={(e) => setScopeUser(e.currentTarget.value)} required />
            </label>
          )}
          <label>
            ps_global_id
            <input value={id} onInput={(e) => setId(e.currentTarget.value)} />
          </label>
          <label>
            Column
            <input value={column} onInput={(e) => setColumn(e.currentTarget.value)} />
          </label>
          <label>
            equals
            <input value={value} onInput={(e) => setValue(e.currentTarget.value)} />
          </label>
          <button type="submit">Show rows</button>
        </form>
      </section>
      <div class={history ? 'split wide-left' : ''}>
        <div class="scroll">
          <table>
            <caption>
              {table ? `Rows of ${table}${shared ? ' (shared)' : scopeUser ? ` of user ${scopeUser}` : ''}: pick one for its history` : 'Pick a table'}
            </caption>
            <thead>
              <tr>
                <th scope="col">ps_global_id</th>
                <th scope="col">Seq</th>
                {columns.map((c) => (
                  <th scope="col" key={c}>
                    {c}
                  </th>
                ))}
              </tr>
            </thead>
            <tbody>
              {rows.map((r) => (
                <tr key={r.row} aria-selected={history === r.row}>
                  <th scope="row">
                    <button type="button" class="link" onClick={() => setHistory(r.row)} aria-label={`History of ${r.row}`}>
                      {r.row.slice(0, 12)}…
                    </button>
                  </th>
                  <td class="num">{r.seq}</td>
                  {r.deleted ? (
                    <td colSpan={Math.max(1, columns.length)}>(deleted)</td>
                  ) : (
                    columns.map((c) => <td key={c}>{cell(r.values?.[c])}</td>)
                  )}
                </tr>
              ))}
            </tbody>
          </table>
          {next && (
            <button type="button" onClick={() => void load(next)}>
              More rows
            </button>
          )}
        </div>
        {history && table && <History project={project} table={table} row={history} />}
      </div>
    </>
  );
}

/** A column's value as a cell: text as it is, anything else as JSON. */
const cell = (value: unknown): string => (value === undefined ? '' : typeof value === 'string' ? value : json(value));

interface HistoryChange extends ChangeRow {
  conflicts: ConflictRow[];
}

function History({ project, table, row }: { project: string; table: string; row: string }) {
  const [changes, setChanges] = useState<HistoryChange[]>([]);
  const [truncated, setTruncated] = useState(false);
  useEffect(() => {
    void attempt(() => api<{ changes: HistoryChange[]; truncated: boolean }>('GET', path(project, `/history${query({ table, row })}`))).then((data) => {
      if (!data) return;
      setChanges(data.changes);
      setTruncated(data.truncated);
    });
  }, [project, table, row]);
  return (
    <section class="panel" aria-labelledby="history-heading">
      <h2 id="history-heading">
        History of {table} / <code>{row}</code>
      </h2>
      {truncated && <p class="detail">Its oldest changes are left out: these are the newest {changes.length}.</p>}
      <ol class="timeline">
        {changes.map((c) => (
          <li key={`${c.deviceId}:${c.changeId}`}>
            <p>
              <strong>{c.op}</strong> by {c.userId} on <code>{c.deviceId}</code>, {time(c.receivedAt)} — <span class={`badge ${c.outcome === 'applied' ? 'good' : c.outcome === 'rejected' ? 'bad' : 'warn'}`}>{c.outcome}</span>
              {c.seq !== null && ` as seq ${c.seq}`}
            </p>
            <p>
              <code class="values">{c.values === null ? '' : json(c.values)}</code> at clock <code>{c.clock}</code>
            </p>
            {c.conflicts.length > 0 ? (
              <ul>
                {c.conflicts.map((k) => (
                  <li key={k.id}>
                    {k.column ?? 'the whole row'}: this write lost to <code>{'value' in k.winning ? json(k.winning.value) : k.winning.op}</code> (clock{' '}
                    <code>{k.winning.clock ?? '—'}</code>) by rule {k.rule}
                  </li>
                ))}
              </ul>
            ) : (
              <p class="detail">
                {c.outcome === 'applied'
                  ? 'Every column it wrote won (clock order).'
                  : c.outcome === 'duplicate'
                    ? 'A re-push of a change already merged: nothing changed.'
                    : c.outcome === 'rejected'
                      ? `Rejected, and nothing of it stored: ${c.message ?? ''}`
                      : 'Nothing of it changed the row.'}
              </p>
            )}
          </li>
        ))}
        {changes.length === 0 && <li>No logged changes (the change log keeps them for its retention).</li>}
      </ol>
    </section>
  );
}
