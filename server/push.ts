/**
 * What a push goes through, over HTTP and over the socket alike: each change parsed and checked on
 * its own (schema, drift cap on its clock), the store's atomic push of those that pass, and the ack
 * that answers it. A change that fails is rejected alone (outcome 'rejected' with its error; nothing
 * of it stored) and the rest of the push goes on, so one bad change never blocks a device's later
 * ones. Each caller then does its own after-commit work (the socket fans out; the HTTP route calls
 * onCommit).
 */
import type { ClientChange, PushResult } from '../lib/protocol/change.js';
import { ClientChangeSchema } from '../lib/protocol/change.js';
import type { Ack } from '../lib/protocol/down.js';
import { ErrorKind } from '../lib/protocol/error-kind.js';
import { HttpPushSchema, LIMITS, PushSchema } from '../lib/protocol/up.js';
import * as v from 'valibot';
import { IdSchema } from '../lib/protocol/values.js';
import { clockCheck } from './clocks.js';
import { issueMessage, ServerError } from './errors.js';
import type { DeviceContact, OutcomeRecord, Project, PushInput, PushOutput, Store } from './store/store.js';

/** A push's changes as the envelope carries them: a list within the count limit, each parsed later on its own. */
const RawChangesSchema = v.pipe(v.array(v.unknown()), v.maxLength(LIMITS.maxChangesPerPush, `at most ${LIMITS.maxChangesPerPush} changes per push`));
/** PushSchema with its changes left unparsed. */
export const PushEnvelopeSchema = v.strictObject({ ...PushSchema.entries, changes: RawChangesSchema });
/** HttpPushSchema with its changes left unparsed. */
export const HttpPushEnvelopeSchema = v.strictObject({ ...HttpPushSchema.entries, changes: RawChangesSchema });

export interface PushRequest extends Omit<PushInput, 'changes'> {
  /** The changes as received, in push order. */
  readonly changes: readonly unknown[];
}

/** What counts pushes and catch-ups as they happen: /metrics (server/metrics.ts), the console (server/activity.ts). */
export interface PushObserver {
  pushed(projectId: string, out: PushOutput, seconds: number): void;
  caughtUp(projectId: string, rows: number): void;
}

/** Every observer, in turn. */
export function observeAll(...observers: readonly PushObserver[]): PushObserver {
  return {
    pushed: (projectId, out, seconds) => {
      for (const observer of observers) observer.pushed(projectId, out, seconds);
    },
    caughtUp: (projectId, rows) => {
      for (const observer of observers) observer.caughtUp(projectId, rows);
    },
  };
}

export async function acceptPush(store: Store, request: PushRequest, metrics?: PushObserver): Promise<{ out: PushOutput; ack: Ack }> {
  const started = performance.now();
  const clockError = clockCheck();
  const valid: ClientChange[] = [];
  // One slot per pushed change: its rejection, or null where the store's result goes.
  const slots: Array<PushResult | null> = request.changes.map((raw) => {
    const parsed = v.safeParse(ClientChangeSchema, raw);
    const error = parsed.success ? clockError(parsed.output) : issueMessage(parsed.issues);
    if (error === null && parsed.success) {
      valid.push(parsed.output);
      return null;
    }
    return { id: idOf(raw), outcome: 'rejected', seq: null, error: { kind: ErrorKind.Invalid, message: error ?? 'invalid change' } };
  });
  const stored = await store.push({ ...request, changes: valid });
  let next = 0;
  const results = slots.map((slot) => slot ?? (stored.results[next++] as PushResult));
  const out: PushOutput = { ...stored, results };
  const ack: Ack = {
    type: 'ack',
    results,
    ...(out.conflicts.length > 0 ? { conflicts: out.conflicts } : {}),
    ...(out.rows.length > 0 ? { rows: out.rows } : {}),
  };
  metrics?.pushed(request.projectId, out, (performance.now() - started) / 1000);
  await logOutcomes(store, request, results);
  return { out, ack };
}

/**
 * The duplicates and rejections of a push, for the console's list of changes (the change log
 * keeps neither). After the commit, and never in the ack's way: a failure to keep them is said on
 * stderr, and the ack goes out.
 */
async function logOutcomes(store: Store, request: PushRequest, results: readonly PushResult[]): Promise<void> {
  const outcomes = results.flatMap((result, i): OutcomeRecord[] => {
    if (result.outcome !== 'duplicate' && result.outcome !== 'rejected') return [];
    const raw = request.changes[i];
    const field = (name: string): string => {
      const value = typeof raw === 'object' && raw !== null ? (raw as Record<string, unknown>)[name] : undefined;
      return typeof value === 'string' ? value.slice(0, 128) : '';
    };
    return [{
      projectId: request.projectId, userId: request.userId, deviceId: request.deviceId, changeId: result.id,
      table: field('table'), row: field('row'), op: field('op'), clock: field('clock'),
      outcome: result.outcome, seq: result.seq, message: result.error?.message.slice(0, 500) ?? null,
    }];
  });
  if (outcomes.length === 0) return;
  try {
    await store.logOutcomes(outcomes);
  } catch (error) {
    console.error(JSON.stringify({ event: 'error', kind: ErrorKind.Internal, message: `the outcomes of a push were not kept for the console: ${String(error)}` }));
  }
}

/**
 * The id of a change too malformed to parse, so the device can match the rejection: '' when it has
 * none the ack may carry (an ack naming a malformed id would itself fail the protocol's schema).
 */
function idOf(raw: unknown): string {
  const id = typeof raw === 'object' && raw !== null ? (raw as { id?: unknown }).id : undefined;
  return v.is(IdSchema, id) ? id : '';
}

/** The prefix of the devices the server writes as for each user (server/backend.ts): no device may claim one. */
export const SERVER_DEVICE_PREFIX = 'server-';

/**
 * A device's contact (a hello, or a push over HTTP), recorded by Store.touchDevice: refused for a
 * device id bound to another user, and for a server device's id, which a user could otherwise read
 * in the clocks of the server's writes and push as, claiming change ids the backend means to use.
 */
export async function claimDevice(store: Store, contact: DeviceContact): Promise<void> {
  if (contact.deviceId.startsWith(SERVER_DEVICE_PREFIX)) {
    throw new ServerError(ErrorKind.Auth, `device ids starting with ${SERVER_DEVICE_PREFIX} are the server's own: the backend API writes as them`);
  }
  if (!(await store.touchDevice(contact))) throw anotherUsersDevice(contact.deviceId);
}

/** The refusal of a hello or push naming a device id that Store.touchDevice found bound to another user. */
export function anotherUsersDevice(deviceId: string): ServerError {
  return new ServerError(ErrorKind.Auth, `device ${deviceId} belongs to another user of this project: a device id is bound to the user who first used it`);
}

/** The project named in a URL; kind not-found when there is none. */
export async function knownProject(store: Store, id: string): Promise<Project> {
  const project = await findProject(store, id);
  if (!project) throw new ServerError(ErrorKind.NotFound, `no such project: ${id}`);
  return project;
}

/** The project named in a URL, or null when there is none (a name that is not an id included). */
export async function findProject(store: Store, id: string): Promise<Project | null> {
  return v.is(IdSchema, id) ? store.getProject(id) : null;
}
