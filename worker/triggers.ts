/**
 * Change capture for one synced table: its `ps_global_id` column and the AFTER INSERT / UPDATE /
 * DELETE triggers that write every change into __pocketsync_changes.
 *
 * The triggers call two functions the engine registers on its connection, once each per captured row,
 * both taking and returning integers (the cheapest values to pass between SQLite and JavaScript):
 * - ps_tick(): the next hybrid-logical-clock stamp, packed (hlc.ts), or NULL while the engine applies
 *   remote changes (capture suppressed), in which case nothing is recorded;
 * - ps_version(i): the next version of synced table number i.
 * Payloads: `{ row }` for an insert (every column changed), `{ row, changed }` for an update,
 * `{ old }` (with ps_global_id) for a delete.
 *
 * An insert that did not supply `ps_global_id` (raw SQL, a migration) gets one from the insert
 * trigger, whether capture is on or not. That self-update changes no user column, so the update
 * trigger, whose WHEN clause requires a user column to differ, records nothing for it; the same
 * clause makes an UPDATE that changes no value record nothing.
 */
import { formatClockSql } from './hlc.js';
import { quoteIdentifier as id, quoteLiteral as lit, SYSTEM_PREFIX } from './sql.js';

export interface TableInfo {
  readonly name: string;
  /** This table's number for ps_version(). */
  readonly index: number;
  /** User columns in declaration order, without ps_global_id and generated columns. */
  readonly columns: readonly string[];
  /** Primary-key columns of a WITHOUT ROWID table; null for a rowid table. */
  readonly withoutRowidKey: readonly string[] | null;
}

export const GLOBAL_ID_COLUMN = 'ps_global_id';
export const NEW_GLOBAL_ID_SQL = 'lower(hex(randomblob(16)))';

export function triggerNames(table: string): string[] {
  return ['insert', 'update', 'delete'].map((op) => `${SYSTEM_PREFIX}${table}_${op}`);
}

export function globalIdIndexName(table: string): string {
  return `${SYSTEM_PREFIX}${table}_global_id`;
}

/**
 * JSON of a row's columns (`NEW.`, `OLD.` or plain references); BLOBs, which JSON cannot hold,
 * become {"$base16": hex}.
 */
export function rowJsonSql(columns: readonly string[], ref: 'NEW.' | 'OLD.' | '', extra: string[] = []): string {
  const pairs = columns.map((column) => {
    const value = `${ref}${id(column)}`;
    return `${lit(column)}, CASE typeof(${value}) WHEN 'blob' THEN json_object('$base16', hex(${value})) ELSE ${value} END`;
  });
  return `json_object(${[...pairs, ...extra].join(', ')})`;
}

function rowMatch(table: TableInfo): string {
  if (table.withoutRowidKey === null) return 'rowid = NEW.rowid';
  return table.withoutRowidKey.map((column) => `${id(column)} IS NEW.${id(column)}`).join(' AND ');
}

/**
 * An INSERT ... SELECT that records one change, stamped with ps_tick() and ps_version(); `from`
 * joins the row source when the values come from a table rather than a trigger's NEW/OLD.
 */
export function recordChangeSql(table: TableInfo, deviceId: string, gid: string, op: string, payload: string, from = ''): string {
  // The OFFSET keeps SQLite from flattening the subquery, which would call ps_tick() once per use.
  return `INSERT INTO __pocketsync_changes (change_id, table_name, ps_global_id, operation, payload, clock, version)
    SELECT ${NEW_GLOBAL_ID_SQL}, ${lit(table.name)}, ${gid}, '${op}', ${payload}, ${formatClockSql('tick', lit(deviceId))}, ps_version(${table.index})
    FROM (SELECT ps_tick() AS tick LIMIT -1 OFFSET 0)${from} WHERE tick IS NOT NULL`;
}

export function dropTriggersSql(table: string): string {
  return triggerNames(table).map((name) => `DROP TRIGGER IF EXISTS ${id(name)};`).join('\n');
}

export function createTriggersSql(table: TableInfo, deviceId: string): string {
  const t = id(table.name);
  const [insertName, updateName, deleteName] = triggerNames(table.name).map(id);
  const record = (gid: string, op: string, payload: string) => recordChangeSql(table, deviceId, gid, op, payload) + ';';
  const changedColumns =
    `json('[' || rtrim(` +
    table.columns.map((c) => `CASE WHEN OLD.${id(c)} IS NOT NEW.${id(c)} THEN ${lit(JSON.stringify(c) + ',')} ELSE '' END`).join(' || ') +
    `, ',') || ']')`;
  const anyChanged = table.columns.map((c) => `OLD.${id(c)} IS NOT NEW.${id(c)}`).join(' OR ');
  const gidAfterInsert = `COALESCE(NEW.${GLOBAL_ID_COLUMN}, (SELECT ${GLOBAL_ID_COLUMN} FROM ${t} WHERE ${rowMatch(table)}))`;

  return `
CREATE TRIGGER ${insertName} AFTER INSERT ON ${t} BEGIN
  UPDATE ${t} SET ${GLOBAL_ID_COLUMN} = ${NEW_GLOBAL_ID_SQL} WHERE NEW.${GLOBAL_ID_COLUMN} IS NULL AND ${rowMatch(table)};
  ${record(gidAfterInsert, 'insert', `json_object('row', ${rowJsonSql(table.columns, 'NEW.')})`)}
END;
CREATE TRIGGER ${updateName} AFTER UPDATE ON ${t} WHEN ${anyChanged} BEGIN
  ${record(`NEW.${GLOBAL_ID_COLUMN}`, 'update', `json_object('row', ${rowJsonSql(table.columns, 'NEW.')}, 'changed', ${changedColumns})`)}
END;
CREATE TRIGGER ${deleteName} AFTER DELETE ON ${t} BEGIN
  ${record(`OLD.${GLOBAL_ID_COLUMN}`, 'delete', `json_object('old', ${rowJsonSql(table.columns, 'OLD.', [`'${GLOBAL_ID_COLUMN}'`, `OLD.${GLOBAL_ID_COLUMN}`])})`)}
END;`;
}
