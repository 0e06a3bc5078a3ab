/** The merge rules, table by table (server/merge.ts). */
import { describe, expect, it } from 'vitest';
import type { ClientChange } from '../lib/protocol/change.js';
import { merge, type MergeContext, type RowState } from '../server/merge.js';
import { formatClock } from '../worker/hlc.js';

const clock = (wall: number, device: string, counter = 0) => formatClock({ wall, counter, deviceId: device });
const lww: MergeContext = { strategy: 'column-lww', deviceCursor: 0 };
let n = 0;
const change = (op: ClientChange['op'], at: string, values?: ClientChange['values']): ClientChange => ({
  id: `c${++n}`,
  table: 'todos',
  row: 'r1',
  op,
  clock: at,
  ...(values ? { values } : {}),
});

/**
 * Applies changes in order from an empty server, returning the final state and all conflicts. A
 * change without a base was made having seen every change before it.
 */
function run(changes: ClientChange[], context: MergeContext = lww) {
  let state: RowState | null = null;
  const conflicts = [];
  let seq = 0;
  for (const c of changes) {
    const result = merge(state, { base: seq, ...c }, ++seq, context);
    state = result.state;
    conflicts.push(...result.conflicts);
  }
  return { state: state!, conflicts };
}

describe('column last-writer-wins', () => {
  it('keeps concurrent edits of different columns, in either order', () => {
    const insert = change('insert', clock(100, 'a'), { title: 'milk', done: 0 });
    const titleOnA = change('update', clock(200, 'a'), { title: 'oat milk' });
    const doneOnB = change('update', clock(150, 'b'), { done: 1 });
    for (const order of [[insert, titleOnA, doneOnB], [insert, doneOnB, titleOnA]]) {
      const { state, conflicts } = run(order);
      expect(state.values).toEqual({ title: 'oat milk', done: 1 });
      expect(conflicts).toEqual([]);
    }
  });

  it.each([
    ['a later wall time wins', clock(200, 'a'), clock(100, 'b'), 'from a'],
    ['equal wall times: the higher counter wins', clock(100, 'a', 2), clock(100, 'b', 1), 'from a'],
    ['equal wall time and counter: the device id decides', clock(100, 'a', 1), clock(100, 'b', 1), 'from b'],
  ])('%s, whatever the arrival order', (_name, clockA, clockB, winner) => {
    const fromA = change('update', clockA, { title: 'from a' });
    const fromB = change('update', clockB, { title: 'from b' });
    for (const order of [[fromA, fromB], [fromB, fromA]]) {
      const { state, conflicts } = run([change('insert', clock(1, 'z'), { title: 'x' }), ...order]);
      expect(state.values.title).toBe(winner);
      // Whichever arrived second and lost, or first and was overwritten: a loss is recorded only
      // when the loser arrives after the winner.
      expect(conflicts.length).toBeLessThanOrEqual(1);
    }
  });

  it('records the losing write with both values', () => {
    const { conflicts } = run([
      change('insert', clock(100, 'a'), { title: 'first' }),
      change('update', clock(300, 'a'), { title: 'newest' }),
      change('update', clock(200, 'b'), { title: 'stale' }),
    ]);
    expect(conflicts).toEqual([
      {
        table: 'todos',
        row: 'r1',
        column: 'title',
        rule: 'column-lww',
        losing: { op: 'update', clock: clock(200, 'b'), value: 'stale' },
        winning: { op: 'current', clock: clock(300, 'a'), value: 'newest' },
      },
    ]);
  });
});

