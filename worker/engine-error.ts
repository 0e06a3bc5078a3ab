import { ErrorKind, type ErrorData } from '../lib/protocol/error-kind.js';

/** An error the engine raises on purpose; turned into `{ kind, message }` at the worker boundary. */
export class EngineError extends Error {
  readonly kind: ErrorKind;
  constructor(kind: ErrorKind, message: string) {
    super(message);
    this.name = 'EngineError';
    this.kind = kind;
  }
}

/** SQLite's own message, without the wrapper's "SQLITE_ERROR: sqlite3 result code 1: " prefix. */
export function sqliteMessage(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.replace(/^SQLITE_[A-Z_]+: sqlite3 result code \d+: /, '');
}

/** Any thrown value as wire data: EngineErrors keep their kind, SQLite errors are 'database'. */
export function toErrorData(error: unknown): ErrorData {
  if (error instanceof EngineError) return { kind: error.kind, message: error.message };
  if (error instanceof Error && error.name === 'SQLite3Error') return { kind: ErrorKind.Database, message: sqliteMessage(error) };
  return { kind: ErrorKind.Internal, message: error instanceof Error ? error.message : String(error) };
}
