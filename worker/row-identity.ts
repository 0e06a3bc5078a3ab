/**
 * Row identity by primary key (DESIGN.md invariant 10, "identity follows the table").
 *
 * A table whose declared primary key is not its rowid (a TEXT key, a composite key, any WITHOUT
 * ROWID table, an INTEGER key of one included) is identified across devices by that key: its rows'
 * ps_global_id is derived from the key values, so two devices inserting key 'theme' offline write
 * one row, merged per column like any other edit, instead of two rows one of which the other
 * device's UNIQUE constraint must refuse. Rowid tables (INTEGER PRIMARY KEY, or no declared key)
 * keep random time-first ids: their keys are local row numbers that two devices hand out
 * independently.
 *
 * The id is `k` followed by the 128-bit MurmurHash3 (x86_128, seed 0) of a canonical encoding of the
 * key values, 32 lowercase hex digits. Random ids are 32 hex digits, so the `k` keeps the two kinds
 * apart. The encoding is tagged by SQLite's storage class, and follows SQLite's own equality: values
 * a UNIQUE key treats as equal encode the same (an integral REAL as the integer it equals, -0.0 as
 * 0), values it tells apart encode differently (the integer 1, the text '1' and the blob x'31').
 * Text is encoded as its UTF-8 bytes: a key declared COLLATE NOCASE still tells 'A' from 'a' here.
 *
 * ps_key_id(k1, k2, ...) (NULL when a key value is NULL) is registered as a SQL function so that the triggers assign
 * the id on every insert path (the typed API, raw SQL, migrations, rows backfilled at open), and
 * re-assign it when an UPDATE changes the key. It is a raw WebAssembly callback reading the values'
 * bytes from SQLite's memory, like the capture functions (engine.ts).
 */
import type { Sqlite3Static } from '@sqlite.org/sqlite-wasm';

export const KEY_ID_PREFIX = 'k';

/** A key value as SQLite holds it. */
export type KeyValue = null | bigint | number | string | Uint8Array;

const TAG_INTEGER = 1;
const TAG_REAL = 2;
const TAG_TEXT = 3;
const TAG_BLOB = 4;

// Storage classes (sqlite3.h).
const SQLITE_INTEGER = 1;
const SQLITE_FLOAT = 2;
const SQLITE_TEXT = 3;
const SQLITE_BLOB = 4;

const TWO_TO_63 = 2 ** 63;

/** Grows as needed; the encoding of one key is written here, then hashed. */
class Encoder {
  #bytes = new Uint8Array(256);
  #view = new DataView(this.#bytes.buffer);
  length = 0;

  reset(): void {
    this.length = 0;
  }