describe('a discarded write is recorded whichever arrives first', () => {
  const base = merge(null, { ...change('insert', clock(100, 'z'), { title: 'x' }), base: 0 }, 1, lww).state;
  const fromA = { ...change('update', clock(200, 'a'), { title: 'from a' }), base: 1 };
  const fromB = { ...change('update', clock(300, 'b'), { title: 'from b' }), base: 1 };

  it.each([
    ['the loser first', [fromA, fromB]],
    ['the winner first', [fromB, fromA]],
  ])('%s: one conflict, the same one', (_name, order) => {
    let state = base;
    const conflicts = [];
    let seq = 1;
    for (const c of order) {
      const result = merge(state, c, ++seq, lww);
      state = result.state;
      conflicts.push(...result.conflicts);
    }
    expect(state.values.title).toBe('from b');
    expect(conflicts).toHaveLength(1);
    expect(conflicts[0]).toMatchObject({ column: 'title', losing: { clock: clock(200, 'a'), value: 'from a' }, winning: { clock: clock(300, 'b'), value: 'from b' } });
  });

  it('no conflict when the device had seen the value it overwrites, or wrote it itself', () => {
    const afterA = merge(base, fromA, 2, lww).state;
    expect(merge(afterA, { ...fromB, base: 2 }, 3, lww).conflicts).toEqual([]);
    expect(merge(afterA, { ...change('update', clock(400, 'a'), { title: 'again' }), base: 1 }, 3, lww).conflicts).toEqual([]);
  });

  it('a delete that wins over an edit the deleting device had not seen records the edit as lost', () => {
    const afterA = merge(base, fromA, 2, lww).state;
    const del = merge(afterA, { ...change('delete', clock(500, 'b')), base: 1 }, 3, lww);
    expect(del.state.deleted).toBe(true);
    expect(del.conflicts).toMatchObject([{ column: null, losing: { op: 'current', clock: clock(200, 'a') }, winning: { op: 'delete', clock: clock(500, 'b') } }]);
  });
});

describe('64-bit integers', () => {
  it('an equal $int value changes nothing; a different one does', () => {
    const big = { $int: '9007199254740993' };
    const first = merge(null, change('insert', clock(100, 'a'), { n: big }), 1, lww);
    expect(merge(first.state, change('update', clock(200, 'a'), { n: { $int: '9007199254740993' } }), 2, lww).effective).toBe(false);
    expect(merge(first.state, change('update', clock(200, 'a'), { n: { $int: '9007199254740995' } }), 2, lww).effective).toBe(true);
  });
});

describe('deletes', () => {
  const insert = change('insert', clock(100, 'a'), { title: 'x' });

  it('a delete beats an update with an older clock, in either order', () => {
    const del = change('delete', clock(300, 'a'));
    const update = change('update', clock(200, 'b'), { title: 'edited' });
    for (const order of [[insert, del, update], [insert, update, del]]) {
      expect(run(order).state.deleted).toBe(true);
    }
    expect(run([insert, del, update]).conflicts).toMatchObject([{ column: null, losing: { op: 'update' }, winning: { op: 'delete' } }]);
  });

  it('an update with a newer clock beats the delete, in either order', () => {
    const del = change('delete', clock(200, 'a'));
    const update = change('update', clock(300, 'b'), { title: 'edited' });
    for (const order of [[insert, del, update], [insert, update, del]]) {
      const { state } = run(order);
      expect(state.deleted).toBe(false);
      expect(state.values.title).toBe('edited');
    }
  });

  it('an insert with a newer clock than the delete re-creates the row', () => {
    const { state } = run([insert, change('delete', clock(200, 'a')), change('insert', clock(300, 'b'), { title: 'again' })]);
    expect(state).toMatchObject({ deleted: false, values: { title: 'again' } });
  });

  it('a delete that arrives before the insert it deletes leaves a tombstone the insert cannot pass', () => {
    const { state } = run([change('delete', clock(200, 'a')), change('insert', clock(100, 'a'), { title: 'late' })]);
    expect(state.deleted).toBe(true);
  });
});

