/**
 * The operators' sign-in: the admin key, once, for a session cookie the console's requests carry.
 *
 *   POST   /v1/console/session  { key }  → Set-Cookie (HttpOnly, SameSite=Strict, Path=/, 12 h)
 *   GET    /v1/console/session           → { expiresAt } of the session, or kind 'auth'
 *   DELETE /v1/console/session           → signed out (the session ends on the server too)
 *
 * Every admin route (/v1/admin/*, /metrics) takes either `Authorization: Bearer <admin key>`
 * (machines, scripts, Prometheus) or a live session; with a session, a request that changes
 * something must come from a page of this server's own origin (its Origin header), so another
 * site cannot make an operator's browser act. The key is compared in constant time, and failed
 * sign-ins are limited per client address.
 *
 * Sessions live in this process's memory: a restart signs everyone out.
 */
import type { HttpBindings } from '@hono/node-server';
import type { Context, Hono, MiddlewareHandler } from 'hono';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import * as v from 'valibot';
import { ErrorKind } from '../lib/protocol/error-kind.js';
import { randomHex } from '../worker/random.js';
import { bearer, sameSecret } from './auth.js';
import { parse, ServerError } from './errors.js';
import { DEFAULT_LIMITS, FailureLimit } from './limits.js';

export const SESSION_COOKIE = 'pocketsync_admin';
export const SESSION_MS = 12 * 3600 * 1000;
/** Failed sign-ins one client address may make per minute. */
export const SIGN_IN_FAILURES_PER_MINUTE = DEFAULT_LIMITS.adminKeyFailuresPerMinute;
const MAX_SESSIONS = 10_000;

const SignInSchema = v.strictObject({ key: v.pipe(v.string(), v.maxLength(1000, 'a key is at most 1000 characters')) });

export class AdminSessions {
  readonly #sessions = new Map<string, number>();
  readonly #ttlMs: number;
  /** Wrong admin keys per client address, at sign-in and in an Authorization header alike. */
  readonly failures: FailureLimit;

  constructor(ttlMs = SESSION_MS, failuresPerMinute = SIGN_IN_FAILURES_PER_MINUTE) {
    this.#ttlMs = ttlMs;
    this.failures = new FailureLimit(failuresPerMinute, 60_000);
  }

