/**
 * Every error that crosses a boundary (postMessage, WebSocket, HTTP) is plain data: `{ kind, message }`
 * with `kind` from this list. Match on `kind`, never on `instanceof`, once an error has crossed.
 */
export const ErrorKind = {
  /** SQLite refused a statement (syntax, constraint, missing table, ...). The message is SQLite's. */
  Database: 'database',
  /** A migration failed, or the schema option is malformed or older than the database. */
  Schema: 'schema',
  /** Persistent storage could not be opened or used. */
  Storage: 'storage',
  /**
   * The instance was closed, or the worker went away before answering: safe to retry on a new one.
   * Also a call cut off when the tab holding the database went away (worker/tabs.ts): it ran once
   * or not at all, and is never re-sent. In the sync status: the server could not be reached,
   * refused the connection before it opened (an HTTP error on the upgrade), or closed it; sync
   * tries again after a growing delay (`retryAt`).
   */
  Closed: 'closed',
  /**
   * An argument or message does not have the required shape (unknown table, bad identifier, bad
   * options), or exceeds a documented limit (size, changes per push).
   */
  Invalid: 'invalid',
  /** Authentication failed (missing, expired, forged or wrong-project token). */
  Auth: 'auth',
  /** The peer speaks a protocol version this side does not. */
  Version: 'version',
  /** The project (or another named thing) does not exist. */
  NotFound: 'not-found',
  /**
   * Over one of the server's limits on rate or connections (server/limits.ts): HTTP 429, close
   * code 4029. Nothing was done; the same request succeeds later. The client backs off and retries.
   */
  RateLimited: 'rate-limited',
  /** Anything else: a bug in PocketSync. */
  Internal: 'internal',
} as const;

export type ErrorKind = (typeof ErrorKind)[keyof typeof ErrorKind];

/** The wire form of an error. */
export interface ErrorData {
  readonly kind: ErrorKind;
  readonly message: string;
}

/** What every worker call returns: errors travel as data, not as thrown objects. */
export type Result<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: ErrorData };
