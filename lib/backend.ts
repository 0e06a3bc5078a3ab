/**
 * `pocketsync/backend`: for the app's own server (Node 20+, Deno, Bun, workers: anything with
 * `fetch` and WebCrypto). Mints the user tokens devices sync with, and reads and writes a
 * project's synced rows through the sync server's backend API with a service key.
 *
 *   const token = await mintUserToken({ projectId, secret, user: 'alice' });
 *   const backend = createBackendClient({ serverUrl, projectId, serviceKey });
 *   const { rows } = await backend.rows('todos', { user: 'alice' });
 *   await backend.write('alice', [{ table: 'todos', id: rows[0].id, operation: 'update', values: { done: 1 } }]);
 */
import { PocketSyncError } from './errors.js';
import { ErrorKind } from './protocol/error-kind.js';
import type { Operation } from './protocol/change.js';
import { USER_ID, USER_ID_RULE, type ColumnValue } from './protocol/values.js';
import type { SqlValue } from './protocol/worker-api.js';
import { keyIdentity, type KeyValue } from '../worker/row-identity.js';

/**
 * The ps_global_id of a keyed table's row (one whose declared primary key is not the rowid: a TEXT
 * key, a composite key, a WITHOUT ROWID table) from its key's values, in key order. Every device
 * computes the same id for the same key, so a row the backend inserts under it is the row a device
 * inserting that key writes, merged with it, not a second one its UNIQUE key refuses. Null when a
 * value is NULL (such a row has a random id). See docs/rows.md.
 */
export function rowIdForKey(...values: KeyValue[]): string | null {
  return keyIdentity(values);
}

export interface MintOptions {
  readonly projectId: string;
  /** The signing key's secret: the project's secret (key `default`), or a key made in the console. */
  readonly secret: string;
  /** The signing key's id (`kid`), for a key made in the console; none for the key `default`. */
  readonly kid?: string;
  /** The user id: 1-128 characters of A-Z a-z 0-9 _ . @ : - */
  readonly user: string;
  /** How long the token is valid; 24 hours unless given (the server refuses more than 30 days by default). */
  readonly ttlSeconds?: number;
}


