import { useEffect, useState } from 'preact/hooks';
import { api, attempt, project as path, query, time } from '../api.js';

interface UserRow {
  userId: string;
  devices: number;
  online: number;
  lastSeen: number;
  blocked: boolean;
}

interface DeviceRow {
  deviceId: string;
  online: boolean;
  firstSeen: number;
  lastSeen: number;
  cursor: number;
  lag: number;
  pending: number | null;
  quarantined: number | null;
  appVersion: string | null;
  library: string | null;
  protocolVersion: number | null;
  userAgent: string | null;
}

export function Users({ project }: { project: string }) {
  const [prefix, setPrefix] = useState('');
  const [users, setUsers] = useState<UserRow[]>([]);
  const [next, setNext] = useState<string | null>(null);
  const [selected, setSelected] = useState<string | null>(null);
  const load = async (after?: string) => {
    const data = await attempt(() => api<{ users: UserRow[]; next: string | null }>('GET', path(project, `/users${query({ prefix, after, limit: 50 })}`)));
    if (!data) return;
    setUsers(after ? [...users, ...data.users] : data.users);
    setNext(data.next);
  };
  useEffect(() => {
    void load();
    const timer = setInterval(() => void load(), 3000);
    return () => clearInterval(timer);
  }, [project, prefix]);
  return (
    <div class="split narrow-left">
      <section aria-labelledby="users-heading">
        <h2 id="users-heading">Users</h2>
        <label>
          Find users whose id starts with
          <input type="search" value={prefix} onInput={(e) => setPrefix(e.currentTarget.value)} />
        </label>
        <table>
          <caption class="sr-only">Users of {project}</caption>
          <thead>
            <tr>
              <th scope="col">User</th>
              <th scope="col">Devices</th>
              <th scope="col">Online</th>
              <th scope="col">Last seen</th>
            </tr>
          </thead>
          <tbody>
            {users.map((u) => (
              <tr key={u.userId} aria-selected={selected === u.userId}>
                <th scope="row">
                  <button type="button" class="link" onClick={() => setSelected(u.userId)}>
                    {u.userId}
                  </button>
                  {u.blocked && <span class="badge bad">blocked</span>}
                </th>
                <td class="num">{u.devices}</td>
                <td class="num">{u.online}</td>
                <td>{time(u.lastSeen)}</td>
              </tr>
            ))}
          </tbody>
        </table>
        {next && (
          <button type="button" onClick={() => void load(next)}>
            More users
          </button>
        )}
      </section>
      {selected && <UserDetail project={project} user={selected} onGone={() => void load()} />}
    </div>
  );
}

/** A user agent's browser and version, the part an operator looks for (the whole one in the title). */
function browser(agent: string | null): string {
  if (!agent) return '—';
  const match = /(Firefox|Edg|OPR|HeadlessChrome|Chrome|Version(?=.*Safari))\/(\d+)/.exec(agent);
  const name = match?.[1] === 'Version' ? 'Safari' : match?.[1] === 'Edg' ? 'Edge' : match?.[1];
  return name ? `${name} ${match![2]}` : agent.slice(0, 40);
}

function UserDetail({ project, user, onGone }: { project: string; user: string; onGone: () => void }) {
  const [devices, setDevices] = useState<DeviceRow[]>([]);
  const [blocked, setBlocked] = useState(false);
  const [seq, setSeq] = useState(0);
  const [confirm, setConfirm] = useState('');
  const [said, setSaid] = useState('');
  const base = path(project, `/users/${encodeURIComponent(user)}`);
  const load = async () => {
    const data = await attempt(() => api<{ devices: DeviceRow[]; blocked: boolean; seq: number }>('GET', `${base}/devices`));
    if (!data) return;
    setDevices(data.devices);
    setBlocked(data.blocked);
    setSeq(data.seq);
  };
  useEffect(() => {
    void load();
    const timer = setInterval(() => void load(), 2000);
    return () => clearInterval(timer);
  }, [project, user]);
  const block = async (value: boolean) => {
    const done = await attempt(() => api<{ closed: number }>('POST', `${base}/block`, { blocked: value }));
    if (done) setSaid(value ? `Blocked ${user}: ${done.closed} socket(s) closed.` : `Unblocked ${user}.`);
    await load();
  };
  const disconnect = async (device: string) => {
    const done = await attempt(() => api<{ closed: number }>('POST', path(project, `/devices/${encodeURIComponent(device)}/disconnect`)));
    if (done) setSaid(`Disconnected ${device}.`);
    await load();
  };
  const remove = async (event: Event) => {
    event.preventDefault();
    const done = await attempt(() => api<{ rows: number; changes: number; devices: number }>('DELETE', `${base}/data`, { confirm }));
    if (!done) return;
    setSaid(`Deleted ${user}'s data: ${done.rows} rows, ${done.changes} logged changes, ${done.devices} devices.`);
    setConfirm('');
    onGone();
    await load();
  };
  return (
    <section aria-labelledby="user-heading" class="panel">
      <h2 id="user-heading">
        {user} {blocked && <span class="badge bad">blocked</span>}
      </h2>
      <p role="status">{said}</p>
      <table>
        <caption>Devices of {user} (the project's seq is {seq})</caption>
        <thead>
          <tr>
            <th scope="col">Device</th>
            <th scope="col">Online</th>
            <th scope="col">Cursor</th>
            <th scope="col">Lag</th>
            <th scope="col">Pending</th>
            <th scope="col">App / library / protocol</th>
            <th scope="col">Seen</th>
            <th scope="col">Browser</th>
            <th scope="col">Action</th>
          </tr>
        </thead>
        <tbody>
          {devices.map((d) => (
            <tr key={d.deviceId} data-device={d.deviceId}>
              <th scope="row">
                <code>{d.deviceId}</code>
              </th>
              <td>{d.online ? <span class="badge good">online</span> : <span class="badge">offline</span>}</td>
              <td class="num">{d.cursor}</td>
              <td class="num">{d.lag}</td>
              <td class="num">
                {d.pending ?? '—'}
                {d.quarantined ? ` (${d.quarantined} quarantined)` : ''}
              </td>
              <td>
                {d.appVersion ?? '—'} / {d.library ?? '—'} / v{d.protocolVersion ?? '?'}
              </td>
              <td>
                first {time(d.firstSeen)}
                <br />
                last {time(d.lastSeen)}
              </td>
              <td title={d.userAgent ?? undefined}>{browser(d.userAgent)}</td>
              <td>
                <button type="button" disabled={!d.online} onClick={() => void disconnect(d.deviceId)} aria-label={`Disconnect ${d.deviceId}`}>
                  Disconnect
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <div class="actions">
        {blocked ? (
          <button type="button" onClick={() => void block(false)}>
            Unblock {user}
          </button>
        ) : (
          <button type="button" class="danger" onClick={() => void block(true)}>
            Block {user}
          </button>
        )}
      </div>
      <form onSubmit={(e) => void remove(e)} class="danger-zone" aria-labelledby="delete-user-heading">
        <h3 id="delete-user-heading">Delete {user}'s data</h3>
        <p>Removes the user's private rows, logged changes, conflicts and devices. Their devices re-sync and drop what is gone. Shared rows stay.</p>
        <label>
          <span>
            Type <code>{user}</code> to confirm
          </span>
          <input value={confirm} onInput={(e) => setConfirm(e.currentTarget.value)} />
        </label>
        <button type="submit" class="danger" disabled={confirm !== user}>
          Delete data of {user}
        </button>
      </form>
    </section>
  );
}
