/** The drift cap on pushed clocks (LIMITS.maxClockAheadMs): checked before anything is stored. */
import type { ClientChange } from '../lib/protocol/change.js';
import { ErrorKind } from '../lib/protocol/error-kind.js';
import { LIMITS } from '../lib/protocol/up.js';
import { parseClock } from '../worker/hlc.js';
import { ServerError } from './errors.js';

export function checkClocks(changes: readonly ClientChange[], now: number = Date.now()): void {
  const latest = now + LIMITS.maxClockAheadMs;
  for (const change of changes) {
    const { wall } = parseClock(change.clock);
    if (wall > latest) {
      const minutes = Math.round((wall - now) / 60_000);
      throw new ServerError(
        ErrorKind.Invalid,
        `change ${change.id} has a clock ${minutes} minutes ahead of the server's (at most ${LIMITS.maxClockAheadMs / 60_000} allowed): the device's clock is wrong; nothing was stored`,
      );
    }
  }
}
