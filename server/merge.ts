/**
 * Merging one pushed change into the current state of its row: a pure function, so that the rules
 * are the same in every store and can be tested table by table.
 *
 * Rules (the project's strategy chooses):
 * - 'column-lww' (default): each column keeps the value with the greatest clock. Clocks are hybrid
 *   logical clocks ending in the device id, so two distinct writes never tie. Two devices that
 *   edit different columns of one row both keep their edit.
 * - 'row-lww': the whole change wins or loses against the row's newest clock.
 * - 'server-wins': a change loses every column that another device wrote after the pushing device
 *   last synced when it made the edit (the column's seq is above the change's base, or the push's
 *   cursor when the change carries none), whatever the clocks say.
 * - 'client-wins': every change applies; the last to reach the server wins.
 * Deletes, under every rule but 'client-wins', follow the clocks. A delete beats updates with older
 * clocks, and loses to an update with a newer one. An insert or update with a newer clock than the
 * delete brings the row back. A delete of a row the server has never seen leaves a tombstone, so
 * that an older insert arriving later cannot bring the row back.
 *
 * Every write that was discarded comes back as a Conflict naming both sides and the rule, whichever
 * arrived first: an incoming write that lost (whole or per column), and also a current value the
 * incoming write overwrote although its device had not seen it (written by another device after the
 * change's base), a delete undone by an edit whose device had not seen it, and unseen edits wiped
 * by a delete. So the same pair of concurrent writes is reported once in either arrival order.
 * A resolver given to createServer can decide a conflict instead: it sees both sides and picks.
 */
import type { ClientChange, Operation } from '../lib/protocol/change.js';
import * as v from 'valibot';
import { IdentifierSchema, own, record, type ColumnValue } from '../lib/protocol/values.js';

export const StrategySchema = v.picklist(['column-lww', 'row-lww', 'server-wins', 'client-wins']);

/** A project's shared tables: identifiers, each once (a repeat is dropped), at most 1,000. */
export const SharedTablesSchema = v.pipe(
  v.array(IdentifierSchema),
  v.maxLength(1000, 'at most 1,000 shared tables'),
  v.transform((tables) => [...new Set(tables)]),
);
export type Strategy = v.InferOutput<typeof StrategySchema>;

export interface RowState {
  readonly values: Readonly<Record<string, ColumnValue>>;
  /** The clock that wrote each column's current value. */
  readonly clocks: Readonly<Record<string, string>>;
  /** The seq at which each column last changed: what the pushing device had or had not seen. */
  readonly seqs: Readonly<Record<string, number>>;
  /**
   * The seq at which the row last changed as other devices see it (for a deleted row: its delete's;
   * 0 for a tombstone of a row never seen, which no device was ever sent).
   */
  readonly lastSeq: number;
  readonly deleted: boolean;
  /** The clock of the delete that holds, when the row is deleted (or was deleted before). */
  readonly deleteClock: string | null;
}

export interface Conflict {
  readonly table: string;
  readonly row: string;
  /** The column that was fought over; null when the whole change (or a delete) lost. */
  readonly column: string | null;
  readonly rule: Strategy | 'resolver';
  readonly losing: ConflictSide;
  readonly winning: ConflictSide;
}

export interface ConflictSide {
  readonly op: Operation | 'current';
  readonly clock: string | null;
  readonly value?: ColumnValue;
}

/** A custom rule: decide which side of a conflict wins, or return undefined for the strategy's answer. */
export type Resolver = (conflict: {
  readonly table: string;
  readonly row: string;
  readonly column: string | null;
  readonly current: RowState;
  readonly change: ClientChange;
}) => 'incoming' | 'current' | undefined;

export interface MergeContext {
  readonly strategy: Strategy;
  readonly resolver?: Resolver | undefined;
  /** The highest seq the pushing device had applied when it pushed: a change's base when it has none. */
  readonly deviceCursor: number;
}

export interface MergeResult {
  /** The row's new state (equal to the old one when nothing changed). */
  readonly state: RowState;
  /** The change altered the row as the other devices see it. */
  readonly effective: boolean;
  readonly conflicts: readonly Conflict[];
}

const EMPTY: RowState = { values: record(), clocks: record(), seqs: record(), lastSeq: 0, deleted: false, deleteClock: null };

