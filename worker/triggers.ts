/**
 * Change capture for one synced table: its `ps_global_id` column and the AFTER INSERT / UPDATE /
 * DELETE triggers that write every change into __pocketsync_changes.
 *
 * Cost is the point of most choices here (bench/capture.ts measures it):
 * - The triggers call two functions the engine registers, once each per captured row, both
 *   returning integers (the cheapest values to pass out of JavaScript): ps_tick(), the next
 *   hybrid-logical-clock stamp, packed (hlc.ts), and ps_version(id), the next version of the synced
 *   table with that id. No subquery, no extra statement on the common path.
 * - An insert that supplies `ps_global_id` (the typed API does) fires only the plain insert
 *   trigger. One that does not (raw SQL, a migration) fires the other one, which first assigns the
 *   id; that self-update changes no user column, so the update trigger, whose WHEN clause requires a
 *   user column to differ, records nothing for it. The same clause makes an UPDATE that changes no
 *   value record nothing.
 * - Capture is suppressed while the engine applies remote changes: every trigger's WHEN clause asks
 *   ps_capturing(), a third integer function. (Turning all triggers off for the connection would be
 *   free, but would also silence the app's own triggers, an FTS index kept by triggers for one.)
 *
 * Payloads: `{ row }` for an insert (every column changed), `{ row, changed }` for an update,
 * `{ old }` (with ps_global_id) for a delete.
 */
import { formatClockSql } from './hlc.js';
import { quoteIdentifier as id, quoteLiteral as lit, SYSTEM_PREFIX } from './sql.js';

export interface TableInfo {
  readonly name: string;
  /** The table's stable id in __pocketsync_version, passed to ps_version(). */
  readonly id: number;
  /** User columns in declaration order, without ps_global_id and generated columns. */
  readonly columns: readonly string[];
  /** A name for the rowid that no column shadows (rowid, _rowid_ or oid); null WITHOUT ROWID. */
  readonly rowidAlias: string | null;
  /** Primary-key columns of a WITHOUT ROWID table; null for a rowid table. */
  readonly withoutRowidKey: readonly string[] | null;
  /**
   * The declared primary key when it is not the rowid (row-identity.ts): the columns a row's
   * ps_global_id is derived from. Null for a rowid table (INTEGER PRIMARY KEY, or no key).
   */
  readonly identityKey: readonly string[] | null;
  /** Columns that find a row again after a table rebuild: identityKey, or the INTEGER PRIMARY KEY. */
  readonly stableKey: readonly string[] | null;
}

export const GLOBAL_ID_COLUMN = 'ps_global_id';
/**
 * A new globally unique id (for ps_global_id and change_id): the time in milliseconds as 12 hex
 * digits, then 80 random bits, 32 hex digits in all. The server keys its change log and row state
 * by these ids; purely random ones put each of a push's rows on a different B-tree page, and its
 * ingest slowed as the tables grew (5× at 80,000 rows, bench/README.md). 80 random bits per
 * millisecond still make a collision practically impossible.
 */
export const NEW_GLOBAL_ID_SQL = "printf('%012x', CAST(unixepoch('subsec') * 1000 AS INTEGER)) || lower(hex(randomblob(10)))";

/** The largest integer a JSON number holds exactly (Number.MAX_SAFE_INTEGER). */
const MAX_EXACT_INTEGER = Number.MAX_SAFE_INTEGER;

const TRIGGER_KINDS = ['insert', 'insert_without_id', 'update', 'delete'] as const;

export function triggerNames(table: string): string[] {
  return TRIGGER_KINDS.map((kind) => `${SYSTEM_PREFIX}${table}_${kind}`);
}

export const GLOBAL_ID_INDEX_SUFFIX = '_global_id';

export function globalIdIndexName(table: string): string {
  return `${SYSTEM_PREFIX}${table}${GLOBAL_ID_INDEX_SUFFIX}`;
}

/**
 * JSON of a row's columns (`NEW.`, `OLD.` or plain references) in the wire's value form
 * (lib/protocol/values.ts): BLOBs, which JSON cannot hold, become {"$base16": hex}, and integers a
 * JSON number (a double) would round, beyond ±(2^53 - 1), become {"$int": "<decimal>"}, and a REAL
 * infinity, which JSON has no number for, {"$real": "Infinity"} or {"$real": "-Infinity"}.
 */
