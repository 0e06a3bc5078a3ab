/** Messages from a device to the server, and the schema every incoming frame is parsed with. */
import * as v from 'valibot';
import { ClientChangeSchema } from './change.js';
import { IdSchema } from './values.js';

/** Documented limits; a violation gets kind 'invalid' (HTTP 413 for sizes and counts) and changes nothing. */
export const LIMITS = {
  /** Bytes in one WebSocket frame or HTTP request body. */
  maxMessageBytes: 1024 * 1024,
  /** Changes in one push. */
  maxChangesPerPush: 1000,
  /** Rows in one batch of changes sent down (a pull's limit is capped to this). */
  maxBatchRows: 5000,
  /**
   * How far ahead of the server's time a pushed clock may be. A device whose clock runs fast would
   * otherwise win every conflict until real time caught up, and drag every clock that sees its
   * stamps forward with it: its push is refused (kind 'invalid') until its clock is set right.
   */
  maxClockAheadMs: 60 * 60 * 1000,
} as const;

/** A seq the device has applied: a whole number a JSON number holds exactly. */
const CursorSchema = v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(Number.MAX_SAFE_INTEGER));

/** A count a device reports: at most a billion, so that sums over many devices stay exact. */
const CountSchema = v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(1_000_000_000, 'a count is at most 1,000,000,000'));
const VersionTextSchema = v.pipe(v.string(), v.maxLength(64, 'a version is at most 64 characters'));

/** What a device says of itself (protocol version 2): shown to operators, never trusted for sync. */
export const DeviceStatusSchema = v.strictObject({
  /** Local changes not yet acknowledged. */
  pending: CountSchema,
  /** Changes kept in the quarantine instead of synced. */
  quarantined: v.optional(CountSchema),
  /** The app's own version, as the app gave it (`appVersion`). */
  appVersion: v.optional(VersionTextSchema),
  /** The pocketsync library's version. */
  library: v.optional(VersionTextSchema),
});
export type DeviceStatus = v.InferOutput<typeof DeviceStatusSchema>;

export const HelloSchema = v.strictObject({
  type: v.literal('hello'),
  protocolVersion: v.pipe(v.number(), v.integer()),
  deviceId: IdSchema,
  cursor: CursorSchema,
  /**
   * The device holds no row of its scopes that came from the server or was pushed to it (a new
   * device, or one after reset): a catch-up from cursor 0 may then leave deleted rows out. Any
   * other device gets every delete since its cursor, cursor 0 included.
   */
  fresh: v.optional(v.boolean()),
  /** The user's token, for sockets (browsers cannot set headers on a WebSocket). */
  token: v.optional(v.string()),
  /** Since version 2. */
  status: v.optional(DeviceStatusSchema),
});

/** The device's status again, when it changed (since version 2); at most about once a second. */
export const StatusSchema = v.strictObject({ type: v.literal('status'), ...DeviceStatusSchema.entries });
export type Status = v.InferOutput<typeof StatusSchema>;

export const PushSchema = v.strictObject({
  type: v.literal('push'),
  /** The highest seq the device had applied when it sent this push (for 'server-wins'). */
  cursor: v.optional(CursorSchema),
  changes: v.pipe(v.array(ClientChangeSchema), v.maxLength(LIMITS.maxChangesPerPush, `at most ${LIMITS.maxChangesPerPush} changes per push`)),
});

export const UpMessageSchema = v.variant('type', [HelloSchema, PushSchema, StatusSchema]);
export type Hello = v.InferOutput<typeof HelloSchema>;
export type Push = v.InferOutput<typeof PushSchema>;
export type UpMessage = v.InferOutput<typeof UpMessageSchema>;

/** The HTTP push body: the same changes, with the device that made them and its cursor. */
export const HttpPushSchema = v.strictObject({
  deviceId: IdSchema,
  cursor: v.optional(CursorSchema),
  changes: PushSchema.entries.changes,
});
export type HttpPush = v.InferOutput<typeof HttpPushSchema>;
