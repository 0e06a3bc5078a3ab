/**
 * The stash (`__pocketsync_stash`, system-tables.ts): the parts of remote rows this schema version
 * does not have, kept so that the cursor can move past them without losing them. A row of a table
 * this device lacks is kept whole; of a table it has, only the values of the columns it lacks.
 * Per row and column the newest value (by its clock) is kept; a remote delete of the row clears
 * it. Once a migration adds the table or column, the replica applies what it holds by the usual
 * rules against local state (Replica.afterSchemaChange).
 */
import type { RowChange } from '../../lib/protocol/change.js';
import { own, record, type ColumnValue } from '../../lib/protocol/values.js';
import type { Engine } from '../engine.js';
import { rowKey } from './quarantine.js';

export interface StashEntry {
  readonly table: string;
  readonly row: string;
  readonly values: Record<string, ColumnValue>;
  readonly clocks: Record<string, string>;
  readonly seq: number;
  /** The whole row (its table was missing), not only some of its columns. */
  readonly whole: boolean;
}

export class Stash {
  readonly #engine: Engine;

  constructor(engine: Engine) {
    this.#engine = engine;
  }

  /** The (table, row) keys stashed among `changes`' rows (one query per batch). */
  keysOf(changes: readonly RowChange[]): Set<string> {
    if (this.#engine.query('SELECT 1 AS x FROM __pocketsync_stash LIMIT 1').length === 0) return new Set();
    const rows = this.#engine.query('SELECT table_name, ps_global_id FROM __pocketsync_stash WHERE ps_global_id IN (SELECT value FROM json_each(?))', [
      JSON.stringify(changes.map((change) => change.row)),
    ]);
    return new Set(rows.map((row) => rowKey(String(row.table_name), String(row.ps_global_id))));
  }

  /** Keeps `entry`'s values, merged per column with what is stashed for the row: the newer clock wins. */
  put(entry: StashEntry): void {
    const engine = this.#engine;
    const [old] = engine.query('SELECT vals, clocks, seq FROM __pocketsync_stash WHERE ps_global_id = ? AND table_name = ?', [entry.row, entry.table]);
    const values = record<ColumnValue>(old ? (JSON.parse(String(old.vals)) as Record<string, ColumnValue>) : undefined);
    const clocks = record<string>(old ? (JSON.parse(String(old.clocks)) as Record<string, string>) : undefined);
    for (const [column, value] of Object.entries(entry.values)) {
      const clock = own(entry.clocks, column) ?? '';
      if ((own(clocks, column) ?? '') <= clock) {
        values[column] = value;
        clocks[column] = clock;
      }
    }
    engine.execute('INSERT OR REPLACE INTO __pocketsync_stash (table_name, ps_global_id, vals, clocks, seq, whole) VALUES (?, ?, ?, ?, ?, ?)', [
      entry.table,
      entry.row,
      JSON.stringify(values),
      JSON.stringify(clocks),
      Math.max(entry.seq, Number(old?.seq ?? 0)),
      entry.whole ? 1 : 0,
    ]);
  }

  drop(table: string, row: string): void {
    this.#engine.execute('DELETE FROM __pocketsync_stash WHERE ps_global_id = ? AND table_name = ?', [row, table]);
  }

  /** Removes and returns the entries of `tables` (those this schema now has), in seq order. */
  take(tables: ReadonlySet<string>): StashEntry[] {
    const rows = this.#engine.query('DELETE FROM __pocketsync_stash WHERE table_name IN (SELECT value FROM json_each(?)) RETURNING *', [JSON.stringify([...tables])]);
    return rows
      .map((row) => ({
        table: String(row.table_name),
        row: String(row.ps_global_id),
        values: JSON.parse(String(row.vals)) as Record<string, ColumnValue>,
        clocks: JSON.parse(String(row.clocks)) as Record<string, string>,
        seq: Number(row.seq),
        whole: Number(row.whole) === 1,
      }))
      .sort((a, b) => a.seq - b.seq);
  }
}
