/**
 * The sync server under fuzzing (fast-check), over real sockets on 127.0.0.1: arbitrary text, JSON
 * and bytes, and near misses of every valid message (one field wrong, one number no JSON double
 * holds, one reserved key), sent as WebSocket frames before and after a hello, and as HTTP requests
 * to every route. Whatever comes in, the process stays up, every reply is a valid down message or a
 * `{ kind, message }` error whose kind the protocol names (never 'internal'), a socket closes only
 * with a documented code, and nothing invalid is stored: each ack is checked against the store
 * (every applied change readable back at its seq, no rejected one anywhere, every stored row valid
 * on the wire, every stored value one an accepted change wrote). 10,000 cases with CI set, 1,000
 * without. A failure prints fast-check's shrunk counterexample and its seed; FUZZ_SEED replays it.
 */
import { Agent, request } from 'node:http';
import type { Socket } from 'node:net';
import { isUtf8 } from 'node:buffer';
import fc from 'fast-check';
import { sign } from 'hono/jwt';
import * as v from 'valibot';
import WebSocket from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import { ClientChangeSchema, type RowChange } from '../lib/protocol/change.js';
import { CloseCode } from '../lib/protocol/close-codes.js';
import { ChangesSchema, DownMessageSchema, type Ack, type Changes, type DownMessage } from '../lib/protocol/down.js';
import { ErrorKind } from '../lib/protocol/error-kind.js';
import { PROTOCOL_VERSION, SUPPORTED_PROTOCOL_VERSIONS } from '../lib/protocol/protocol-version.js';
import { HelloSchema, HttpPushSchema, LIMITS, PushSchema } from '../lib/protocol/up.js';
import { IdentifierSchema, IdSchema, WIRE_RESERVED_NAMES } from '../lib/protocol/values.js';
import { bearer, mintUserToken } from '../server/auth.js';
import type { ServerLimits } from '../server/limits.js';
import { createServer, type RunningServer } from '../server/server.js';
import { SqliteStore } from '../server/store/sqlite-store.js';
import { scopeOf, scopesOf, type Project } from '../server/store/store.js';
import { COUNTER_SPAN, formatClock } from '../worker/hlc.js';

const CI = Boolean(process.env.CI) && process.env.CI !== 'false';
/** Cases per property: 10,000 in all with CI set. */
const RUNS = { beforeHello: CI ? 3_000 : 300, afterHello: CI ? 4_000 : 400, http: CI ? 3_000 : 300 };
const TIMEOUT_MS = CI ? 240_000 : 60_000;
const SEED = process.env.FUZZ_SEED === undefined ? {} : { seed: Number(process.env.FUZZ_SEED) };
const ADMIN = 'admin-key-for-the-fuzz-test';
/** No rate or connection limit hides the handler: thousands of hellos and frames a second are fine. */
const NO_RATE_LIMITS: Partial<ServerLimits> = { hellosPerMinute: 1e9, requestsPerSecond: 1e9, maxConnectionsPerUser: 1e6, maxConnectionsPerAddress: 1e6, adminKeyFailuresPerMinute: 1e9 };
const KINDS: readonly string[] = Object.values(ErrorKind);
/** The codes a socket may close with: the protocol's (close-codes.ts), and `ws`'s for broken frames. */
const CLOSE_CODES: readonly number[] = [...Object.values(CloseCode), 1002, 1003, 1007, 1008, 1009];
/** The statuses the routes document, and the kinds each carries. */
const ERROR_STATUS: Readonly<Record<number, readonly string[]>> = {
  400: [ErrorKind.Invalid],
  401: [ErrorKind.Auth],
  404: [ErrorKind.NotFound],
  413: [ErrorKind.Invalid],
  426: [ErrorKind.Invalid],
};
const T0 = Date.now();
const HOUR = 3_600_000;

// ---------------------------------------------------------------------------------------------
// The server, its users and tokens

interface Fixture {
  readonly server: RunningServer;
  readonly projects: Readonly<Record<'p' | 'q', Project>>;
  readonly lines: Record<string, unknown>[];
  /** Named tokens, valid or not; `users` says whom each valid one is for. */
  readonly tokens: readonly Token[];
  readonly users: ReadonlyMap<string, { readonly project: 'p' | 'q'; readonly user: string }>;
  /** Who each device id is bound to, by project (a device belongs to the first user who used it there). */
  readonly owners: Map<string, string>;
}

/** A token in a generated frame: sent as its value, printed by its name in a counterexample. */
class Token {
  constructor(
    readonly name: string,
    readonly value: string,
  ) {}
  toJSON(): string {
    return this.value;
  }
  [fc.toStringMethod](): string {
    return `token(${this.name})`;
  }
}

/** `n` well-formed changes, built when sent (a counterexample prints `many(1001, 3)`, not the list). */
class Many {
  constructor(
    readonly n: number,
    readonly salt: number,
  ) {}
  toJSON(): unknown[] {
    return Array.from({ length: this.n }, (_, i) => ({ id: `m${this.salt}-${i}`, table: 'todos', row: `m${i % 7}`, op: 'update', clock: clockAt(0, i % COUNTER_SPAN, 'dm'), values: { n: i } }));
  }
  [fc.toStringMethod](): string {
    return `many(${this.n}, ${this.salt})`;
  }
}

let running: RunningServer | null = null;
const sockets = new Set<Wire>();

afterEach(async () => {
  for (const wire of sockets) wire.ws.terminate();
  sockets.clear();
  if (running) {
    await running.close();
    await running.store.close();
    running = null;
  }
});

async function start(): Promise<Fixture> {
  const store = new SqliteStore(':memory:');
  const p = await store.createProject({ id: 'p', secret: 's'.repeat(32), sharedTables: ['shared_todos'] });
  const q = await store.createProject({ id: 'q', secret: 't'.repeat(32), strategy: 'server-wins' });
  const lines: Record<string, unknown>[] = [];
  const server = await createServer({ store, adminKey: ADMIN, devProject: 'p', log: (line) => lines.push(line), limits: NO_RATE_LIMITS });
  running = server;
  await store.touchDevice({ projectId: 'p', userId: 'bob', deviceId: 'bobs-device' });
  const now = Math.floor(Date.now() / 1000);
  const claims = (extra: Record<string, unknown>, secret = p.secret, alg: 'HS256' | 'HS512' = 'HS256') =>
    sign({ sub: 'alice', project: 'p', iat: now, exp: now + HOUR / 1000, ...extra }, secret, alg);
  const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const alice = await mintUserToken(p, 'alice');
  const named: Record<string, string> = {
    alice,
    bob: await mintUserToken(p, 'bob'),
    qAlice: await mintUserToken(q, 'alice'),
    claimsProjectQ: await claims({ project: 'q' }),
    expired: await claims({ exp: now - 10 }),
    year9999: await claims({ exp: 253402300799 }),
    noExp: await sign({ sub: 'alice', project: 'p' }, p.secret, 'HS256'),
    expString: await claims({ exp: 'tomorrow' }),
    subWithSpace: await claims({ sub: 'a b' }),
    subNumber: await claims({ sub: 42 }),
    // A user id may be any of [A-Za-z0-9_.@:-]: this one is valid.
    protoUser: await claims({ sub: '__proto__' }),
    notYet: await claims({ nbf: now + 3600 }),
    issuedLater: await claims({ iat: now + 3600 }),
    wrongSecret: await claims({}, 'w'.repeat(32)),
    hs512: await claims({}, p.secret, 'HS512'),
    algNone: `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ sub: 'alice', project: 'p', exp: now + 3600 })}.`,
    truncated: alice.slice(0, -4),
    twoParts: alice.split('.').slice(0, 2).join('.'),
    garbage: 'not.a.token',
    empty: '',
    admin: ADMIN,
  };
  const tokens = Object.entries(named).map(([name, value]) => new Token(name, value));
  const users = new Map<string, { project: 'p' | 'q'; user: string }>([
    [alice, { project: 'p', user: 'alice' }],
    [named.bob ?? '', { project: 'p', user: 'bob' }],
    [named.qAlice ?? '', { project: 'q', user: 'alice' }],
    [named.protoUser ?? '', { project: 'p', user: '__proto__' }],
  ]);
  return { server, projects: { p, q }, lines, tokens, users, owners: new Map([['p\u0000bobs-device', 'bob']]) };
}

