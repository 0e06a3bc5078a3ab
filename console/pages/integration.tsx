import { useState } from 'preact/hooks';
import { api, attempt, project as path } from '../api.js';

export function Integration({ project }: { project: string }) {
  const origin = location.origin;
  const [user, setUser] = useState('');
  const [minted, setMinted] = useState<{ token: string; user: string; kid: string; expiresAt: number } | null>(null);
  const mint = async (event: Event) => {
    event.preventDefault();
    const data = await attempt(() => api<{ token: string; user: string; kid: string; expiresAt: number }>('POST', path(project, '/tokens'), { user }));
    if (data) setMinted(data);
  };
  const app = `import { PocketSync } from 'pocketsync';

const pocketSync = await PocketSync.initialize({
  dbName: \`app-\${userId}.sqlite3\`,
  schema,
  serverUrl: '${origin}',
  projectId: '${project}',
  // Your backend's token for the signed-in user, fetched again at each connection.
  authToken: () => fetch('/api/pocketsync-token').then((r) => r.text()),
});`;
  const backend = `// On your server (Node 20+): a token for the signed-in user.
import { mintUserToken } from 'pocketsync/backend';

const token = await mintUserToken({
  projectId: '${project}',
  kid: process.env.POCKETSYNC_KID,        // the key's id (Keys and settings); leave out for 'default'
  secret: process.env.POCKETSYNC_SECRET,  // that key's secret
  user: session.userId,
  ttlSeconds: 3600,
});`;
  return (
    <>
      <section class="panel" aria-labelledby="app-heading">
        <h2 id="app-heading">In the app</h2>
        <pre>
          <code>{app}</code>
        </pre>
      </section>
      <section class="panel" aria-labelledby="backend-heading">
        <h2 id="backend-heading">In the app's backend</h2>
        <pre>
          <code>{backend}</code>
        </pre>
      </section>
      <form class="panel" onSubmit={(e) => void mint(e)} aria-labelledby="mint-heading">
        <h2 id="mint-heading">Mint a test token</h2>
        <div class="fields">
          <label>
            User id
            <input value={user} required onInput={(e) => setUser(e.currentTarget.value)} />
          </label>
        </div>
        <button type="submit">Mint a test token</button>
        {minted && (
          <div class="secret" role="region" aria-label="Test token">
            <p>
              A token for <strong>{minted.user}</strong>, signed with key <code>{minted.kid}</code>, valid until {new Date(minted.expiresAt).toLocaleString()}:
            </p>
            <code class="block" data-token>{minted.token}</code>
            <p>
              Open the demo with it:{' '}
              <a href={`/?project=${encodeURIComponent(project)}&token=${encodeURIComponent(minted.token)}`} target="_blank" rel="noreferrer">
                demo as {minted.user}
              </a>
            </p>
          </div>
        )}
      </form>
    </>
  );
}