export function rowJsonSql(columns: readonly string[], ref: 'NEW.' | 'OLD.' | '', extra: string[] = []): string {
  const pairs = columns.map((column) => {
    const value = `${ref}${id(column)}`;
    return (
      `${lit(column)}, CASE typeof(${value}) WHEN 'blob' THEN json_object('$base16', hex(${value})) ` +
      `WHEN 'integer' THEN CASE WHEN ${value} BETWEEN ${-MAX_EXACT_INTEGER} AND ${MAX_EXACT_INTEGER} THEN ${value} ` +
      `ELSE json_object('$int', CAST(${value} AS TEXT)) END ` +
      `WHEN 'real' THEN CASE WHEN ${value} = 9e999 THEN json_object('$real', 'Infinity') ` +
      `WHEN ${value} = -9e999 THEN json_object('$real', '-Infinity') ELSE ${value} END ELSE ${value} END`
    );
  });
  return `json_object(${[...pairs, ...extra].join(', ')})`;
}

/**
 * The id of a keyed table's row from its key columns (`NEW.`, `OLD.` or plain references): derived
 * from the key, or random when the key holds a NULL (row-identity.ts).
 */
export function keyIdSql(key: readonly string[], ref: 'NEW.' | 'OLD.' | ''): string {
  return `coalesce(${keyOnlyIdSql(key, ref)}, ${NEW_GLOBAL_ID_SQL})`;
}

/** ps_key_id() of the key columns: NULL when one of them is NULL. */
export function keyOnlyIdSql(key: readonly string[], ref: 'NEW.' | 'OLD.' | ''): string {
  return `ps_key_id(${key.map((c) => `${ref}${id(c)}`).join(', ')})`;
}

/** The columns that identify the row a trigger fired for. */
function rowMatch(table: TableInfo): string {
  if (table.rowidAlias !== null) return `${table.rowidAlias} = NEW.${table.rowidAlias}`;
  return (table.withoutRowidKey ?? []).map((column) => `${id(column)} IS NEW.${id(column)}`).join(' AND ');
}

/**
 * An INSERT that records one change stamped with ps_tick() and ps_version(). With `from`, the values
 * come from that row source (`SELECT ... FROM <from>`) instead of a trigger's NEW/OLD.
 */
export function recordChangeSql(table: TableInfo, deviceId: string, gid: string, op: string, payload: string, from?: string): string {
  const values = `${NEW_GLOBAL_ID_SQL}, ${lit(table.name)}, ${gid}, '${op}', ${payload}, ${formatClockSql('ps_tick()', lit(deviceId))}, ps_version(${table.id})`;
  const into = 'INSERT INTO __pocketsync_changes (change_id, table_name, ps_global_id, operation, payload, clock, version)';
  return from === undefined ? `${into} VALUES (${values})` : `${into} SELECT ${values} FROM ${from}`;
}

export function createTriggersSql(table: TableInfo, deviceId: string): string {
  const t = id(table.name);
  const [insertName, insertWithoutIdName, updateName, deleteName] = triggerNames(table.name).map(id);
  const record = (gid: string, op: string, payload: string) => recordChangeSql(table, deviceId, gid, op, payload) + ';';
  const changedColumns =
    `json('[' || rtrim(` +
    table.columns.map((c) => `CASE WHEN OLD.${id(c)} IS NOT NEW.${id(c)} THEN ${lit(JSON.stringify(c) + ',')} ELSE '' END`).join(' || ') +
    `, ',') || ']')`;
  const anyChanged = table.columns.map((c) => `OLD.${id(c)} IS NOT NEW.${id(c)}`).join(' OR ');
  const insertPayload = `json_object('row', ${rowJsonSql(table.columns, 'NEW.')})`;
  const gid = GLOBAL_ID_COLUMN;
  if (table.identityKey !== null) return createKeyedTriggersSql(table, deviceId, table.identityKey, anyChanged, changedColumns, insertPayload);

  return `
CREATE TRIGGER ${insertName} AFTER INSERT ON ${t} WHEN NEW.${gid} IS NOT NULL AND ps_capturing() BEGIN
  ${record(`NEW.${gid}`, 'insert', insertPayload)}
END;
CREATE TRIGGER ${insertWithoutIdName} AFTER INSERT ON ${t} WHEN NEW.${gid} IS NULL BEGIN
  UPDATE ${t} SET ${gid} = ${NEW_GLOBAL_ID_SQL} WHERE ${rowMatch(table)};
  ${recordChangeSql(table, deviceId, gid, 'insert', insertPayload, `${t} WHERE ${rowMatch(table)} AND ps_capturing()`)};
END;
CREATE TRIGGER ${updateName} AFTER UPDATE ON ${t} WHEN ps_capturing() AND (${anyChanged}) BEGIN
  ${record(`NEW.${gid}`, 'update', `json_object('row', ${rowJsonSql(table.columns, 'NEW.')}, 'changed', ${changedColumns})`)}
END;
CREATE TRIGGER ${deleteName} AFTER DELETE ON ${t} WHEN ps_capturing() BEGIN
  ${record(`OLD.${gid}`, 'delete', `json_object('old', ${rowJsonSql(table.columns, 'OLD.', [`'${gid}'`, `OLD.${gid}`])})`)}
END;`;
}

