/**
 * The version of the sync protocol (the messages in up.ts and down.ts). A client says which version
 * it speaks in its hello; the server refuses a version it does not speak with kind 'version'.
 *
 * History:
 * - 1 (2026-11): hello, push, ack, changes and error over WebSocket; the same push and pull over HTTP.
 */
export const PROTOCOL_VERSION = 1;
