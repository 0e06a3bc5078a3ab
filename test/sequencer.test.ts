/**
 * The sequencer (server/sequencer.ts) over a real store: commits reach the hub in seq order
 * however they arrive, and a gap left open is read from the store.
 */
import { expect, it } from 'vitest';
import type { ClientChange } from '../lib/protocol/change.js';
import { Sequencer } from '../server/sequencer.js';
import { SqliteStore } from '../server/store/sqlite-store.js';
import type { PushOutput, ScopedRowChange } from '../server/store/store.js';
import { formatClock } from '../worker/hlc.js';
import { waitFor } from './helpers/instance.js';

let n = 0;
const insert = (): ClientChange => {
  n++;
  return { id: `c${n}`, table: 'todos', row: `r${n}`, op: 'insert', clock: formatClock({ wall: 1000 + n, counter: 0, deviceId: 'd' }), values: { title: `t${n}` } };
};

it('hands commits to the hub in seq order, holding one that came early, and reads a gap left open', async () => {
  const store = new SqliteStore(':memory:');
  await store.createProject({ id: 'p', secret: 's'.repeat(32) });
  const outs: PushOutput[] = [];
  for (let i = 0; i < 4; i++) outs.push(await store.push({ projectId: 'p', userId: 'u', deviceId: 'd', deviceCursor: 0, changes: [insert(), insert()] }));
  expect(outs.map((o) => [o.range.from, o.range.to])).toEqual([[0, 2], [2, 4], [4, 6], [6, 8]]);
  const delivered: number[][] = [];
  const sequencer = new Sequencer((_p, changes: readonly ScopedRowChange[]) => delivered.push(changes.map((c) => c.seq)), (p, range) => store.committed(p, range), 50);
  try {
    sequencer.start('p', 0);
    sequencer.local('p', outs[0]!.range, outs[0]!.effective);
    // The third before the second: held.
    sequencer.local('p', outs[2]!.range, outs[2]!.effective);
    expect(delivered).toEqual([[1, 2]]);
    sequencer.local('p', outs[1]!.range, outs[1]!.effective);
    expect(delivered).toEqual([[1, 2], [3, 4], [5, 6]]);
    // A commit already handed on changes nothing.
    sequencer.local('p', outs[1]!.range, outs[1]!.effective);
    expect(delivered).toHaveLength(3);
    // Another process's commit, told of by its range: read from the store.
    sequencer.remote('p', outs[3]!.range);
    await waitFor(() => delivered.length === 4, 2000, 'the remote commit');
    expect(delivered[3]).toEqual([7, 8]);
    // A commit after a gap nobody tells of: the gap is read after gapMs, then the commit follows.
    const later = [await store.push({ projectId: 'p', userId: 'u', deviceId: 'd', deviceCursor: 0, changes: [insert()] })];
    later.push(await store.push({ projectId: 'p', userId: 'u', deviceId: 'd', deviceCursor: 0, changes: [insert()] }));
    sequencer.local('p', later[1]!.range, later[1]!.effective);
    expect(delivered).toHaveLength(4);
    await waitFor(() => delivered.length === 6, 2000, 'the gap to be read');
    expect(delivered.slice(4)).toEqual([[9], [10]]);
  } finally {
    sequencer.stop();
    await store.close();
  }
});

it('a commit made here before the notice of an earlier one from another process does not leave that one out', async () => {
  const store = new SqliteStore(':memory:');
  await store.createProject({ id: 'p', secret: 's'.repeat(32) });
  const delivered: number[][] = [];
  const sequencer = new Sequencer((_p, changes: readonly ScopedRowChange[]) => delivered.push(changes.map((c) => c.seq)), (p, range) => store.committed(p, range), 5_000);
  try {
    // A project made after listening began (so no start: its seqs start at 0). Another process
    // commits 1–2; this one then commits 3–4, and its own commit reaches the sequencer first.
    const theirs = await store.push({ projectId: 'p', userId: 'u', deviceId: 'other', deviceCursor: 0, changes: [insert(), insert()] });
    const ours = await store.push({ projectId: 'p', userId: 'u', deviceId: 'here', deviceCursor: 0, changes: [insert(), insert()] });
    sequencer.local('p', ours.range, ours.effective);
    expect(delivered).toEqual([]);
    sequencer.remote('p', theirs.range);
    await waitFor(() => delivered.length === 2, 2000, 'both commits, in order');
    expect(delivered).toEqual([[1, 2], [3, 4]]);
  } finally {
    sequencer.stop();
    await store.close();
  }
});

it('a gap read that comes back after part of it was delivered, a read that failed, and commits nobody told of: all delivered, each once', async () => {
  const store = new SqliteStore(':memory:');
  await store.createProject({ id: 'p', secret: 's'.repeat(32) });
  const delivered: number[] = [];
  // The store's reads: the first one held back until the gap it leaves has been read, the next one failing.
  let reads = 0;
  let release: () => void = () => undefined;
  const held = new Promise<void>((resolve) => (release = resolve));
  const read = async (p: string, range: { from: number; to: number }) => {
    const n = ++reads;
    if (n === 1) await held;
    if (n === 2) throw new Error('the pool is busy');
    return store.committed(p, range);
  };
  const sequencer = new Sequencer((_p, changes: readonly ScopedRowChange[]) => delivered.push(...changes.map((c) => c.seq)), read, 50);
  try {
    sequencer.start('p', 0);
    const one = await store.push({ projectId: 'p', userId: 'u', deviceId: 'd', deviceCursor: 0, changes: [insert()] });
    const two = await store.push({ projectId: 'p', userId: 'u', deviceId: 'd', deviceCursor: 0, changes: [insert()] });
    const three = await store.push({ projectId: 'p', userId: 'u', deviceId: 'd', deviceCursor: 0, changes: [insert()] });
    sequencer.remote('p', one.range); // read 1: slow
    sequencer.remote('p', two.range); // read 2: fails
    sequencer.local('p', three.range, three.effective);
    // The gap is read (and delivered) while the first read is still out; then that one comes back.
    await waitFor(() => delivered.length === 3, 3000, 'seqs 1 to 3, by the gap read');
    release();
    await waitFor(() => reads >= 3, 3000, 'the held read to be answered');
    expect(delivered).toEqual([1, 2, 3]);
    // The last commit, nobody told of (the listening connection was down): read once the store's seq is.
    const four = await store.push({ projectId: 'p', userId: 'u', deviceId: 'd', deviceCursor: 0, changes: [insert()] });
    sequencer.committedUpTo('p', four.range.to);
    await waitFor(() => delivered.length === 4, 3000, 'seq 4');
    // Later deliveries and reads leave nothing held: a fifth commit goes straight through.
    const five = await store.push({ projectId: 'p', userId: 'u', deviceId: 'd', deviceCursor: 0, changes: [insert()] });
    sequencer.local('p', five.range, five.effective);
    expect(delivered).toEqual([1, 2, 3, 4, 5]);
    // A deleted project's order goes: one made again under its id starts at 0.
    sequencer.forget('p');
    await store.deleteProject('p');
    await store.createProject({ id: 'p', secret: 's'.repeat(32) });
    const again = await store.push({ projectId: 'p', userId: 'u', deviceId: 'd', deviceCursor: 0, changes: [insert()] });
    sequencer.local('p', again.range, again.effective);
    expect(delivered).toEqual([1, 2, 3, 4, 5, 1]);
  } finally {
    sequencer.stop();
    await store.close();
  }
});