/** The newest clock that wrote any part of the row. */
export function newestClock(state: RowState): string | null {
  let newest = state.deleteClock;
  for (const clock of Object.values(state.clocks)) if (newest === null || clock > newest) newest = clock;
  return newest;
}

/** The cursor the change was made at: what it had seen of the row. */
export function baseOf(change: ClientChange, context: MergeContext): number {
  return change.base ?? context.deviceCursor;
}

/** Whether a write at `seq` by the device of `clock` was unseen by `change`'s device when it made it. */
function unseen(seq: number, clock: string | null, change: ClientChange, base: number): boolean {
  return (seq === 0 || seq > base) && (clock === null || deviceOf(clock) !== deviceOf(change.clock));
}

/**
 * Whether `current` holds anything `change`'s device cannot derive from its own writes and what it
 * had applied when it made the change: a column (or the delete) another device wrote after its base.
 */
export function hasUnseen(current: RowState, change: ClientChange, context: MergeContext): boolean {
  const base = baseOf(change, context);
  if (current.deleted) return unseen(current.lastSeq, current.deleteClock, change, base);
  for (const [column, clock] of Object.entries(current.clocks)) {
    if (unseen(own(current.seqs, column) ?? current.lastSeq, clock, change, base)) return true;
  }
  return false;
}

/**
 * Merges `change` into `current` (null: the server has never seen the row). `seq` is the seq the
 * change's effect will commit at, recorded per column and as the row's lastSeq when it is effective.
 */
export function merge(current: RowState | null, change: ClientChange, seq: number, context: MergeContext): MergeResult {
  const state = current ?? EMPTY;
  const result = change.op === 'delete' ? mergeDelete(current, state, change, context) : mergeWrite(current, state, change, seq, context);
  return result.effective ? { ...result, state: { ...result.state, lastSeq: seq } } : result;
}

/**
 * The verdict on a write against what the server holds: the strategy's (`incomingWins`), or the
 * resolver's when there is one and the write is `contested`, i.e. what it would replace came from
 * another device after the change's base. A value the device saw, or wrote itself, is not a
 * conflict for a resolver to decide.
 */
function decide(
  context: MergeContext,
  change: ClientChange,
  current: RowState,
  column: string | null,
  incomingWins: boolean,
  contested: boolean,
): { incomingWins: boolean; rule: Strategy | 'resolver' } {
  if (!contested) return { incomingWins, rule: context.strategy };
  const verdict = context.resolver?.({ table: change.table, row: change.row, column, current, change });
  if (verdict === undefined) return { incomingWins, rule: context.strategy };
  return { incomingWins: verdict === 'incoming', rule: 'resolver' };
}