function token(f: Fixture, name: string): Token {
  const found = f.tokens.find((t) => t.name === name);
  if (!found) throw new Error(`no token ${name}`);
  return found;
}

// ---------------------------------------------------------------------------------------------
// Frames, and what the protocol says the server makes of them

/** A WebSocket frame to send. */
type Frame =
  | { readonly kind: 'text'; readonly text: string }
  | { readonly kind: 'binary'; readonly bytes: Uint8Array }
  /** A text frame carrying these bytes, UTF-8 or not. */
  | { readonly kind: 'raw-text'; readonly bytes: Uint8Array }
  /** `bytes` of filler (0x78 as text, 0xff as binary), built when sent. */
  | { readonly kind: 'filler'; readonly bytes: number; readonly binary: boolean }
  /** A message, serialized and then tweaked as text. */
  | { readonly kind: 'json'; readonly value: unknown; readonly tweak: Tweak; readonly binary: boolean };

function wireBytes(frame: Frame): { readonly data: Buffer; readonly binary: boolean } {
  switch (frame.kind) {
    case 'text':
      return { data: Buffer.from(frame.text), binary: false };
    case 'binary':
      return { data: Buffer.from(frame.bytes), binary: true };
    case 'raw-text':
      return { data: Buffer.from(frame.bytes), binary: false };
    case 'filler':
      return { data: Buffer.alloc(frame.bytes, frame.binary ? 0xff : 0x78), binary: frame.binary };
    case 'json':
      return { data: Buffer.from(TWEAKS[frame.tweak](JSON.stringify(frame.value) ?? 'undefined')), binary: frame.binary };
  }
}

