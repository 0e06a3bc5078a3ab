/**
 * The admin API as the console calls it: same origin, the session cookie, JSON both ways. A
 * refusal comes back as an ApiError with the server's `kind` and message, which the page shows.
 */
import { signal } from '@preact/signals';

export class ApiError extends Error {
  readonly kind: string;
  readonly status: number;
  constructor(kind: string, message: string, status: number) {
    super(message);
    this.kind = kind;
    this.status = status;
  }
}

/** Whether the console holds a session; false sends every page to the sign-in form. */
export const signedIn = signal<boolean | null>(null);
/** The last problem, shown in the alert region until the next action. */
export const problem = signal<string | null>(null);

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const response = await fetch(path, {
    method,
    credentials: 'same-origin',
    headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  if (response.status === 204) return undefined as T;
  const data = (await response.json().catch(() => null)) as { kind?: string; message?: string } | null;
  if (!response.ok) {
    const error = new ApiError(data?.kind ?? 'internal', data?.message ?? `${response.status} ${response.statusText}`, response.status);
    if (error.kind === 'auth' && path.startsWith('/v1/admin/')) signedIn.value = false;
    throw error;
  }
  return data as T;
}

/** Runs an action, showing its failure (kind: message) instead of throwing. */
export async function attempt<T>(work: () => Promise<T>): Promise<T | undefined> {
  problem.value = null;
  try {
    return await work();
  } catch (error) {
    problem.value = error instanceof ApiError ? `${error.kind}: ${error.message}` : String(error);
    return undefined;
  }
}

export const project = (id: string, rest = ''): string => `/v1/admin/projects/${encodeURIComponent(id)}${rest}`;

export function query(params: Record<string, string | number | undefined | null>): string {
  const entries = Object.entries(params).filter((entry): entry is [string, string | number] => entry[1] !== undefined && entry[1] !== null && entry[1] !== '');
  return entries.length === 0 ? '' : `?${new URLSearchParams(entries.map(([k, v]) => [k, String(v)])).toString()}`;
}

export interface ProjectRow {
  id: string;
  strategy: string;
  sharedTables: string[];
  createdAt: number;
  users: number;
  devices: number;
  online: number;
  changesToday: number;
  conflictsToday: number;
}

export interface Stats {
  users: number;
  activeUsers: number;
  devices: number;
  online: number;
  pending: number;
  quarantined: number;
  seq: number;
  changesToday: number;
  conflictsToday: number;
  rejectedToday: number;
}

export interface Point {
  at: number;
  pushes: number;
  changes: number;
  conflicts: number;
  rejected: number;
  catchUpRows: number;
  connections: number;
}

export const time = (ms: number | null | undefined): string => (ms ? new Date(ms).toLocaleString() : '—');
export const json = (value: unknown): string => JSON.stringify(value);
