/** Messages from the server to a device. */
import type { LostWrite, PushResult, RowChange } from './change.js';
import type { ErrorKind } from './error-kind.js';

/** The answer to a push: one result per change, in push order, sent only after commit. */
export interface Ack {
  readonly type: 'ack';
  readonly results: readonly PushResult[];
  /** The pushed writes that lost to others (absent when none did). */
  readonly conflicts?: readonly LostWrite[];
  /**
   * The server's state of every pushed row that the device cannot derive from its own write and
   * what it has applied: a write that lost (whole or in part), a duplicate, a row the merge brought
   * back or completed, any row under a rule other than clock order. The device applies these after
   * the ack, so it ends with exactly the server's row under every rule.
   */
  readonly rows?: readonly RowChange[];
}

/**
 * A batch of effective row changes in seq order. `cursor` is the seq to resume from; `remaining`
 * counts the rows still to come in this catch-up (0 when live).
 */
export interface Changes {
  readonly type: 'changes';
  readonly changes: readonly RowChange[];
  readonly cursor: number;
  readonly hasMore: boolean;
  readonly remaining: number;
}

export interface ErrorMessage {
  readonly type: 'error';
  readonly kind: ErrorKind;
  readonly message: string;
}

export type DownMessage = Ack | Changes | ErrorMessage;
