/**
 * What the replica keeps across batches and reloads (issue 10): the stash of rows and columns this
 * schema version lacks (defect 5), received clocks (defect 9), exact 64-bit integers (defect 8),
 * `fresh` (defect 3) and each change's `base`. The real Replica on the real engine; a reload is a
 * new Engine on the same in-memory database.
 */
import { describe, expect, it } from 'vitest';
import type { RowChange } from '../lib/protocol/change.js';
import type { Schema } from '../lib/protocol/worker-api.js';
import type { ColumnValue } from '../lib/protocol/values.js';
import { Engine } from '../worker/engine.js';
import { Replica } from '../worker/sync/replica.js';
import { loadSqlite, openEngine, todoSchema } from './helpers/engine.js';

const clock = (ms: number, device = 'device-b') => `${String(ms * 1024).padStart(21, '0')}-${device}`;

function row(seq: number, table: string, id: string, values: Record<string, ColumnValue>, ms = 1_000_000 + seq): RowChange {
  return { seq, table, row: id, deleted: false, values, clocks: Object.fromEntries(Object.keys(values).map((c) => [c, clock(ms)])) };
}
const deleted = (seq: number, table: string, id: string): RowChange => ({ seq, table, row: id, deleted: true, deleteClock: clock(1_000_000 + seq) });

const v2: Schema = {
  version: 2,
  migrations: [
    ...todoSchema.migrations,
    { version: 2, sql: ['ALTER TABLE todos ADD COLUMN priority INTEGER', 'CREATE TABLE tags (id INTEGER PRIMARY KEY, name TEXT NOT NULL)'] },
  ],
};

/** A database the test reopens: each open is a new Engine on the same bytes, as after a reload. */
async function database() {
  const sqlite3 = await loadSqlite();
  const db = new sqlite3.oo1.DB(':memory:');
  const opened: Engine[] = [];
  return {
    open(schema: Schema = todoSchema, time?: () => number): Engine {
      const engine = Engine.open(sqlite3, db, { deviceId: 'device-a', schema, ...(time ? { time } : {}) });
      opened.push(engine);
      return engine;
    },
    close: () => opened.at(-1)?.close(),
  };
}

describe('rows and columns this schema version lacks', () => {
  it('are stashed while the cursor moves, and applied once a migration adds them', async () => {
    const db = await database();
    try {
      const old = new Replica(db.open());
      old.apply(
        [
          row(1, 'todos', 't1', { id: 1, title: 'milk', done: 0, priority: 3 }),
          row(2, 'tags', 'g1', { id: 1, name: 'home' }),
          row(3, 'tags', 'g2', { id: 2, name: 'work' }),
        ],
        3,
      );
      expect(old.cursor).toBe(3);
      old.apply([row(4, 'tags', 'g1', { id: 1, name: 'house' }), deleted(5, 'tags', 'g2')], 5); // the newest per row wins; a delete clears
      const engine = db.open(v2);
      const upgraded = new Replica(engine);
      expect(upgraded.cursor).toBe(5);
      expect(engine.query('SELECT ps_global_id, title, priority FROM todos')).toEqual([{ ps_global_id: 't1', title: 'milk', priority: 3 }]);
      expect(engine.query('SELECT ps_global_id, name FROM tags')).toEqual([{ ps_global_id: 'g1', name: 'house' }]);
      expect(engine.query('SELECT count(*) AS n FROM __pocketsync_stash')).toEqual([{ n: 0 }]);
      expect(upgraded.pendingCount()).toBe(0);
    } finally {
      db.close();
    }
  });

  it('keeps the newest value per column', async () => {
    const engine = await openEngine({ schema: todoSchema });
    const replica = new Replica(engine);
    replica.apply([row(1, 'todos', 't1', { id: 1, title: 'milk', done: 0, priority: 1 })], 1);
    replica.apply([row(2, 'todos', 't1', { id: 1, title: 'milk', done: 0, priority: 2 })], 2);
    engine.execute('ALTER TABLE todos ADD COLUMN note TEXT');
    engine.execute('ALTER TABLE todos ADD COLUMN priority INTEGER');
    expect(replica.afterSchemaChange()).toEqual([]);
    expect(engine.query('SELECT title, priority FROM todos')).toEqual([{ title: 'milk', priority: 2 }]);
  });

  it('applies what is now known and keeps the rest', async () => {
    const engine = await openEngine({ schema: todoSchema });
    const replica = new Replica(engine);
    replica.apply([row(1, 'todos', 't1', { id: 1, title: 'milk', done: 0, priority: 1, colour: 'red' })], 1);
    engine.execute('ALTER TABLE todos ADD COLUMN priority INTEGER');
    replica.afterSchemaChange();
    expect(engine.query('SELECT priority FROM todos')).toEqual([{ priority: 1 }]);
    engine.execute('ALTER TABLE todos ADD COLUMN colour TEXT');
    replica.afterSchemaChange();
    expect(engine.query('SELECT priority, colour FROM todos')).toEqual([{ priority: 1, colour: 'red' }]);
  });
});

