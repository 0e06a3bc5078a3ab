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
import type { DownMessage } from '../lib/protocol/down.js';
import { CloseCode } from '../lib/protocol/close-codes.js';
import { ErrorKind } from '../lib/protocol/error-kind.js';
import { PROTOCOL_VERSION, SUPPORTED_PROTOCOL_VERSIONS } from '../lib/protocol/protocol-version.js';
import * as v from 'valibot';
import { HelloSchema, LIMITS, StatusSchema, type Hello, type Status } from '../lib/protocol/up.js';
import { authenticate, type User } from './auth.js';
import { parse, ServerError } from './errors.js';
import { acceptPush, claimDevice, findProject, PushEnvelopeSchema, type PushObserver } from './push.js';
import type { Hub, Subscriber } from './hub.js';
import type { RateLimiter, ServerLimits } from './limits.js';
import type { Resolver } from './merge.js';
import type { RowChange } from '../lib/protocol/change.js';
import { scopesOf, type DeviceContact, type Project, type PullOutput, type PushOutput, type Store } from './store/store.js';

export interface SocketDeps {
  readonly store: Store;
  readonly hub: Hub;
  /** Hands a commit's effective changes to the fan-out, in seq order (server.ts). */
  readonly publish: (projectId: string, out: PushOutput, from: Subscriber) => void;
  readonly resolver?: Resolver | undefined;
  readonly batchSize: number;
  readonly limits: ServerLimits;
  /** Hellos per user and project. */
  readonly hellos: RateLimiter;
  /** Frames after the hello (pushes, and anything else a device sends) per user and project. */
  readonly requests: RateLimiter;
  readonly log: (line: Record<string, unknown>) => void;
  readonly metrics?: PushObserver | undefined;
}

/** The side of a WebSocket the server talks to (a `ws` WebSocket). */
export interface Peer {
  send(text: string): void;
  close(code: number, reason: string): void;
  /** Bytes queued to send: the catch-up waits while the device reads slower than the store. */
  readonly bufferedAmount: number;
}

/** An up frame: a hello, a status, or a push whose changes are parsed one by one later. */
const UpFrameSchema = v.variant('type', [HelloSchema, PushEnvelopeSchema, StatusSchema]);

