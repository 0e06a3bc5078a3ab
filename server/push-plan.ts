/**
 * The push algorithm, once, for every store: what a push of changes does to the rows, the change
 * log, the conflicts and the seq, worked out from what the store read for it, as pure code.
 *
 * A store's push() is then its database's statements around it, in one transaction under the
 * project's lock (which makes commit order seq order):
 *
 *   1. read: the project, its highest seq, the push's change ids the device's log holds already
 *      (and the conflicts each met), and the rows the push touches (pushRows() names them);
 *   2. planPush(): the merge of each change in push order, against the rows as the earlier
 *      changes of the push leave them;
 *   3. write: the new change-log entries, each touched row's final state, the conflicts, the seq.
 *
 * Idempotency: a change id the device's log holds (or that came earlier in this push) is a
 * 'duplicate' with the seq it got the first time, and changes nothing; its ack carries the row
 * and the conflicts again (its first ack may have been lost).
 */
import type { ClientChange, PushResult, RowChange } from '../lib/protocol/change.js';
import { hasUnseen, merge, type Conflict, type MergeContext, type RowState } from './merge.js';
import { scopeOf, type Project, type PushInput, type PushOutput, type ScopedRowChange } from './store/store.js';

/** A row of the push: where it lives, and its key in the maps below. */
export interface PushRow {
  readonly key: string;
  readonly scope: string;
  readonly table: string;
  readonly row: string;
}

/** What the store read for a push, inside its transaction. */
export interface PushReads {
  readonly project: Pick<Project, 'id' | 'strategy' | 'sharedTables'>;
  /** The project's highest committed seq. */
  readonly lastSeq: number;
  /** The push's change ids that the device's change log holds already, with the seq each got. */
  readonly logged: ReadonlyMap<string, number | null>;
  /** The conflicts recorded when each logged change was first merged. */
  readonly conflictsOf: ReadonlyMap<string, readonly Conflict[]>;
  /** The rows of pushRows() that exist (a deleted one as its tombstone), by key. */
  readonly rows: ReadonlyMap<string, RowState>;
}

export interface LoggedChange {
  readonly change: ClientChange;
  readonly outcome: 'applied' | 'superseded';
  readonly seq: number | null;
  /** The change's values as JSON; null for a delete. */
  readonly payload: string | null;
}

export interface SavedRow extends PushRow {
  readonly state: RowState;
  /** The row's values as JSON (a new row's are the change's payload, not serialized twice). */
  readonly values: string;
}

/** What the store writes in the same transaction. */
export interface PushWrites {
  /** New change-log entries, in push order. */
  readonly changes: readonly LoggedChange[];
  /** Each row the push changed, once, in its final state. */
  readonly rows: readonly SavedRow[];
  readonly conflicts: readonly { readonly change: ClientChange; readonly conflict: Conflict }[];
  /** The project's highest seq after the push. */
  readonly lastSeq: number;
}

export function rowKey(scope: string, table: string, row: string): string {
  return `${scope}\u0000${table}\u0000${row}`;
}

/** The rows a push touches, each once, in first-touch order: what the store reads for it. */
export function pushRows(project: Pick<Project, 'sharedTables'>, userId: string, changes: readonly ClientChange[]): PushRow[] {
  const rows = new Map<string, PushRow>();
  for (const change of changes) {
    const scope = scopeOf(project as Project, change.table, userId);
    const key = rowKey(scope, change.table, change.row);
    if (!rows.has(key)) rows.set(key, { key, scope, table: change.table, row: change.row });
  }
  return [...rows.values()];
}

export function planPush(input: PushInput, reads: PushReads): { writes: PushWrites; output: PushOutput } {
  const { project } = reads;
  let seq = reads.lastSeq;
  const context: MergeContext = { strategy: project.strategy, deviceCursor: input.deviceCursor, resolver: input.resolver };
  // Under any rule but clock order the device cannot tell what the server decided: every row goes back.
  const everyRow = project.strategy === 'server-wins' || project.strategy === 'client-wins' || input.resolver !== undefined;
  const results: PushResult[] = [];
  const conflicts: Conflict[] = [];
  const touched = new Map<string, ScopedRowChange>();
  // The rows of this push as they stand (kept current as the push goes), and those the ack returns.
  const states = new Map<string, RowState | null>();
  const returned = new Map<string, { table: string; row: string }>();
  // Change ids logged before or earlier in this push, with their seq and conflicts.
  const logged = new Map(reads.logged);
  const conflictsOf = new Map(reads.conflictsOf);
  const newChanges: LoggedChange[] = [];
  const saved = new Map<string, SavedRow>();
  const newConflicts: Array<{ change: ClientChange; conflict: Conflict }> = [];

  for (const change of input.changes) {
    const scope = scopeOf(project as Project, change.table, input.userId);
    const key = rowKey(scope, change.table, change.row);
    const current = states.has(key) ? (states.get(key) ?? null) : (reads.rows.get(key) ?? null);
    if (logged.has(change.id)) {
      results.push({ id: change.id, outcome: 'duplicate', seq: logged.get(change.id) ?? null });
      // Its first ack may have been lost, with the row state the device needed and the
      // conflicts it was to be told of.
      states.set(key, current);
      if (current !== null) returned.set(key, change);
      conflicts.push(...(conflictsOf.get(change.id) ?? []));
      continue;
    }
    const result = merge(current, change, seq + 1, context);
    const changeSeq = result.effective ? seq + 1 : null;
    const payload = change.values === undefined ? null : JSON.stringify(change.values);
    newChanges.push({ change, outcome: result.effective ? 'applied' : 'superseded', seq: changeSeq, payload });
    logged.set(change.id, changeSeq);
    conflictsOf.set(change.id, result.conflicts);
    if (changeSeq !== null) seq = changeSeq;
    if (result.effective || result.state !== current) {
      // A new row's values are exactly the change's: that JSON, not the same serialized again.
      const values = current === null && payload !== null && !result.state.deleted ? payload : JSON.stringify(result.state.values);
      saved.set(key, { key, scope, table: change.table, row: change.row, state: result.state, values });
    }
    states.set(key, result.state);
    for (const conflict of result.conflicts) newConflicts.push({ change, conflict });
    conflicts.push(...result.conflicts);
    results.push({ id: change.id, outcome: result.effective ? 'applied' : 'superseded', seq: changeSeq });
    // What the device derives from its own write and what it had applied, unless something here says otherwise.
    const derivable = !everyRow && result.conflicts.length === 0 && (current === null || (!current.deleted && !hasUnseen(current, change, context)));
    if (!derivable) returned.set(key, change);
    if (changeSeq !== null) {
      touched.delete(key); // re-insert so the map stays in seq order
      touched.set(key, { scope, ...toRowChange(change.table, change.row, result.state) });
    }
  }
  const rows = [...returned].flatMap(([key, { table, row }]) => {
    const state = states.get(key);
    return state ? [toRowChange(table, row, state)] : [];
  });
  return {
    writes: { changes: newChanges, rows: [...saved.values()], conflicts: newConflicts, lastSeq: seq },
    output: { results, effective: [...touched.values()], conflicts, rows, range: { from: reads.lastSeq, to: seq } },
  };
}

/** A row as the wire carries it. */
export function toRowChange(table: string, row: string, state: RowState): RowChange {
  const seq = state.lastSeq;
  return state.deleted
    ? { seq, table, row, deleted: true, ...(state.deleteClock !== null ? { deleteClock: state.deleteClock } : {}) }
    : { seq, table, row, deleted: false, values: state.values, clocks: state.clocks };
}
