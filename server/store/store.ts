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
 * - A project's signing keys verify its user tokens: a token names its key by `kid`, one without a
 *   kid is the key `default` (the project's first, made with it from its secret). A revoked key is
 *   never among `Project.keys` again.
 * - deleteUserData() removes a user's private rows, change log, conflicts and devices, and gives
 *   the deletion a seq of its own above which the user's scope starts over: a device of the user
 *   whose cursor is below it catches up with a re-sync, and drops the rows that are gone.
 * - logOutcomes() keeps what names a duplicate or rejected change and why, never a rejected
 *   change's values; changes() lists them with the logged changes, and compaction forgets them
 *   with the change log's entries.
 * - The operators' reads (stats, users, changes, conflicts, activity, row history) never scan the
 *   change log to count: counts come from the per-minute activity the server adds as it goes.
 * - No read or write crosses a project, and pull() never returns a row outside the scopes asked for.
 */
import type { DeviceStatus } from '../../lib/protocol/up.js';
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
  /** The keys that verify its user tokens now (revoked keys are not here). */
  readonly keys: readonly { readonly kid: string; readonly secret: string }[];
}

/** The kid of a project's first key, made from its secret; a token without a kid names it. */
export const DEFAULT_KID = 'default';

/** A signing key as operators see it: never its secret after it was made. */
export interface SigningKey {
  readonly kid: string;
  readonly createdAt: number;
  readonly lastUsedAt: number | null;
  readonly revokedAt: number | null;
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
  /** The seqs the push took: those above `from`, up to `to` (from = to: none). */
  readonly range: SeqRange;
}

/** The seqs of one commit: above `from`, up to and with `to`. */
export interface SeqRange {
  readonly from: number;
  readonly to: number;
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
  /** What the device said of itself (protocol 2), with what the server saw of it. */
  readonly status?: DeviceStatus & { readonly protocolVersion?: number; readonly userAgent?: string };
}

export interface DeviceRecord {
  readonly projectId: string;
  readonly userId: string;
  readonly deviceId: string;
  readonly cursor: number;
  readonly online: boolean;
  readonly firstSeen: number;
  readonly lastSeen: number;
  /** As the device last reported it; null when it never did (protocol version 1). */
  readonly pending: number | null;
  readonly quarantined: number | null;
  readonly appVersion: string | null;
  readonly library: string | null;
  readonly protocolVersion: number | null;
  readonly userAgent: string | null;
}

export interface DeviceQuery {
  readonly userId?: string;
  /** At most this many, most recently seen first (default: all). */
  readonly limit?: number;
}

/** A user of a project, as the devices table knows them. */
export interface UserRecord {
  readonly userId: string;
  readonly devices: number;
  readonly online: number;
  readonly lastSeen: number;
  readonly blocked: boolean;
}

export interface UserQuery {
  /** Users whose id sorts after this one. */
  readonly after?: string;
  /** Users whose id starts with this. */
  readonly prefix?: string;
  readonly limit: number;
}

/** Counts of one project; the daily ones from the activity since `dayStart`. */
export interface ProjectStats {
  readonly projectId: string;
  readonly users: number;
  readonly activeUsers: number;
  readonly devices: number;
  readonly online: number;
  /** Changes the devices report as not yet acknowledged (protocol 2 devices only). */
  readonly pending: number;
  readonly quarantined: number;
  /** The project's highest seq: every effective change it ever committed. */
  readonly seq: number;
  readonly changesToday: number;
  readonly conflictsToday: number;
  readonly rejectedToday: number;
}

/** What happened in one project in one minute, counted as it happened (server/activity.ts). */
export interface ActivitySample {
  readonly projectId: string;
  /** The minute's start, ms since the epoch (a multiple of 60,000). */
  readonly minute: number;
  readonly pushes: number;
  /** Changes pushed, whatever their outcome. */
  readonly changes: number;
  readonly applied: number;
  readonly conflicts: number;
  readonly rejected: number;
  readonly catchUpRows: number;
  /** The most sockets open at once in that minute (added samples keep the larger). */
  readonly connections: number;
}

/** A pushed change as the change log keeps it. */
export interface ChangeRecord {
  readonly changeId: string;
  readonly deviceId: string;
  readonly userId: string;
  readonly table: string;
  readonly row: string;
  readonly op: string;
  readonly values: Record<string, unknown> | null;
  /** '' for a rejected change whose clock could not be read. */
  readonly clock: string;
  /**
   * applied or superseded (the change log); duplicate or rejected (the outcome log: a re-push of a
   * change the log holds, and a change refused, with `message` saying why).
   */
  readonly outcome: string;
  readonly seq: number | null;
  readonly receivedAt: number;
  readonly message: string | null;
}

/**
 * A pushed change that changed nothing and was not logged as a change: a duplicate, or one
 * rejected (its values are never kept, only what names it and why it was refused).
 */
