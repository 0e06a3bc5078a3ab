/**
 * The quarantine (`__pocketsync_quarantine`, system-tables.ts): changes this device could not sync,
 * kept with the reason instead of stopping sync. A remote row the local schema refused is kept as
 * its RowChange, so that it can be applied again after a schema change; a later state of the same
 * row from the server supersedes it. A local change the server rejected is kept as its wire
 * change; it has left the change log and is never pushed again.
 */
import type { ClientChange, QuarantineEntry, RowChange } from '../../lib/protocol/change.js';
import type { Row } from '../../lib/protocol/worker-api.js';
import type { Engine } from '../engine.js';
import { own, record } from '../../lib/protocol/values.js';

export interface QuarantineError {
  readonly kind: string;
  readonly message: string;
}

/** The columns of an entry, for RETURNING and SELECT. */
export const ENTRY_COLUMNS = 'id, direction, table_name, ps_global_id, source, error_kind, error_message, at';

export class Quarantine {
  readonly #engine: Engine;

  constructor(engine: Engine) {
    this.#engine = engine;
  }

  list(): QuarantineEntry[] {
    return this.#engine.query(`SELECT ${ENTRY_COLUMNS} FROM __pocketsync_quarantine ORDER BY id`).map(toEntry);
  }

  count(): number {
    return Number(this.#engine.query('SELECT count(*) AS n FROM __pocketsync_quarantine')[0]?.n ?? 0);
  }

  addRemote(change: RowChange, error: QuarantineError): QuarantineEntry {
    const [row] = this.#engine.query(
      `INSERT INTO __pocketsync_quarantine (direction, table_name, ps_global_id, source, change, error_kind, error_message, at)
       VALUES ('remote', ?, ?, ?, ?, ?, ?, ?) RETURNING ${ENTRY_COLUMNS}`,
      [change.table, change.row, String(change.seq), JSON.stringify(change), error.kind, error.message, Date.now()],
    );
    return toEntry(row ?? {});
  }

  /** The (table, row) keys of the remote entries among `changes`' rows (one query per batch). */
  remoteKeysOf(changes: readonly RowChange[]): Set<string> {
    if (!this.hasRemote()) return new Set();
    const rows = this.#engine.query(
      `SELECT table_name, ps_global_id FROM __pocketsync_quarantine
       WHERE direction = 'remote' AND ps_global_id IN (SELECT value FROM json_each(?))`,
      [JSON.stringify(changes.map((change) => change.row))],
    );
    return new Set(rows.map((row) => rowKey(String(row.table_name), String(row.ps_global_id))));
  }

  /** A newer state of the row came: the refused older one no longer matters. */
  supersede(table: string, row: string): void {
    this.#engine.execute("DELETE FROM __pocketsync_quarantine WHERE direction = 'remote' AND ps_global_id = ? AND table_name = ?", [row, table]);
  }

  /** The remote entries' rows, oldest seq first, at most `limit`, with their entry ids. */
  remote(limit: number): { readonly id: number; readonly change: RowChange }[] {
    const rows = this.#engine.query("SELECT id, change FROM __pocketsync_quarantine WHERE direction = 'remote' ORDER BY CAST(source AS INTEGER), id LIMIT ?", [limit]);
    return rows.map((row) => ({ id: Number(row.id), change: JSON.parse(String(row.change)) as RowChange }));
  }

  /**
   * A local change of the row was acknowledged: the server merged it into the row after the
   * quarantined state, so the columns it wrote with a newer clock are the device's now, and are
   * no longer the entry's to set (a newer delete leaves nothing of it).
   */
  settle(change: ClientChange): void {
    const engine = this.#engine;
    const entries = engine.query("SELECT id, change FROM __pocketsync_quarantine WHERE direction = 'remote' AND ps_global_id = ? AND table_name = ?", [
      change.row,
      change.table,
    ]);
    for (const entry of entries) {
      const held = JSON.parse(String(entry.change)) as RowChange;
      const values = record(held.values);
      const clocks = record(held.clocks);
      if (change.op === 'delete') {
        if (Object.values(clocks).every((clock) => clock < change.clock) && (held.deleteClock ?? '') < change.clock) this.remove(Number(entry.id));
        continue;
      }
      for (const column of Object.keys(change.values ?? {})) {
        if ((own(clocks, column) ?? '') < change.clock) {
          delete values[column];
          delete clocks[column];
        }
      }
      if (held.deleted && (held.deleteClock ?? '') < change.clock) this.remove(Number(entry.id));
      else if (!held.deleted && Object.keys(values).length === 0) this.remove(Number(entry.id));
      else if (!held.deleted) engine.execute('UPDATE __pocketsync_quarantine SET change = ? WHERE id = ?', [JSON.stringify({ ...held, values, clocks }), Number(entry.id)]);
    }
  }

  /** Whether any remote entry is held (cheap: most batches and acks need nothing more). */
  hasRemote(): boolean {
    return this.#engine.query("SELECT 1 AS x FROM __pocketsync_quarantine WHERE direction = 'remote' LIMIT 1").length > 0;
  }

  remove(id: number): void {
    this.#engine.execute('DELETE FROM __pocketsync_quarantine WHERE id = ?', [id]);
  }
}

export function toEntry(row: Row): QuarantineEntry {
  return {
    id: Number(row.id),
    direction: row.direction === 'local' ? 'local' : 'remote',
    table: String(row.table_name),
    row: String(row.ps_global_id),
    source: String(row.source),
    error: { kind: String(row.error_kind), message: String(row.error_message) },
    at: Number(row.at),
  };
}

export const rowKey = (table: string, row: string): string => `${table}\u0000${row}`;
