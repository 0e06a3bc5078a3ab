/** A real sync server on 127.0.0.1 for Node tests: an in-memory store with one project, 'p'. */
import { createServer, type RunningServer } from '../../server/server.js';
import { SqliteStore } from '../../server/store/sqlite-store.js';
import type { Project } from '../../server/store/store.js';

export async function startTestServer(): Promise<{ server: RunningServer; project: Project }> {
  const store = new SqliteStore(':memory:');
  const project = await store.createProject({ id: 'p', secret: 's'.repeat(32) });
  return { server: await createServer({ store, adminKey: 'admin', log: null }), project };
}

export async function stopTestServer(server: RunningServer): Promise<void> {
  await server.close();
  await server.store.close();
}

/** The WebSocket endpoint of a project on `server`. */
export function syncUrl(server: RunningServer, projectId = 'p'): string {
  return `${server.url.replace('http', 'ws')}v1/projects/${projectId}/sync`;
}
