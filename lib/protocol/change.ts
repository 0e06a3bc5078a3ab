/**
 * The two shapes of change on the wire.
 *
 * A ClientChange is one captured local write, pushed by a device: an insert or update carries the
 * values of the columns it wrote (all of them for an insert), a delete none. Its clock orders it
 * against every other write to the same row.
 *
 * A RowChange is what the server sends back out: the effective state of one row after merging, at
 * the `seq` that committed it. It carries every column with the clock that won it, or, for a deleted
 * row, `deleted: true`. One RowChange per row and batch: intermediate states are merged away.
 */
import * as v from 'valibot';
import { ClockSchema, ColumnValueSchema, IdentifierSchema, IdSchema, WIRE_RESERVED_NAMES, WireRecordSchema } from './values.js';

export const OperationSchema = v.picklist(['insert', 'update', 'delete']);
export type Operation = v.InferOutput<typeof OperationSchema>;

const ValuesSchema = v.pipe(
  // Checked on the object as received: the record below would drop these keys without a word.
  v.custom<Record<string, unknown>>(
    (raw) => typeof raw !== 'object' || raw === null || !Object.keys(raw).some((key) => WIRE_RESERVED_NAMES.has(key)),
    'a column is named __proto__, constructor or prototype, which the wire cannot carry',
  ),
  WireRecordSchema(IdentifierSchema, ColumnValueSchema),
  v.check((values) => Object.keys(values).length <= 500, 'at most 500 columns'),
);

export const ClientChangeSchema = v.pipe(
  v.strictObject({
    id: IdSchema,
    table: IdentifierSchema,
    row: IdSchema,
    op: OperationSchema,
    clock: ClockSchema,
    values: v.optional(ValuesSchema),
    /**
     * The highest seq the device had applied when it made this edit (not when it pushed it): what
     * 'server-wins' judges the edit against. Absent: the push's cursor.
     */
    base: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(Number.MAX_SAFE_INTEGER))),
  }),
  v.check((change) => change.op === 'delete' || change.values !== undefined, 'an insert or update carries values'),
);
export type ClientChange = v.InferOutput<typeof ClientChangeSchema>;

export interface RowChange {
  readonly seq: number;
  readonly table: string;
  readonly row: string;
  readonly deleted: boolean;
  /** The clock of the delete (only when deleted). */
  readonly deleteClock?: string;
  /** Every known column of the row (absent when deleted). */
  readonly values?: Readonly<Record<string, v.InferOutput<typeof ColumnValueSchema>>>;
  /** The clock that won each column (absent when deleted). */
  readonly clocks?: Readonly<Record<string, string>>;
}

/**
 * A write discarded by the merge, whole (column null) or for one column, and the side that won
 * under the named rule. Usually the pushing device's write (losing op 'insert' | 'update' |
 * 'delete'); when the pushed write won over a concurrent one the device had not seen, the discarded
 * side is the row's current value (op 'current'), or a delete the write undid (op 'delete').
 */
export interface LostWrite {
  readonly table: string;
  readonly row: string;
  readonly column: string | null;
  readonly rule: string;
  readonly losing: { readonly op: string; readonly clock: string | null; readonly value?: v.InferOutput<typeof ColumnValueSchema> };
  readonly winning: { readonly op: string; readonly clock: string | null; readonly value?: v.InferOutput<typeof ColumnValueSchema> };
}

/**
 * What happened to one pushed change: 'applied' (it changed the row; `seq` committed it),
 * 'superseded' (stored, but it lost or changed nothing), 'duplicate' (seen before: the first
 * outcome stands), 'rejected' (the server will never take it: `error` says why; nothing of it was
 * stored, and the rest of the push goes on without it). A device keeps a rejected change in its
 * quarantine and reports it; it never pushes it again.
 */
export type PushOutcome = 'applied' | 'superseded' | 'duplicate' | 'rejected';

export interface PushResult {
  /** The change id as pushed ('' when the change was too malformed to carry one). */
  readonly id: string;
  readonly outcome: PushOutcome;
  /** The seq that committed the change's effect; null when it changed nothing. */
  readonly seq: number | null;
  /** Why the change was rejected (only with 'rejected'). */
  readonly error?: { readonly kind: string; readonly message: string };
}

/**
 * A change this device could not sync, kept in its quarantine (`__pocketsync_quarantine`) with
 * the reason, instead of stopping sync: a remote row the local schema refuses ('remote': a
 * constraint, a type), or a local change the server rejected ('local'). Reported to the app as an
 * event and counted in the sync status; everything else goes on.
 */
export interface QuarantineEntry {
  readonly id: number;
  readonly direction: 'remote' | 'local';
  readonly table: string;
  readonly row: string;
  /** The remote row's seq, or the local change's id. */
  readonly source: string;
  readonly error: { readonly kind: string; readonly message: string };
  /** When it was quarantined (ms since the epoch). */
  readonly at: number;
}