/**
 * The triggers of a table identified by its primary key (row-identity.ts). They differ from a rowid
 * table's in two places:
 * - A local insert always gets the key's id, whatever ps_global_id it was given; an insert while
 *   capture is off (a remote row) keeps the id it carries, and gets one only when it has none.
 * - An UPDATE that changes the key moves the row to another identity: it is recorded as a delete
 *   of the old id and an insert of the new one, and the row's id follows its key.
 * The self-updates that assign ids change no user column, so the update triggers record nothing.
 */
function createKeyedTriggersSql(
  table: TableInfo,
  deviceId: string,
  key: readonly string[],
  anyChanged: string,
  changedColumns: string,
  insertPayload: string,
): string {
  const t = id(table.name);
  const [insertName, insertWithoutIdName, updateName, deleteName] = triggerNames(table.name).map(id);
  const updateKeyName = id(`${SYSTEM_PREFIX}${table.name}_update_key`);
  const gid = GLOBAL_ID_COLUMN;
  const keyId = keyOnlyIdSql(key, 'NEW.');
  const keyChanged = key.map((c) => `OLD.${id(c)} IS NOT NEW.${id(c)}`).join(' OR ');
  const oldPayload = `json_object('old', ${rowJsonSql(table.columns, 'OLD.', [`'${gid}'`, `OLD.${gid}`])})`;
  const recordFromRow = `${t} WHERE ${rowMatch(table)} AND ps_capturing()`;
  return `
CREATE TRIGGER ${insertName} AFTER INSERT ON ${t}
  WHEN NEW.${gid} IS NOT NULL AND ps_capturing() AND (${keyId} IS NULL OR NEW.${gid} = ${keyId}) BEGIN
  ${recordChangeSql(table, deviceId, `NEW.${gid}`, 'insert', insertPayload)};
END;
CREATE TRIGGER ${insertWithoutIdName} AFTER INSERT ON ${t}
  WHEN NEW.${gid} IS NULL OR (ps_capturing() AND NEW.${gid} IS NOT coalesce(${keyId}, NEW.${gid})) BEGIN
  UPDATE ${t} SET ${gid} = ${keyIdSql(key, 'NEW.')} WHERE ${rowMatch(table)};
  ${recordChangeSql(table, deviceId, gid, 'insert', insertPayload, recordFromRow)};
END;
CREATE TRIGGER ${updateName} AFTER UPDATE ON ${t} WHEN ps_capturing() AND (${anyChanged}) AND NOT (${keyChanged}) BEGIN
  ${recordChangeSql(table, deviceId, `NEW.${gid}`, 'update', `json_object('row', ${rowJsonSql(table.columns, 'NEW.')}, 'changed', ${changedColumns})`)};
END;
CREATE TRIGGER ${updateKeyName} AFTER UPDATE ON ${t} WHEN ps_capturing() AND (${keyChanged}) BEGIN
  ${recordChangeSql(table, deviceId, `OLD.${gid}`, 'delete', oldPayload)};
  UPDATE ${t} SET ${gid} = ${keyIdSql(key, 'NEW.')} WHERE ${rowMatch(table)};
  ${recordChangeSql(table, deviceId, gid, 'insert', insertPayload, recordFromRow)};
END;
CREATE TRIGGER ${deleteName} AFTER DELETE ON ${t} WHEN ps_capturing() BEGIN
  ${recordChangeSql(table, deviceId, `OLD.${gid}`, 'delete', oldPayload)};
END;`;
}