export interface OutcomeRecord {
  readonly projectId: string;
  readonly userId: string;
  readonly deviceId: string;
  readonly changeId: string;
  readonly table: string;
  readonly row: string;
  readonly op: string;
  readonly clock: string;
  readonly outcome: 'duplicate' | 'rejected';
  /** The seq a duplicate got the first time. */
  readonly seq: number | null;
  readonly message: string | null;
}

/** Where a page of changes ends: the next page starts after it (newest first). */
export interface ChangeCursor {
  readonly receivedAt: number;
  readonly deviceId: string;
  readonly changeId: string;
}

export interface ChangeQuery {
  readonly projectId: string;
  readonly table?: string;
  readonly row?: string;
  readonly userId?: string;
  readonly deviceId?: string;
  readonly op?: string;
  readonly outcome?: string;
  /** received at or after (ms) */
  readonly from?: number;
  /** received at or before (ms) */
  readonly to?: number;
  readonly before?: ChangeCursor;
  /** Oldest first instead of newest first (a row's history). */
  readonly ascending?: boolean;
  readonly limit: number;
}

export interface ConflictRecord extends Conflict {
  readonly id: number;
  readonly at: number;
  /** The change whose merge recorded it, and its device and user (null for old records). */
  readonly changeId: string | null;
  readonly deviceId: string | null;
  readonly userId: string | null;
}

export interface ConflictQuery {
  readonly projectId: string;
  readonly table?: string;
  readonly row?: string;
  readonly from?: number;
  readonly to?: number;
  /** Conflicts with a smaller id (the next page, newest first). */
  readonly before?: number;
  readonly changeId?: string;
  readonly limit: number;
}

export interface TableRecord {
  readonly table: string;
  readonly rows: number;
  readonly deleted: number;
}

export interface UserDataDeleted {
  readonly rows: number;
  readonly changes: number;
  readonly conflicts: number;
  readonly devices: number;
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
  /** Only rows whose column holds exactly this value (a text or a number). */
  readonly where?: { readonly column: string; readonly value: string | number };
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
  /** Every project, by id. */
  listProjects(): Promise<Project[]>;
  /** Changes a project's strategy or shared tables; null when there is no such project. */
  updateProject(id: string, change: { readonly strategy?: Strategy; readonly sharedTables?: readonly string[] }): Promise<Project | null>;
  /** Removes a project and everything of it; false when there was none. */
  deleteProject(id: string): Promise<boolean>;
  createSigningKey(projectId: string, kid: string, secret: string): Promise<SigningKey>;
  /** Every key of the project, revoked ones too, oldest first. */
  signingKeys(projectId: string): Promise<SigningKey[]>;
  /** False when the project has no such key, or it was revoked before. */
  revokeSigningKey(projectId: string, kid: string): Promise<boolean>;
  /** A token signed with the key was accepted now (written within a second, with device contacts). */
  signingKeyUsed(projectId: string, kid: string): void;
  /**
   * Records a user and device on first contact and keeps last-seen, cursor and online current.
   * False (and nothing changed) when the device id is another user's.
   */
  touchDevice(contact: DeviceContact): Promise<boolean>;
  listDevices(projectId: string, query?: DeviceQuery): Promise<DeviceRecord[]>;
  /** A page of the project's users, by id. */
  users(projectId: string, query: UserQuery): Promise<UserRecord[]>;
  setBlocked(projectId: string, userId: string, blocked: boolean): Promise<void>;
  isBlocked(projectId: string, userId: string): Promise<boolean>;
  /** See the contract. */
  deleteUserData(projectId: string, userId: string): Promise<UserDataDeleted>;
  stats(projectId: string, dayStart: number): Promise<ProjectStats>;
  /** Adds counts to their minutes (connections: the larger is kept). */
  addActivity(samples: readonly ActivitySample[]): Promise<void>;
  /** The project's minutes in [from, to), oldest first, summed into buckets of `bucketMinutes`. */
  activity(projectId: string, from: number, to: number, bucketMinutes?: number): Promise<ActivitySample[]>;
  /** The logged changes and the logged outcomes (duplicates, rejections), by the query, as one list. */
  changes(query: ChangeQuery): Promise<ChangeRecord[]>;
  /** Keeps duplicates' and rejections' outcomes for the console, as long as the change log's entries. */
  logOutcomes(outcomes: readonly OutcomeRecord[]): Promise<void>;
  conflicts(query: ConflictQuery): Promise<ConflictRecord[]>;
  /** The tables a project has rows in, with their counts. */
  tables(projectId: string): Promise<TableRecord[]>;
  /** The rows whose last change has a seq in the range, in seq order, with their scope (a commit's effective changes, or what is left of them). */
  committed(projectId: string, range: SeqRange): Promise<ScopedRowChange[]>;
  /**
   * For a store several processes share: calls `listener` with the seq range of each commit made
   * by another process (in commit order, at most once each as far as the store can tell; a gap
   * left by a lost notice is the caller's to read with committed()). Resolves to the way to stop.
   */
  watchCommits?(listener: (projectId: string, range: SeqRange) => void, reconnected?: () => void): Promise<() => Promise<void>>;
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
