/** Errors the server answers with: an HTTP status and the wire's `{ kind, message }`. */
import { ErrorKind } from '../lib/protocol/error-kind.js';

const STATUS: Record<ErrorKind, number> = {
  [ErrorKind.Invalid]: 400,
  [ErrorKind.Auth]: 401,
  [ErrorKind.NotFound]: 404,
  [ErrorKind.Version]: 426,
  [ErrorKind.Database]: 500,
  [ErrorKind.Schema]: 500,
  [ErrorKind.Storage]: 500,
  [ErrorKind.Closed]: 503,
  [ErrorKind.Internal]: 500,
};

export class ServerError extends Error {
  readonly kind: ErrorKind;
  readonly status: number;
  constructor(kind: ErrorKind, message: string, status: number = STATUS[kind]) {
    super(message);
    this.name = 'ServerError';
    this.kind = kind;
    this.status = status;
  }
}