describe('other strategies', () => {
  it('row-lww: the whole change loses to a newer row', () => {
    const ctx: MergeContext = { strategy: 'row-lww', deviceCursor: 0 };
    const { state, conflicts } = run(
      [change('insert', clock(100, 'a'), { title: 'x', done: 0 }), change('update', clock(300, 'a'), { title: 'new' }), change('update', clock(200, 'b'), { done: 1 })],
      ctx,
    );
    expect(state.values).toEqual({ title: 'new', done: 0 }); // b's edit of another column lost too
    expect(conflicts).toMatchObject([{ column: null, rule: 'row-lww' }]);
  });

  it('server-wins: an edit is judged by its base (the cursor when it was made), not the push cursor', () => {
    let state = merge(null, change('insert', clock(100, 'a'), { title: 'x' }), 1, lww).state;
    state = merge(state, change('update', clock(200, 'a'), { title: 'server' }), 2, lww).state;
    const offline = { ...change('update', clock(900, 'b'), { title: 'device' }), base: 1 };
    const result = merge(state, offline, 3, { strategy: 'server-wins', deviceCursor: 2 });
    expect(result.state.values.title).toBe('server');
    expect(result.conflicts).toMatchObject([{ column: 'title', rule: 'server-wins' }]);
  });

  it('server-wins: a write to a column changed since the device last synced loses, whatever its clock', () => {
    let state = merge(null, change('insert', clock(100, 'a'), { title: 'x' }), 1, lww).state;
    state = merge(state, change('update', clock(200, 'a'), { title: 'server' }), 2, lww).state;
    const stale = merge(state, change('update', clock(900, 'b'), { title: 'device' }), 3, { strategy: 'server-wins', deviceCursor: 1 });
    expect(stale.state.values.title).toBe('server');
    expect(stale.conflicts).toMatchObject([{ column: 'title', rule: 'server-wins' }]);
    const seen = merge(state, change('update', clock(100, 'b'), { title: 'device' }), 3, { strategy: 'server-wins', deviceCursor: 2 });
    expect(seen.state.values.title).toBe('device');
  });

  it('client-wins: the last change to arrive wins', () => {
    const { state } = run(
      [change('insert', clock(100, 'a'), { title: 'x' }), change('update', clock(300, 'a'), { title: 'newer' }), change('update', clock(200, 'b'), { title: 'arrived last' })],
      { strategy: 'client-wins', deviceCursor: 0 },
    );
    expect(state.values.title).toBe('arrived last');
  });

  it('a resolver decides contested columns and is named in the conflict', () => {
    const resolver: MergeContext['resolver'] = ({ change: c }) => (c.values?.title === 'keep me' ? 'incoming' : 'current');
    const ctx: MergeContext = { strategy: 'column-lww', deviceCursor: 0, resolver };
    // All three made offline (base 0): each contests what the one before it wrote.
    const { state, conflicts } = run(
      [change('insert', clock(100, 'a'), { title: 'x' }), { ...change('update', clock(50, 'b'), { title: 'keep me' }), base: 0 }, { ...change('update', clock(999, 'c'), { title: 'no' }), base: 0 }],
      ctx,
    );
    expect(state.values.title).toBe('keep me');
    expect(conflicts).toMatchObject([
      { column: 'title', rule: 'resolver', losing: { value: 'x' }, winning: { value: 'keep me' } },
      { column: 'title', rule: 'resolver', losing: { value: 'no' } },
    ]);
  });

  it('a resolver is not asked about a value the device had seen, or wrote itself', () => {
    const asked: string[] = [];
    const resolver: MergeContext['resolver'] = ({ change: c }) => {
      asked.push(JSON.stringify(c.values?.title));
      return 'current';
    };
    const ctx: MergeContext = { strategy: 'column-lww', deviceCursor: 0, resolver };
    // b had seen a's insert (base 1); b's next edit, from base 0, replaces what b wrote itself.
    const { state, conflicts } = run(
      [change('insert', clock(100, 'a'), { title: 'x' }), { ...change('update', clock(200, 'b'), { title: 'seen' }), base: 1 }, { ...change('update', clock(300, 'b'), { title: 'own' }), base: 0 }],
      ctx,
    );
    expect(asked).toEqual([]);
    expect(state.values.title).toBe('own');
    expect(conflicts).toEqual([]);
  });
});
