/**
 * `pocketsync/react`: the database's live queries and the sync status in React's terms.
 *
 *   <PocketSyncProvider pocketSync={pocketSync}>…</PocketSyncProvider>
 *   const { rows } = useQuery<Todo>('SELECT * FROM todos WHERE done = ?', [0]);
 *   const status = useSyncStatus();
 *
 * Each hook is a subscription read through `useSyncExternalStore`: a mounted `useQuery` holds one
 * `database.watch`, started on subscribe and stopped on unsubscribe (so StrictMode's extra mount
 * leaves none behind), keyed by its SQL and its parameters' values (a new array of the same values
 * on every render keeps the same watch). A watch re-runs its query whenever a table it reads
 * changes; the component re-renders only when the rows differ from the last ones, value by value.
 */
import { createContext, createElement, useCallback, useContext, useMemo, useSyncExternalStore, type ReactNode } from 'react';
import { PocketSyncError } from './errors.js';
import type { PocketSync } from './pocket-sync.js';
import { ErrorKind } from './protocol/error-kind.js';
import type { Params, Row, SqlValue, SyncStatus } from './protocol/worker-api.js';
import type { Conflict } from './sync.js';

const Context = createContext<PocketSync | null>(null);

export interface PocketSyncProviderProps {
  /** An initialized instance (`await PocketSync.initialize(…)`); the provider never closes it. */
  readonly pocketSync: PocketSync;
  readonly children?: ReactNode;
}

/** Makes `pocketSync` available to the hooks below it. */
export function PocketSyncProvider({ pocketSync, children }: PocketSyncProviderProps): ReactNode {
  return createElement(Context.Provider, { value: pocketSync }, children);
}

/** The instance of the nearest PocketSyncProvider; throws (kind 'invalid') outside one. */
export function usePocketSync(): PocketSync {
  // useContext, not React 19's use(Context): the peer range starts at 18.
  const pocketSync = useContext(Context);
  if (!pocketSync) throw new PocketSyncError(ErrorKind.Invalid, 'usePocketSync and the PocketSync hooks need a <PocketSyncProvider> above the component');
  return pocketSync;
}

export interface QueryResult<T extends Row> {
  /** The query's rows; empty until the first run ends. */
  readonly rows: readonly T[];
  /** True until the first run of this query (this SQL and these parameters) ends. */
  readonly loading: boolean;
  /** Why the last run failed (kind 'database' for a bad query, say), or null. */
  readonly error: PocketSyncError | null;
}

const LOADING: QueryResult<never> = Object.freeze({ rows: Object.freeze([]), loading: true, error: null });

/**
 * The rows of `sql`, kept current: re-run whenever a table it reads changes (by this page, by sync
 * or in another tab), re-rendering the component only when the rows differ. Changing `sql` or the
 * values in `params` starts a new watch and stops the old one.
 */
export function useQuery<T extends Row = Row>(sql: string, params?: Params): QueryResult<T> {
  const pocketSync = usePocketSync();
  const key = paramsKey(params);
  // Made once per SQL and params key: it watches the params of the render that made it, whose
  // values every later render with the same key repeats.
  const store = useMemo(() => {
    const result: ValueStore<QueryResult<T>> = new ValueStore<QueryResult<T>>(
      LOADING,
      (set) =>
        pocketSync.database.watch<T>(sql, params, (rows) => set({ rows, loading: false, error: null }), {
          onError: (error) => set({ rows: result.snapshot().rows, loading: false, error }),
        }),
      sameResult,
    );
    return result;
  }, [pocketSync, sql, key]);
  return useSyncExternalStore(store.subscribe, store.snapshot, store.snapshot);
}

function sameResult<T extends Row>(a: QueryResult<T>, b: QueryResult<T>): boolean {
  return a.loading === b.loading && a.error === b.error && sameRows(a.rows, b.rows);
}

/** The sync status (`pocketSync.sync.status`), re-rendering on each change. */
export function useSyncStatus(): SyncStatus {
  const { sync } = usePocketSync();
  const subscribe = useCallback((onChange: () => void) => sync.subscribe(onChange), [sync]);
  const status = useCallback(() => sync.status, [sync]);
  return useSyncExternalStore(subscribe, status, status);
}