  #reserve(n: number): void {
    if (this.length + n <= this.#bytes.length) return;
    const bigger = new Uint8Array(Math.max(this.#bytes.length * 2, this.length + n));
    bigger.set(this.#bytes.subarray(0, this.length));
    this.#bytes = bigger;
    this.#view = new DataView(bigger.buffer);
  }

  tag(tag: number): void {
    this.#reserve(1);
    this.#bytes[this.length++] = tag;
  }

  integer(value: bigint): void {
    this.tag(TAG_INTEGER);
    this.#reserve(8);
    this.#view.setBigInt64(this.length, value);
    this.length += 8;
  }

  real(value: number): void {
    // SQLite compares an integer and a REAL by value, so a UNIQUE key holds 1 and 1.0 as one key.
    if (Number.isInteger(value) && value >= -TWO_TO_63 && value < TWO_TO_63) {
      this.integer(BigInt(value));
      return;
    }
    this.tag(TAG_REAL);
    this.#reserve(8);
    this.#view.setFloat64(this.length, value);
    this.length += 8;
  }

  /** A tag, the byte length, then the bytes. */
  bytes(tag: number, bytes: Uint8Array): void {
    this.tag(tag);
    this.#reserve(4 + bytes.length);
    this.#view.setUint32(this.length, bytes.length);
    this.#bytes.set(bytes, this.length + 4);
    this.length += 4 + bytes.length;
  }

  get encoded(): Uint8Array {
    return this.#bytes.subarray(0, this.length);
  }
}

const textEncoder = new TextEncoder();

/**
 * The ps_global_id of the row whose primary key holds `values`, in key order; null when one of them
 * is NULL (a rowid table's key may hold NULLs, and they are all distinct: such a row gets a random id).
 */
export function keyIdentity(values: readonly KeyValue[]): string | null {
  const encoder = new Encoder();
  for (const value of values) {
    if (value === null) return null;
    if (typeof value === 'bigint') encoder.integer(value);
    else if (typeof value === 'number') encoder.real(value);
    else if (typeof value === 'string') encoder.bytes(TAG_TEXT, textEncoder.encode(value));
    else encoder.bytes(TAG_BLOB, value);
  }
  return KEY_ID_PREFIX + murmur3x86_128(encoder.encoded);
}

interface ValueExports {
  sqlite3_value_type(value: number): number;
  sqlite3_value_int64(value: number): bigint;
  sqlite3_value_double(value: number): number;
  sqlite3_value_blob(value: number): number;
  sqlite3_value_bytes(value: number): number;
}

/** Registers ps_key_id(...) on the connection; returns the function pointer to uninstall at close. */
export function registerKeyIdFunction(sqlite3: Sqlite3Static, db: number): number {
  const { capi, wasm } = sqlite3;
  const exports = (wasm as unknown as { exports: ValueExports }).exports;
  const encoder = new Encoder();
  const pointer = wasm.installFunction('v(pip)', (ctx: number, argc: number, argv: number) => {
    encoder.reset();
    // Copied out first: reading a value may grow the WebAssembly memory and detach a view of it.
    const args = Array.from(new Uint32Array(wasm.heap8u().buffer, argv, argc));
    for (const value of args) {
      switch (exports.sqlite3_value_type(value)) {
        case SQLITE_INTEGER:
          encoder.integer(exports.sqlite3_value_int64(value));
          break;
        case SQLITE_FLOAT:
          encoder.real(exports.sqlite3_value_double(value));
          break;
        case SQLITE_TEXT:
        case SQLITE_BLOB: {
          // For TEXT, sqlite3_value_blob gives the UTF-8 bytes as stored (the database is UTF-8).
          const type = exports.sqlite3_value_type(value);
          const at = exports.sqlite3_value_blob(value);
          const length = exports.sqlite3_value_bytes(value);
          encoder.bytes(type === SQLITE_TEXT ? TAG_TEXT : TAG_BLOB, wasm.heap8u().subarray(at, at + length));
          break;
        }
        default:
          // NULLs in a key are all distinct (SQL NULLs never equal): no identity by key.
          capi.sqlite3_result_null(ctx);
          return;
      }
    }
    capi.sqlite3_result_text(ctx, KEY_ID_PREFIX + murmur3x86_128(encoder.encoded), -1, capi.SQLITE_TRANSIENT);
  });
  capi.sqlite3_create_function_v2(db, 'ps_key_id', -1, capi.SQLITE_UTF8, 0, pointer, 0, 0, 0);
  return pointer;
}

// ---- MurmurHash3 x86_128 (Austin Appleby, public domain), on 32-bit integers ----

const C1 = 0x239b961b;
const C2 = 0xab0e9789;
const C3 = 0x38b34ae5;
const C4 = 0xa1e38b93;

const rotl = (x: number, r: number) => (x << r) | (x >>> (32 - r));

function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

const mix1 = (k: number) => Math.imul(rotl(Math.imul(k, C1), 15), C2);
const mix2 = (k: number) => Math.imul(rotl(Math.imul(k, C2), 16), C3);
const mix3 = (k: number) => Math.imul(rotl(Math.imul(k, C3), 17), C4);
const mix4 = (k: number) => Math.imul(rotl(Math.imul(k, C4), 18), C1);

const hex8 = (h: number) => (h >>> 0).toString(16).padStart(8, '0');

/** The 128-bit hash as 32 hex digits (h1..h4, as the reference implementation's tests print it). */
export function murmur3x86_128(bytes: Uint8Array, seed = 0): string {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const blocks = bytes.length >>> 4;
  let h1 = seed | 0;
  let h2 = seed | 0;
  let h3 = seed | 0;
  let h4 = seed | 0;
  for (let i = 0; i < blocks; i++) {
    const at = i * 16;
    h1 ^= mix1(view.getUint32(at, true));
    h1 = (Math.imul((rotl(h1, 19) + h2) | 0, 5) + 0x561ccd1b) | 0;
    h2 ^= mix2(view.getUint32(at + 4, true));
    h2 = (Math.imul((rotl(h2, 17) + h3) | 0, 5) + 0x0bcaa747) | 0;
    h3 ^= mix3(view.getUint32(at + 8, true));
    h3 = (Math.imul((rotl(h3, 15) + h4) | 0, 5) + 0x96cd1c35) | 0;
    h4 ^= mix4(view.getUint32(at + 12, true));
    h4 = (Math.imul((rotl(h4, 13) + h1) | 0, 5) + 0x32ac3b17) | 0;
  }
  // The tail, read as a zero-padded block: a word with no tail byte in it is not mixed in.
  const rest = bytes.length & 15;
  if (rest > 0) {
    const tail = new Uint8Array(16);
    tail.set(bytes.subarray(blocks * 16));
    const words = new DataView(tail.buffer);
    if (rest > 12) h4 ^= mix4(words.getUint32(12, true));
    if (rest > 8) h3 ^= mix3(words.getUint32(8, true));
    if (rest > 4) h2 ^= mix2(words.getUint32(4, true));
    h1 ^= mix1(words.getUint32(0, true));
  }
  h1 ^= bytes.length;
  h2 ^= bytes.length;
  h3 ^= bytes.length;
  h4 ^= bytes.length;
  h1 = (h1 + h2 + h3 + h4) | 0;
  h2 = (h2 + h1) | 0;
  h3 = (h3 + h1) | 0;
  h4 = (h4 + h1) | 0;
  h1 = fmix(h1);
  h2 = fmix(h2);
  h3 = fmix(h3);
  h4 = fmix(h4);
  h1 = (h1 + h2 + h3 + h4) | 0;
  h2 = (h2 + h1) | 0;
  h3 = (h3 + h1) | 0;
  h4 = (h4 + h1) | 0;
  return hex8(h1) + hex8(h2) + hex8(h3) + hex8(h4);
}
