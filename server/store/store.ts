/**
 * Where the sync server keeps its data: one interface, one implementation per database, and one
 * conformance suite (test/store-conformance.ts) that every implementation passes.
 *
 * The contract every implementation guarantees:
 * - push() is atomic: every change of the batch is merged and committed in one transaction, or
 *   none is, and it resolves only after that commit. It never acknowledges what it did not store.
 * - push() is idempotent by change id within a project: a change id seen before yields outcome
 *   'duplicate' with the seq it got the first time, and changes nothing.
 * - seq numbers are assigned per project inside the committing transaction, under a per-project
 *   lock. Commit order therefore equals seq order, and a reader never sees seq n+1 committed
 *   before seq n (the gap-free cursor).
 * - Every effective change (one that altered a row as other devices see it) gets a new seq and
 *   moves the row's `lastSeq` to it. Changes that lost, or changed nothing, get no seq.
 * - pull() returns the current state of the rows in the given scopes whose lastSeq is above the
 *   cursor, one entry per row, in lastSeq order, at most `limit`. Deleted rows come back as deletes,
 *   except for a cursor of 0 (a device that never had them). When nothing more is left, the cursor
 *   returned is the project's highest committed seq.
 * - No read or write crosses a project, and pull() never returns a row outside the scopes asked for.
 */
import type { ClientChange, PushResult, RowChange } from '../../lib/protocol/change.js';
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
  /** The highest seq the device had applied when it pushed (for 'server-wins'). */
  readonly deviceCursor: number;
  readonly changes: readonly ClientChange[];
  readonly resolver?: Resolver | undefined;
}

export interface PushOutput {
  /** One per change, in push order. */
  readonly results: readonly PushResult[];
  /** The effective row changes, one per row touched, in seq order: what to fan out. */
  readonly effective: readonly ScopedRowChange[];
  readonly conflicts: readonly Conflict[];
  /**
   * The current state of each row where a pushed write lost (whole or in part), for the pushing
   * device: no new seq will bring it, since the row did not change.
   */
  readonly settled: readonly RowChange[];
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
}

export interface PullOutput {
  readonly changes: readonly RowChange[];
  readonly cursor: number;
  readonly hasMore: boolean;
  /** Rows still to come after this batch. */
  readonly remaining: number;
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

export interface Store {
  createProject(project: NewProject): Promise<Project>;
  getProject(id: string): Promise<Project | null>;
  /** Records a user and device on first contact and keeps last-seen, cursor and online current. */
  touchDevice(contact: DeviceContact): Promise<void>;
  listDevices(projectId: string): Promise<DeviceRecord[]>;
  push(input: PushInput): Promise<PushOutput>;
  pull(input: PullInput): Promise<PullOutput>;
  /** The project's highest committed seq. */
  currentSeq(projectId: string): Promise<number>;
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
