/** The drift cap on pushed clocks (LIMITS.maxClockAheadMs): checked before anything is stored. */
import type { ClientChange } from '../lib/protocol/change.js';
import { ErrorKind } from '../lib/protocol/error-kind.js';
import { LIMITS } from '../lib/protocol/up.js';
import { COUNTER_SPAN, formatClock, parseClock } from '../worker/hlc.js';
import { ServerError } from './errors.js';

export function checkClocks(changes: readonly ClientChange[], now: number = Date.now()): void {
  // Pushed clocks were parsed against ClockSchema: 21 zero-padded digits first, so comparing that
  // prefix as a string is comparing the packed number, without parsing each clock.
  const latest = formatClock({ wall: now + LIMITS.maxClockAheadMs, counter: COUNTER_SPAN - 1, deviceId: '' }).slice(0, -1);
  for (const change of changes) {
    if (change.clock.slice(0, latest.length) > latest) {
      const { wall } = parseClock(change.clock);
      const minutes = Math.round((wall - now) / 60_000);
      throw new ServerError(
        ErrorKind.Invalid,
        `change ${change.id} has a clock ${minutes} minutes ahead of the server's (at most ${LIMITS.maxClockAheadMs / 60_000} allowed): the device's clock is wrong; nothing was stored`,
      );
    }
  }
}
