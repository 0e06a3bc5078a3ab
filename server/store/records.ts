/**
 * Rows of the stores' tables as records of the Store contract: one mapping for every store, since
 * their tables have the same columns (server/store/sqlite-store.ts, postgres-store.ts).
 */
import type { RowChange } from '../../lib/protocol/change.js';
import { record, type ColumnValue } from '../../lib/protocol/values.js';
import type { Conflict, RowState } from '../merge.js';
import { toRowChange } from '../push-plan.js';
import type { DeviceRecord } from './store.js';

/** Every table that holds a project's data besides projects itself: what deleting a project empties. */
export const PROJECT_TABLES = ['devices', 'change_log', 'push_outcomes', 'row_state', 'conflicts', 'service_keys', 'signing_keys', 'blocked_users', 'scope_horizons', 'activity'] as const;

export interface ConflictRow {
  table_name: string;
  row_id: string;
  column_name: string | null;
  rule: string;
  losing: string;
  winning: string;
}

export interface RowStateRecord {
  vals: string;
  clocks: string;
  seqs: string;
  deleted: number | boolean;
  delete_clock: string | null;
  last_seq: number;
}

export function conflictOf(row: ConflictRow): Conflict {
  return {
    table: row.table_name,
    row: row.row_id,
    column: row.column_name,
    rule: row.rule as Conflict['rule'],
    losing: JSON.parse(row.losing) as Conflict['losing'],
    winning: JSON.parse(row.winning) as Conflict['winning'],
  };
}

export const DEVICE_COLUMNS = 'project_id, device_id, user_id, cursor, online, first_seen, last_seen, pending, quarantined, app_version, library, protocol_version, user_agent';

export interface DeviceRow {
  project_id: string; device_id: string; user_id: string; cursor: number; online: number | boolean; first_seen: number; last_seen: number;
  pending: number | null; quarantined: number | null; app_version: string | null; library: string | null; protocol_version: number | null; user_agent: string | null;
}

export function deviceRecord(r: DeviceRow): DeviceRecord {
  return {
    projectId: r.project_id, deviceId: r.device_id, userId: r.user_id, cursor: r.cursor, online: r.online === 1 || r.online === true, firstSeen: r.first_seen, lastSeen: r.last_seen,
    pending: r.pending, quarantined: r.quarantined, appVersion: r.app_version, library: r.library, protocolVersion: r.protocol_version, userAgent: r.user_agent,
  };
}

export /** A stored row as it goes out (a catch-up page, a backend read): no per-column seqs needed. */
function storedRowChange(table: string, row: string, r: Omit<RowStateRecord, 'seqs'>): RowChange {
  return toRowChange(table, row, {
    values: JSON.parse(r.vals) as Record<string, ColumnValue>,
    clocks: JSON.parse(r.clocks) as Record<string, string>,
    seqs: {},
    lastSeq: r.last_seq,
    deleted: r.deleted === 1 || r.deleted === true,
    deleteClock: r.delete_clock,
  });
}

/** A stored row as the merge reads it. */
export function rowStateOf(row: RowStateRecord): RowState {
  return {
    values: record(JSON.parse(row.vals) as Record<string, ColumnValue>),
    clocks: record(JSON.parse(row.clocks) as Record<string, string>),
    seqs: record(JSON.parse(row.seqs) as Record<string, number>),
    lastSeq: row.last_seq,
    deleted: row.deleted === 1 || row.deleted === true,
    deleteClock: row.delete_clock,
  };
}
