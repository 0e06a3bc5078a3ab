/**
 * Where the sync server keeps its data: one interface, one implementation per database, and one
 * conformance suite (test/store-conformance.ts) that every implementation passes.
 *
 * The contract every implementation guarantees:
 * - push() is atomic: every change of the batch is merged and committed in one transaction, or
 *   none is, and it resolves only after that commit. It never acknowledges what it did not store.
 * - push() is idempotent by change id per device: a change id the same device pushed before (within
 *   the change-log retention) yields outcome 'duplicate' with the seq it got the first time, and
 *   changes nothing. Another device's change with the same id is its own change.
 * - seq numbers are assigned per project inside the committing transaction, under a per-project
 *   lock. Commit order therefore equals seq order, and a reader never sees seq n+1 committed
 *   before seq n (the gap-free cursor).
 * - Every effective change (one that altered a row as other devices see it) gets a new seq and
 *   moves the row's `lastSeq` to it. Changes that lost, or changed nothing, get no seq.
 * - push() returns, in `rows`, the state after the push of every pushed row the device cannot
 *   derive from its own write and what it had applied: a row where a write lost (whole or a column)
 *   or a conflict was recorded, a 'duplicate' (its first ack may have been lost), a row brought back
 *   from a delete, a row another device changed after the change's base (or the push's cursor), and
 *   every pushed row under 'server-wins', 'client-wins' or a resolver. Nothing else (a new row, one
 *   unchanged since the base under clock order): the common path costs nothing extra.
 * - A device id belongs to the user who first used it in a project: touchDevice() for another user
 *   changes nothing and returns false.
 * - pull() returns the current state of the rows in the given scopes whose lastSeq is above the
 *   cursor, one entry per row, in lastSeq order, at most `limit`. Deleted rows come back as deletes,
 *   except with `fresh` at cursor 0 (a device that holds none of the scopes' rows). `remaining`
 *   counts the rows above the returned cursor, deletes included, so that the rows done plus those
 *   remaining make the same total on every page of one catch-up. When nothing more is left, the
 *   cursor returned is the project's highest committed seq.
 * - Compaction forgets change-log entries, conflicts and deleted rows' tombstones older than their
 *   retention, and raises the project's horizon to the highest seq of a tombstone it removed. A
 *   pull whose cursor is below the horizon (and that is not fresh at 0), or a later page of one
 *   catch-up (`continuing`) whose `since` is, starts over from 0 with `resync`, and the device
 *   drops every row the catch-up did not send. Its pages send deletes as any catch-up does: a row sent on one page may
 *   be deleted before the last.
 * - rows() reads the current state of one table's rows in one scope, in row id order, after a row
 *   id and at most `limit`, or the rows named by `ids`; deleted rows only when asked for.
 * - A service key is stored by its hash only; serviceKey() finds it by id, with the project it
 *   belongs to, and deleteServiceKey() removes it for good.
 * - No read or write crosses a project, and pull() never returns a row outside the scopes asked for.
 */
import type { ClientChange, PushResult, RowChange } from '../../lib/protocol/change.js';
import type { Retention } from '../limits.js';
import type { Conflict, Resolver, Strategy } from '../merge.js';

export interface Project {
  readonly id: string;
  /** The HS256 secret user tokens for this project are signed with. */
  readonly secret: string;
  readonly strategy: Strategy;
  /** Tables whose rows every user of the project shares; all others are private to each user. */
  readonly sharedTables: readonly string[];
  readonly createdAt: number;
}

export interface NewProject {
  readonly id: string;
  readonly secret: string;
  readonly strategy?: Strategy;
  readonly sharedTables?: readonly string[];
}

export interface PushInput {
  readonly projectId: string;
  readonly userId: string;
  readonly deviceId: string;
  /** The highest seq the device had applied when it pushed: the base of a change that has none. */
  readonly deviceCursor: number;
  /** Changes already parsed and checked (server/push.ts); a bad one never reaches the store. */
  readonly changes: readonly ClientChange[];
  readonly resolver?: Resolver | undefined;
}

export interface PushOutput {
  /** One per change, in push order. */
  readonly results: readonly PushResult[];
  /** The effective row changes, one per row touched, in seq order: what to fan out. */
  readonly effective: readonly ScopedRowChange[];
  readonly conflicts: readonly Conflict[];
  /** The server's state of every pushed row the device cannot derive (see the contract): the ack's rows. */
  readonly rows: readonly RowChange[];
}

/** A row change with the scope it belongs to, for the fan-out to route. */
export interface ScopedRowChange extends RowChange {
  readonly scope: string;
}

