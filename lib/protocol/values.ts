/**
 * Column values as they travel in JSON: strings, finite numbers, null, BLOBs as
 * `{ "$base16": "<hex>" }` (the same form the capture triggers write), and integers outside the
 * range a JSON number (a double) holds exactly, ±(2^53 - 1), as `{ "$int": "<decimal>" }`, so that
 * 64-bit integers travel exactly. An integer inside that range is always a plain number. A REAL
 * SQLite holds as infinity, which JSON has no number for, is `{ "$real": "Infinity" }` (or
 * `"-Infinity"`); NaN never reaches the wire, as SQLite stores it as NULL.
 */
import * as v from 'valibot';

export const BlobValueSchema = v.strictObject({ $base16: v.pipe(v.string(), v.regex(/^(?:[0-9A-Fa-f]{2})*$/, 'not hex')) });
export const IntValueSchema = v.strictObject({
  $int: v.pipe(
    v.string(),
    v.regex(/^-?[1-9][0-9]{15,18}$/, 'not a 64-bit integer beyond ±(2^53 - 1)'),
    v.check((text) => {
      // The regex's failure does not end the pipe: BigInt would throw on what it refused.
      if (!/^-?[0-9]{1,19}$/.test(text)) return false;
      const n = BigInt(text);
      return (n > 9007199254740991n || n < -9007199254740991n) && n <= 9223372036854775807n && n >= -9223372036854775808n;
    }, 'not a 64-bit integer beyond ±(2^53 - 1)'),
  ),
});
export const RealValueSchema = v.strictObject({ $real: v.picklist(['Infinity', '-Infinity'], 'not Infinity or -Infinity') });
export const ColumnValueSchema = v.union([v.string(), v.pipe(v.number(), v.finite()), v.null(), BlobValueSchema, IntValueSchema, RealValueSchema]);
export type ColumnValue = v.InferOutput<typeof ColumnValueSchema>;

/** SQL identifiers PocketSync accepts for tables and columns: plain, and never its own prefix. */
export const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/**
 * Names the wire cannot carry as keys of a JSON object: parsers and objects treat them as the
 * object's own machinery (valibot drops them; `o.__proto__ = x` sets a prototype). A table or column
 * so named is refused when the schema is declared. Every other name, `toString` and `valueOf`
 * included, is an ordinary key: records that hold columns have no prototype (`record()`), and reads
 * go through `own()`.
 */
export const WIRE_RESERVED_NAMES: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

export const IdentifierSchema = v.pipe(
  v.string(),
  v.regex(IDENTIFIER, 'must be an identifier: letters, digits and _, not starting with a digit, at most 63 characters'),
  v.check((name) => !name.startsWith('__pocketsync_') && !name.toLowerCase().startsWith('sqlite_'), 'is a reserved name'),
  v.check((name) => !WIRE_RESERVED_NAMES.has(name), 'is a name the wire cannot carry (__proto__, constructor, prototype)'),
);

/** A record keyed by column names, with no prototype: `toString` is a key like any other. */
export function record<T>(from?: Readonly<Record<string, T>>): Record<string, T> {
  const out = Object.create(null) as Record<string, T>;
  if (from) for (const key of Object.keys(from)) out[key] = from[key] as T;
  return out;
}

/** `from[key]` when it is `from`'s own property (never an inherited one such as `toString`). */
export function own<T>(from: Readonly<Record<string, T>> | undefined, key: string): T | undefined {
  return from !== undefined && Object.hasOwn(from, key) ? from[key] : undefined;
}

/** Hybrid-logical-clock stamps (worker/hlc.ts): 21 digits, a dash, the device id. */
export const ClockSchema = v.pipe(v.string(), v.regex(/^\d{21}-[A-Za-z0-9_-]{1,64}$/, 'not a clock stamp'));
/** A user id, in tokens' `sub` and the backend API: 1–128 characters of [A-Za-z0-9_.@:-]. */
export const USER_ID = /^[A-Za-z0-9_.@:-]{1,128}$/;
export const USER_ID_RULE = 'a user id is 1-128 characters of A-Z a-z 0-9 _ . @ : -';

/**
 * A record (column → value) that is an object on the wire: valibot's record() and object schemas
 * take an array too (as an object with no keys of their kind), which a record never is.
 */
export function WireRecordSchema<K extends v.GenericSchema<string, string>, V extends v.GenericSchema>(key: K, value: V) {
  return v.pipe(
    v.custom<Record<string, unknown>>((raw) => !Array.isArray(raw), 'must be an object, not a list'),
    v.record(key, value),
  );
}

/** Change ids and row ids (ps_global_id): opaque, 1–64 characters of [A-Za-z0-9_-]. */
export const IdSchema = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be 1-64 characters of A-Z a-z 0-9 _ -'));
