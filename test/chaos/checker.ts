/**
 * The checker, at quiescence (every device live, nothing pending, caught up to the server's seq):
 * - every device's rows equal the server's row state for its scopes (shared + its user's);
 * - every acknowledged write is present, superseded by a newer clock, or lost to a conflict a
 *   device was told of (the writer, or the device whose later write replaced it); a value that won
 *   arrives unchanged (64-bit integers, blobs, unicode);
 * - no deleted row comes back unless a newer write did it (or the delete was reported as lost);
 * - no row is duplicated (by ps_global_id on a device, by declared key on the server);
 * - nothing sits in quarantine but what the device's schema truly forbids;
 * - no device is in state 'error'.
 */
import type { LostWrite, RowChange } from '../../lib/protocol/change.js';
import type { SqlValue } from '../../lib/protocol/worker-api.js';
import { scopesOf } from '../../server/store/store.js';
import { fromWire } from '../../worker/sync/replica.js';
import { tablesOf, type Device, type World, type WriteRecord } from './world.js';

export interface Divergence {
  readonly invariant: 'error-state' | 'rows-differ' | 'lost-write' | 'value-changed' | 'resurrected' | 'duplicate' | 'quarantine' | 'no-quiescence';
  readonly detail: string;
}

/** One canonical text per value, whichever side it came from (wire JSON or SQLite). */
export function canonical(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'bigint') return `i:${value}`;
  if (typeof value === 'number') return Number.isInteger(value) ? `i:${value}` : `r:${value}`;
  if (typeof value === 'string') return `s:${value}`;
  if (value instanceof Uint8Array) return `b:${Buffer.from(value).toString('hex')}`;
  if (typeof value === 'object') {
    const o = value as Record<string, unknown>;
    if (typeof o.$int === 'string') return `i:${o.$int}`;
    if (o.$real === 'Infinity' || o.$real === '-Infinity') return `r:${o.$real}`;
    if (typeof o.$base16 === 'string') return `b:${o.$base16.toLowerCase()}`;
  }
  return `?:${JSON.stringify(value)}`;
}

export async function serverRows(world: World, user: string): Promise<Map<string, Map<string, RowChange>>> {
  const tables = new Map<string, Map<string, RowChange>>();
  let cursor = 0;
  for (;;) {
    const batch = await world.store.pull({ projectId: world.projectId, scopes: scopesOf(user), cursor, limit: 1000 });
    for (const change of batch.changes) {
      if (change.deleted) continue;
      let rows = tables.get(change.table);
      if (!rows) tables.set(change.table, (rows = new Map<string, RowChange>()));
      rows.set(change.row, change);
    }
    if (!batch.hasMore) break;
    cursor = batch.cursor;
  }
  return tables;
}

function quarantineTables(device: Device): string[] {
  return device.engine
    .query("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '\\_\\_pocketsync\\_quarantine%' ESCAPE '\\'")
    .map((r) => String(r.name));
}

/**
 * Whether the device's schema refuses the server's row: an insert of it, as the replica would write
 * it (a rowid table's INTEGER PRIMARY KEY left to the device), fails. Always undone.
 */
function forbidden(device: Device, table: string, row: RowChange, columns: readonly string[]): string | null {
  const values = row.values ?? {};
  const localKey = device.engine.rowIdentity(table)?.localKey ?? null;
  const names = columns.filter((c) => c in values && c !== localKey);
  const params: SqlValue[] = names.map((c) => fromWire(values[c] ?? null));
  const sql = `INSERT INTO "${table}" (${names.map((c) => `"${c}"`).join(', ')}) VALUES (${names.map(() => '?').join(', ')})`;
  const undo = new Error('undo the probe');
  try {
    device.engine.applyWithoutCapture(() =>
      device.engine.savepoint(() => {
        device.engine.execute(sql, params);
        throw undo;
      }),
    );
    return null;
  } catch (error) {
    if (error === undo) return null;
    return error instanceof Error ? error.message : String(error);
  }
}


function reported(conflicts: readonly LostWrite[], write: WriteRecord, column: string | null): boolean {
  return conflicts.some((c) => c.table === write.table && c.row === write.row && c.losing.clock === write.clock && (column === null || c.column === null || c.column === column));
}

