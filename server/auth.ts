/**
 * User tokens: JWT, HS256, signed with one of the project's signing keys by the app's own backend
 * (or, in dev mode, by this server). Header `kid`: the key's id (none: the key `default`, the
 * project's first). Claims: `sub` (the user id), `project` (the project id), `exp`.
 * A missing, expired, forged, other-project, too long-lived or revoked-key token is refused with
 * kind 'auth', as is a blocked user's.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { decode, verify } from 'hono/jwt';
import { mintUserToken as mintToken } from '../lib/backend.js';
import { ErrorKind } from '../lib/protocol/error-kind.js';
import { USER_ID, USER_ID_RULE } from '../lib/protocol/values.js';
import { ServerError } from './errors.js';
import { DEFAULT_LIMITS } from './limits.js';
import { DEFAULT_KID, type Project, type Store } from './store/store.js';

export interface User {
  readonly userId: string;
  readonly projectId: string;
  /** The signing key the token was verified with: revoking it closes this user's sockets. */
  readonly kid: string;
  /** When the token stops being valid (ms since the epoch): an open socket is closed then. */
  readonly expiresAt: number;
}

/** How far ahead of this server's clock a token's iat or nbf may be. */
export const CLOCK_SKEW_SECONDS = 60;


/** A token for `userId`, signed with the project's newest key (pocketsync/backend's minting, its kid in the header unless it is `default`). */
export async function mintUserToken(project: Project, userId: string, ttlSeconds = 24 * 3600): Promise<string> {
  if (!USER_ID.test(userId)) throw new ServerError(ErrorKind.Invalid, USER_ID_RULE);
  const key = project.keys[0];
  if (!key) throw new ServerError(ErrorKind.Invalid, `project ${project.id} has no signing key that is not revoked: create one first`);
  return mintToken({ projectId: project.id, kid: key.kid, secret: key.secret, user: userId, ttlSeconds });
}

/**
 * verifyUserToken() for a project of `store`, and then the user's standing: a blocked user is
 * refused, and the key's use is recorded (its "last used").
 */
export async function authenticate(store: Store, token: string | undefined, project: Project, maxLifetimeSeconds: number): Promise<User> {
  const user = await verifyUserToken(token, project, maxLifetimeSeconds);
  if (await store.isBlocked(project.id, user.userId)) throw new ServerError(ErrorKind.Auth, `user ${user.userId} is blocked in this project`);
  store.signingKeyUsed(project.id, user.kid);
  return user;
}

/**
 * The user of a valid token. Its signature is checked first, then its claims: a token whose `exp`
 * is not a number, lies in the past, or lies further ahead than `maxLifetimeSeconds` is refused, as
 * is one whose `iat` or `nbf` lies more than CLOCK_SKEW_SECONDS ahead.
 */
export async function verifyUserToken(token: string | undefined, project: Project, maxLifetimeSeconds = DEFAULT_LIMITS.maxTokenLifetimeSeconds): Promise<User> {
  if (!token) throw new ServerError(ErrorKind.Auth, 'a user token is required');
  let kid: unknown;
  try {
    kid = decode(token).header.kid ?? DEFAULT_KID;
  } catch {
    throw new ServerError(ErrorKind.Auth, 'the token is not valid');
  }
  const key = project.keys.find((k) => k.kid === kid);
  if (!key) throw new ServerError(ErrorKind.Auth, `the token's signing key (kid ${JSON.stringify(kid)}) is revoked or unknown in this project`);
  let payload: Record<string, unknown>;
  try {
    // The expiry is checked below, after the signature, so that a forged token is called forged.
    payload = await verify(token, await hmacKey(key.secret), { alg: 'HS256', exp: false, iat: false, nbf: false });
  } catch (error) {
    const name = error instanceof Error ? error.name : '';
    const reason =
      name === 'JwtTokenSignatureMismatched' ? 'the token signature is not valid for this project'
      : 'the token is not valid';
    throw new ServerError(ErrorKind.Auth, reason);
  }
  if (payload.project !== project.id) throw new ServerError(ErrorKind.Auth, 'the token is for another project');
  if (typeof payload.sub !== 'string' || !USER_ID.test(payload.sub)) throw new ServerError(ErrorKind.Auth, 'the token has no valid subject (user id)');
  const exp = payload.exp;
  if (exp === undefined) throw new ServerError(ErrorKind.Auth, 'the token has no expiry (exp)');
  if (typeof exp !== 'number' || !Number.isFinite(exp)) throw new ServerError(ErrorKind.Auth, 'the token\'s expiry (exp) is not a number of seconds');
  const now = Date.now() / 1000;
  // iat and nbf are the signer's clock: a backend whose clock runs a little ahead still signs valid tokens.
  const { iat, nbf } = payload;
  if (iat !== undefined && (typeof iat !== 'number' || !Number.isFinite(iat) || iat > now + CLOCK_SKEW_SECONDS)) {
    throw new ServerError(ErrorKind.Auth, 'the token was issued in the future (iat)');
  }
  if (nbf !== undefined && (typeof nbf !== 'number' || !Number.isFinite(nbf) || nbf > now + CLOCK_SKEW_SECONDS)) {
    throw new ServerError(ErrorKind.Auth, 'the token is not valid yet (nbf)');
  }
  if (exp <= now) throw new ServerError(ErrorKind.Auth, 'the token has expired');
  if (exp - now > maxLifetimeSeconds) {
    throw new ServerError(ErrorKind.Auth, `the token is valid for longer than this server accepts (exp at most ${maxLifetimeSeconds} s ahead)`);
  }
  return { userId: payload.sub, projectId: project.id, kid: key.kid, expiresAt: exp * 1000 };
}

const keys = new Map<string, Promise<CryptoKey>>();
const MAX_KEYS = 10_000;

/**
 * A project's secret as an HMAC key, imported once: an import costs about as much as a check.
 * (Handed a string, hono/jwt would also read a secret containing "PUBLIC" or "PRIVATE" as a PEM key.)
 */
function hmacKey(secret: string): Promise<CryptoKey> {
  let key = keys.get(secret);
  if (!key) {
    if (keys.size >= MAX_KEYS) keys.clear();
    key = crypto.subtle.importKey('raw', new TextEncoder().encode(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify']);
    keys.set(secret, key);
  }
  return key;
}

/** Whether `given` is `expected`, in time that does not depend on where they differ. */
export function sameSecret(given: string | undefined, expected: string): boolean {
  const digest = (text: string) => createHash('sha256').update(text).digest();
  return given !== undefined && timingSafeEqual(digest(given), digest(expected));
}

/** The token of an `Authorization: Bearer <token>` header. */
export function bearer(header: string | undefined): string | undefined {
  const match = /^Bearer\s+(.+)$/i.exec(header ?? '');
  return match?.[1]?.trim();
}
