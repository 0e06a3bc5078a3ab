/**
 * The hot path into SQLite, through the WebAssembly exports themselves.
 *
 * sqlite-wasm's convenience layers (oo1's Stmt.bind, the capi wrappers made by xWrap) check and
 * convert every argument and allocate a C string per bound string. That costs more than the
 * insert: binding five values through oo1 took ~16 µs, the same binds through the exports ~3 µs
 * (Node 20, measured while building bench/capture.ts). Here strings and blobs are encoded into
 * one scratch buffer in WebAssembly memory and bound with SQLITE_TRANSIENT, so SQLite copies them
 * and the buffer is free again at once.
 */
import type { Sqlite3Static } from '@sqlite.org/sqlite-wasm';
import { ErrorKind } from '../lib/protocol/error-kind.js';
import type { Params, SqlValue } from '../lib/protocol/worker-api.js';
import { EngineError } from './engine-error.js';

/** The few exports used here, as the WebAssembly module declares them (pointers are numbers). */
interface Exports {
  sqlite3_bind_null(stmt: number, i: number): number;
  sqlite3_bind_int(stmt: number, i: number, value: number): number;
  sqlite3_bind_int64(stmt: number, i: number, value: bigint): number;
  sqlite3_bind_double(stmt: number, i: number, value: number): number;
  sqlite3_bind_text(stmt: number, i: number, text: number, bytes: number, destructor: number): number;
  sqlite3_bind_blob(stmt: number, i: number, blob: number, bytes: number, destructor: number): number;
  sqlite3_bind_parameter_count(stmt: number): number;
  sqlite3_bind_parameter_index(stmt: number, name: number): number;
  sqlite3_step(stmt: number): number;
  sqlite3_reset(stmt: number): number;
  sqlite3_clear_bindings(stmt: number): number;
  sqlite3_total_changes(db: number): number;
  sqlite3_changes(db: number): number;
  sqlite3_last_insert_rowid(db: number): bigint;
  sqlite3_get_autocommit(db: number): number;
  sqlite3_result_int(ctx: number, value: number): void;
  sqlite3_result_int64(ctx: number, value: bigint): void;
  sqlite3_value_int(value: number): number;
}

const SQLITE_OK = 0;
const SQLITE_RANGE = 25;
const SQLITE_TRANSIENT = -1;
const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

export class RawSqlite {
  readonly exports: Exports;
  readonly #wasm: Sqlite3Static['wasm'];
  readonly #encoder = new TextEncoder();
  #scratch: number;
  #scratchSize: number;

  constructor(sqlite3: Sqlite3Static) {
    this.#wasm = sqlite3.wasm;
    this.exports = (sqlite3.wasm as unknown as { exports: Exports }).exports;
    this.#scratchSize = 4096;
    this.#scratch = Number(this.#wasm.alloc(this.#scratchSize));
  }

  /** The int argument `argv[0]` of a function call. */
  firstIntArgument(argv: number): number {
    const pointer = new Uint32Array(this.#heap().buffer, argv, 1)[0] ?? 0;
    return this.exports.sqlite3_value_int(pointer);
  }

  /** Binds positional (array) or named (object, with their ':', '@' or '$' prefix) parameters. */
  bind(stmt: number, params: Params): void {
    if (Array.isArray(params)) {
      const values = params as readonly SqlValue[];
      const expected = this.exports.sqlite3_bind_parameter_count(stmt);
      if (values.length !== expected) {
        throw new EngineError(ErrorKind.Database, `the statement takes ${expected} parameters, ${values.length} were given`);
      }
      for (let i = 0; i < values.length; i++) this.#bindOne(stmt, i + 1, values[i]);
      return;
    }
    for (const [name, value] of Object.entries(params as Record<string, SqlValue>)) {
      const index = this.exports.sqlite3_bind_parameter_index(stmt, this.#cString(name));
      if (index === 0) throw new EngineError(ErrorKind.Database, `the statement has no parameter named ${name}`);
      this.#bindOne(stmt, index, value);
    }
  }

  #bindOne(stmt: number, index: number, value: SqlValue | boolean | undefined): void {
    const e = this.exports;
    let rc: number;
    switch (typeof value) {
      case 'string': {
        const [pointer, bytes] = this.#encode(value);
        rc = e.sqlite3_bind_text(stmt, index, pointer, bytes, SQLITE_TRANSIENT);
        break;
      }
      case 'number':
        if (Number.isInteger(value)) {
          rc = value >= INT32_MIN && value <= INT32_MAX ? e.sqlite3_bind_int(stmt, index, value) : e.sqlite3_bind_int64(stmt, index, BigInt(value));
        } else rc = e.sqlite3_bind_double(stmt, index, value);
        break;
      case 'bigint':
        rc = e.sqlite3_bind_int64(stmt, index, value);
        break;
      case 'boolean':
        rc = e.sqlite3_bind_int(stmt, index, value ? 1 : 0);
        break;
      case 'undefined':
        rc = e.sqlite3_bind_null(stmt, index);
        break;
      default:
        if (value === null) rc = e.sqlite3_bind_null(stmt, index);
        else if (value instanceof Uint8Array) {
          const pointer = this.#reserve(value.byteLength);
          this.#heap().set(value, pointer);
          rc = e.sqlite3_bind_blob(stmt, index, pointer, value.byteLength, SQLITE_TRANSIENT);
        } else throw new EngineError(ErrorKind.Invalid, `cannot bind a value of type ${Object.prototype.toString.call(value)} (parameter ${index})`);
    }
    if (rc === SQLITE_RANGE) throw new EngineError(ErrorKind.Database, `parameter ${index} is out of range`);
    if (rc !== SQLITE_OK) throw new EngineError(ErrorKind.Database, `binding parameter ${index} failed (SQLite code ${rc})`);
  }

  #heap(): Uint8Array {
    // A fresh view each time: the WebAssembly memory may have grown (and detached the old one).
    return this.#wasm.heap8u();
  }

  /** A scratch region of at least `bytes` bytes, valid until the next call. */
  #reserve(bytes: number): number {
    if (bytes > this.#scratchSize) {
      this.#wasm.dealloc(this.#scratch);
      this.#scratchSize = Math.max(bytes, this.#scratchSize * 2);
      this.#scratch = Number(this.#wasm.alloc(this.#scratchSize));
    }
    return this.#scratch;
  }

  /** UTF-8 of `text` in the scratch buffer: [pointer, byte length]. */
  #encode(text: string): [number, number] {
    // Three bytes per UTF-16 unit is the worst case; ASCII needs one.
    const pointer = this.#reserve(text.length * 3);
    const { written } = this.#encoder.encodeInto(text, this.#heap().subarray(pointer, pointer + this.#scratchSize));
    return [pointer, written];
  }

  /** A NUL-terminated copy of `text` in the scratch buffer. */
  #cString(text: string): number {
    const pointer = this.#reserve(text.length * 3 + 1);
    const { written } = this.#encoder.encodeInto(text, this.#heap().subarray(pointer, pointer + this.#scratchSize - 1));
    this.#heap()[pointer + written] = 0;
    return pointer;
  }
}
