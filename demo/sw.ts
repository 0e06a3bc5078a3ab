/**
 * The demo's service worker: it caches the app shell (the page, its scripts, the database worker
 * and sqlite3.wasm) at install, so the app loads and runs with the network off. The build replaces
 * PRECACHE with the list of files it wrote (see precacheManifest in vite.config.ts), so each build
 * is a new worker with its own cache, and old caches are dropped when it activates.
 *
 * Pages: network first (a new build shows up at once), the cached shell when offline.
 * Built files: cache first (their names carry a content hash). The sync API is never cached.
 */

// Just the parts of the service-worker scope this file uses (the DOM lib does not declare them).
interface ExtendableEvent extends Event {
  waitUntil(promise: Promise<unknown>): void;
}
interface FetchEvent extends ExtendableEvent {
  readonly request: Request;
  respondWith(response: Promise<Response>): void;
}
interface ServiceWorkerScope {
  readonly location: Location;
  skipWaiting(): Promise<void>;
  readonly clients: { claim(): Promise<void> };
  addEventListener(type: 'install' | 'activate', listener: (event: ExtendableEvent) => void): void;
  addEventListener(type: 'fetch', listener: (event: FetchEvent) => void): void;
}

declare const PRECACHE: { readonly version: string; readonly files: readonly string[] };
const scope = self as unknown as ServiceWorkerScope;
const CACHE = `pocketsync-demo-${PRECACHE.version}`;
const SHELL = './';

scope.addEventListener('install', (event) => {
  event.waitUntil(
    (async () => {
      const cache = await caches.open(CACHE);
      await cache.addAll([SHELL, ...PRECACHE.files]);
      await scope.skipWaiting();
    })(),
  );
});

scope.addEventListener('activate', (event) => {
  event.waitUntil(
    (async () => {
      for (const name of await caches.keys()) if (name.startsWith('pocketsync-demo-') && name !== CACHE) await caches.delete(name);
      await scope.clients.claim();
    })(),
  );
});

scope.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  // The API, and the operators' console the server serves beside the demo (its page would
  // otherwise be cached as the demo's shell), are none of the demo's.
  if (event.request.method !== 'GET' || url.origin !== scope.location.origin || /^\/(v1\/|console(\/|$)|metrics$)/.test(url.pathname)) return;
  if (event.request.mode === 'navigate') event.respondWith(page(event.request));
  else event.respondWith(asset(event.request));
});

async function page(request: Request): Promise<Response> {
  try {
    const response = await fetch(request);
    if (response.ok) await (await caches.open(CACHE)).put(SHELL, response.clone());
    return response;
  } catch (error) {
    const cached = await caches.match(SHELL, { cacheName: CACHE });
    if (cached) return cached;
    throw error;
  }
}

async function asset(request: Request): Promise<Response> {
  const cached = await caches.match(request, { cacheName: CACHE, ignoreSearch: true });
  return cached ?? fetch(request);
}