describe('received clocks', () => {
  it('are kept across a reload: the next edit stamps after every clock seen', async () => {
    const db = await database();
    try {
      const now = Date.now();
      const before = new Replica(db.open(todoSchema, () => now));
      const ahead = now + 30 * 60_000;
      before.apply([row(1, 'todos', 't1', { id: 1, title: 'from a fast device', done: 0 }, ahead)], 1);
      const reloaded = db.open(todoSchema, () => now);
      reloaded.update('todos', { done: 1 }, { ps_global_id: 't1' });
      const [edit] = reloaded.query('SELECT clock FROM __pocketsync_changes');
      expect(String(edit!.clock) > clock(ahead)).toBe(true);
    } finally {
      db.close();
    }
  });
});

describe('64-bit integers', () => {
  it('are applied exactly', async () => {
    const engine = await openEngine({ schema: todoSchema });
    const replica = new Replica(engine);
    replica.apply(
      [
        row(1, 'todos', 't1', { id: 1, title: 'big', done: { $int: '9007199254740993' } }),
        row(2, 'todos', 't2', { id: 2, title: 'min', done: { $int: '-9223372036854775808' } }),
      ],
      2,
    );
    expect(engine.query('SELECT done, typeof(done) AS t FROM todos ORDER BY title')).toEqual([
      { done: 9007199254740993n, t: 'integer' },
      { done: -9223372036854775808n, t: 'integer' },
    ]);
  });
});

describe('fresh', () => {
  it('is true until a row came from the server or was acknowledged by it, and stays false after a reload', async () => {
    const db = await database();
    try {
      const replica = new Replica(db.open());
      expect(replica.fresh).toBe(true);
      const engine = db.open();
      const own = new Replica(engine);
      engine.insert('todos', { title: 'mine' });
      expect(own.fresh).toBe(true);
      const [change] = own.pending(10);
      own.acknowledge([{ id: change!.id, outcome: 'applied', seq: 1 }]);
      expect(own.fresh).toBe(false);
      expect(own.cursor).toBe(0);
      expect(new Replica(db.open()).fresh).toBe(false);
    } finally {
      db.close();
    }
  });

  it('is false once a batch with rows was applied', async () => {
    const replica = new Replica(await openEngine({ schema: todoSchema }));
    replica.apply([row(1, 'todos', 't1', { id: 1, title: 'x', done: 0 })], 1);
    expect(replica.fresh).toBe(false);
  });
});

describe('base', () => {
  it('is the cursor the device had when it made the edit, not when it pushes', async () => {
    const db = await database();
    try {
      const engine = db.open();
      const replica = new Replica(engine);
      engine.insert('todos', { title: 'at 0' });
      replica.apply([row(4, 'todos', 't1', { id: 1, title: 'x', done: 0 })], 5);
      engine.insert('todos', { title: 'at 5' });
      replica.apply([row(7, 'todos', 't2', { id: 2, title: 'y', done: 0 })], 9);
      engine.update('todos', { done: 1 }, { title: 'at 0' });
      expect(replica.pending(10).map((c) => c.base)).toEqual([0, 5, 9]);
      const [first] = replica.pending(1);
      replica.acknowledge([{ id: first!.id, outcome: 'applied', seq: 10 }]);
      expect(new Replica(db.open()).pending(10).map((c) => c.base)).toEqual([5, 9]);
    } finally {
      db.close();
    }
  });
});

describe('a clock set right after it ran fast', () => {
  it('restamps the pending changes, keeping their bases and every clock received', async () => {
    const db = await database();
    try {
      const now = Date.now();
      const fast = db.open(todoSchema, () => now + 2 * 60 * 60_000);
      const before = new Replica(fast);
      fast.insert('todos', { title: 'at 0' });
      const received = now + 30 * 60_000; // another device's stamp, within the server's cap
      before.apply([row(5, 'todos', 't1', { id: 1, title: 'x', done: 0 }, received)], 5);
      fast.insert('todos', { title: 'at 5' });
      const engine = db.open(todoSchema, () => now);
      const replica = new Replica(engine);
      expect(replica.restampIfAhead(now + 60 * 60_000)).toBe(true);
      const pending = replica.pending(10);
      expect(pending.map((c) => c.base)).toEqual([0, 5]);
      for (const change of pending) {
        expect(change.clock > clock(received, '')).toBe(true);
        expect(change.clock < clock(now + 60 * 60_000, '')).toBe(true);
      }
      engine.insert('todos', { title: 'after' });
      expect(replica.pending(10).map((c) => c.base)).toEqual([0, 5, 5]);
    } finally {
      db.close();
    }
  });
});