export interface PullInput {
  readonly projectId: string;
  readonly scopes: readonly string[];
  readonly cursor: number;
  readonly limit: number;
  /** The device holds no row of these scopes (Hello.fresh): at cursor 0, deleted rows may be left out. */
  readonly fresh?: boolean;
  /**
   * A later page of one catch-up (its cursor is one the store returned). Its cursor is not checked
   * against the tombstone horizon; `since` is, when given.
   */
  readonly continuing?: boolean;
  /**
   * With `continuing`: the cursor the device held when this catch-up began. A compaction during
   * the catch-up may have forgotten deletes of rows it held then: when the horizon has risen above
   * `since`, the page starts a re-sync. A fresh device's catch-up and a re-sync give none: what
   * they hold came from this catch-up, and is alive or deleted since (a tombstone too new to go).
   */
  readonly since?: number;
  /**
   * What the previous page of this catch-up said remained. The store then counts down from it (by
   * the rows of this page) instead of counting again: a count reads every remaining row's index
   * entry, so counting on each page would make a catch-up quadratic. Rows committed since that
   * count are sent all the same, but not counted.
   */
  readonly remaining?: number;
}

export interface PullOutput {
  readonly changes: readonly RowChange[];
  readonly cursor: number;
  readonly hasMore: boolean;
  /** Rows still to come after this batch. */
  readonly remaining: number;
  /** The cursor asked for was below the tombstone horizon: this page starts a re-sync from 0. */
  readonly resync?: true;
}

export interface CompactionResult {
  /** Change-log entries, conflicts and tombstones removed. */
  readonly changes: number;
  readonly conflicts: number;
  readonly tombstones: number;
}

export interface DeviceContact {
  readonly projectId: string;
  readonly userId: string;
  readonly deviceId: string;
  readonly cursor?: number;
  readonly online?: boolean;
}

export interface DeviceRecord {
  readonly projectId: string;
  readonly userId: string;
  readonly deviceId: string;
  readonly cursor: number;
  readonly online: boolean;
  readonly firstSeen: number;
  readonly lastSeen: number;
}

export interface RowsInput {
  readonly projectId: string;
  readonly scope: string;
  readonly table: string;
  /** Rows whose id sorts after this one (the last id of the previous page). */
  readonly after?: string;
  /** Only these rows (at most `limit` of them), instead of a page. */
  readonly ids?: readonly string[];
  readonly limit: number;
  /** Deleted rows too, as deletes (their tombstones, while kept). */
  readonly includeDeleted?: boolean;
}

export interface RowsOutput {
  /** In row id order. */
  readonly rows: readonly RowChange[];
  /** More rows follow the last one returned. */
  readonly hasMore: boolean;
}

/** A backend's key to one project (server/backend.ts). The key itself is never stored, only its hash. */
export interface ServiceKey {
  readonly id: string;
  readonly projectId: string;
  readonly name: string;
  readonly createdAt: number;
}

export interface StoredServiceKey extends ServiceKey {
  /** SHA-256 of the whole key, hex. */
  readonly hash: string;
}

export interface Store {
  createProject(project: NewProject): Promise<Project>;
  getProject(id: string): Promise<Project | null>;
  /**
   * Records a user and device on first contact and keeps last-seen, cursor and online current.
   * False (and nothing changed) when the device id is another user's.
   */
  touchDevice(contact: DeviceContact): Promise<boolean>;
  listDevices(projectId: string): Promise<DeviceRecord[]>;
  push(input: PushInput): Promise<PushOutput>;
  pull(input: PullInput): Promise<PullOutput>;
  /** One table's rows in one scope, as they stand (see the contract). */
  rows(input: RowsInput): Promise<RowsOutput>;
  createServiceKey(key: Omit<StoredServiceKey, 'createdAt'>): Promise<ServiceKey>;
  /** The key with this id, in whichever project, or null. */
  serviceKey(id: string): Promise<StoredServiceKey | null>;
  listServiceKeys(projectId: string): Promise<ServiceKey[]>;
  /** False when the project has no key with this id. */
  deleteServiceKey(projectId: string, id: string): Promise<boolean>;
  /** The project's highest committed seq. */
  currentSeq(projectId: string): Promise<number>;
  /**
   * Removes what is older than its retention at `now` (default: the present; see the contract),
   * in short steps that never hold up requests for long.
   */
  compact(retention: Retention, now?: number): Promise<CompactionResult>;
  close(): Promise<void>;
}

/** The scope a row lives in: shared tables in 'shared', everything else in the user's own scope. */
export function scopeOf(project: Project, table: string, userId: string): string {
  return project.sharedTables.includes(table) ? 'shared' : `user:${userId}`;
}

/** The scopes a user's devices read. */
export function scopesOf(userId: string): string[] {
  return ['shared', `user:${userId}`];
}