/** A user token (JWT, HS256) for one user of one project, signed with the project's secret. */
export async function mintUserToken(options: MintOptions): Promise<string> {
  if (!USER_ID.test(options.user)) throw new PocketSyncError(ErrorKind.Invalid, USER_ID_RULE);
  const ttl = options.ttlSeconds ?? 24 * 3600;
  if (!Number.isInteger(ttl) || ttl < 1) throw new PocketSyncError(ErrorKind.Invalid, 'ttlSeconds must be a whole number of seconds, at least 1');
  const now = Math.floor(Date.now() / 1000);
  const encoder = new TextEncoder();
  const part = (value: unknown) => base64url(encoder.encode(JSON.stringify(value)));
  const header = options.kid === undefined || options.kid === 'default' ? { alg: 'HS256', typ: 'JWT' } : { alg: 'HS256', typ: 'JWT', kid: options.kid };
  const unsigned = `${part(header)}.${part({ sub: options.user, project: options.projectId, iat: now, exp: now + ttl })}`;
  const key = await crypto.subtle.importKey('raw', encoder.encode(options.secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  const signature = new Uint8Array(await crypto.subtle.sign('HMAC', key, encoder.encode(unsigned)));
  return `${unsigned}.${base64url(signature)}`;
}

function base64url(bytes: Uint8Array): string {
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

export interface BackendClientOptions {
  /** The sync server, e.g. https://sync.example.com */
  readonly serverUrl: string;
  readonly projectId: string;
  /** A service key of this project (psk_…), from the console's keys page or the admin route. */
  readonly serviceKey: string;
  /** Defaults to the global fetch. */
  readonly fetch?: typeof fetch;
}

/** Whose rows: a user's (private tables) or the project's shared rows (shared tables). */
export type RowScope = { readonly user: string } | { readonly shared: true };

export interface BackendRow {
  /** The row's ps_global_id. */
  readonly id: string;
  /** Every column the server knows of the row (BLOBs as Uint8Array, integers beyond 2^53 as bigint). */
  readonly values: Readonly<Record<string, SqlValue>>;
  /** The seq of the row's last change. */
  readonly seq: number;
}

export interface RowsPage {
  /** In id order. */
  readonly rows: readonly BackendRow[];
  /** Pass as `after` for the next page; null on the last. */
  readonly next: string | null;
}

export interface RowsOptions {
  /** The `next` of the previous page. */
  readonly after?: string;
  /** Rows per page: 500 unless given, at most 5000. */
  readonly limit?: number;
  /** Only these rows (those that exist and are not deleted), however many; `limit` and `after` do not apply. */
  readonly ids?: readonly string[];
}

export interface BackendChange {
  readonly table: string;
  /** The row's ps_global_id: an existing row's, or a new one's (any 1-64 characters of A-Z a-z 0-9 _ -). */
  readonly id: string;
  readonly operation: Operation;
  /** The columns written (all of the row's for an insert); none for a delete. */
  readonly values?: Readonly<Record<string, SqlValue>>;
  /** Makes the write safe to retry: a change id sent before for this user is answered 'duplicate'. */
  readonly changeId?: string;
}

export interface WriteResult {
  /** One per change, in order: 'applied', 'superseded' (it changed nothing), 'duplicate' or 'rejected' (with its error). */
  readonly results: ReadonlyArray<{ readonly id: string; readonly outcome: 'applied' | 'superseded' | 'duplicate' | 'rejected'; readonly seq: number | null; readonly error?: { readonly kind: ErrorKind; readonly message: string } }>;
  /** Writes discarded by the merge, when any. */
  readonly conflicts?: readonly unknown[];
}

/**
 * A value as the wire carries it (lib/protocol/values.ts): JSON cannot hold a BLOB, an integer
 * beyond 2^53 or an infinity, so they travel as { $base16 }, { $int } and { $real }.
 */
function toWire(value: SqlValue): ColumnValue {
  if (value instanceof Uint8Array) return { $base16: Array.from(value, (byte) => byte.toString(16).padStart(2, '0')).join('') };
  if (typeof value === 'bigint') return Number.isSafeInteger(Number(value)) ? Number(value) : { $int: String(value) };
  if (typeof value === 'number' && !Number.isFinite(value)) {
    if (Number.isNaN(value)) throw new PocketSyncError(ErrorKind.Invalid, 'NaN is not a value SQLite stores (it would be NULL)');
    return { $real: value > 0 ? 'Infinity' : '-Infinity' };
  }
  return value;
}

function fromWire(value: ColumnValue): SqlValue {
  if (value === null || typeof value !== 'object') return value;
  if ('$base16' in value) return Uint8Array.from(value.$base16.match(/../g) ?? [], (pair) => parseInt(pair, 16));
  if ('$int' in value) return BigInt(value.$int);
  return value.$real === 'Infinity' ? Infinity : -Infinity;
}

const mapValues = <A, B>(values: Readonly<Record<string, A>>, map: (value: A) => B): Record<string, B> =>
  Object.fromEntries(Object.entries(values).map(([column, value]) => [column, map(value)]));

export interface BackendClient {
  /** One page of a table's rows in a scope. */
  rows(table: string, scope: RowScope, options?: RowsOptions): Promise<RowsPage>;
  /** Every row of a table in a scope, page by page. */
  allRows(table: string, scope: RowScope, options?: { readonly pageSize?: number }): AsyncIterable<BackendRow>;
  /**
   * Writes changes on `user`'s behalf, in one transaction: they merge like a device's changes made
   * now, having seen everything, and reach every connected device of the scope at once.
   */
  write(user: string, changes: readonly BackendChange[]): Promise<WriteResult>;
}

/** Ids per read by ids: 100 ids of 64 characters make a URL of about 7 kB (Node refuses headers past 16 kB). */
const IDS_PER_REQUEST = 100;

export function createBackendClient(options: BackendClientOptions): BackendClient {
  const fetcher = options.fetch ?? fetch;
  const base = new URL(`v1/projects/${encodeURIComponent(options.projectId)}/backend/`, options.serverUrl.endsWith('/') ? options.serverUrl : `${options.serverUrl}/`);
  const headers = { Authorization: `Bearer ${options.serviceKey}` };

  async function call<T>(url: URL, init: RequestInit = {}): Promise<T> {
    let response: Response;
    try {
      response = await fetcher(url, { ...init, headers: { ...headers, ...(init.headers as Record<string, string> | undefined) } });
    } catch (error) {
      throw new PocketSyncError(ErrorKind.Closed, `the sync server could not be reached: ${String(error)}`, { cause: error });
    }
    const body = (await response.json().catch(() => null)) as { kind?: ErrorKind; message?: string } | null;
    if (!response.ok) {
      throw new PocketSyncError(body?.kind ?? ErrorKind.Internal, body?.message ?? `the sync server answered ${response.status}`);
    }
    if (body === null) throw new PocketSyncError(ErrorKind.Internal, `the sync server answered ${response.status} without JSON: is serverUrl the sync server?`);
    return body as T;
  }

  const rows = async (table: string, scope: RowScope, which: RowsOptions = {}): Promise<RowsPage> => {
    // Ids travel in the URL: asked for in groups that stay well inside a server's header limit.
    const ids = which.ids;
    if (ids?.length === 0) return { rows: [], next: null };
    if (ids !== undefined && ids.length > IDS_PER_REQUEST) {
      const groups = Array.from({ length: Math.ceil(ids.length / IDS_PER_REQUEST) }, (_, i) => ids.slice(i * IDS_PER_REQUEST, (i + 1) * IDS_PER_REQUEST));
      const pages = await Promise.all(groups.map((group) => rows(table, scope, { ids: group })));
      return { rows: pages.flatMap((page) => page.rows).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)), next: null };
    }
    const url = new URL('rows', base);
    url.searchParams.set('table', table);
    if ('user' in scope) url.searchParams.set('user', scope.user);
    else url.searchParams.set('shared', '1');
    if (which.after !== undefined) url.searchParams.set('after', which.after);
    const limit = ids !== undefined ? ids.length : which.limit;
    if (limit !== undefined) url.searchParams.set('limit', String(limit));
    for (const id of which.ids ?? []) url.searchParams.append('id', id);
    const page = await call<{ rows: Array<{ id: string; values: Record<string, ColumnValue>; seq: number }>; next: string | null }>(url);
    return { rows: page.rows.map((row) => ({ ...row, values: mapValues(row.values, fromWire) })), next: page.next };
  };

  return {
    rows,
    async *allRows(table, scope, { pageSize } = {}) {
      let after: string | undefined;
      do {
        const page = await rows(table, scope, { ...(after !== undefined ? { after } : {}), ...(pageSize !== undefined ? { limit: pageSize } : {}) });
        yield* page.rows;
        after = page.next ?? undefined;
      } while (after !== undefined);
    },
    write(user, changes) {
      return call<WriteResult>(new URL('changes', base), {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ user, changes: changes.map((change) => (change.values ? { ...change, values: mapValues(change.values, toWire) } : change)) }),
      });
    },
  };
}
