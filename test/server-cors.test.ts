/**
 * CORS over real HTTP: a page of an allowed origin may call the project routes (its preflight is
 * answered, and every answer, refusals included, is readable by it); any other page may not, and
 * the admin routes never allow another origin. Dev mode allows pages on localhost, any port.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type RunningServer } from '../server/server.js';
import { SqliteStore } from '../server/store/sqlite-store.js';

const APP = 'https://app.example.com';

function preflight(url: string, origin: string, method = 'POST'): Promise<Response> {
  return fetch(url, { method: 'OPTIONS', headers: { Origin: origin, 'Access-Control-Request-Method': method, 'Access-Control-Request-Headers': 'authorization,content-type' } });
}

async function serverWith(cors: Parameters<typeof createServer>[0]['cors'], devProject?: string): Promise<RunningServer> {
  const store = new SqliteStore(':memory:');
  await store.createProject({ id: 'p', secret: 's'.repeat(32) });
  return createServer({ store, adminKey: 'admin', log: null, ...(cors ? { cors } : {}), ...(devProject ? { devProject } : {}) });
}

describe('with allowed origins', () => {
  let server: RunningServer;
  beforeAll(async () => (server = await serverWith({ origins: [APP] }, 'p')));
  afterAll(() => server.close());

  it('answers the preflight of an allowed origin with its origin, methods and headers', async () => {
    const res = await preflight(`${server.url}v1/projects/p/dev/token`, APP);
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBe(APP);
    expect(res.headers.get('access-control-allow-methods')).toContain('POST');
    expect(res.headers.get('access-control-allow-headers')?.toLowerCase()).toContain('authorization');
    expect(res.headers.get('vary')).toContain('Origin');
  });

  it('lets the page read an answer, and a refusal with its kind', async () => {
    const ok = await fetch(`${server.url}v1/projects/p/dev/token`, { method: 'POST', headers: { Origin: APP, 'Content-Type': 'application/json' }, body: '{"user":"ann"}' });
    expect(ok.status).toBe(200);
    expect(ok.headers.get('access-control-allow-origin')).toBe(APP);
    const refused = await fetch(`${server.url}v1/projects/nope/pull?cursor=0`, { headers: { Origin: APP } });
    expect(refused.status).toBe(404);
    expect(refused.headers.get('access-control-allow-origin')).toBe(APP);
    expect(await refused.json()).toMatchObject({ kind: 'not-found' });
    const tooBig = await fetch(`${server.url}v1/projects/p/push`, { method: 'POST', headers: { Origin: APP }, body: 'x'.repeat(1_100_000) });
    expect(tooBig.status).toBe(413);
    expect(tooBig.headers.get('access-control-allow-origin')).toBe(APP);
  });

  it('gives another origin, and localhost outside dev mode, no permission', async () => {
    for (const origin of ['https://evil.example.com', 'http://localhost:5173', 'https://app.example.com.evil.com']) {
      const res = await preflight(`${server.url}v1/projects/p/push`, origin);
      expect(res.headers.get('access-control-allow-origin'), origin).toBeNull();
    }
  });

  it('never allows another origin on the admin routes', async () => {
    const res = await preflight(`${server.url}v1/admin/projects`, APP);
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
  });
});

describe('in dev mode', () => {
  let server: RunningServer;
  beforeAll(async () => (server = await serverWith({ localhost: true }, 'p')));
  afterAll(() => server.close());

  it('allows pages on localhost, 127.0.0.1 and [::1] on any port, and nothing else', async () => {
    for (const origin of ['http://localhost:5173', 'http://127.0.0.1:4173', 'http://[::1]:3000', 'http://localhost']) {
      const res = await preflight(`${server.url}v1/projects/p/dev/token`, origin);
      expect(res.headers.get('access-control-allow-origin'), origin).toBe(origin);
    }
    for (const origin of ['http://localhost.evil.com', 'https://example.com', 'null']) {
      const res = await preflight(`${server.url}v1/projects/p/dev/token`, origin);
      expect(res.headers.get('access-control-allow-origin'), origin).toBeNull();
    }
  });
});

describe('without CORS settings', () => {
  let server: RunningServer;
  beforeAll(async () => (server = await serverWith(undefined)));
  afterAll(() => server.close());

  it('allows no other origin', async () => {
    const res = await preflight(`${server.url}v1/projects/p/push`, APP);
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
  });
});