function mergeWrite(current: RowState | null, state: RowState, change: ClientChange, seq: number, context: MergeContext): MergeResult {
  const conflicts: Conflict[] = [];
  const values = change.values ?? {};
  const lose = (column: string | null, rule: Strategy | 'resolver', winning: ConflictSide, value?: ColumnValue) =>
    conflicts.push({
      table: change.table,
      row: change.row,
      column,
      rule,
      losing: { op: change.op, clock: change.clock, ...(value !== undefined ? { value } : {}) },
      winning,
    });

  const base = baseOf(change, context);
  // A delete with a newer clock holds against this write (except when clients always win). A write
  // that wins brings the row back: the delete is lost, and recorded so, if its device's delete was
  // one this device had not seen.
  if (state.deleted && state.deleteClock !== null) {
    const { incomingWins, rule } =
      context.strategy === 'client-wins'
        ? { incomingWins: true, rule: context.strategy }
        : decide(context, change, state, null, change.clock > state.deleteClock, unseen(state.lastSeq, state.deleteClock, change, base));
    if (!incomingWins) {
      lose(null, rule, { op: 'delete', clock: state.deleteClock });
      return { state, effective: false, conflicts };
    }
    if (unseen(state.lastSeq, state.deleteClock, change, base)) {
      conflicts.push({ table: change.table, row: change.row, column: null, rule, losing: { op: 'delete', clock: state.deleteClock }, winning: { op: change.op, clock: change.clock } });
    }
  }

  if (context.strategy === 'row-lww' && current !== null && !state.deleted) {
    const newest = newestClock(state);
    const { incomingWins, rule } = decide(context, change, state, null, newest === null || change.clock > newest, hasUnseen(state, change, context));
    if (!incomingWins) {
      lose(null, rule, { op: 'current', clock: newest });
      return { state, effective: false, conflicts };
    }
  }

  // Column names are keys of records without a prototype, read with own(): `toString` is a column like any other.
  const nextValues = record(state.values);
  const nextClocks = record(state.clocks);
  const nextSeqs = record(state.seqs);
  let effective = state.deleted || current === null;
  for (const [column, value] of Object.entries(values)) {
    const clock = own(state.clocks, column);
    let wins: boolean;
    switch (context.strategy) {
      case 'column-lww':
        wins = clock === undefined || change.clock > clock;
        break;
      case 'server-wins':
        wins = clock === undefined || clock.endsWith(`-${deviceOf(change.clock)}`) || (own(state.seqs, column) ?? 0) <= base;
        break;
      case 'row-lww':
      case 'client-wins':
        wins = true;
        break;
    }
    const contested = clock !== undefined && unseen(own(state.seqs, column) ?? state.lastSeq, clock, change, base);
    let rule: Strategy | 'resolver' = context.strategy;
    if (clock !== undefined) ({ incomingWins: wins, rule } = decide(context, change, state, column, wins, contested));
    if (!wins) {
      lose(column, rule, { op: 'current', clock: clock ?? null, value: own(state.values, column) ?? null }, value);
      continue;
    }
    const changed = !sameValue(own(state.values, column), value);
    // The current value is discarded although this device never saw it: a conflict as much as the
    // reverse arrival order would be. (Values under a delete were discarded by the delete.)
    if (changed && !state.deleted && contested) {
      conflicts.push({
        table: change.table,
        row: change.row,
        column,
        rule,
        losing: { op: 'current', clock, value: own(state.values, column) ?? null },
        winning: { op: change.op, clock: change.clock, value },
      });
    }
    if (changed || state.deleted || current === null) {
      effective = true;
      nextSeqs[column] = seq;
    }
    nextValues[column] = value;
    nextClocks[column] = change.clock;
  }
  return {
    state: { values: nextValues, clocks: nextClocks, seqs: nextSeqs, lastSeq: state.lastSeq, deleted: false, deleteClock: state.deleteClock },
    effective,
    conflicts,
  };
}

function mergeDelete(current: RowState | null, state: RowState, change: ClientChange, context: MergeContext): MergeResult {
  if (current === null) {
    // A tombstone for a row never seen: an older insert arriving later must not resurrect it.
    return { state: { ...EMPTY, deleted: true, deleteClock: change.clock }, effective: false, conflicts: [] };
  }
  if (state.deleted) {
    const deleteClock = state.deleteClock === null || change.clock > state.deleteClock ? change.clock : state.deleteClock;
    return { state: { ...state, deleteClock }, effective: false, conflicts: [] };
  }
  const newest = newestClock(state);
  const byClock = newest === null || change.clock > newest;
  const { incomingWins, rule } =
    context.strategy === 'client-wins' ? { incomingWins: true, rule: context.strategy } : decide(context, change, state, null, byClock, hasUnseen(state, change, context));
  if (!incomingWins) {
    return {
      state,
      effective: false,
      conflicts: [{ table: change.table, row: change.row, column: null, rule, losing: { op: 'delete', clock: change.clock }, winning: { op: 'current', clock: newest } }],
    };
  }
  // Edits the deleting device had not seen are wiped with the row: recorded, as the reverse order would be.
  const base = baseOf(change, context);
  const wiped = Object.entries(state.clocks).some(([column, clock]) => unseen(own(state.seqs, column) ?? state.lastSeq, clock, change, base));
  const conflicts: Conflict[] = wiped
    ? [{ table: change.table, row: change.row, column: null, rule, losing: { op: 'current', clock: newest }, winning: { op: 'delete', clock: change.clock } }]
    : [];
  return { state: { ...state, deleted: true, deleteClock: change.clock }, effective: true, conflicts };
}

function deviceOf(clock: string): string {
  return clock.slice(clock.indexOf('-') + 1);
}

function sameValue(a: ColumnValue | undefined, b: ColumnValue): boolean {
  if (a === undefined) return false;
  if (a !== null && b !== null && typeof a === 'object' && typeof b === 'object') {
    if ('$base16' in a && '$base16' in b) return a.$base16.toLowerCase() === b.$base16.toLowerCase();
    if ('$real' in a && '$real' in b) return a.$real === b.$real;
    return '$int' in a && '$int' in b && a.$int === b.$int;
  }
  return a === b;
}
