/**
 * Hybrid logical clock: wall time in milliseconds, a counter for events within one millisecond, and
 * the device id that breaks ties. Wall and counter travel packed in one integer, wall × 1024 +
 * counter (exact in a double until the year 2248), and the string form is that integer in 21
 * zero-padded digits, a dash and the device id, so that string order is clock order:
 *
 *   001807659474468635648-3f9c2a71d04b8e55
 *
 * `now()` stamps a local event; `receive()` advances the clock past a remote stamp, so that every
 * later local stamp sorts after every stamp this device has seen. `tick()` is `now()` without the
 * string: the capture triggers take that number and format it in SQL (formatClockSql), which is
 * cheaper than passing a string out of JavaScript.
 */
const PACKED_DIGITS = 21;
export const COUNTER_SPAN = 1024;

export interface ClockStamp {
  readonly wall: number;
  readonly counter: number;
  readonly deviceId: string;
}

export function formatClock({ wall, counter, deviceId }: ClockStamp): string {
  return `${String(wall * COUNTER_SPAN + counter).padStart(PACKED_DIGITS, '0')}-${deviceId}`;
}

/** The SQL expression that formats the packed stamp `expr` (evaluated once) exactly as formatClock does. */
export function formatClockSql(expr: string, deviceIdLiteral: string): string {
  return `printf('%0${PACKED_DIGITS}d-%s', ${expr}, ${deviceIdLiteral})`;
}

const CLOCK_PATTERN = new RegExp(`^(\\d{${PACKED_DIGITS}})-(.+)$`);

export function parseClock(clock: string): ClockStamp {
  const match = CLOCK_PATTERN.exec(clock);
  if (!match) throw new Error(`not a clock: ${clock}`);
  const packed = Number(match[1]);
  return { wall: Math.floor(packed / COUNTER_SPAN), counter: packed % COUNTER_SPAN, deviceId: match[2] ?? '' };
}

export class HybridLogicalClock {
  #wall = 0;
  #counter = 0;
  readonly deviceId: string;
  readonly #time: () => number;

  constructor(deviceId: string, time: () => number = Date.now) {
    this.deviceId = deviceId;
    this.#time = time;
  }

  /** A stamp for a local event, greater than every stamp issued or received before. */
  now(): string {
    this.tick();
    return formatClock({ wall: this.#wall, counter: this.#counter, deviceId: this.deviceId });
  }

  /** Advances like `now()` and returns the stamp packed as wall × 1024 + counter. */
  tick(): number {
    const physical = this.#time();
    if (physical > this.#wall) {
      this.#wall = physical;
      this.#counter = 0;
    } else if (this.#counter < COUNTER_SPAN - 1) {
      this.#counter++;
    } else {
      // More events in one millisecond than the counter holds: borrow the next millisecond.
      this.#wall++;
      this.#counter = 0;
    }
    return this.#wall * COUNTER_SPAN + this.#counter;
  }

  /** The physical clock this HLC reads (Date.now unless a test gave another). */
  physical(): number {
    return this.#time();
  }

  /**
   * Forgets every stamp issued or seen, so the next one comes from the physical clock. Only for
   * stamps that never left this device: see Replica.restampIfAhead.
   */
  restart(): void {
    this.#wall = 0;
    this.#counter = 0;
  }

  /** Advance past a stamp seen elsewhere (a remote change, or the newest stamp stored locally). */
  receive(clock: string): void {
    const { wall, counter } = parseClock(clock);
    if (wall > this.#wall || (wall === this.#wall && counter > this.#counter)) {
      this.#wall = wall;
      this.#counter = counter;
    }
  }
}
