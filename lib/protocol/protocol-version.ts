/**
 * The version of the sync protocol (the messages in up.ts and down.ts). A client says which version
 * it speaks in its hello; the server refuses a version it does not speak with kind 'version'.
 *
 * History:
 * - 1 (2026-11): hello, push, ack, changes and error over WebSocket; the same push and pull over HTTP.
 * - 2 (2026-12): the hello may carry the device's `status` (pending and quarantined changes, the
 *   app's and the library's version), and a `status` frame reports it again when it changes. The
 *   operators' console shows it. Version 1 hellos are still served.
 */
export const PROTOCOL_VERSION = 2;

/** Every version this server still serves: a version 1 client simply never reports its status. */
export const SUPPORTED_PROTOCOL_VERSIONS: readonly number[] = [1, 2];
