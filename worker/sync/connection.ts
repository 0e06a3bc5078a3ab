/**
 * The sync loop's transport: one connection attempt to the server, injected into SyncLoop so the
 * same loop runs over a real WebSocket in the browser, over `ws` in Node, and over a
 * fault-injecting connection in the chaos suite (test/chaos/).
 *
 * Contract an implementation keeps:
 * - A Connector call starts one attempt and returns at once; it never reconnects by itself. The
 *   loop owns retries (back-off with jitter) and calls the connector again for each attempt.
 * - Exactly one of: `onOpen` then any number of `onMessage` then one `onClose`; or `onClose` alone
 *   (the attempt failed). Nothing is delivered after `onClose`, nor after `close()` was called.
 * - Frames are delivered as the text the server sent, in order; the loop parses and validates them
 *   (lib/protocol/down.ts), so a transport never interprets a frame.
 * - `send` after close, or before open, drops the frame (the loop resends what matters after the
 *   next hello: unacknowledged changes stay in the change log).
 */
export interface ConnectionHandlers {
  onOpen(): void;
  onMessage(frame: string): void;
  /** The attempt ended: `code` is the WebSocket close code (1006 when it never opened or was cut). */
  onClose(code: number, reason: string): void;
}

export interface Connection {
  send(frame: string): void;
  close(code?: number, reason?: string): void;
}

export type Connector = (url: string, handlers: ConnectionHandlers) => Connection;