/** The catch-up stops sending while this much is queued for the device, until it has read it. */
const MAX_BUFFERED_BYTES = 4 * LIMITS.maxMessageBytes;
/** Frames a socket may have waiting to be handled; one more closes it (4029). */
const MAX_WAITING_FRAMES = 16;
/** A catch-up whose device reads nothing of what was sent for this long is closed. */
const MAX_STALL_MS = 60_000;
/** WebSocket close code 1011: the server met a condition that kept it from going on. */
const INTERNAL_ERROR = 1011;
/** Rows read from the store at a time during a catch-up (a batch is one or more slices). */
const READ_SLICE = 250;
/** Lets everyone else's waiting work run. */
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
/** Node's setTimeout takes at most this (about 24.8 days); a later expiry is re-armed. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class SyncSocket {
  readonly #deps: SocketDeps;
  /** The project as it stood at the upgrade, then as it stands at the hello. */
  #project: Project;
  readonly #ws: Peer;
  #user: User | null = null;
  #subscriber: Subscriber | null = null;
  #cursor = 0;
  /** Frames are handled one at a time, in arrival order. */
  #queue: Promise<void> = Promise.resolve();
  #closed = false;
  /** Said hello (valid or not): the hello deadline no longer applies. */
  #greeted = false;
  #timer: ReturnType<typeof setTimeout> | null = null;
  /** Caught up: the fan-out sends it every change as it commits. */
  #live = false;
  /** Frames received and not yet handled. */
  #waiting = 0;

  /** The client's User-Agent header at the upgrade, shown to operators. */
  readonly #userAgent: string | undefined;

  constructor(deps: SocketDeps, project: Project, ws: Peer, userAgent?: string) {
    this.#deps = deps;
    this.#project = project;
    this.#ws = ws;
    this.#userAgent = userAgent?.slice(0, 256);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      if (this.#greeted || this.#closed) return;
      this.#refuse(ErrorKind.Invalid, `no hello within ${deps.limits.helloTimeoutMs} ms`, CloseCode.invalid);
    }, deps.limits.helloTimeoutMs);
  }

  message(data: unknown): void {
    if (this.#closed) return;
    // Frames wait their turn in memory (up to 1 MiB each): a device that sends while its catch-up
    // or its last push is still being handled may have only so many waiting.
    if (this.#waiting >= MAX_WAITING_FRAMES) {
      this.#refuse(ErrorKind.RateLimited, `more than ${MAX_WAITING_FRAMES} frames wait to be handled: wait for the answers`, CloseCode.rateLimited);
      return;
    }
    this.#waiting++;
    this.#queue = this.#queue
      .then(() => this.#handle(data))
      .catch((error: unknown) => this.#fail(error))
      .finally(() => this.#waiting--);
  }

  closed(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#clearTimer();
    if (this.#subscriber) {
      this.#deps.hub.remove(this.#subscriber);
      this.#offline(this.#subscriber.deviceId);
      this.#deps.log({ event: 'disconnect', project: this.#project.id, user: this.#user?.userId, device: this.#subscriber.deviceId });
    }
  }

  /** The hello deadline, or the token's expiry: one timer at a time. */
  #clearTimer(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }

  #offline(deviceId: string): void {
    void this.#deps.store
      .touchDevice({ projectId: this.#project.id, userId: this.#user?.userId ?? '', deviceId, online: false })
      .catch(() => undefined);
  }

  async #handle(data: unknown): Promise<void> {
    if (this.#closed) return;
    if (this.#user !== null) {
      // Every frame after the hello counts against the user's rate, before it is even parsed.
      const wait = await this.#deps.requests.take(`${this.#project.id}\u0000${this.#user.userId}`);
      if (wait > 0) throw new ServerError(ErrorKind.RateLimited, `over ${this.#deps.limits.requestsPerSecond} frames per second for this user: retry in ${wait} ms`);
    }
    const text = typeof data === 'string' ? data : Buffer.isBuffer(data) ? data.toString('utf8') : data instanceof ArrayBuffer ? Buffer.from(data).toString('utf8') : String(data);
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
    if (message.type === 'status') return this.#status(message);
    return this.#push(message);
  }

  async #hello(hello: Hello): Promise<void> {
    if (this.#user !== null || this.#greeted) throw new ServerError(ErrorKind.Invalid, 'hello was already said');
    this.#greeted = true;
    this.#clearTimer();
    if (!SUPPORTED_PROTOCOL_VERSIONS.includes(hello.protocolVersion)) {
      throw new ServerError(ErrorKind.Version, `this server speaks protocol versions ${SUPPORTED_PROTOCOL_VERSIONS.join(' and ')} (${PROTOCOL_VERSION} is current), not ${hello.protocolVersion}`);
    }
    const { limits, store } = this.#deps;
    // The project as it stands now, not as it stood at the upgrade (a socket may wait before its
    // hello): a key revoked since, or the project deleted (or made again with other keys), is seen.
    this.#project = await this.#current();
    const user = await authenticate(store, hello.token, this.#project, limits.maxTokenLifetimeSeconds);
    const wait = await this.#deps.hellos.take(`${this.#project.id}\u0000${user.userId}`);
    if (wait > 0) throw new ServerError(ErrorKind.RateLimited, `over ${limits.hellosPerMinute} hellos per minute for this user: retry in ${wait} ms`);
    if (this.#deps.hub.connectionsOf(this.#project.id, user.userId) >= limits.maxConnectionsPerUser) {
      throw new ServerError(ErrorKind.RateLimited, `this user already has ${limits.maxConnectionsPerUser} open connections (the limit)`);
    }
    const status = { ...hello.status, protocolVersion: hello.protocolVersion, ...(this.#userAgent !== undefined ? { userAgent: this.#userAgent } : {}) };
    await claimDevice(this.#deps.store, {
      projectId: this.#project.id,
      userId: user.userId,
      deviceId: hello.deviceId,
      cursor: hello.cursor,
      online: true,
      status: status as NonNullable<DeviceContact['status']>,
    });
    this.#user = user;
    // It closed while its token and device were checked: it was never registered, and is not online.
    if (this.#closed) {
      this.#offline(hello.deviceId);
      return;
    }
    this.#cursor = hello.cursor;
    this.#expireAt(user.expiresAt);
    const subscriber: Subscriber = {
      projectId: this.#project.id,
      userId: user.userId,
      deviceId: hello.deviceId,
      kid: user.kid,
      scopes: new Set(scopesOf(user.userId)),
      send: (message) => this.#send(message),
      close: (kind, message, code) => this.#refuse(kind, message, code),
    };
    this.#subscriber = subscriber;
    // Subscribe before reading, so nothing committed during the catch-up is missed.
    this.#deps.hub.add(subscriber);
    // An operator who revoked the key or blocked the user after the check above closed the
    // subscribers of that moment, which this was not yet: checked again, now that it is one.
    const now = await this.#current(this.#project);
    if (!now.keys.some((key) => key.kid === user.kid)) throw new ServerError(ErrorKind.Auth, `the token's signing key ${user.kid} was revoked`);
    if (await store.isBlocked(now.id, user.userId)) throw new ServerError(ErrorKind.Auth, `user ${user.userId} is blocked in this project`);
    this.#deps.log({ event: 'connect', project: this.#project.id, user: user.userId, device: hello.deviceId, cursor: hello.cursor });
    let cursor = hello.cursor;
    // `fresh` lets the first page leave deletes out; later pages have a cursor above 0.
    const fresh = hello.fresh === true;
    // Every read is checked against the tombstone horizon by the cursor the device began with (a
    // compaction may run meanwhile); a fresh device's and a re-sync's hold only what they were sent.
    let continuing = false;
    let since: number | undefined = fresh ? undefined : hello.cursor;
    // Counted once, on the first page; later pages count down from it.
    let remaining: number | undefined;
    for (;;) {
      // A batch is read in slices, with everyone else's work run between them (a slice of a large
      // catch-up holds the event loop for a few milliseconds); the device gets it as one frame.
      const changes: RowChange[] = [];
      let startsResync = false;
      let page: PullOutput;
      for (;;) {
        const limit = Math.min(READ_SLICE, this.#deps.batchSize - changes.length);
        page = await this.#deps.store.pull({
          projectId: this.#project.id,
          scopes: [...subscriber.scopes],
          cursor,
          limit,
          fresh: fresh && !continuing,
          continuing,
          ...(since === undefined ? {} : { since }),
          ...(remaining === undefined ? {} : { remaining }),
        });
        if (this.#closed) return;
        changes.push(...page.changes);
        cursor = page.cursor;
        remaining = page.remaining;
        if (page.resync) {
          startsResync = true;
          since = undefined;
        }
        continuing = true;
        await nextTurn();
        if (this.#closed) return;
        if (!page.hasMore || changes.length >= this.#deps.batchSize) break;
      }
      this.#send({ type: 'changes', changes, cursor, hasMore: page.hasMore, remaining: page.remaining, ...(startsResync ? { resync: true as const } : {}) });
      this.#deps.metrics?.caughtUp(this.#project.id, changes.length);
      if (!page.hasMore) break;
      // Nothing more is read while the device has not yet taken what was sent; one that takes
      // nothing for a minute is let go (the fan-out keeps its scopes' changes meanwhile).
      const stalled = Date.now() + MAX_STALL_MS;
      while (this.#ws.bufferedAmount > MAX_BUFFERED_BYTES && !this.#closed) {
        if (Date.now() > stalled) throw new ServerError(ErrorKind.Invalid, `the device read none of its catch-up for ${MAX_STALL_MS / 1000} s`);
        await new Promise<void>((resolve) => setTimeout(resolve, 5));
      }
      if (this.#closed) return;
    }
    this.#cursor = cursor;
    this.#deps.hub.live(subscriber, cursor);
    this.#live = true;
  }

  /** The socket's project as the store has it now (and, given `same`, still that one); kind not-found once it is deleted. */
  async #current(same?: Project): Promise<Project> {
    const project = await findProject(this.#deps.store, this.#project.id);
    if (!project || (same !== undefined && project.createdAt !== same.createdAt)) throw new ServerError(ErrorKind.NotFound, `no such project: ${this.#project.id}`);
    return project;
  }

  /** Closes the socket when the token expires; the device says hello again with a fresh one. */
  #expireAt(expiresAt: number): void {
    const left = expiresAt - Date.now();
    this.#clearTimer();
    this.#timer = setTimeout(() => {
      this.#timer = null;
      if (this.#closed) return;
      if (Date.now() < expiresAt) this.#expireAt(expiresAt);
      else this.#refuse(ErrorKind.Auth, 'the token has expired', CloseCode.auth);
    }, Math.max(0, Math.min(left, MAX_TIMER_MS)));
  }

  /** What the device says of itself now: kept with its record (written with the next contacts). */
  async #status(status: Status): Promise<void> {
    const { type: _type, ...reported } = status;
    const subscriber = this.#subscriber as Subscriber;
    await this.#deps.store.touchDevice({ projectId: this.#project.id, userId: subscriber.userId, deviceId: subscriber.deviceId, status: reported });
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
    }, this.#deps.metrics);
    this.#send(ack);
    this.#deps.publish(this.#project.id, out, subscriber);
    for (const conflict of out.conflicts) this.#deps.log({ event: 'conflict', project: this.#project.id, ...conflict });
  }

  #fail(error: unknown): void {
    const known = error instanceof ServerError;
    const kind = known ? error.kind : ErrorKind.Internal;
    const message = known ? error.message : 'internal error';
    this.#deps.log({ event: 'error', project: this.#project.id, user: this.#user?.userId, kind, message: known ? message : String(error) });
    // Before authentication there is nothing to keep the socket open for; a catch-up that failed
    // cannot go on (the device says hello again, after its back-off).
    if (this.#user === null || !this.#live || kind === ErrorKind.Auth || kind === ErrorKind.Version) {
      const code =
        kind === ErrorKind.Auth ? CloseCode.auth
        : kind === ErrorKind.Version ? CloseCode.version
        : kind === ErrorKind.RateLimited ? CloseCode.rateLimited
        : kind === ErrorKind.NotFound ? CloseCode.notFound
        : kind === ErrorKind.Internal ? INTERNAL_ERROR
        : CloseCode.invalid;
      this.#refuse(kind, message, code);
    } else {
      this.#send({ type: 'error', kind, message });
    }
  }

  /** Says why in an error frame, then closes with `code`. */
  #refuse(kind: ErrorKind, message: string, code: number): void {
    this.#send({ type: 'error', kind, message });
    this.#ws.close(code, kind);
    this.closed();
  }

  #send(message: DownMessage): void {
    if (this.#closed) return;
    this.#ws.send(JSON.stringify(message));
  }
}
