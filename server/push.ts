/**
 * What a push goes through, over HTTP and over the socket alike: the drift cap on its clocks, the
 * store's atomic push, and the ack that answers it. Each caller then does its own after-commit
 * work (the socket fans out; the HTTP route records the device and calls onCommit).
 */
import type { Ack } from '../lib/protocol/down.js';
import * as v from 'valibot';
import { IdSchema } from '../lib/protocol/values.js';
import { checkClocks } from './clocks.js';
import type { Project, PushInput, PushOutput, Store } from './store/store.js';

export async function acceptPush(store: Store, input: PushInput): Promise<{ out: PushOutput; ack: Ack }> {
  checkClocks(input.changes);
  const out = await store.push(input);
  const ack: Ack = { type: 'ack', results: out.results, ...(out.conflicts.length > 0 ? { conflicts: out.conflicts, rows: out.settled } : {}) };
  return { out, ack };
}

/** The project named in a URL, or null when there is none (a name that is not an id included). */
export async function findProject(store: Store, id: string): Promise<Project | null> {
  return v.is(IdSchema, id) ? store.getProject(id) : null;
}
