/**
 * User tokens: JWT, HS256, signed with the project's secret by the app's own backend (or, in dev
 * mode, by this server). Claims: `sub` (the user id), `project` (the project id), `exp`.
 * A missing, expired, forged or other-project token is refused with kind 'auth'.
 */
import { sign, verify } from 'hono/jwt';
import { ErrorKind } from '../lib/protocol/error-kind.js';
import { ServerError } from './errors.js';
import type { Project } from './store/store.js';

export interface User {
  readonly userId: string;
  readonly projectId: string;
}

const USER_ID = /^[A-Za-z0-9_.@:-]{1,128}$/;

export async function mintUserToken(project: Project, userId: string, ttlSeconds = 24 * 3600): Promise<string> {
  if (!USER_ID.test(userId)) throw new ServerError(ErrorKind.Invalid, 'a user id is 1-128 characters of A-Z a-z 0-9 _ . @ : -');
  const now = Math.floor(Date.now() / 1000);
  return sign({ sub: userId, project: project.id, iat: now, exp: now + ttlSeconds }, project.secret, 'HS256');
}

export async function verifyUserToken(token: string | undefined, project: Project): Promise<User> {
  if (!token) throw new ServerError(ErrorKind.Auth, 'a user token is required');
  let payload: Record<string, unknown>;
  try {
    payload = await verify(token, project.secret, 'HS256');
  } catch (error) {
    const name = error instanceof Error ? error.name : '';
    const reason = name === 'JwtTokenExpired' ? 'the token has expired' : name === 'JwtTokenSignatureMismatched' ? 'the token signature is not valid for this project' : 'the token is not valid';
    throw new ServerError(ErrorKind.Auth, reason);
  }
  if (payload.project !== project.id) throw new ServerError(ErrorKind.Auth, 'the token is for another project');
  if (typeof payload.sub !== 'string' || !USER_ID.test(payload.sub)) throw new ServerError(ErrorKind.Auth, 'the token has no valid subject (user id)');
  if (typeof payload.exp !== 'number') throw new ServerError(ErrorKind.Auth, 'the token has no expiry');
  return { userId: payload.sub, projectId: project.id };
}

/** The token of an `Authorization: Bearer <token>` header. */
export function bearer(header: string | undefined): string | undefined {
  const match = /^Bearer\s+(.+)$/i.exec(header ?? '');
  return match?.[1]?.trim();
}
