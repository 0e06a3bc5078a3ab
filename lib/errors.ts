import { ErrorKind, type ErrorData } from './protocol/error-kind.js';

/**
 * The one error class PocketSync throws. Match on `kind` (see ErrorKind); the message is the
 * underlying cause's, SQLite's own for kind 'database'.
 */
export class PocketSyncError extends Error {
  readonly kind: ErrorKind;

  constructor(kind: ErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PocketSyncError';
    this.kind = kind;
  }

  static from(data: ErrorData): PocketSyncError {
    return new PocketSyncError(data.kind, data.message);
  }
}

export function isPocketSyncError(error: unknown, kind?: ErrorKind): error is PocketSyncError {
  return error instanceof PocketSyncError && (kind === undefined || error.kind === kind);
}

export { ErrorKind };
