/** Errors the server answers with: an HTTP status and the wire's `{ kind, message }`. */
import * as v from 'valibot';
import { ErrorKind } from '../lib/protocol/error-kind.js';

const STATUS: Record<ErrorKind, number> = {
  [ErrorKind.Invalid]: 400,
  [ErrorKind.Auth]: 401,
  [ErrorKind.NotFound]: 404,
  [ErrorKind.RateLimited]: 429,
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

/** `input` checked against `schema`; a mismatch is kind 'invalid' naming the path (413 for a count over its limit). */
export function parse<S extends v.GenericSchema>(schema: S, input: unknown): v.InferOutput<S> {
  const result = v.safeParse(schema, input);
  if (result.success) return result.output;
  // A count over its limit is a 413, like a body over its size.
  const status = result.issues[0].type === 'max_length' ? 413 : 400;
  throw new ServerError(ErrorKind.Invalid, issueMessage(result.issues), status);
}

/** The first problem of a failed parse, and where: `path: message`. */
export function issueMessage(issues: readonly [v.BaseIssue<unknown>, ...v.BaseIssue<unknown>[]]): string {
  const issue = issues[0];
  const path = issue.path?.map((item) => String(item.key)).join('.') ?? '';
  return path ? `${path}: ${issue.message}` : issue.message;
}
