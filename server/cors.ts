/**
 * Which web pages may call the HTTP API from another origin (the app on :5173 asking the server on
 * :8787 for a dev token, say). The WebSocket needs none of this (browsers do not apply CORS to it);
 * the admin routes never get it.
 */
import type { MiddlewareHandler } from 'hono';
import { cors } from 'hono/cors';

export interface CorsOptions {
  /** Exact origins (`https://app.example.com`), or `*` for any page. */
  readonly origins?: readonly string[];
  /** Also any page served from localhost, 127.0.0.1 or [::1] on any port (dev mode). */
  readonly localhost?: boolean;
}

const LOCALHOST = /^https?:\/\/(localhost|127\.0\.0\.1|\[::1\])(:\d+)?$/;

/** The allowed origin for a request's Origin header, or null (the browser then refuses the answer). */
export function allowedOrigin(options: CorsOptions, origin: string): string | null {
  if (origin === '') return null;
  if (options.origins?.includes('*')) return '*';
  if (options.origins?.includes(origin)) return origin;
  if (options.localhost && LOCALHOST.test(origin)) return origin;
  return null;
}

export function corsMiddleware(options: CorsOptions): MiddlewareHandler {
  return cors({
    origin: (origin) => allowedOrigin(options, origin),
    allowMethods: ['GET', 'POST', 'DELETE', 'OPTIONS'],
    allowHeaders: ['Authorization', 'Content-Type'],
    exposeHeaders: ['Retry-After'],
    maxAge: 600,
  });
}
