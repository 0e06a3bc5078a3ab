/**
 * The default Connector (./connection.ts): one attempt over a plain WebSocket, the platform's
 * (browsers, workers, Node 22) or the constructor given (Node 20: the `ws` package).
 *
 * Why not partysocket: it is a reconnecting socket, and the loop now owns reconnection (one back-off
 * that also covers token failures, refused pushes and malformed frames, and says when it retries).
 * Used for a single attempt it would only add a second state machine (its own retry count, message
 * queue and timers, an error event that also dispatches a close) to keep from reconnecting, and
 * nothing the contract needs that a WebSocket lacks but an open timeout, which is a timer here.
 */
import type { Connection, ConnectionHandlers, Connector } from './connection.js';

/** How long an attempt may take to open before it counts as failed (a black-holed network). */
const OPEN_TIMEOUT_MS = 10_000;
/** What onClose reports when the socket never reported a close of its own (cut, never opened). */
const ABNORMAL = 1006;

interface SocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: string, listener: (event: { data?: unknown; code?: number; reason?: string }) => void): void;
}
type SocketConstructor = new (url: string) => SocketLike;

const OPEN = 1;

export function webSocketConnector(WebSocketImpl?: unknown, openTimeoutMs = OPEN_TIMEOUT_MS): Connector {
  return (url: string, handlers: ConnectionHandlers): Connection => {
    const Impl = (WebSocketImpl ?? (globalThis as { WebSocket?: unknown }).WebSocket) as SocketConstructor | undefined;
    let ended = false;
    let timer: ReturnType<typeof setTimeout> | null = null;
    const end = (code: number, reason: string): void => {
      if (ended) return;
      ended = true;
      if (timer) clearTimeout(timer);
      // Asynchronous, as a socket's own close: a connector call returns before any callback.
      queueMicrotask(() => handlers.onClose(code, reason));
    };
    let socket: SocketLike | null = null;
    try {
      if (!Impl) throw new Error('there is no WebSocket here: pass the `WebSocket` option (Node: the ws package)');
      socket = new Impl(url);
    } catch (error) {
      end(ABNORMAL, error instanceof Error ? error.message : String(error));
    }
    if (socket) {
      const opened = socket;
      timer = setTimeout(() => {
        end(ABNORMAL, 'timed out opening the connection');
        closeQuietly(opened);
      }, openTimeoutMs);
      opened.addEventListener('open', () => {
        if (ended) return;
        if (timer) clearTimeout(timer);
        timer = null;
        handlers.onOpen();
      });
      opened.addEventListener('message', (event) => {
        if (!ended) handlers.onMessage(typeof event.data === 'string' ? event.data : String(event.data));
      });
      opened.addEventListener('close', (event) => end(event.code ?? ABNORMAL, event.reason ?? ''));
      // An error is always followed by a close, which reports it.
      opened.addEventListener('error', () => undefined);
    }
    return {
      send(frame) {
        if (!ended && socket?.readyState === OPEN) socket.send(frame);
      },
      close(code, reason) {
        if (ended) return;
        ended = true;
        if (timer) clearTimeout(timer);
        if (socket) closeQuietly(socket, code, reason);
      },
    };
  };
}

/** Closes a socket in any state; a browser throws on a code it does not allow, which is no matter here. */
function closeQuietly(socket: SocketLike, code?: number, reason?: string): void {
  try {
    socket.close(code, reason);
  } catch {
    socket.close();
  }
}
