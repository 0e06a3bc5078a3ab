/**
 * Messages from the server to a device, and the schema a device parses every incoming frame with
 * (`DownMessageSchema`): a frame that does not parse is a protocol error, never partly applied.
 *
 * Objects are parsed with `v.object`, not `v.strictObject`: a field a newer server adds is dropped,
 * while every field this side reads is checked. An error kind this side does not know reads as
 * 'internal' (a newer server's reason is still shown, and retried like a server fault).
 */
import * as v from 'valibot';
import type { LostWrite, PushResult, RowChange } from './change.js';
import { ErrorKind } from './error-kind.js';
import { ClockSchema, ColumnValueSchema, IdentifierSchema, IdSchema, WireRecordSchema } from './values.js';

const SeqSchema = v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(Number.MAX_SAFE_INTEGER));
const CountSchema = SeqSchema;
const ErrorDataSchema = v.object({ kind: v.string(), message: v.string() });

export const RowChangeSchema = v.pipe(
  v.object({
    seq: SeqSchema,
    table: IdentifierSchema,
    row: IdSchema,
    deleted: v.boolean(),
    deleteClock: v.exactOptional(ClockSchema),
    values: v.exactOptional(WireRecordSchema(IdentifierSchema, ColumnValueSchema)),
    clocks: v.exactOptional(WireRecordSchema(IdentifierSchema, ClockSchema)),
  }),
  v.check((change) => change.deleted || change.values !== undefined, 'a row that is not deleted carries its values'),
);

const SideSchema = v.object({ op: v.string(), clock: v.nullable(ClockSchema), value: v.exactOptional(ColumnValueSchema) });
export const LostWriteSchema = v.object({
  table: IdentifierSchema,
  row: IdSchema,
  column: v.nullable(IdentifierSchema),
  rule: v.string(),
  losing: SideSchema,
  winning: SideSchema,
});

export const PushResultSchema = v.pipe(
  v.object({
    /** '' when the change was too malformed to carry an id. */
    id: v.union([v.literal(''), IdSchema]),
    outcome: v.picklist(['applied', 'superseded', 'duplicate', 'rejected']),
    seq: v.nullable(SeqSchema),
    error: v.exactOptional(ErrorDataSchema),
  }),
  v.check((result) => result.outcome !== 'rejected' || result.error !== undefined, 'a rejected change carries its error'),
);

/** The answer to a push: one result per change, in push order, sent only after commit. */
export const AckSchema = v.object({
  type: v.literal('ack'),
  results: v.array(PushResultSchema),
  /** The pushed writes that lost to others (absent when none did). */
  conflicts: v.exactOptional(v.array(LostWriteSchema)),
  /**
   * The server's state of every pushed row that the device cannot derive from its own write and
   * what it has applied: a write that lost (whole or in part), a duplicate, a row the merge brought
   * back or completed, any row under a rule other than clock order. The device applies these after
   * the ack, so it ends with exactly the server's row under every rule.
   */
  rows: v.exactOptional(v.array(RowChangeSchema)),
});

/**
 * A batch of effective row changes in seq order. `cursor` is the seq to resume from; `remaining`
 * counts the rows still to come in this catch-up (0 when live).
 */
export const ChangesSchema = v.object({
  type: v.literal('changes'),
  changes: v.array(RowChangeSchema),
  cursor: SeqSchema,
  hasMore: v.boolean(),
  remaining: CountSchema,
  /**
   * The device's cursor was older than the server's tombstone horizon (deleted rows it forgot):
   * this batch starts a full re-sync of the device's scopes from 0, without deletes. At the end of
   * the catch-up the device drops every synced row it was not sent and has no pending write for.
   */
  resync: v.exactOptional(v.literal(true)),
});

export const ErrorMessageSchema = v.object({
  type: v.literal('error'),
  kind: v.fallback(v.picklist(Object.values(ErrorKind)), ErrorKind.Internal),
  message: v.string(),
});

export const DownMessageSchema = v.variant('type', [AckSchema, ChangesSchema, ErrorMessageSchema]);

/** The answer to a push (AckSchema). */
export interface Ack {
  readonly type: 'ack';
  readonly results: readonly PushResult[];
  readonly conflicts?: readonly LostWrite[];
  readonly rows?: readonly RowChange[];
}

/** A batch of row changes (ChangesSchema). */
export interface Changes {
  readonly type: 'changes';
  readonly changes: readonly RowChange[];
  readonly cursor: number;
  readonly hasMore: boolean;
  readonly remaining: number;
  readonly resync?: true;
}

export interface ErrorMessage {
  readonly type: 'error';
  readonly kind: ErrorKind;
  readonly message: string;
}

export type DownMessage = Ack | Changes | ErrorMessage;

// What the schemas parse is what these types say (a schema drifting from them fails to compile).
type Assignable<T, U extends T> = U;
export type DownSchemaChecks = [
  Assignable<RowChange, v.InferOutput<typeof RowChangeSchema>>,
  Assignable<LostWrite, v.InferOutput<typeof LostWriteSchema>>,
  Assignable<PushResult, v.InferOutput<typeof PushResultSchema>>,
  Assignable<DownMessage, v.InferOutput<typeof DownMessageSchema>>,
];

/** Parses one frame of text from the server: the message, or why it is not one. */
export function parseDownFrame(frame: string): { readonly ok: true; readonly message: DownMessage } | { readonly ok: false; readonly message: string } {
  let json: unknown;
  try {
    json = JSON.parse(frame);
  } catch {
    return { ok: false, message: `the server sent a frame that is not JSON: ${frame.slice(0, 80)}` };
  }
  const parsed = v.safeParse(DownMessageSchema, json);
  if (parsed.success) return { ok: true, message: parsed.output };
  const issue = parsed.issues[0];
  const path = issue.path?.map((item) => String(item.key)).join('.') ?? '';
  return { ok: false, message: `the server sent a malformed frame${path ? ` (at ${path})` : ''}: ${issue.message}` };
}
