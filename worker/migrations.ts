/**
 * Row identity across a migration (DESIGN.md invariant 9: "a table rebuilt by a migration keeps its
 * rows' identity").
 *
 * SQLite changes most of a table's shape only by rebuilding it: CREATE the new table, INSERT INTO
 * it SELECT ... FROM the old one, DROP the old one, RENAME the new one to the old name. The new
 * table's rows have no ps_global_id, and giving them new ones would make every other device hold
 * each row twice (the old identity and the new) and re-send every row as an insert.
 *
 * So before a migration's steps run, each synced table's ids are copied into a temporary table
 * together with the columns that find the row again, and after the steps, rows of a table of that
 * name that have no id get theirs back (before the backfill, which records only rows that are
 * still without one: the truly new). A row is found again
 * - by its stable key, when the table had one and the new version still has those columns: the
 *   declared non-rowid key (row-identity.ts) or the INTEGER PRIMARY KEY a rebuild copies;
 * - otherwise by the full row of the columns both versions share; identical rows are paired up
 *   one to one, so no id is given twice.
 */
import type { Database } from '@sqlite.org/sqlite-wasm';
import { quoteIdentifier as id, SYSTEM_PREFIX } from './sql.js';
import { GLOBAL_ID_COLUMN, type TableInfo } from './triggers.js';

export interface IdentitySnapshot {
  readonly table: string;
  /** The temporary table holding the ids with `columns`. */
  readonly copy: string;
  readonly columns: readonly string[];
  readonly stableKey: readonly string[] | null;
}

/** Copies the ids of `tables` (each with its ps_global_id column) into temporary tables. */
export function snapshotIdentities(db: Database, tables: readonly TableInfo[]): IdentitySnapshot[] {
  return tables.map((info, i) => {
    const copy = `${SYSTEM_PREFIX}migration_ids_${i}`;
    db.exec(`DROP TABLE IF EXISTS temp.${id(copy)}`);
    db.exec(
      `CREATE TEMP TABLE ${id(copy)} AS SELECT ${[...info.columns, GLOBAL_ID_COLUMN].map(id).join(', ')}
       FROM main.${id(info.name)} WHERE ${GLOBAL_ID_COLUMN} IS NOT NULL`,
    );
    return { table: info.name, copy, columns: info.columns, stableKey: info.stableKey };
  });
}

/**
 * Gives rows without an id the id their row had before the migration. `infoOf` describes a table as
 * it is now (null when it no longer exists or does not sync); the table has its ps_global_id column.
 */
export function restoreIdentities(db: Database, snapshots: readonly IdentitySnapshot[], infoOf: (table: string) => TableInfo | null): void {
  for (const snapshot of snapshots) {
    try {
      const info = infoOf(snapshot.table);
      if (info !== null) restoreTable(db, snapshot, info);
    } finally {
      db.exec(`DROP TABLE IF EXISTS temp.${id(snapshot.copy)}`);
    }
  }
}

function restoreTable(db: Database, snapshot: IdentitySnapshot, info: TableInfo): void {
  const now = new Set(info.columns);
  const { stableKey } = snapshot;
  const match =
    stableKey !== null && stableKey.every((column) => now.has(column)) ? stableKey : snapshot.columns.filter((column) => now.has(column));
  if (match.length === 0) return;
  // The row of the table as it is now: its rowid, or the key of a WITHOUT ROWID table.
  const locator = info.rowidAlias === null ? (info.withoutRowidKey ?? []) : [info.rowidAlias];
  if (locator.length === 0) return;
  const m = match.map(id);
  const partition = `PARTITION BY ${m.join(', ')}`;
  const loc = locator.map((column, i) => `${id(column)} AS l${i}`);
  const joined = match.map((column) => `n.${id(column)} IS o.${id(column)}`).join(' AND ');
  const located = locator.map((column, i) => `main.${id(info.name)}.${id(column)} IS pair.l${i}`).join(' AND ');
  db.exec(
    `WITH
       o AS (SELECT ${m.join(', ')}, ${GLOBAL_ID_COLUMN} AS gid, row_number() OVER (${partition} ORDER BY ${GLOBAL_ID_COLUMN}) AS k
             FROM temp.${id(snapshot.copy)}),
       n AS (SELECT ${m.join(', ')}, ${loc.join(', ')}, row_number() OVER (${partition} ORDER BY ${locator.map(id).join(', ')}) AS k
             FROM main.${id(info.name)} WHERE ${GLOBAL_ID_COLUMN} IS NULL),
       pair AS (SELECT ${locator.map((_, i) => `n.l${i}`).join(', ')}, o.gid FROM n JOIN o ON n.k = o.k AND ${joined})
     UPDATE main.${id(info.name)} SET ${GLOBAL_ID_COLUMN} = pair.gid FROM pair
     WHERE ${located} AND main.${id(info.name)}.${GLOBAL_ID_COLUMN} IS NULL
       AND NOT EXISTS (SELECT 1 FROM main.${id(info.name)} AS taken WHERE taken.${GLOBAL_ID_COLUMN} = pair.gid)`,
  );
}
