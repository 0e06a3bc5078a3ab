/**
 * What the server allows one client, one user and one project, and how long it keeps what it no
 * longer needs. Every limit is enforced before the work it protects (a frame's size before it is
 * buffered, a hello's deadline before it is read, a rate before the store is asked), and refused
 * with a kind: 'rate-limited' (HTTP 429, close code 4029) or 'invalid' (413 / close code 1009 for
 * sizes). Each has a flag and an environment variable in server/cli.ts.
 */
import { RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible';

export interface ServerLimits {
  /** A socket that has not said hello by then is closed (kind 'invalid'). */
  readonly helloTimeoutMs: number;
  /** Open sockets from one client address; more are refused at the upgrade (HTTP 429). */
  readonly maxConnectionsPerAddress: number;
  /** Open sockets of one user in a project; a hello over it is refused (close code 4029). */
  readonly maxConnectionsPerUser: number;
  /** Hellos one user may say per minute in a project. */
  readonly hellosPerMinute: number;
  /** Pushes (socket or HTTP) and pulls (HTTP) one user may make per second in a project. */
  readonly requestsPerSecond: number;
  /** An HTTP request's headers must arrive within this. */
  readonly headersTimeoutMs: number;
  /** A whole HTTP request (headers and body) must arrive within this. */
  readonly requestTimeoutMs: number;
  /** The longest a user token may still be valid for when it is presented (its exp - now). */
  readonly maxTokenLifetimeSeconds: number;
  /** Wrong admin keys one client address may try per minute (sign-in and Authorization alike). */
  readonly adminKeyFailuresPerMinute: number;
}

export const DEFAULT_LIMITS: ServerLimits = {
  helloTimeoutMs: 10_000,
  maxConnectionsPerAddress: 1_000,
  maxConnectionsPerUser: 50,
  hellosPerMinute: 120,
  requestsPerSecond: 100,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  maxTokenLifetimeSeconds: 30 * 24 * 3600,
  adminKeyFailuresPerMinute: 5,
};

/**
 * How long the store keeps history. A device must re-push an unacknowledged change within
 * `changeLogMs` for it to be recognised as a duplicate; a device whose cursor is older than the
 * tombstone horizon catches up with a full re-sync of its scopes (Changes.resync).
 */
export interface Retention {
  /** Change-log entries (the idempotency record) older than this are removed. */
  readonly changeLogMs: number;
  /** Recorded conflicts older than this are removed. */
  readonly conflictsMs: number;
  /** Rows deleted longer ago than this are forgotten (their tombstones removed). */
  readonly tombstonesMs: number;
  /** How often compaction runs. */
  readonly compactEveryMs: number;
}

const DAY = 24 * 3600 * 1000;

export const DEFAULT_RETENTION: Retention = {
  changeLogMs: 7 * DAY,
  conflictsMs: 30 * DAY,
  tombstonesMs: 30 * DAY,
  compactEveryMs: 60_000,
};

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: DAY };

/** A duration like `250ms`, `10s`, `5m`, `12h`, `30d` (a bare number is milliseconds), in ms. */
export function parseDuration(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text.trim());
  if (!match) throw new Error(`not a duration: ${JSON.stringify(text)} (say 250ms, 10s, 5m, 12h or 30d)`);
  return Math.round(Number(match[1]) * UNITS[match[2] ?? 'ms']!);
}

/**
 * Failures per key in a fixed window, counted and checked synchronously: a guess is refused or
 * counted before any other request runs, so guesses sent all at once cannot all be tried before
 * the first is counted (RateLimiter's checks are asynchronous, which leaves that gap open).
 */
export class FailureLimit {
  readonly #max: number;
  readonly #windowMs: number;
  readonly #failures = new Map<string, { count: number; resetAt: number }>();

  constructor(max: number, windowMs: number) {
    this.#max = max;
    this.#windowMs = windowMs;
  }

  /** 0 while the key may try; otherwise the milliseconds until it may again. */
  blocked(key: string, now = Date.now()): number {
    const entry = this.#failures.get(key);
    if (!entry || entry.resetAt <= now) return 0;
    return entry.count >= this.#max ? entry.resetAt - now : 0;
  }

  failed(key: string, now = Date.now()): void {
    if (this.#failures.size > 100_000) for (const [k, e] of this.#failures) if (e.resetAt <= now) this.#failures.delete(k);
    const entry = this.#failures.get(key);
    if (!entry || entry.resetAt <= now) this.#failures.set(key, { count: 1, resetAt: now + this.#windowMs });
    else entry.count++;
  }
}

/**
 * A per-key rate: `points` per `seconds` (rate-limiter-flexible's in-memory limiter, which forgets a
 * key once its window has passed). take() spends one, or says how long until one is back.
 */
export class RateLimiter {
  readonly #limiter: RateLimiterMemory;

  constructor(points: number, seconds: number) {
    this.#limiter = new RateLimiterMemory({ points, duration: seconds });
  }

  /** 0 when allowed; otherwise the milliseconds until the next one is (nothing was spent). */
  async take(key: string): Promise<number> {
    try {
      await this.#limiter.consume(key);
      return 0;
    } catch (refused) {
      if (refused instanceof RateLimiterRes) return Math.max(1, refused.msBeforeNext);
      throw refused;
    }
  }
}
