/**
 * The chaos suite's transport: a real `ws` WebSocket to the server on 127.0.0.1 behind the sync
 * loop's Connection contract (worker/sync/connection.ts), with faults the schedule arms: cut the
 * connection after the n-th frame either way, cut on the next ack the server sends (the server has
 * processed the push, the device never hears of it), delay down frames (in order), and cut now.
 */
import WebSocket from 'ws';
import type { Connection, ConnectionHandlers, Connector } from '../../worker/sync/connection.js';

export type Fault =
  | { readonly kind: 'cut-up'; readonly after: number }
  | { readonly kind: 'cut-down'; readonly after: number }
  | { readonly kind: 'drop-ack' }
  | { readonly kind: 'delay'; readonly ms: number; readonly frames: number };

export interface TransportStats {
  connections: number;
  cuts: number;
  droppedAcks: number;
  delayedFrames: number;
}

/** One device's faulty link: faults armed apply to the current connection, or the next one. */
export class FaultyTransport {
  readonly stats: TransportStats = { connections: 0, cuts: 0, droppedAcks: 0, delayedFrames: 0 };
  #armed: Fault[] = [];
  #current: FaultyConnection | null = null;

  readonly connect: Connector = (url, handlers) => {
    this.stats.connections++;
    const connection = new FaultyConnection(url, handlers, this);
    this.#current = connection;
    return connection;
  };

  arm(fault: Fault): void {
    this.#armed.push(fault);
  }

  /** Every armed fault is forgotten (quiescence). */
  disarm(): void {
    this.#armed = [];
  }

  get armed(): readonly Fault[] {
    return this.#armed;
  }

  take(kind: Fault['kind']): Fault | undefined {
    const at = this.#armed.findIndex((f) => f.kind === kind);
    if (at < 0) return undefined;
    return this.#armed.splice(at, 1)[0];
  }

  peek(kind: Fault['kind']): Fault | undefined {
    return this.#armed.find((f) => f.kind === kind);
  }

  replace(old: Fault, next: Fault | null): void {
    const at = this.#armed.indexOf(old);
    if (at < 0) return;
    if (next) this.#armed[at] = next;
    else this.#armed.splice(at, 1);
  }

  /** Cuts the live connection now (as a network drop: close code 1006). */
  cut(): void {
    this.#current?.cut();
  }
}

class FaultyConnection implements Connection {
  readonly #ws: WebSocket;
  readonly #handlers: ConnectionHandlers;
  readonly #transport: FaultyTransport;
  #ended = false;
  #opened = false;
  #notified = false;
  #closedByLoop = false;
  /** Down frames are delivered in order, each after the one before it. */
  #delivery: Promise<void> = Promise.resolve();

  constructor(url: string, handlers: ConnectionHandlers, transport: FaultyTransport) {
    this.#handlers = handlers;
    this.#transport = transport;
    this.#ws = new WebSocket(url);
    this.#ws.on('open', () => {
      if (this.#ended) return;
      this.#opened = true;
      handlers.onOpen();
    });
    this.#ws.on('message', (data: Buffer) => this.#down(data.toString('utf8')));
    this.#ws.on('close', (code: number, reason: Buffer) => {
      // Frames still held back by a delay arrive before the close, as on a real socket.
      void this.#delivery.then(() => this.#end(code, reason.toString('utf8')));
    });
    this.#ws.on('error', () => undefined);
  }

  send(frame: string): void {
    if (this.#ended || !this.#opened || this.#ws.readyState !== WebSocket.OPEN) return;
    const cut = this.#transport.peek('cut-up');
    if (cut && cut.kind === 'cut-up') {
      if (cut.after <= 0) {
        this.#transport.replace(cut, null);
        this.cut();
        return;
      }
      this.#transport.replace(cut, { kind: 'cut-up', after: cut.after - 1 });
    }
    this.#ws.send(frame);
  }

  close(code?: number, reason?: string): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#closedByLoop = true;
    try {
      this.#ws.close(code ?? 1000, reason);
    } catch {
      this.#ws.terminate();
    }
  }

  cut(): void {
    if (this.#ended) return;
    this.#transport.stats.cuts++;
    this.#ws.terminate();
    this.#end(1006, 'cut');
  }

  #down(frame: string): void {
    if (this.#ended) return;
    if (frame.startsWith('{"type":"ack"') || /^\{\s*"type"\s*:\s*"ack"/.test(frame)) {
      if (this.#transport.take('drop-ack')) {
        this.#transport.stats.droppedAcks++;
        this.cut();
        return;
      }
    }
    const cut = this.#transport.peek('cut-down');
    if (cut && cut.kind === 'cut-down') {
      if (cut.after <= 0) {
        this.#transport.replace(cut, null);
        this.cut();
        return;
      }
      this.#transport.replace(cut, { kind: 'cut-down', after: cut.after - 1 });
    }
    const delay = this.#transport.peek('delay');
    let ms = 0;
    if (delay && delay.kind === 'delay') {
      ms = delay.ms;
      this.#transport.stats.delayedFrames++;
      this.#transport.replace(delay, delay.frames > 1 ? { ...delay, frames: delay.frames - 1 } : null);
    }
    this.#delivery = this.#delivery.then(async () => {
      if (ms > 0) await new Promise((resolve) => setTimeout(resolve, ms));
      if (!this.#ended) this.#handlers.onMessage(frame);
    });
  }

  #end(code: number, reason: string): void {
    this.#ended = true;
    if (this.#notified) return;
    this.#notified = true;
    // A close the loop asked for is not reported back (the contract: nothing after close()).
    if (!this.#closedByLoop) this.#handlers.onClose(code, reason);
  }
}
