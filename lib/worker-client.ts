/**
 * The main thread's handle on the worker: unwraps each Result into a value or a PocketSyncError,
 * counts calls in flight (so watchers can wait for a burst of writes to finish), and fails every
 * pending and later call with kind 'closed' once the worker is gone, instead of leaving it hanging.
 */
import { releaseProxy, type Remote } from 'comlink';
import { PocketSyncError } from './errors.js';
import { ErrorKind, type Result } from './protocol/error-kind.js';
import type { WorkerApi } from './protocol/worker-api.js';

export class WorkerClient {
  readonly #remote: Remote<WorkerApi>;
  #inFlight = 0;
  #idleWaiters: Array<() => void> = [];
  #closedError: PocketSyncError | null = null;
  readonly #closed: Promise<never>;
  #rejectClosed!: (error: PocketSyncError) => void;

  constructor(remote: Remote<WorkerApi>) {
    this.#remote = remote;
    this.#closed = new Promise<never>((_, reject) => {
      this.#rejectClosed = reject;
    });
    this.#closed.catch(() => undefined);
  }

  get isClosed(): boolean {
    return this.#closedError !== null;
  }

  async call<T>(fn: (api: Remote<WorkerApi>) => Promise<Result<T>>): Promise<T> {
    if (this.#closedError) throw this.#closedError;
    this.#inFlight++;
    try {
      const result = await Promise.race([fn(this.#remote), this.#closed]);
      if (!result.ok) throw PocketSyncError.from(result.error);
      return result.value;
    } finally {
      if (--this.#inFlight === 0) {
        const waiters = this.#idleWaiters;
        this.#idleWaiters = [];
        for (const resolve of waiters) resolve();
      }
    }
  }

  /** Resolves when no call is in flight. */
  whenIdle(): Promise<void> {
    if (this.#inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /** Fails pending and future calls with kind 'closed'. */
  markClosed(reason: string): void {
    if (this.#closedError) return;
    this.#closedError = new PocketSyncError(ErrorKind.Closed, reason);
    this.#rejectClosed(this.#closedError);
    this.#remote[releaseProxy]();
  }
}