  create(now = Date.now()): { token: string; expiresAt: number } {
    if (this.#sessions.size >= MAX_SESSIONS) this.#sweep(now);
    const token = randomHex(32);
    const expiresAt = now + this.#ttlMs;
    this.#sessions.set(token, expiresAt);
    return { token, expiresAt };
  }

  /** When the session ends, or null when there is none (or it has ended). */
  expiresAt(token: string | undefined, now = Date.now()): number | null {
    if (token === undefined) return null;
    const expiresAt = this.#sessions.get(token);
    if (expiresAt === undefined) return null;
    if (expiresAt <= now) {
      this.#sessions.delete(token);
      return null;
    }
    return expiresAt;
  }

  end(token: string | undefined): void {
    if (token !== undefined) this.#sessions.delete(token);
  }

  #sweep(now: number): void {
    for (const [token, expiresAt] of this.#sessions) if (expiresAt <= now) this.#sessions.delete(token);
    // Still full of live sessions: the oldest go.
    for (const token of this.#sessions.keys()) {
      if (this.#sessions.size < MAX_SESSIONS) break;
      this.#sessions.delete(token);
    }
  }
}

/** Refuses, with kind 'auth', a request that has neither the admin key nor a live session (see above). */
export function adminAccess(adminKey: string, sessions: AdminSessions): MiddlewareHandler {
  return async (c, next) => {
    const authorization = c.req.header('Authorization');
    if (authorization !== undefined) {
      checkKey(c, sessions, bearer(authorization), adminKey, 'the admin key is missing or wrong');
      return next();
    }
    if (sessions.expiresAt(getCookie(c, SESSION_COOKIE)) === null) {
      throw new ServerError(ErrorKind.Auth, 'sign in first: no admin key, and no session (or it has expired)');
    }
    if (c.req.method !== 'GET' && c.req.method !== 'HEAD') {
      checkOrigin(c);
      // A page of another site can send text/plain or a form without asking first, never JSON.
      const hasBody = c.req.header('Content-Length') !== undefined ? c.req.header('Content-Length') !== '0' : c.req.header('Transfer-Encoding') !== undefined;
      if (hasBody && !/^application\/json\b/i.test(c.req.header('Content-Type') ?? '')) {
        throw new ServerError(ErrorKind.Invalid, 'a body must be sent as Content-Type: application/json');
      }
    }
    return next();
  };
}

/** Whether a request that got past adminAccess is still allowed: its key, or its session still live (a stream checks as it goes). */
export function stillAdmin(c: Context, sessions: AdminSessions): boolean {
  return c.req.header('Authorization') !== undefined || sessions.expiresAt(getCookie(c, SESSION_COOKIE)) !== null;
}

export function mountSessions(app: Hono, adminKey: string, sessions: AdminSessions, readJson: (c: Context) => Promise<unknown>): void {
  app.post('/v1/console/session', async (c) => {
    checkOrigin(c);
    const { key } = parse(SignInSchema, await readJson(c));
    checkKey(c, sessions, key, adminKey, 'that is not the admin key');
    const session = sessions.create();
    setCookie(c, SESSION_COOKIE, session.token, {
      httpOnly: true,
      sameSite: 'Strict',
      path: '/',
      secure: isHttps(c),
      maxAge: Math.floor((session.expiresAt - Date.now()) / 1000),
    });
    return c.json({ expiresAt: session.expiresAt });
  });

  app.get('/v1/console/session', (c) => {
    const expiresAt = sessions.expiresAt(getCookie(c, SESSION_COOKIE));
    if (expiresAt === null) throw new ServerError(ErrorKind.Auth, 'not signed in');
    return c.json({ expiresAt });
  });

  app.delete('/v1/console/session', (c) => {
    checkOrigin(c);
    sessions.end(getCookie(c, SESSION_COOKIE));
    deleteCookie(c, SESSION_COOKIE, { path: '/', secure: isHttps(c) });
    return c.body(null, 204);
  });
}

/**
 * The admin key, checked against the address's failures first: from the check to the count of a
 * failure nothing else runs, so however many guesses arrive at once, at most
 * limits.adminKeyFailuresPerMinute of them are tried.
 */
function checkKey(c: Context, sessions: AdminSessions, given: string | undefined, adminKey: string, wrong: string): void {
  const address = clientAddress(c);
  const wait = sessions.failures.blocked(address);
  if (wait > 0) {
    c.header('Retry-After', String(Math.ceil(wait / 1000)));
    throw new ServerError(ErrorKind.RateLimited, `too many wrong admin keys from this address: retry in ${Math.ceil(wait / 1000)} s`);
  }
  if (!sameSecret(given, adminKey)) {
    sessions.failures.failed(address);
    throw new ServerError(ErrorKind.Auth, wrong);
  }
}

/**
 * A request from a page must come from this server's own origin: the Origin's scheme and host are
 * the ones the request was sent to (X-Forwarded-Proto and X-Forwarded-Host behind a proxy).
 * Browsers send Origin with every request that changes something; one without it is no page's.
 */
function checkOrigin(c: Context): void {
  const origin = c.req.header('Origin');
  const host = c.req.header('X-Forwarded-Host') ?? c.req.header('Host') ?? new URL(c.req.url).host;
  const own = `${isHttps(c) ? 'https' : 'http'}://${host}`;
  const originOf = (text: string | undefined): string | null => {
    try {
      return text === undefined ? null : new URL(text).origin;
    } catch {
      return null;
    }
  };
  const given = originOf(origin);
  if (given === null || given !== originOf(own)) {
    throw new ServerError(ErrorKind.Auth, `this request must come from a page of this server (Origin ${origin ?? 'missing'}, not ${own})`);
  }
}

function isHttps(c: Context): boolean {
  return c.req.header('X-Forwarded-Proto') === 'https' || new URL(c.req.url).protocol === 'https:';
}

function clientAddress(c: Context): string {
  return (c.env as Partial<HttpBindings> | undefined)?.incoming?.socket.remoteAddress ?? 'unknown';
}