export interface ConflictsResult {
  /** The writes of this device that lost to another's, heard since the component mounted (or `clear()`), oldest first. */
  readonly conflicts: readonly Conflict[];
  /** Forgets the conflicts heard so far (after the user has seen them, say). */
  readonly clear: () => void;
}

/** The conflicts `sync.onConflict` reports while the component is mounted. */
export function useConflicts(): ConflictsResult {
  const { sync } = usePocketSync();
  const store = useMemo(() => {
    const heard: ValueStore<readonly Conflict[]> = new ValueStore<readonly Conflict[]>([], (set) => sync.onConflict((conflict) => set([...heard.snapshot(), conflict])));
    return heard;
  }, [sync]);
  const conflicts = useSyncExternalStore(store.subscribe, store.snapshot, store.snapshot);
  return useMemo(() => ({ conflicts, clear: () => store.set([]) }), [conflicts, store]);
}

/**
 * The ps_global_ids of `table`'s rows with changes the server has not acknowledged yet
 * (`sync.watchUnsynced`), for "not synced yet" marks. Empty until the first answer.
 */
export function useUnsynced(table: string): ReadonlySet<string> {
  const { sync } = usePocketSync();
  const store = useMemo(() => new ValueStore<ReadonlySet<string>>(EMPTY_SET, (set) => sync.watchUnsynced(table, set)), [sync, table]);
  return useSyncExternalStore(store.subscribe, store.snapshot, store.snapshot);
}

const EMPTY_SET: ReadonlySet<string> = new Set();

/**
 * A value fed by a source that is started with the first subscriber and stopped after the last (a
 * watch, a listener); a new value equal to the last by `same` is dropped, so nothing re-renders.
 */
class ValueStore<V> {
  #value: V;
  readonly #listeners = new Set<() => void>();
  #stop: (() => void) | null = null;

  constructor(
    initial: V,
    private readonly start: (set: (value: V) => void) => () => void,
    private readonly same: (a: V, b: V) => boolean = () => false,
  ) {
    this.#value = initial;
  }

  readonly snapshot = (): V => this.#value;

  readonly subscribe = (listener: () => void): (() => void) => {
    this.#listeners.add(listener);
    this.#stop ??= this.start((value) => this.set(value));
    return () => {
      this.#listeners.delete(listener);
      if (this.#listeners.size === 0) {
        this.#stop?.();
        this.#stop = null;
      }
    };
  };

  set(value: V): void {
    if (this.same(this.#value, value)) return;
    this.#value = value;
    for (const listener of this.#listeners) listener();
  }
}

/** A key that two renders' params share exactly when their values are equal. */
function paramsKey(params: Params | undefined): string {
  if (params === undefined) return '';
  const entries = Array.isArray(params) ? (params as readonly SqlValue[]).map((value, i) => [String(i), value] as const) : Object.entries(params);
  return JSON.stringify(entries.map(([name, value]) => [name, valueKey(value)]), null, 0) + (Array.isArray(params) ? '[]' : '{}');
}

/** Tells apart every two values SQLite tells apart: NaN, ±Infinity, -0 and null too (JSON would not). */
function valueKey(value: SqlValue): string | null {
  if (value === null) return null;
  if (value instanceof Uint8Array) return `b:${Array.from(value).join(',')}`;
  if (typeof value === 'bigint') return `i:${value}`;
  if (typeof value === 'number') return `n:${Object.is(value, -0) ? '-0' : String(value)}`;
  return `s:${value}`;
}

function sameRows(a: readonly Row[], b: readonly Row[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as Row;
    const y = b[i] as Row;
    const keys = Object.keys(x);
    if (keys.length !== Object.keys(y).length) return false;
    for (const key of keys) if (!sameValue(x[key] as SqlValue, y[key] as SqlValue)) return false;
  }
  return true;
}

function sameValue(a: SqlValue, b: SqlValue): boolean {
  if (a instanceof Uint8Array && b instanceof Uint8Array) return a.length === b.length && a.every((byte, i) => byte === b[i]);
  return Object.is(a, b);
}
