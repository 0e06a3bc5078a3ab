/**
 * WebSocket close codes of the sync protocol (4000 + the kind's meaning, in the application range).
 * The server closes with them after a refused hello; the client does not reconnect after auth or
 * version, which would be refused the same way.
 */
export const CloseCode = {
  auth: 4001,
  version: 4002,
  invalid: 4003,
  notFound: 4004,
} as const;
