/**
 * Whether the device has a network, for the sync loop: it closes its socket when the network goes
 * and reconnects at once when it returns, instead of waiting out its backoff.
 *
 * Why navigator.onLine is also polled: Chromium does not fire 'online' / 'offline' on a worker's
 * global scope (there is no `ononline` on WorkerGlobalScope there), though the worker's
 * navigator.onLine does follow the network, DevTools' offline emulation included (measured in
 * Debian's Chromium with playwright's context.setOffline). The events are listened to where they
 * exist (Firefox workers, windows); the poll is one property read a second.
 *
 * Without navigator.onLine (Node) the network is always there and never changes.
 */

export interface Network {
  /** True unless the platform knows there is no network. */
  readonly online: boolean;
  /**
   * Calls `listener` with the new value each time `online` changes (never twice with the same
   * value in a row); returns the function that stops watching.
   */
  watch(listener: (online: boolean) => void): () => void;
}

const POLL_MS = 1_000;

function navigatorOnLine(): boolean | undefined {
  const nav = (globalThis as { navigator?: { onLine?: unknown } }).navigator;
  return typeof nav?.onLine === 'boolean' ? nav.onLine : undefined;
}

/** The platform's network: navigator.onLine, its events where fired, and a poll where not. */
export function platformNetwork(): Network {
  return {
    get online() {
      return navigatorOnLine() ?? true;
    },
    watch(listener) {
      if (navigatorOnLine() === undefined) return () => undefined;
      let last = navigatorOnLine() ?? true;
      const check = (): void => {
        const now = navigatorOnLine() ?? true;
        if (now === last) return;
        last = now;
        listener(now);
      };
      const target = typeof globalThis.addEventListener === 'function' ? globalThis : null;
      target?.addEventListener('online', check);
      target?.addEventListener('offline', check);
      const timer = setInterval(check, POLL_MS);
      return () => {
        clearInterval(timer);
        target?.removeEventListener('online', check);
        target?.removeEventListener('offline', check);
      };
    },
  };
}
