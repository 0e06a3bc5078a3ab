// The smallest app that opens a synced database: what the size benchmark (bench/size.ts) bundles.
import { PocketSync } from 'pocketsync';

const pocketSync = await PocketSync.initialize({
  dbName: 'size.sqlite3',
  schema: { version: 1, migrations: [{ version: 1, sql: ['CREATE TABLE notes (body TEXT)'] }] },
  serverUrl: 'http://localhost:8787',
  projectId: 'demo',
  authToken: 'a token',
});
pocketSync.database.watch('SELECT * FROM notes', [], (rows) => console.log(rows.length));
