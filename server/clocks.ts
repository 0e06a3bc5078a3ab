/** The drift cap on pushed clocks (LIMITS.maxClockAheadMs): checked per change before anything is stored. */
import type { ClientChange } from '../lib/protocol/change.js';
import { LIMITS } from '../lib/protocol/up.js';
import { COUNTER_SPAN, formatClock, parseClock } from '../worker/hlc.js';

/** A check of changes against the cap at `now`: why a change's clock is refused, or null when it is fine. */
export function clockCheck(now: number = Date.now()): (change: ClientChange) => string | null {
  // Pushed clocks were parsed against ClockSchema: 21 zero-padded digits first, so comparing that
  // prefix as a string is comparing the packed number, without parsing each clock.
  const latest = formatClock({ wall: now + LIMITS.maxClockAheadMs, counter: COUNTER_SPAN - 1, deviceId: '' }).slice(0, -1);
  return (change) => {
    if (change.clock.slice(0, latest.length) <= latest) return null;
    const minutes = Math.round((parseClock(change.clock).wall - now) / 60_000);
    return `clock: ${minutes} minutes ahead of the server's (at most ${LIMITS.maxClockAheadMs / 60_000} allowed): the device's clock is wrong`;
  };
}