/** Text-level edits no JSON.stringify produces: numbers a double does not hold, duplicate and reserved keys, framing. */
const TWEAKS = {
  none: (t: string) => t,
  cursorInfinite: (t: string) => t.replace(/"cursor":\d+/, '"cursor":1e400'),
  cursorMinusZero: (t: string) => t.replace(/"cursor":\d+/, '"cursor":-0'),
  cursorHuge: (t: string) => t.replace(/"cursor":\d+/, '"cursor":1e300'),
  cursorFraction: (t: string) => t.replace(/"cursor":\d+/, '"cursor":0.5'),
  cursorExponent: (t: string) => t.replace(/"cursor":\d+/, '"cursor":1E1'),
  versionExponent: (t: string) => t.replace(/"protocolVersion":\d+/, '"protocolVersion":1e0'),
  versionNearlyOne: (t: string) => t.replace(/"protocolVersion":\d+/, '"protocolVersion":1.0000000000000001'),
  baseInfinite: (t: string) => t.replace(/"base":\d+/, '"base":1e400'),
  valueInfinite: (t: string) => t.replace(/"values":\{/, '"values":{"n":1e400,'),
  valueMinusZero: (t: string) => t.replace(/"values":\{/, '"values":{"n":-0,'),
  valueTiny: (t: string) => t.replace(/"values":\{/, '"values":{"n":1e-400,'),
  valueProto: (t: string) => t.replace(/"values":\{/, '"values":{"__proto__":{"x":1},'),
  valueConstructor: (t: string) => t.replace(/"values":\{/, '"values":{"constructor":1,'),
  changeProto: (t: string) => t.replace(/"changes":\[\{/, '"changes":[{"__proto__":{"op":"delete"},'),
  protoType: (t: string) => t.replace(/^\{/, '{"__proto__":{"type":"push"},'),
  duplicateTypeFirst: (t: string) => t.replace(/^\{/, '{"type":"push",'),
  duplicateTypeLast: (t: string) => t.replace(/\}$/, ',"type":"hello"}'),
  duplicateCursor: (t: string) => t.replace(/\}$/, ',"cursor":-1}'),
  bom: (t: string) => `\uFEFF${t}`,
  whitespace: (t: string) => ` \n\t${t}\r\n `,
  trailing: (t: string) => `${t}x`,
  halved: (t: string) => t.slice(0, Math.floor(t.length / 2)),
  array: (t: string) => `[${t}]`,
  nul: (t: string) => `${t}\u0000`,
} as const;
type Tweak = keyof typeof TWEAKS;

/** What the server reads from a frame: its text, or the close `ws` answers before it is read. */
function reading(frame: Frame): { readonly closes: 1007 | 1009 } | { readonly text: string } {
  const { data, binary } = wireBytes(frame);
  if (data.length > LIMITS.maxMessageBytes) return { closes: 1009 };
  if (!binary && !isUtf8(data)) return { closes: 1007 };
  return { text: data.toString('utf8') };
}

/** The protocol's up frame, its push's changes left unparsed (each is judged alone, in the ack). */
const UpFrameSchema = v.variant('type', [
  HelloSchema,
  v.strictObject({ ...PushSchema.entries, changes: v.pipe(v.array(v.unknown()), v.maxLength(LIMITS.maxChangesPerPush)) }),
]);

type Up = { readonly what: 'invalid' } | { readonly what: 'hello'; readonly hello: v.InferOutput<typeof HelloSchema> } | { readonly what: 'push'; readonly changes: readonly unknown[] };

function parseUp(text: string): Up {
  if (Buffer.byteLength(text) > LIMITS.maxMessageBytes) return { what: 'invalid' };
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { what: 'invalid' };
  }
  const parsed = v.safeParse(UpFrameSchema, json);
  if (!parsed.success) return { what: 'invalid' };
  return parsed.output.type === 'hello' ? { what: 'hello', hello: parsed.output } : { what: 'push', changes: parsed.output.changes };
}

// ---------------------------------------------------------------------------------------------
// Arbitraries

type Mutation = { readonly how: 'none' } | { readonly how: 'set'; readonly key: string; readonly value: unknown } | { readonly how: 'delete'; readonly key: string };

/** `object` with one field changed, removed, or added (an own `__proto__` too, as JSON.parse makes it). */
function mutate(object: Record<string, unknown>, mutation: Mutation): Record<string, unknown> {
  const out = { ...object };
  if (mutation.how === 'set') Object.defineProperty(out, mutation.key, { value: mutation.value, enumerable: true, writable: true, configurable: true });
  if (mutation.how === 'delete') delete out[mutation.key];
  return out;
}

const clockAt = (offsetMs: number, counter: number, device: string): string => formatClock({ wall: T0 + offsetMs, counter, deviceId: device });

const NASTY_NAMES = [
  '', '__proto__', 'constructor', 'prototype', 'toString', 'valueOf', 'x'.repeat(63), 'x'.repeat(64), 'x'.repeat(65), 'todos; DROP TABLE row_state; --',
  "t'--", '"todos"', 'sqlite_master', 'SQLITE_x', '__pocketsync_device_state', '1abc', 'ta ble', 'é', '🙂', 'a\u0000b', 'todos\n', '../todos', 'row_state', '%s',
];
const nastyArb: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(null, true, -1, -0, 0.5, 1e300, -1e300, 2 ** 53, 2 ** 64, Number.MIN_VALUE, '', '0', 'NaN', 'Infinity', [], {}, [[]], { a: { b: { c: [] } } }),
  fc.constantFrom(...NASTY_NAMES),
  fc.jsonValue({ maxDepth: 3 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
);

const validValueArb: fc.Arbitrary<unknown> = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.integer(),
  fc.constant(null),
  fc.constantFrom(1e300, -1e300, -0, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, Number.MIN_VALUE, Number.MAX_VALUE),
  fc.uint8Array({ maxLength: 8 }).map((bytes) => ({ $base16: Buffer.from(bytes).toString('hex') })),
  fc.tuple(fc.bigInt({ min: 2n ** 53n, max: 2n ** 63n - 1n }), fc.boolean()).map(([n, negative]) => ({ $int: String(negative ? -n : n) })),
  fc.constantFrom({ $real: 'Infinity' }, { $real: '-Infinity' }),
);
const anyValueArb: fc.Arbitrary<unknown> = fc.oneof(
  validValueArb,
  fc.constantFrom(
    true, [], {}, [1], { a: 1 }, { $base16: 'xyz' }, { $base16: 'abc' }, { $int: '1' }, { $int: '9007199254740991' }, { $int: '99999999999999999999' },
    { $int: '9223372036854775808' }, { $int: '-09007199254740993' }, { $real: 'NaN' }, { $real: 'Infinity', x: 1 }, { $base16: '00', $int: '1' },
  ),
  nastyArb,
);

const deviceIdArb = fc.constantFrom('d1', 'd2', 'd3', 'bobs-device', '__proto__', 'constructor', 'toString', 'z'.repeat(64));
const columnArb = fc.constantFrom('title', 'done', 'n', 'toString', 'valueOf', 'hasOwnProperty', 'isPrototypeOf', '__defineGetter__', 'c'.repeat(63));
const clockArb = fc
  .record({
    offset: fc.oneof(fc.integer({ min: -10_000_000, max: 10_000_000 }), fc.constantFrom(-T0, 2 * HOUR, 3650 * 24 * HOUR)),
    counter: fc.integer({ min: 0, max: COUNTER_SPAN - 1 }),
    device: fc.constantFrom('d1', 'dx', 'bobs-device', 'z'.repeat(64)),
  })
  .map(({ offset, counter, device }) => clockAt(offset, counter, device));
const NASTY_CLOCKS = [
  '', '1-d', `${'0'.repeat(21)}-`, `${'0'.repeat(21)}-${'d'.repeat(65)}`, `${'9'.repeat(21)}-d`, `${'0'.repeat(20)}-d`, `${'0'.repeat(22)}-d`,
  clockAt(HOUR + 60_000, 0, 'd'), clockAt(1e12, 0, 'd'), ` ${clockAt(0, 0, 'd')}`, clockAt(0, 0, 'd é'), clockAt(0, 0, 'd/x'), 12345, null,
];

/** A valid change, then (sometimes) one field of it wrong. */
const changeArb: fc.Arbitrary<Record<string, unknown>> = fc
  .tuple(
    fc.record(
      {
        id: fc.oneof(fc.constantFrom('c1', 'c2', 'c3', '__proto__', 'toString'), fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/)),
        table: fc.constantFrom('todos', 'shared_todos', 'notes', 'toString', 'valueOf', 'hasOwnProperty', '_t', 'T9'),
        row: fc.constantFrom('r1', 'r2', 'r3', '__proto__', 'constructor', 'prototype', 'toString', '-', '_'),
        op: fc.constantFrom('insert', 'update', 'delete'),
        clock: clockArb,
        values: fc.dictionary(columnArb, validValueArb, { minKeys: 1, maxKeys: 4 }),
        base: fc.nat(),
      },
      { requiredKeys: ['id', 'table', 'row', 'op', 'clock', 'values'] },
    ),
    fc.oneof(
      { weight: 3, arbitrary: fc.constant<Mutation>({ how: 'none' }) },
      {
        weight: 4,
        arbitrary: fc.oneof(
          fc.record({ key: fc.constant('id'), value: fc.oneof(fc.constantFrom('', 'a b', 'x'.repeat(65), 'é', '../x', 42, null), nastyArb) }),
          fc.record({ key: fc.constantFrom('table', 'row'), value: fc.oneof(fc.constantFrom(...NASTY_NAMES), nastyArb) }),
          fc.record({ key: fc.constant('op'), value: fc.oneof(fc.constantFrom('INSERT', 'upsert', '', 1, null, 'delete '), nastyArb) }),
          fc.record({ key: fc.constant('clock'), value: fc.oneof(fc.constantFrom(...NASTY_CLOCKS), nastyArb) }),
          fc.record({ key: fc.constant('base'), value: fc.oneof(fc.constantFrom(-1, 1.5, 1e300, 2 ** 53, '3', null, -0), nastyArb) }),
          fc.record({
            key: fc.constant('values'),
            value: fc.oneof(
              fc.constantFrom(null, [], 'x', 1, {}, [{ title: 'a' }], Object.fromEntries(Array.from({ length: 501 }, (_, i) => [`c${i}`, i]))),
              fc.dictionary(fc.oneof(columnArb, fc.constantFrom(...NASTY_NAMES), fc.string({ maxLength: 8 })), anyValueArb, { maxKeys: 4 }),
              nastyArb,
            ),
          }),
          fc.record({ key: fc.constantFrom('extra', 'seq', 'deleted', '__proto__', 'constructor', 'prototype'), value: nastyArb }),
        ).map(({ key, value }): Mutation => ({ how: 'set', key, value })),
      },
      { weight: 1, arbitrary: fc.constantFrom('id', 'table', 'row', 'op', 'clock', 'values').map((key): Mutation => ({ how: 'delete', key })) },
      {
        weight: 2,
        arbitrary: fc
          .tuple(fc.oneof(columnArb, fc.constantFrom(...NASTY_NAMES)), anyValueArb)
          .map(([column, value]): Mutation => ({ how: 'set', key: 'values', value: { title: 't', [column]: value } })),
      },
    ),
  )
  .map(([change, mutation]) => mutate(change, mutation));

const changesArb: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 20, arbitrary: fc.array(changeArb, { maxLength: 6 }) },
  // One change twice in one push.
  { weight: 2, arbitrary: changeArb.map((c) => [c, c]) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom(1000, 1001), fc.nat(9)).map(([n, salt]) => new Many(n, salt)) },
  { weight: 1, arbitrary: fc.constantFrom(null, {}, 'x', [null], [[]], { length: 1 }) },
);

/** A push envelope over the socket, sometimes with one field wrong. */
const pushArb: fc.Arbitrary<Record<string, unknown>> = fc
  .tuple(
    fc.record({ type: fc.constant('push'), cursor: fc.nat(), changes: changesArb }, { requiredKeys: ['type', 'changes'] }),
    fc.oneof(
      { weight: 6, arbitrary: fc.constant<Mutation>({ how: 'none' }) },
      { weight: 1, arbitrary: fc.record({ key: fc.constant('type'), value: fc.constantFrom('Push', 'hello', 'ack', '', null) }).map((m): Mutation => ({ how: 'set', ...m })) },
      {
        weight: 1,
        arbitrary: fc
          .record({ key: fc.constant('cursor'), value: fc.oneof(fc.constantFrom(-1, 1e300, 2 ** 53, Number.MAX_SAFE_INTEGER, 1.5, '0', null), nastyArb) })
          .map((m): Mutation => ({ how: 'set', ...m })),
      },
      { weight: 1, arbitrary: fc.record({ key: fc.constantFrom('extra', 'deviceId', '__proto__', 'constructor'), value: nastyArb }).map((m): Mutation => ({ how: 'set', ...m })) },
      { weight: 1, arbitrary: fc.constantFrom('type', 'changes').map((key): Mutation => ({ how: 'delete', key })) },
    ),
  )
  .map(([push, mutation]) => mutate(push, mutation));

/** A hello, mostly valid, with one field wrong (the token one of the fixture's, good or bad). */
function helloArb(f: Fixture): fc.Arbitrary<Record<string, unknown>> {
  const tokenArb = fc.oneof({ weight: 3, arbitrary: fc.constantFrom(token(f, 'alice'), token(f, 'bob'), token(f, 'protoUser'), token(f, 'qAlice')) }, { weight: 2, arbitrary: fc.constantFrom(...f.tokens) });
  return fc
    .tuple(
      fc.record(
        { type: fc.constant('hello'), protocolVersion: fc.constant(PROTOCOL_VERSION), deviceId: deviceIdArb, cursor: fc.oneof(fc.constant(0), fc.nat(), fc.constant(Number.MAX_SAFE_INTEGER)), fresh: fc.boolean(), token: tokenArb },
        { requiredKeys: ['type', 'protocolVersion', 'deviceId', 'cursor', 'token'] },
      ),
      fc.oneof(
        { weight: 3, arbitrary: fc.constant<Mutation>({ how: 'none' }) },
        {
          weight: 5,
          arbitrary: fc
            .oneof(
              fc.record({ key: fc.constant('protocolVersion'), value: fc.oneof(fc.constantFrom(PROTOCOL_VERSION - 1, PROTOCOL_VERSION + 1, 0, -1, 1.5, '1', 2 ** 53, null), nastyArb) }),
              fc.record({ key: fc.constant('cursor'), value: fc.oneof(fc.constantFrom(-1, 1e300, 2 ** 53, 0.5, '0', 'NaN', null), nastyArb) }),
              fc.record({ key: fc.constant('deviceId'), value: fc.oneof(fc.constantFrom('', 'a b', 'x'.repeat(65), 'é', '../d', 'd\u0000', 7), nastyArb) }),
              fc.record({ key: fc.constant('fresh'), value: fc.oneof(fc.constantFrom(1, 'true', null), nastyArb) }),
              fc.record({ key: fc.constant('token'), value: fc.oneof(fc.constantFrom(...f.tokens), fc.string(), fc.base64String(), nastyArb) }),
              fc.record({ key: fc.constant('type'), value: fc.constantFrom('Hello', 'HELLO', 'hello ', '', null) }),
              fc.record({ key: fc.constantFrom('extra', 'userId', 'changes', '__proto__', 'constructor', 'prototype'), value: nastyArb }),
            )
            .map((m): Mutation => ({ how: 'set', ...m })),
        },
        { weight: 1, arbitrary: fc.constantFrom('type', 'protocolVersion', 'deviceId', 'cursor', 'token').map((key): Mutation => ({ how: 'delete', key })) },
      ),
    )
    .map(([hello, mutation]) => mutate(hello, mutation));
}

const tweakArb: fc.Arbitrary<Tweak> = fc.oneof({ weight: 12, arbitrary: fc.constant<Tweak>('none') }, { weight: 4, arbitrary: fc.constantFrom(...(Object.keys(TWEAKS) as Tweak[])) });

const messageFrame = (value: fc.Arbitrary<unknown>): fc.Arbitrary<Frame> =>
  fc.record({ kind: fc.constant('json' as const), value, tweak: tweakArb, binary: fc.oneof({ weight: 5, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }) });

/** Frames at and over the size limit (rare: each costs a megabyte). */
const fillerArb: fc.Arbitrary<Frame> = fc
  .constantFrom(
    { bytes: LIMITS.maxMessageBytes, binary: false },
    { bytes: LIMITS.maxMessageBytes + 1, binary: false },
    { bytes: LIMITS.maxMessageBytes, binary: true },
    { bytes: LIMITS.maxMessageBytes + 1, binary: true },
  )
  .map((filler): Frame => ({ kind: 'filler', ...filler }));

/** Anything at all: text, JSON, bytes, broken UTF-8, frames at and over the size limit. */
const junkArb: fc.Arbitrary<Frame> = fc.oneof(
  { weight: 1, arbitrary: fillerArb },
  { weight: 150, arbitrary: fc.oneof(
  { weight: 3, arbitrary: fc.oneof(fc.string({ unit: 'binary' }), fc.string({ unit: 'grapheme' }), fc.string(), fc.json(), fc.jsonValue().map((j) => JSON.stringify(j))).map((text): Frame => ({ kind: 'text', text })) },
  { weight: 2, arbitrary: fc.uint8Array().map((bytes): Frame => ({ kind: 'binary', bytes })) },
  { weight: 2, arbitrary: fc.uint8Array({ minLength: 1 }).map((bytes): Frame => ({ kind: 'raw-text', bytes })) },
  { weight: 2, arbitrary: fc.anything().map((value) => ({ kind: 'json', value, tweak: 'none', binary: false }) satisfies Frame) },
  {
    weight: 1,
    arbitrary: fc
      .constantFrom(
        '', 'null', '{}', '[]', '"hello"', '0', 'NaN', '1e400', '{"type":"hello"}', '{"type":"push"}', '{"type":"push","changes":[]}', '{"type":null}',
        '{"type":"__proto__"}', '{"type":"constructor"}', '{"type":"toString"}', '{"__proto__":{"type":"hello"}}', '{"type":"push","changes":{"length":1}}',
        '{"type":"ack","results":[]}', '{"type":"changes","changes":[],"cursor":0,"hasMore":false,"remaining":0}', '{"type":"error","kind":"internal","message":"x"}',
      )
      .map((text): Frame => ({ kind: 'text', text })),
  },
  ) },
);

// ---------------------------------------------------------------------------------------------
// Checks on what comes back

const show = (value: unknown): string => (JSON.stringify(value) ?? String(value)).slice(0, 600);

function checkError(raw: unknown, where: string): void {
  const error = raw as { kind?: unknown; message?: unknown };
  expect(KINDS, `${where}: an error kind the protocol names: ${show(raw)}`).toContain(error.kind);
  expect(error.kind, `${where}: an internal error: ${show(raw)}`).not.toBe(ErrorKind.Internal);
  expect(typeof error.message, `${where}: an error says why: ${show(raw)}`).toBe('string');
}

/** A row as the wire carries it: valid, and with no name the wire cannot carry. */
function checkRow(row: RowChange, where: string): void {
  const names = [row.table, ...Object.keys(row.values ?? {}), ...Object.keys(row.clocks ?? {})];
  expect(names.filter((name) => WIRE_RESERVED_NAMES.has(name) || !v.is(IdentifierSchema, name)), `${where}: names in ${show(row)}`).toEqual([]);
}

/** A frame from the server: a valid down message, its errors with kinds the protocol names. */
function checkDown(raw: unknown, where: string): DownMessage {
  const parsed = v.safeParse(DownMessageSchema, raw);
  if (!parsed.success) throw new Error(`${where}: not a down message (${parsed.issues[0].message} at ${parsed.issues[0].path?.map((p) => String(p.key)).join('.') ?? ''}): ${show(raw)}`);
  // The frame as sent is checked, not the parse: a record's parse drops a `__proto__` key.
  const message = parsed.output;
  if (message.type === 'error') checkError(raw, where);
  if (message.type === 'ack') {
    for (const result of (raw as Ack).results) if (result.error !== undefined) checkError(result.error, `${where} (result ${result.id})`);
    for (const row of (raw as Ack).rows ?? []) checkRow(row, where);
  }
  if (message.type === 'changes') for (const row of (raw as Changes).changes) checkRow(row, where);
  return message;
}

/**
 * What was pushed and acknowledged, checked against the store after every ack: a change the
 * protocol refuses is rejected and leaves nothing; a change id seen before from the same device is
 * a duplicate with the first seq; the applied ones take exactly the next seqs, and exactly their
 * rows come back from a pull since; a stored value is always one an accepted change wrote.
 */
class Ledger {
  /** JSON of each value accepted changes wrote, by project, scope, table, row and column. */
  readonly #values = new Map<string, Set<string>>();
  /** The seq each accepted change id got (null: superseded), by project and device. */
  readonly #ids = new Map<string, number | null>();
  readonly #applied = new Map<string, number>();
  acks = 0;

  /**
   * Judges one ack. What the server says it stored is recorded first, whatever the verdict, so
   * that the cases fast-check runs after a failure (shrinking) are judged against the real store.
   */
  async check(server: RunningServer, project: Project, user: string, deviceId: string, changes: readonly unknown[], ack: Ack, seqBefore: number): Promise<void> {
    this.acks++;
    const where = `ack of ${show(changes)}`;
    const problems: string[] = [];
    if (ack.results.length !== changes.length) problems.push(`${ack.results.length} results for ${changes.length} changes`);
    const now = Date.now();
    const applied: number[] = [];
    const appliedRows = new Set<string>();
    changes.forEach((raw, i) => {
      const result = ack.results[i];
      if (!result) return;
      const wrong = (why: string) => problems.push(`change ${i} ${why}: ${show(result)}`);
      const rawId = typeof raw === 'object' && raw !== null ? (raw as { id?: unknown }).id : undefined;
      // Under its own id, or '' when it has none an ack may carry.
      if (result.id !== (v.is(IdSchema, rawId) ? rawId : '')) wrong('is answered under another id');
      const parsed = v.safeParse(ClientChangeSchema, raw);
      if (!parsed.success) {
        if (result.outcome !== 'rejected' || result.seq !== null || result.error?.kind !== ErrorKind.Invalid) wrong(`is not one the protocol accepts (${parsed.issues[0].message}), yet was not rejected as invalid`);
        return;
      }
      const change = parsed.output;
      const key = `${project.id}\u0000${deviceId}\u0000${change.id}`;
      const scope = scopeOf(project, change.table, user);
      const row = `${project.id}\u0000${scope}\u0000${change.table}\u0000${change.row}`;
      const seen = this.#ids.has(key);
      const first = this.#ids.get(key);
      if (result.outcome !== 'rejected') {
        if (!seen) this.#ids.set(key, result.seq);
        for (const [column, value] of Object.entries(change.values ?? {})) {
          const values = this.#values.get(`${row}\u0000${column}`) ?? new Set<string>();
          values.add(JSON.stringify(value));
          this.#values.set(`${row}\u0000${column}`, values);
        }
      }
      if (result.outcome === 'applied') {
        applied.push(result.seq ?? -1);
        appliedRows.add(row);
        this.#applied.set(project.id, (this.#applied.get(project.id) ?? 0) + 1);
      }
      const ahead = Math.floor(Number(change.clock.slice(0, 21)) / COUNTER_SPAN) - now;
      if (ahead > LIMITS.maxClockAheadMs + 60_000) {
        if (result.outcome !== 'rejected' || result.error?.kind !== ErrorKind.Invalid) wrong(`has a clock ${ahead} ms ahead, yet was not rejected`);
      } else if (ahead > LIMITS.maxClockAheadMs - 60_000 && result.outcome === 'rejected') {
        // At the drift cap: either verdict is right.
      } else if (seen) {
        if (result.outcome !== 'duplicate' || result.seq !== first) wrong(`was pushed before by ${deviceId} (seq ${first}), yet is not its duplicate`);
      } else if (result.outcome !== 'applied' && result.outcome !== 'superseded') {
        wrong('is new and valid, yet was neither applied nor superseded');
      } else if (result.outcome === 'applied' && result.seq === null) {
        wrong('was applied without a seq');
      }
    });
    const seqAfter = await server.store.currentSeq(project.id);
    const next = Array.from({ length: seqAfter - seqBefore }, (_, i) => seqBefore + 1 + i);
    if (show(applied) !== show(next)) problems.push(`the applied changes took seqs ${show(applied)}, the store went from ${seqBefore} to ${seqAfter}`);
    const since = await server.store.pull({ projectId: project.id, scopes: scopesOf(user), cursor: seqBefore, limit: LIMITS.maxBatchRows });
    const pulled = new Set(since.changes.map((row) => `${project.id}\u0000${scopeOf(project, row.table, user)}\u0000${row.table}\u0000${row.row}`));
    if (show([...pulled].sort()) !== show([...appliedRows].sort())) problems.push(`rows changed: ${show([...pulled])}; applied: ${show([...appliedRows])}`);
    expect(problems, where).toEqual([]);
    for (const row of since.changes) this.checkStored(project, scopeOf(project, row.table, user), row, where);
  }

  /** A row in the store: valid on the wire, and every value one an accepted change wrote. */
  checkStored(project: Project, scope: string, row: RowChange, where: string): void {
    const parsed = v.safeParse(ChangesSchema, { type: 'changes', changes: [row], cursor: 0, hasMore: false, remaining: 0 });
    expect(parsed.success, `${where}: a stored row that is not valid on the wire: ${show(row)}`).toBe(true);
    checkRow(row, where);
    for (const [column, value] of Object.entries(row.values ?? {})) {
      const written = this.#values.get(`${project.id}\u0000${scope}\u0000${row.table}\u0000${row.row}\u0000${column}`);
      expect(written?.has(JSON.stringify(value)), `${where}: stored ${row.table}.${row.row}.${column} = ${show(value)}, which no accepted change wrote`).toBe(true);
    }
  }

  /** Every row of `project`, each scope read whole: valid, and as many seqs as applied changes. */
  async checkAll(server: RunningServer, project: Project, users: readonly string[]): Promise<number> {
    let rows = 0;
    for (const scope of ['shared', ...users.map((user) => `user:${user}`)]) {
      for (let cursor = 0, more = true; more; ) {
        const page = await server.store.pull({ projectId: project.id, scopes: [scope], cursor, limit: LIMITS.maxBatchRows });
        for (const row of page.changes) this.checkStored(project, scope, row, `the store, scope ${scope}`);
        rows += page.changes.length;
        ({ cursor, hasMore: more } = page);
      }
    }
    expect(await server.store.currentSeq(project.id)).toBe(this.#applied.get(project.id) ?? 0);
    return rows;
  }
}

// ---------------------------------------------------------------------------------------------
// A raw WebSocket client: keeps every frame, fails on none (a frame that is not JSON is recorded)

class Wire {
  readonly ws: WebSocket;
  /** Every text frame received, parsed. */
  readonly frames: unknown[] = [];
  /** Frames that were binary or not JSON. */
  readonly faults: string[] = [];
  closeCode: number | null = null;
  #waiters: Array<() => void> = [];

  private constructor(ws: WebSocket) {
    this.ws = ws;
    ws.on('message', (data, binary) => {
      const text = Buffer.isBuffer(data) ? data.toString('utf8') : Buffer.concat(Array.isArray(data) ? data : [Buffer.from(data)]).toString('utf8');
      if (binary) this.faults.push(`a binary frame: ${text.slice(0, 200)}`);
      try {
        this.frames.push(JSON.parse(text));
      } catch {
        this.faults.push(`a frame that is not JSON: ${text.slice(0, 200)}`);
      }
      this.#wake();
    });
    ws.on('close', (code) => {
      this.closeCode = code;
      this.#wake();
    });
    // A reset shows as the close (1006), which no check allows.
    ws.on('error', () => undefined);
  }

  static open(server: RunningServer, project = 'p'): Promise<Wire> {
    const wire = new Wire(new WebSocket(`${server.url.replace(/^http/, 'ws')}v1/projects/${project}/sync`));
    sockets.add(wire);
    return new Promise((resolve, reject) => {
      wire.ws.once('open', () => resolve(wire));
      wire.ws.once('unexpected-response', (_request, response) => reject(new Error(`the upgrade was refused: ${response.statusCode}`)));
      wire.ws.once('close', () => reject(new Error('the socket closed before it opened')));
    });
  }

  send(frame: Frame): void {
    const { data, binary } = wireBytes(frame);
    this.ws.send(data, { binary });
  }

  async until(done: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!done()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${what} within ${timeoutMs} ms; got ${show(this.frames.slice(-5))}, close code ${this.closeCode}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** The catch-up has ended (a changes frame without more) in the frames from `from`. */
  caughtUp(from = 0): boolean {
    return this.frames.slice(from).some((m) => (m as DownMessage).type === 'changes' && (m as { hasMore?: unknown }).hasMore === false);
  }

  /** Frames from `from` that answer a frame: acks and errors. */
  answers(from: number): DownMessage[] {
    return (this.frames.slice(from) as DownMessage[]).filter((m) => m.type === 'ack' || m.type === 'error');
  }

  /** Checks every frame from `from`, and that nothing came that is not a JSON text frame. */
  check(from: number, where: string): DownMessage[] {
    expect(this.faults, where).toEqual([]);
    if (this.closeCode !== null) expect(CLOSE_CODES, `${where}: close code`).toContain(this.closeCode);
    return this.frames.slice(from).map((frame) => checkDown(frame, where));
  }

  terminate(): void {
    this.ws.terminate();
    sockets.delete(this);
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }
}

/** A socket that said a valid hello and finished its catch-up (every row of which is checked). */
async function device(f: Fixture, user: 'alice' | 'bob', deviceId: string): Promise<Wire> {
  const wire = await Wire.open(f.server);
  wire.send({ kind: 'json', value: { type: 'hello', protocolVersion: PROTOCOL_VERSION, deviceId, cursor: 0, token: token(f, user) }, tweak: 'none', binary: false });
  await wire.until(() => wire.caughtUp() || wire.closeCode !== null, 'catch-up', 30_000);
  wire.check(0, `the catch-up of ${user}/${deviceId}`);
  expect(wire.caughtUp(), `${user}/${deviceId} caught up: ${show(wire.frames)}`).toBe(true);
  f.owners.set(`p\u0000${deviceId}`, user);
  return wire;
}

/** The server survived: health answers, a new device catches up, and it never logged an internal error. */
async function checkAlive(f: Fixture): Promise<void> {
  const health = await fetch(`${f.server.url}v1/health`);
  expect(health.status).toBe(200);
  expect(await health.json()).toEqual({ ok: true, protocolVersion: PROTOCOL_VERSION });
  (await device(f, 'alice', `after-${Date.now()}`)).terminate();
  expect(f.lines.filter((line) => line.kind === ErrorKind.Internal || (line.kind !== undefined && !KINDS.includes(line.kind as string)))).toEqual([]);
}

const asError = (error: unknown): Error => (error instanceof Error ? error : new Error(String(error)));

/** Uncaught exceptions and unhandled rejections while `run` runs (the server shares this process). */
async function noCrash(run: () => Promise<void>): Promise<void> {
  const crashes: unknown[] = [];
  const record = (error: unknown) => crashes.push(error);
  process.on('uncaughtException', record);
  process.on('unhandledRejection', record);
  try {
    await run();
  } finally {
    process.off('uncaughtException', record);
    process.off('unhandledRejection', record);
  }
  expect(crashes.map(String)).toEqual([]);
}

// ---------------------------------------------------------------------------------------------
// The properties

describe('the socket frame handler', () => {
  it(`answers any first frame with its catch-up or an error and a documented close (${RUNS.beforeHello} cases)`, { timeout: TIMEOUT_MS }, async () => {
    const f = await start();
    const frameArb = fc.oneof({ weight: 3, arbitrary: junkArb }, { weight: 5, arbitrary: messageFrame(helloArb(f)) }, { weight: 1, arbitrary: messageFrame(pushArb) });
    const projectArb = fc.oneof({ weight: 12, arbitrary: fc.constant('p') }, { weight: 3, arbitrary: fc.constantFrom('q', '%70', 'nope', '__proto__', 'x'.repeat(65), '%E0%A4%A', '%2F', 'p%00') });
    await noCrash(async () => {
      await fc.assert(
        fc.asyncProperty(projectArb, frameArb, async (path, frame) => {
          const before = [await f.server.store.currentSeq('p'), await f.server.store.currentSeq('q')];
          const wire = await Wire.open(f.server, path);
          try {
            wire.send(frame);
            await wire.until(() => wire.closeCode !== null || wire.caughtUp(), 'reply or close');
            const expected = beforeHello(f, path, frame);
            // A device a catch-up came for is bound to its user now, whatever the verdict: the
            // cases after this one (shrinking included) are judged by that.
            const read = reading(frame);
            const up = 'text' in read ? parseUp(read.text) : null;
            const user = up?.what === 'hello' ? f.users.get(up.hello.token ?? '') : undefined;
            if (wire.caughtUp() && up?.what === 'hello' && user) {
              const device = `${user.project}\u0000${up.hello.deviceId}`;
              if (!f.owners.has(device)) f.owners.set(device, user.user);
            }
            const replies = wire.check(0, 'the reply');
            if ('user' in expected) {
              expect(wire.closeCode, 'a valid hello keeps the socket').toBeNull();
              expect(replies.filter((m) => m.type !== 'changes'), 'a valid hello has only its catch-up').toEqual([]);
            } else {
              expect(wire.closeCode).toBe(expected.close);
              expect(replies.map((m) => (m.type === 'error' ? m.kind : m.type))).toEqual(expected.kind === undefined ? [] : [expected.kind]);
            }
            expect([await f.server.store.currentSeq('p'), await f.server.store.currentSeq('q')], 'nothing is stored before a hello').toEqual(before);
          } finally {
            wire.terminate();
          }
        }),
        { numRuns: RUNS.beforeHello, ...SEED },
      );
    });
    await checkAlive(f);
  });

  it(`answers any frame after the hello with an ack or an error, and stores only what is valid (${RUNS.afterHello} cases)`, { timeout: TIMEOUT_MS }, async () => {
    const f = await start();
    const project = f.projects.p;
    const ledger = new Ledger();
    const frameArb = fc.oneof({ weight: 3, arbitrary: junkArb }, { weight: 1, arbitrary: messageFrame(helloArb(f)) }, { weight: 8, arbitrary: messageFrame(pushArb) });
    let wire = await device(f, 'alice', 'fuzzer');
    await noCrash(async () => {
      await fc.assert(
        fc.asyncProperty(frameArb, async (frame) => {
          if (wire.closeCode !== null) wire = await device(f, 'alice', 'fuzzer');
          const seqBefore = await f.server.store.currentSeq('p');
          const from = wire.frames.length;
          wire.send(frame);
          await wire.until(() => wire.closeCode !== null || wire.answers(from).length > 0, 'reply or close');
          const read = reading(frame);
          const up = 'text' in read ? parseUp(read.text) : null;
          const [reply, ...more] = wire.answers(from);
          // An ack goes into the ledger before anything is judged, so that it stays true to the store
          // for the cases fast-check runs after a failure.
          const ledgerFailure =
            up?.what === 'push' && reply?.type === 'ack' && Array.isArray(reply.results)
              ? await ledger.check(f.server, project, 'alice', 'fuzzer', up.changes, reply, seqBefore).then(() => null, asError)
              : null;
          const replies = wire.check(from, 'the reply');
          if (up === null) {
            // `ws` refuses the frame before it is read: a close, no reply.
            await wire.until(() => wire.closeCode !== null, 'close');
            expect(wire.closeCode).toBe((read as { closes: number }).closes);
            expect(replies).toEqual([]);
            expect(await f.server.store.currentSeq('p')).toBe(seqBefore);
            return;
          }
          expect(wire.closeCode, 'a bad frame after the hello leaves the socket open').toBeNull();
          expect(more, 'one answer per frame').toEqual([]);
          if (up.what !== 'push') {
            expect(reply).toMatchObject({ type: 'error', kind: ErrorKind.Invalid });
            expect(await f.server.store.currentSeq('p')).toBe(seqBefore);
            return;
          }
          expect(reply?.type, `a push is acknowledged: ${show(reply)}`).toBe('ack');
          if (ledgerFailure !== null) throw ledgerFailure;
        }),
        { numRuns: RUNS.afterHello, ...SEED },
      );
    });
    expect(ledger.acks).toBeGreaterThan(RUNS.afterHello / 4);
    await ledger.checkAll(f.server, project, ['alice']);
    await checkAlive(f);
  });
});

/** What the protocol says a socket's first frame gets: its catch-up, or an error of a kind and a close. */
function beforeHello(f: Fixture, path: string, frame: Frame): { readonly close: number; readonly kind?: ErrorKind } | { readonly user: string; readonly deviceId: string } {
  let project = path;
  try {
    project = decodeURIComponent(path);
  } catch {
    // Not percent-encoding: the name as it stands.
  }
  if (project !== 'p' && project !== 'q') return { close: CloseCode.notFound, kind: ErrorKind.NotFound };
  const read = reading(frame);
  if ('closes' in read) return { close: read.closes };
  const up = parseUp(read.text);
  if (up.what === 'invalid') return { close: CloseCode.invalid, kind: ErrorKind.Invalid };
  if (up.what === 'push') return { close: CloseCode.auth, kind: ErrorKind.Auth };
  const { hello } = up;
  if (!SUPPORTED_PROTOCOL_VERSIONS.includes(hello.protocolVersion)) return { close: CloseCode.version, kind: ErrorKind.Version };
  const user = hello.token === undefined ? undefined : f.users.get(hello.token);
  const owner = f.owners.get(`${project}\u0000${hello.deviceId}`);
  if (user?.project !== project || (owner !== undefined && owner !== user.user)) return { close: CloseCode.auth, kind: ErrorKind.Auth };
  return { user: user.user, deviceId: hello.deviceId };
}

// ---------------------------------------------------------------------------------------------
// HTTP

type Body = undefined | { readonly kind: 'json'; readonly value: unknown; readonly tweak: Tweak } | { readonly kind: 'text'; readonly text: string } | { readonly kind: 'bytes'; readonly bytes: Uint8Array } | { readonly kind: 'filler'; readonly bytes: number };

interface HttpCase {
  readonly method: string;
  readonly path: string;
  readonly query: string;
  readonly authorization: string | undefined;
  readonly contentType: string | undefined;
  readonly body: Body;
}

function bodyBytes(body: Body): Buffer | undefined {
  if (body === undefined) return undefined;
  switch (body.kind) {
    case 'json':
      return Buffer.from(TWEAKS[body.tweak](JSON.stringify(body.value) ?? 'undefined'));
    case 'text':
      return Buffer.from(body.text);
    case 'bytes':
      return Buffer.from(body.bytes);
    case 'filler':
      return Buffer.alloc(body.bytes, 0x20);
  }
}

/** One connection, kept alive: a request the server answered must leave it usable for the next. */
const agent = new Agent({ keepAlive: true, maxSockets: 1 });
/** Each connection's last request, and those with a large body in its last second: named when one gets no answer. */
const carried = new WeakMap<Socket, Array<{ readonly at: number; readonly bytes: number; readonly summary: string }>>();

function send(server: RunningServer, c: HttpCase): Promise<{ status: number; text: string }> {
  const body = bodyBytes(c.body);
  // Node's client frames a GET's body only when told its length.
  const headers: Record<string, string> = body === undefined ? {} : { 'Content-Length': String(body.length) };
  if (c.authorization !== undefined) headers.Authorization = c.authorization;
  if (c.contentType !== undefined) headers['Content-Type'] = c.contentType;
  const summary = `${c.method} ${c.path}${c.query} with ${body === undefined ? 'no body' : `a body of ${body.length} bytes`}`;
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: server.port, method: c.method, path: `${c.path}${c.query}`, headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    let before = 'none (a new connection)';
    req.on('socket', (socket) => {
      const now = Date.now();
      const history = carried.get(socket) ?? [];
      const recent = history.filter((r, i) => i === history.length - 1 || (r.bytes > 65_536 && now - r.at < 1000));
      if (recent.length > 0) before = recent.map((r) => `${r.summary} (${now - r.at} ms before)`).join('; ');
      carried.set(socket, [...recent, { at: now, bytes: body?.length ?? 0, summary }]);
    });
    req.on('error', (error) => reject(new Error(`no answer to ${summary}: ${error.message}; before it on this connection: ${before}`)));
    req.end(body);
  });
}

const HealthSchema = v.strictObject({ ok: v.literal(true), protocolVersion: v.literal(PROTOCOL_VERSION) });
const TokenSchema = v.strictObject({ token: v.pipe(v.string(), v.regex(/^[\w-]+\.[\w-]+\.[\w-]+$/)) });
const ProjectSchema = v.strictObject({
  id: IdSchema,
  secret: v.pipe(v.string(), v.minLength(32)),
  strategy: v.picklist(['column-lww', 'row-lww', 'server-wins', 'client-wins']),
  sharedTables: v.array(IdentifierSchema),
  createdAt: v.number(),
  keys: v.array(v.strictObject({ kid: v.string(), secret: v.pipe(v.string(), v.minLength(32)) })),
});

/** GET /v1/admin/projects (the console's list; server-console.test.ts checks the admin API whole). */
const ProjectListSchema = v.strictObject({
  projects: v.array(v.strictObject({
    id: IdSchema,
    strategy: ProjectSchema.entries.strategy,
    sharedTables: v.array(IdentifierSchema),
    createdAt: v.number(),
    users: v.number(),
    devices: v.number(),
    online: v.number(),
    changesToday: v.number(),
    conflictsToday: v.number(),
  })),
});

function httpArb(f: Fixture): fc.Arbitrary<HttpCase> {
  const mostly = <T>(usual: fc.Arbitrary<T>, wild: fc.Arbitrary<T>): fc.Arbitrary<T> => fc.oneof({ weight: 10, arbitrary: usual }, { weight: 1, arbitrary: wild });
  const methodArb = fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH');
  const segmentArb = fc.oneof(
    fc.constantFrom('p', 'q', 'nope', '', '%70', '..', '.', '%2e%2e', '__proto__', 'constructor', 'toString', 'x'.repeat(65), '%00', '%E0%A4%A', '%ZZ', '%', 'p%2Fpush', 'p;x', 'P', 'p%20'),
    fc.string({ unit: 'binary', maxLength: 10 }).map(encodeURIComponent),
  );
  const pathEdits: Array<(path: string) => string> = [
    (p) => `${p}/`, (p) => `/${p}`, (p) => p.toUpperCase(), (p) => p.replace('/v1', '/v2'), (p) => `${p}/..`, (p) => p.replace(/\/[^/]*$/, '/../health'),
    (p) => `${p}%00`, (p) => p.replace(/\//g, '//'), (p) => p.replace('/v1/', '/v1/%2e%2e/v1/'), (p) => p.replace(/[a-z]/, (c) => `%${c.charCodeAt(0).toString(16)}`), (p) => `${p}#frag`,
  ];
  const wildPathArb = fc.oneof(
    fc.tuple(segmentArb, fc.constantFrom('push', 'pull', 'dev/token', 'sync', '', 'x')).map(([project, route]) => `/v1/projects/${project}/${route}`),
    fc.tuple(fc.constantFrom('/v1/health', '/v1/admin/projects', '/v1/projects/p/push', '/v1/projects/p/pull'), fc.integer({ min: 0, max: pathEdits.length - 1 })).map(([p, i]) => (pathEdits[i] ?? String)(p)),
    fc.webPath().map((p) => p || '/'),
    fc.constantFrom('/', '/v1', '/v1/projects', '/v1/projects/p', '/v1/admin', '/v1/health?'),
  );
  const queryValueArb = fc.oneof(
    fc.constantFrom('0', '1', '2', '-1', '1e300', 'NaN', '', '999999999999999', '9999999999999999', 'abc', '%00', '%201', '+1', '0x10', '1.5', '%31', 'true', '__proto__', 'd1', 'fuzzer', 'x'.repeat(65)),
    fc.string({ unit: 'binary', maxLength: 8 }).map(encodeURIComponent),
  );
  const queryArb = fc
    .array(fc.tuple(fc.constantFrom('cursor', 'limit', 'fresh', 'continuing', 'deviceId', '__proto__', 'constructor', 'x'), queryValueArb), { maxLength: 5 })
    .map((pairs) => (pairs.length === 0 ? '' : `?${pairs.map(([k, value]) => `${k}=${value}`).join('&')}`));
  const goodQueryArb = fc
    .record({ cursor: fc.nat(50), limit: fc.integer({ min: 1, max: 6000 }), fresh: fc.constantFrom('0', '1'), continuing: fc.constantFrom('0', '1'), deviceId: deviceIdArb }, { requiredKeys: [] })
    .map((q) => (Object.keys(q).length === 0 ? '' : `?${new URLSearchParams(Object.entries(q).map(([k, value]) => [k, String(value)])).toString()}`));
  const authArb = fc.oneof(
    fc.constant(undefined),
    fc.constantFrom(...f.tokens).map((t) => `Bearer ${t.value}`),
    fc.constantFrom('Bearer', 'Bearer ', `bearer ${token(f, 'alice').value}`, `BEARER   ${token(f, 'alice').value}  `, 'Basic YWxpY2U6cHc=', token(f, 'alice').value, `Bearer ${ADMIN}`, ADMIN, `Bearer ${ADMIN}x`),
    fc.string().map((s) => `Bearer ${s}`),
    fc.string(),
  );
  const contentTypeArb = fc.constantFrom(undefined, 'text/plain', 'application/json; charset=utf-16', 'multipart/form-data; boundary=x', 'application/x-www-form-urlencoded', '*/*');
  const json = (value: fc.Arbitrary<unknown>): fc.Arbitrary<Body> => fc.record({ kind: fc.constant('json' as const), value, tweak: tweakArb });
  /** A push body, from one of `user`'s own devices mostly, or one any user may have bound first. */
  const httpPushArb = (user = 'any') =>
    fc
    .tuple(
      fc.record(
        {
          deviceId: fc.oneof({ weight: 3, arbitrary: fc.constantFrom(`${user}-1`, `${user}-2`) }, { weight: 1, arbitrary: fc.constantFrom('h1', 'h2', 'bobs-device', 'fuzzer', '__proto__') }),
          cursor: fc.nat(),
          changes: changesArb,
        },
        { requiredKeys: ['deviceId', 'changes'] },
      ),
      fc.oneof(
        { weight: 6, arbitrary: fc.constant<Mutation>({ how: 'none' }) },
        { weight: 2, arbitrary: fc.record({ key: fc.constantFrom('deviceId', 'cursor', 'changes', 'type', 'extra', '__proto__'), value: nastyArb }).map((m): Mutation => ({ how: 'set', ...m })) },
        { weight: 1, arbitrary: fc.constantFrom('deviceId', 'changes').map((key): Mutation => ({ how: 'delete', key })) },
      ),
    )
    .map(([push, mutation]) => mutate(push, mutation));
  const projectBodyArb = fc
    .tuple(
      fc.record(
        {
          id: fc.oneof(fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/), fc.constantFrom('p', 'q', '__proto__', 'constructor')),
          secret: fc.oneof(fc.constant('k'.repeat(32)), fc.string({ minLength: 32, maxLength: 40 })),
          strategy: fc.constantFrom('column-lww', 'row-lww', 'server-wins', 'client-wins'),
          sharedTables: fc.array(fc.constantFrom('todos', 'shared_todos', 'toString'), { maxLength: 3 }),
        },
        { requiredKeys: ['id'] },
      ),
      fc.oneof(
        { weight: 3, arbitrary: fc.constant<Mutation>({ how: 'none' }) },
        {
          weight: 3,
          arbitrary: fc
            .record({ key: fc.constantFrom('id', 'secret', 'strategy', 'sharedTables', 'extra', '__proto__'), value: fc.oneof(fc.constantFrom(...NASTY_NAMES), fc.constant(['__proto__']), fc.constant(['constructor']), nastyArb) })
            .map((m): Mutation => ({ how: 'set', ...m })),
        },
      ),
    )
    .map(([body, mutation]) => mutate(body, mutation));
  const devTokenBodyArb = fc.record({ user: fc.oneof(fc.constantFrom('alice', 'bob', 'a b', '', 'x'.repeat(128), 'x'.repeat(129), '__proto__', 'a@b.c:d'), nastyArb) });
  const wildBodyArb: fc.Arbitrary<Body> = fc.oneof(
    { weight: 1, arbitrary: fc.constantFrom<Body>({ kind: 'filler', bytes: 300_000 }, { kind: 'filler', bytes: LIMITS.maxMessageBytes }, { kind: 'filler', bytes: LIMITS.maxMessageBytes + 1 }) },
    { weight: 40, arbitrary: fc.oneof(
    fc.constant(undefined),
    fc.json().map((text): Body => ({ kind: 'text', text })),
    fc.string({ unit: 'binary' }).map((text): Body => ({ kind: 'text', text })),
    fc.uint8Array().map((bytes): Body => ({ kind: 'bytes', bytes })),
    json(fc.anything()),
    json(fc.oneof(httpPushArb(), projectBodyArb, devTokenBodyArb)),
    ) },
  );
  const route = (method: string, path: string, authorization: fc.Arbitrary<string | undefined>, body: fc.Arbitrary<Body>, query: fc.Arbitrary<string> = fc.constant('')): fc.Arbitrary<HttpCase> =>
    fc.record({
      method: mostly(fc.constant(method), methodArb),
      path: mostly(fc.constant(path), wildPathArb),
      query: mostly(query, queryArb),
      authorization: mostly(authorization, authArb),
      contentType: mostly(fc.constant('application/json'), contentTypeArb),
      body: mostly(body, wildBodyArb),
    });
  const bearerOf = (...names: string[]) => fc.constantFrom(...names.map((name) => `Bearer ${token(f, name).value}`));
  return fc.oneof(
    { weight: 1, arbitrary: route('GET', '/v1/health', fc.constant(undefined), fc.constant(undefined)) },
    ...['alice', 'bob', 'protoUser'].map((user) => ({ weight: 2, arbitrary: route('POST', '/v1/projects/p/push', bearerOf(user), json(httpPushArb(user))) })),
    { weight: 2, arbitrary: route('POST', '/v1/projects/q/push', bearerOf('qAlice'), json(httpPushArb('qAlice'))) },
    { weight: 3, arbitrary: route('GET', '/v1/projects/p/pull', bearerOf('alice', 'bob', 'protoUser'), fc.constant(undefined), goodQueryArb) },
    { weight: 1, arbitrary: route('GET', '/v1/projects/q/pull', bearerOf('qAlice'), fc.constant(undefined), goodQueryArb) },
    { weight: 2, arbitrary: route('POST', '/v1/admin/projects', fc.constant(`Bearer ${ADMIN}`), json(projectBodyArb)) },
    { weight: 1, arbitrary: route('POST', '/v1/projects/p/dev/token', fc.constant(undefined), json(devTokenBodyArb)) },
    { weight: 1, arbitrary: route('GET', '/v1/projects/p/sync', fc.constant(undefined), fc.constant(undefined)) },
    { weight: 1, arbitrary: fc.record({ method: methodArb, path: wildPathArb, query: queryArb, authorization: authArb, contentType: contentTypeArb, body: wildBodyArb }) },
  );
}

describe('the HTTP routes', () => {
  it(`answer any request with a documented status and shape, and store only what is valid (${RUNS.http} cases)`, { timeout: TIMEOUT_MS }, async () => {
    const f = await start();
    const ledger = new Ledger();
    await noCrash(async () => {
      await fc.assert(
        fc.asyncProperty(httpArb(f), async (c) => {
          const before = { p: await f.server.store.currentSeq('p'), q: await f.server.store.currentSeq('q') };
          const res = await send(f.server, c);
          const where = `${c.method} ${c.path}${c.query} → ${res.status} ${res.text.slice(0, 300)}`;
          let body: unknown;
          expect(() => (body = JSON.parse(res.text) as unknown), `${where}: the body is JSON`).not.toThrow();
          let acked: 'p' | 'q' | null = null;
          if (res.status >= 400) {
            checkError(body, where);
            expect(ERROR_STATUS[res.status], `${where}: a status the routes document`).toContain((body as { kind: string }).kind);
          } else if (res.status === 201) {
            expect(c.method, where).toBe('POST');
            expect(v.is(ProjectSchema, body), `${where}: a project`).toBe(true);
            const project = body as Project;
            expect(await f.server.store.getProject(project.id), where).toEqual(project);
          } else {
            expect(res.status, where).toBe(200);
            const type = (body as { type?: unknown }).type;
            if (v.is(HealthSchema, body)) expect(c.method, where).toBe('GET');
            else if (v.is(ProjectListSchema, body)) expect([c.method, c.authorization], where).toEqual(['GET', `Bearer ${ADMIN}`]);
            else if (v.is(TokenSchema, body)) expect(c.method, where).toBe('POST');
            else if (type === 'changes') {
              expect(c.method, where).toBe('GET');
              checkDown(body, where);
            } else {
              expect(type, `${where}: a success shape the routes document`).toBe('ack');
              expect(c.method, where).toBe('POST');
              // Into the ledger before it is judged (see the socket's property).
              const ledgerFailure = Array.isArray((body as Ack).results) ? await ackedPush(f, ledger, c, body as Ack, before).then(() => null, asError) : null;
              acked = f.users.get(bearer(c.authorization) ?? '')?.project ?? null;
              checkDown(body, where);
              if (ledgerFailure !== null) throw ledgerFailure;
            }
          }
          // Nothing is stored but by a push that was acknowledged.
          for (const id of ['p', 'q'] as const) if (id !== acked) expect(await f.server.store.currentSeq(id), `${where}: project ${id} unchanged`).toBe(before[id]);
        }),
        { numRuns: RUNS.http, ...SEED },
      );
    });
    expect(ledger.acks).toBeGreaterThan(RUNS.http / 10);
    await ledger.checkAll(f.server, f.projects.p, ['alice', 'bob', '__proto__']);
    await ledger.checkAll(f.server, f.projects.q, ['alice']);
    await checkAlive(f);
  });
});

/** Checks an HTTP ack against the ledger: whose token it took, and the push its body carried. */
async function ackedPush(f: Fixture, ledger: Ledger, c: HttpCase, ack: Ack, before: Readonly<Record<'p' | 'q', number>>): Promise<'p' | 'q'> {
  const user = f.users.get(bearer(c.authorization) ?? '');
  if (!user) throw new Error(`an ack for a request without a valid token: ${show(c)}`);
  // A fetch body is decoded as UTF-8 without its byte-order mark.
  const text = new TextDecoder().decode(bodyBytes(c.body) ?? new Uint8Array());
  const push = v.parse(v.object({ deviceId: HttpPushSchema.entries.deviceId, changes: v.array(v.unknown()) }), JSON.parse(text));
  await ledger.check(f.server, f.projects[user.project], user.user, push.deviceId, push.changes, ack, before[user.project]);
  return user.project;
}
