/**
 * One device's WebSocket: hello and authentication first, then catch-up, then live.
 *
 *   device → hello { protocolVersion, deviceId, cursor, fresh?, token }
 *   server → changes { ..., hasMore } × n            (catch-up from the cursor, in batches)
 *   server → changes { ..., hasMore: false }         (live, as other devices' changes commit)
 *   device → push { changes }  ⇒  server → ack { results }   (after commit)
 *
 * Nothing but a hello is accepted before authentication; a bad hello (wrong version, bad token, a
 * device id that belongs to another user) gets an error frame and the socket is closed. A bad frame
 * after that (not JSON, no valid type, a malformed push envelope) gets an error frame, is ignored,
 * and the socket stays open: the device may send the next one. A bad change inside a good push is
 * rejected alone in the ack (server/push.ts).
 */
import type { WSContext } from 'hono/ws';
import type { DownMessage } from '../lib/protocol/down.js';
import { CloseCode } from '../lib/protocol/close-codes.js';
import { ErrorKind } from '../lib/protocol/error-kind.js';
import { PROTOCOL_VERSION } from '../lib/protocol/protocol-version.js';
import * as v from 'valibot';
import { HelloSchema, LIMITS, type Hello } from '../lib/protocol/up.js';
import { verifyUserToken, type User } from './auth.js';
import { parse, ServerError } from './errors.js';
import { acceptPush, anotherUsersDevice, PushEnvelopeSchema } from './push.js';
import type { Hub, Subscriber } from './hub.js';
import type { Resolver } from './merge.js';
import { scopesOf, type Project, type Store } from './store/store.js';

export interface SocketDeps {
  readonly store: Store;
  readonly hub: Hub;
  readonly resolver?: Resolver | undefined;
  readonly batchSize: number;
  readonly log: (line: Record<string, unknown>) => void;
}

/** An up frame: a hello, or a push whose changes are parsed one by one later. */
const UpFrameSchema = v.variant('type', [HelloSchema, PushEnvelopeSchema]);

export class SyncSocket {
  readonly #deps: SocketDeps;
  readonly #project: Project;
  readonly #ws: WSContext;
  #user: User | null = null;
  #subscriber: Subscriber | null = null;
  #cursor = 0;
  /** Frames are handled one at a time, in arrival order. */
  #queue: Promise<void> = Promise.resolve();
  #closed = false;

  constructor(deps: SocketDeps, project: Project, ws: WSContext) {
    this.#deps = deps;
    this.#project = project;
    this.#ws = ws;
  }

  message(data: unknown): void {
    this.#queue = this.#queue.then(() => this.#handle(data)).catch((error: unknown) => this.#fail(error));
  }

  closed(): void {
    this.#closed = true;
    if (this.#subscriber) {
      this.#deps.hub.remove(this.#subscriber);
      void this.#deps.store
        .touchDevice({ projectId: this.#project.id, userId: this.#user?.userId ?? '', deviceId: this.#subscriber.deviceId, online: false })
        .catch(() => undefined);
      this.#deps.log({ event: 'disconnect', project: this.#project.id, user: this.#user?.userId, device: this.#subscriber.deviceId });
    }
  }

  async #handle(data: unknown): Promise<void> {
    if (this.#closed) return;
    const text = typeof data === 'string' ? data : data instanceof ArrayBuffer ? Buffer.from(data).toString('utf8') : String(data);
    if (Buffer.byteLength(text) > LIMITS.maxMessageBytes) throw new ServerError(ErrorKind.Invalid, `a frame is at most ${LIMITS.maxMessageBytes} bytes (the limit)`);
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new ServerError(ErrorKind.Invalid, 'the frame is not valid JSON');
    }
    const message = parse(UpFrameSchema, json);
    if (message.type === 'hello') return this.#hello(message);
    if (this.#user === null) throw new ServerError(ErrorKind.Auth, 'say hello with a token first');
    return this.#push(message);
  }

  async #hello(hello: Hello): Promise<void> {
    if (this.#user !== null) throw new ServerError(ErrorKind.Invalid, 'hello was already said');
    if (hello.protocolVersion !== PROTOCOL_VERSION) {
      throw new ServerError(ErrorKind.Version, `this server speaks protocol version ${PROTOCOL_VERSION}, not ${hello.protocolVersion}`);
    }
    const user = await verifyUserToken(hello.token, this.#project);
    const claimed = await this.#deps.store.touchDevice({ projectId: this.#project.id, userId: user.userId, deviceId: hello.deviceId, cursor: hello.cursor, online: true });
    if (!claimed) {
      throw anotherUsersDevice(hello.deviceId);
    }
    this.#user = user;
    this.#cursor = hello.cursor;
    const subscriber: Subscriber = {
      projectId: this.#project.id,
      deviceId: hello.deviceId,
      scopes: new Set(scopesOf(user.userId)),
      send: (message) => this.#send(message),
    };
    this.#subscriber = subscriber;
    // Subscribe before reading, so nothing committed during the catch-up is missed.
    this.#deps.hub.add(subscriber);
    this.#deps.log({ event: 'connect', project: this.#project.id, user: user.userId, device: hello.deviceId, cursor: hello.cursor });
    let cursor = hello.cursor;
    // `fresh` lets the first page leave deletes out; later pages have a cursor above 0.
    const fresh = hello.fresh === true;
    for (;;) {
      const batch = await this.#deps.store.pull({ projectId: this.#project.id, scopes: [...subscriber.scopes], cursor, limit: this.#deps.batchSize, fresh });
      if (this.#closed) return;
      this.#send({ type: 'changes', ...batch });
      cursor = batch.cursor;
      if (!batch.hasMore) break;
    }
    this.#cursor = cursor;
    this.#deps.hub.live(subscriber, cursor);
  }

  async #push(push: v.InferOutput<typeof PushEnvelopeSchema>): Promise<void> {
    const user = this.#user as User;
    const subscriber = this.#subscriber as Subscriber;
    const { out, ack } = await acceptPush(this.#deps.store, {
      projectId: this.#project.id,
      userId: user.userId,
      deviceId: subscriber.deviceId,
      deviceCursor: push.cursor ?? this.#cursor,
      changes: push.changes,
      resolver: this.#deps.resolver,
    });
    this.#send(ack);
    if (out.effective.length > 0) this.#deps.hub.publish(this.#project.id, out.effective, subscriber);
    for (const conflict of out.conflicts) this.#deps.log({ event: 'conflict', project: this.#project.id, ...conflict });
  }

  #fail(error: unknown): void {
    const known = error instanceof ServerError;
    const kind = known ? error.kind : ErrorKind.Internal;
    const message = known ? error.message : 'internal error';
    this.#deps.log({ event: 'error', project: this.#project.id, user: this.#user?.userId, kind, message: known ? message : String(error) });
    this.#send({ type: 'error', kind, message });
    // Before authentication there is nothing to keep the socket open for.
    if (this.#user === null || kind === ErrorKind.Auth || kind === ErrorKind.Version) {
      this.#ws.close(kind === ErrorKind.Auth ? CloseCode.auth : kind === ErrorKind.Version ? CloseCode.version : CloseCode.invalid, kind);
      this.closed();
    }
  }

  #send(message: DownMessage): void {
    if (this.#closed) return;
    this.#ws.send(JSON.stringify(message));
  }
}
