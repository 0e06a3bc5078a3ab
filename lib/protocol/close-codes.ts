/**
 * WebSocket close codes of the sync protocol (4000 + the kind's meaning, in the application range).
 * The server closes with them after a refused hello, a hello that did not come in time (invalid),
 * or a token that expired on an open socket (auth); the client does not reconnect after version,
 * and after auth only once, with a token it asks `authToken` for again. A frame over the size limit
 * closes the socket with 1009 (Message Too Big) before it is read.
 */
export const CloseCode = {
  auth: 4001,
  version: 4002,
  invalid: 4003,
  notFound: 4004,
  /** Over a rate or connection limit (kind 'rate-limited'): the client retries after its back-off. */
  rateLimited: 4029,
} as const;