export async function check(world: World): Promise<Divergence[]> {
  const out: Divergence[] = [];
  const state = new Map<string, Map<string, Map<string, RowChange>>>();
  for (const user of new Set(world.devices.map((d) => d.user))) state.set(user, await serverRows(world, user));
  const specs = tablesOf(world.features);

  for (const device of world.devices) {
    const status = device.loop.status;
    if (status.state === 'error') out.push({ invariant: 'error-state', detail: `${device.name}: ${status.error?.kind}: ${status.error?.message}` });
    const server = state.get(device.user)!;
    const quarantined = new Set<string>();
    for (const q of quarantineTables(device)) {
      for (const entry of device.engine.query(`SELECT * FROM "${q}"`)) {
        const table = String(entry.table_name ?? entry.table ?? '');
        const row = String(entry.ps_global_id ?? entry.row ?? '');
        quarantined.add(`${table}/${row}`);
        const serverRow = server.get(table)?.get(row);
        const info = device.engine.query(`SELECT name FROM pragma_table_info(?)`, [table]).map((r) => String(r.name));
        const why = serverRow && info.length > 0 ? forbidden(device, table, serverRow, info) : 'row not on the server';
        if (why === null) out.push({ invariant: 'quarantine', detail: `${device.name}: ${table}/${row} is quarantined (${JSON.stringify(entry)}) but its schema takes the server's row` });
      }
    }
    for (const spec of specs) {
      if (spec.since > device.version) continue;
      const info = device.engine.query(`SELECT name, pk, type FROM pragma_table_info(?)`, [spec.name]);
      const rowidAlias = spec.key === null ? info.find((c) => Number(c.pk) === 1 && String(c.type).toUpperCase() === 'INTEGER')?.name : undefined;
      const columns = info.map((c) => String(c.name)).filter((c) => c !== 'ps_global_id');
      const local = device.engine.query(`SELECT * FROM "${spec.name}"`);
      const seen = new Set<string>();
      const expected = server.get(spec.name) ?? new Map<string, RowChange>();
      for (const row of local) {
        const gid = String(row.ps_global_id);
        if (seen.has(gid)) out.push({ invariant: 'duplicate', detail: `${device.name}: ${spec.name}/${gid} twice` });
        seen.add(gid);
        const remote = expected.get(gid);
        if (!remote) {
          out.push({ invariant: 'rows-differ', detail: `${device.name} (${device.user}) has ${spec.name}/${gid} ${JSON.stringify(row, replacer)}; the server has no such live row` });
          continue;
        }
        const diffs: string[] = [];
        for (const column of columns) {
          // A rowid table's integer key is the device's local rowid: two devices' rows may both be
          // id 1 on the wire, and the replica gives one of them another rowid. Identity is ps_global_id.
          if (column === rowidAlias) continue;
          const mine = canonical(row[column]);
          const theirs = canonical(remote.values?.[column]);
          if (mine !== theirs) diffs.push(`${column}: device ${mine}, server ${theirs}`);
        }
        if (diffs.length > 0) out.push({ invariant: 'rows-differ', detail: `${device.name} (${device.user}) ${spec.name}/${gid}: ${diffs.join('; ')}` });
      }
      for (const [gid, remote] of expected) {
        if (seen.has(gid)) continue;
        if (quarantined.has(`${spec.name}/${gid}`)) continue;
        out.push({ invariant: 'rows-differ', detail: `${device.name} (${device.user}) lacks ${spec.name}/${gid}, which the server has: ${JSON.stringify(remote.values)}` });
      }
    }
  }

  // Declared keys are identities: the server holds one live row per key.
  for (const [user, server] of state) {
    for (const spec of specs) {
      if (spec.key === null) continue;
      const byKey = new Map<string, string>();
      for (const [gid, row] of server.get(spec.name) ?? []) {
        const key = spec.key.map((k) => canonical(row.values?.[k])).join('|');
        const other = byKey.get(key);
        if (other !== undefined) out.push({ invariant: 'duplicate', detail: `server (${user}'s scopes): ${spec.name} key ${key} is two rows, ${other} and ${gid}` });
        byKey.set(key, gid);
      }
    }
  }

  // A write lost when it was pushed is reported to its device (in its ack); one that a later
  // arrival replaced (client-wins, a resolver) is reported to the device whose write replaced it.
  const told = world.devices.flatMap((device) => device.conflicts);
  for (const write of world.writes) {
    const row = state.get(write.user)!.get(write.table)?.get(write.row);
    if (write.op === 'delete') {
      if (!row) continue;
      const newer = world.writes.some((w) => w.table === write.table && w.row === write.row && w.op !== 'delete' && w.clock > write.clock);
      if (!newer && !reported(told, write, null)) {
        out.push({ invariant: 'resurrected', detail: `${write.table}/${write.row} deleted by dev-${write.device} at ${write.clock} is live on the server with no newer write: ${JSON.stringify(row.values)} clocks ${JSON.stringify(row.clocks)}` });
      }
      continue;
    }
    if (!row) {
      const deleted = world.writes.some((w) => w.table === write.table && w.row === write.row && w.op === 'delete' && w.clock > write.clock);
      if (!deleted && !reported(told, write, null)) {
        out.push({ invariant: 'lost-write', detail: `${write.op} of ${write.table}/${write.row} by dev-${write.device} at ${write.clock} ${JSON.stringify(write.values, replacer)}: the row is gone from the server, no newer delete, no conflict reported` });
      }
      continue;
    }
    for (const [column, value] of Object.entries(write.values)) {
      const clock = row.clocks?.[column];
      if (clock === write.clock) {
        if (canonical(row.values?.[column]) !== canonical(value)) {
          out.push({ invariant: 'value-changed', detail: `${write.table}/${write.row}.${column} written by dev-${write.device} as ${canonical(value)} is ${canonical(row.values?.[column])} on the server` });
        }
      } else if (clock === undefined || clock < write.clock) {
        // Another write of the same value holds: nothing of this one is lost.
        const same = canonical(row.values?.[column]) === canonical(value);
        if (!same && !reported(told, write, column)) {
          out.push({ invariant: 'lost-write', detail: `${write.op} of ${write.table}/${write.row}.${column} = ${canonical(value)} by dev-${write.device} at ${write.clock}: the server has ${canonical(row.values?.[column])} from ${clock ?? 'no clock'}, and no conflict was reported` });
        }
      }
    }
  }
  return out;
}

function replacer(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return `${value}n`;
  if (value instanceof Uint8Array) return `0x${Buffer.from(value).toString('hex')}`;
  return value;
}
