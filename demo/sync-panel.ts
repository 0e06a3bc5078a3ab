/**
 * Sync made visible: the connection state (the page's one role=status element), pending changes,
 * last synced, a progress bar and the count of changes left during catch-up, the storage in use, and conflicts as they happen.
 */
import type { Conflict, PocketSync, SyncStatus } from 'pocketsync';

const STATE_TEXT: Record<SyncStatus['state'], string> = {
  live: 'Live',
  offline: 'Offline',
  connecting: 'Connecting…',
  'catching-up': 'Catching up…',
  error: 'Sync error',
};

function element<T extends HTMLElement = HTMLElement>(id: string): T {
  return document.getElementById(id) as T;
}

export function mountSyncPanel(pocketSync: PocketSync): void {
  const storage = element('storage');
  // The memory fallback comes with a warning that says how far it persists.
  storage.textContent = pocketSync.storage !== 'memory' ? `${pocketSync.storage} (persisted)` : pocketSync.warning ? 'memory' : 'memory (not persisted)';
  const warning = element('storage-warning');
  const showWarning = (text: string | undefined) => {
    warning.textContent = text ?? '';
    warning.hidden = !text;
  };
  showWarning(pocketSync.warning);
  pocketSync.onWarning(showWarning);

  const connection = element('connection');
  const progress = element<HTMLProgressElement>('catch-up');
  const catchUpCount = element('catch-up-count');
  const pending = element('pending');
  const lastSynced = element('last-synced');
  if (!pocketSync.sync.enabled) {
    connection.dataset.state = 'local';
    connection.textContent = 'Local only: this browser keeps the todos, nothing syncs';
    return;
  }
  pocketSync.sync.subscribe((status) => {
    connection.dataset.state = status.state;
    connection.textContent = describeState(status);
    const catchUp = status.state === 'catching-up' ? status.progress : null;
    progress.hidden = catchUp === null || catchUp.total === 0;
    if (catchUp && catchUp.total > 0) {
      progress.max = catchUp.total;
      progress.value = catchUp.done;
      progress.setAttribute('aria-valuetext', `${catchUp.done} of ${catchUp.total} changes`);
    }
    catchUpCount.hidden = catchUp === null || catchUp.total === 0;
    catchUpCount.textContent = catchUp ? `Catching up: ${catchUp.done.toLocaleString()} of ${catchUp.total.toLocaleString()} changes, ${(catchUp.total - catchUp.done).toLocaleString()} to go` : '';
    pending.textContent = String(status.pending);
    lastSynced.textContent = status.lastSyncedAt === null ? 'never' : new Date(status.lastSyncedAt).toLocaleTimeString();
  });

  const conflicts = element('conflicts');
  const log = element<HTMLOListElement>('conflict-log');
  pocketSync.sync.onConflict((conflict) => {
    conflicts.hidden = false;
    log.prepend(Object.assign(document.createElement('li'), { textContent: describeConflict(conflict) }));
  });
}

/** The state, and while sync fails, why and when it tries again: never a silent "Connecting…". */
function describeState(status: SyncStatus): string {
  if (!status.error) return STATE_TEXT[status.state];
  const label = status.state === 'error' ? STATE_TEXT.error : `${STATE_TEXT[status.state]} (${status.error.kind})`;
  const retry = status.retryAt === null ? '' : `; trying again at ${new Date(status.retryAt).toLocaleTimeString()}`;
  return `${label}: ${status.error.message}${retry}`;
}

function describeConflict(conflict: Conflict): string {
  const what = conflict.column ? `${conflict.table}.${conflict.column}` : `a row of ${conflict.table}`;
  const shown = (side: Conflict['losing']): string => (side.op === 'delete' ? 'a delete' : side.value === undefined ? `an ${side.op}` : JSON.stringify(side.value));
  return `${new Date().toLocaleTimeString()}: ${what}: this device wrote ${shown(conflict.losing)}, another device's ${shown(conflict.winning)} won (${conflict.rule})`;
}
