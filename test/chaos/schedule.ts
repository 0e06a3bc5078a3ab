/**
 * Chaos schedules (fast-check): the world's shape (devices, users, clock skews, schema versions)
 * and a list of steps, app operations mixed with faults. Steps name devices, tables and rows by
 * small indexes, so a shrunk schedule reads as a story and replays from its seed and path.
 */
import fc from 'fast-check';
import type { SqlValue } from '../../lib/protocol/worker-api.js';
import { tablesOf, type Features, type TableSpec } from './world.js';

export type Value =
  | { readonly t: 'text'; readonly s: string }
  | { readonly t: 'int'; readonly n: string }
  | { readonly t: 'blob'; readonly hex: string }
  | { readonly t: 'null' };

export type Step =
  | { readonly kind: 'insert'; readonly device: number; readonly table: number; readonly slot: number; readonly value: Value }
  | { readonly kind: 'update'; readonly device: number; readonly table: number; readonly slot: number; readonly column: number; readonly value: Value }
  | { readonly kind: 'delete'; readonly device: number; readonly table: number; readonly slot: number }
  | { readonly kind: 'wait'; readonly ms: number }
  | { readonly kind: 'cut'; readonly device: number }
  | { readonly kind: 'cut-up'; readonly device: number; readonly after: number }
  | { readonly kind: 'cut-down'; readonly device: number; readonly after: number }
  | { readonly kind: 'drop-ack'; readonly device: number }
  | { readonly kind: 'delay'; readonly device: number; readonly ms: number; readonly frames: number }
  | { readonly kind: 'offline'; readonly device: number }
  | { readonly kind: 'online'; readonly device: number }
  | { readonly kind: 'restart' }
  | { readonly kind: 'crash'; readonly device: number }
  | { readonly kind: 'migrate'; readonly device: number };

export interface Scenario {
  /** The user of each device (2–3 users, 3–6 devices). */
  readonly users: readonly number[];
  readonly skews: readonly number[];
  readonly versions: readonly (1 | 2)[];
  readonly steps: readonly Step[];
}

export const SLOTS = 4;

export function valueArbitrary(features: Features): fc.Arbitrary<Value> {
  const text = fc.string({ maxLength: 6 }).map((s): Value => ({ t: 'text', s }));
  const small = fc.integer({ min: 0, max: 20 }).map((n): Value => ({ t: 'int', n: String(n) }));
  if (!features.richValues) return fc.oneof(text, small);
  return fc.oneof(
    text,
    small,
    fc.constantFrom('é', '漢字', '🙂 ok', 'a\u0000b', 'ß\n"\\').map((s): Value => ({ t: 'text', s })),
    fc.constantFrom('9007199254740993', '-9223372036854775808', '9223372036854775807', '9007199254740992').map((n): Value => ({ t: 'int', n })),
    fc.uint8Array({ maxLength: 8 }).map((bytes): Value => ({ t: 'blob', hex: Buffer.from(bytes).toString('hex') })),
    fc.constant<Value>({ t: 'null' }),
  );
}

export function scenarioArbitrary(features: Features, maxSteps = 60): fc.Arbitrary<Scenario> {
  const tables = tablesOf(features);
  return fc.integer({ min: 3, max: 6 }).chain((count) => {
    const device = fc.integer({ min: 0, max: count - 1 });
    const op = fc.oneof(
      { weight: 4, arbitrary: fc.record({ kind: fc.constant('insert' as const), device, table: fc.nat(tables.length - 1), slot: fc.nat(SLOTS - 1), value: valueArbitrary(features) }) },
      { weight: 4, arbitrary: fc.record({ kind: fc.constant('update' as const), device, table: fc.nat(tables.length - 1), slot: fc.nat(SLOTS - 1), column: fc.nat(3), value: valueArbitrary(features) }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant('delete' as const), device, table: fc.nat(tables.length - 1), slot: fc.nat(SLOTS - 1) }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant('wait' as const), ms: fc.integer({ min: 1, max: 40 }) }) },
    );
    const faults: fc.WeightedArbitrary<Step>[] = [
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('offline' as const), device }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('online' as const), device }) },
    ];
    if (features.cuts) {
      faults.push({ weight: 1, arbitrary: fc.record({ kind: fc.constant('cut' as const), device }) });
      faults.push({ weight: 1, arbitrary: fc.record({ kind: fc.constant('cut-up' as const), device, after: fc.nat(3) }) });
      faults.push({ weight: 1, arbitrary: fc.record({ kind: fc.constant('cut-down' as const), device, after: fc.nat(3) }) });
    }
    if (features.lostAcks) faults.push({ weight: 2, arbitrary: fc.record({ kind: fc.constant('drop-ack' as const), device }) });
    if (features.delays) faults.push({ weight: 1, arbitrary: fc.record({ kind: fc.constant('delay' as const), device, ms: fc.integer({ min: 1, max: 60 }), frames: fc.integer({ min: 1, max: 4 }) }) });
    if (features.restarts) faults.push({ weight: 1, arbitrary: fc.constant<Step>({ kind: 'restart' }) });
    if (features.crashes) faults.push({ weight: 1, arbitrary: fc.record({ kind: fc.constant('crash' as const), device }) });
    if (features.schemaSkew) faults.push({ weight: 1, arbitrary: fc.record({ kind: fc.constant('migrate' as const), device }) });
    const step: fc.Arbitrary<Step> = fc.oneof({ weight: 3, arbitrary: op }, { weight: 1, arbitrary: fc.oneof(...faults) });
    return fc.record({
      users: fc.array(fc.integer({ min: 0, max: 2 }), { minLength: count, maxLength: count }).map((users) => {
        // 2–3 users: the first two devices belong to different users.
        const out = [...users];
        out[0] = 0;
        out[1] = 1;
        return out;
      }),
      skews: fc.array(fc.integer({ min: -10, max: 10 }).map((m) => m * 60_000), { minLength: count, maxLength: count }),
      versions: fc.array(fc.constantFrom<1 | 2>(1, 2), { minLength: count, maxLength: count }),
      steps: fc.array(step, { minLength: 6, maxLength: maxSteps, size: 'max' }),
    });
  });
}

export function toSql(value: Value): SqlValue {
  switch (value.t) {
    case 'text':
      return value.s;
    case 'int': {
      const n = BigInt(value.n);
      return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
    }
    case 'blob':
      return Uint8Array.from(Buffer.from(value.hex, 'hex'));
    case 'null':
      return null;
  }
}

/** A value fit for a column of `kind` (text columns take text, int columns integers). */
export function valueFor(kind: TableSpec['columns'][string], value: Value, fallback: number): SqlValue {
  if (kind === 'any') return toSql(value);
  if (kind === 'text') return value.t === 'text' ? value.s : `v${fallback}`;
  return value.t === 'int' ? toSql(value) : fallback;
}
