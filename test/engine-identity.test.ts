/**
 * Row identity (DESIGN.md invariant 10): a table with a declared non-rowid primary key is identified
 * by that key, so two devices inserting the same key edit one row (issue 10, defect 1's natural-key
 * case); a rowid table by a random ps_global_id.
 */
import { describe, expect, it } from 'vitest';
import { keyIdentity, murmur3x86_128 } from '../worker/row-identity.js';
import { changes, openEngine } from './helpers/engine.js';

const WIRE_ID = /^[A-Za-z0-9_-]{1,64}$/;
const KEY_ID = /^k[0-9a-f]{32}$/;
const RANDOM_ID = /^[0-9a-f]{32}$/;

const gidOf = (engine: Awaited<ReturnType<typeof openEngine>>, sql: string, params?: unknown[]) =>
  engine.query(sql, params as never).map((row) => row.ps_global_id);

describe('the key hash', () => {
  it('is MurmurHash3 x86_128 (the reference implementation’s test vectors)', () => {
    const utf8 = (text: string) => new TextEncoder().encode(text);
    expect(murmur3x86_128(utf8('Hello, world!'), 123)).toBe('61c9129e5a1aacd7a41621629e37c886');
    expect(murmur3x86_128(utf8('Hello, world!'), 321)).toBe('d5fbdcb3c26c4193045880c5a7170f0f');
    expect(murmur3x86_128(utf8('xxxxxxxxxxxxxxxxxxxxxxxxxxxx'), 123)).toBe('5e40bab278825a164cf929d31fec6047');
    expect(murmur3x86_128(utf8(''), 123)).toBe('fedc524526f3e79926f3e79926f3e799');
  });

  it('tells apart what SQLite tells apart, and only that', () => {
    expect(keyIdentity(['theme'])).toMatch(KEY_ID);
    expect(keyIdentity([1n])).not.toBe(keyIdentity(['1']));
    expect(keyIdentity(['1'])).not.toBe(keyIdentity([new TextEncoder().encode('1')]));
    expect(keyIdentity([1n])).toBe(keyIdentity([1]));
    expect(keyIdentity([0])).toBe(keyIdentity([-0]));
    expect(keyIdentity([1.5])).not.toBe(keyIdentity([1n]));
    expect(keyIdentity(['a', 'bc'])).not.toBe(keyIdentity(['ab', 'c']));
    expect(keyIdentity(['a', null])).toBeNull();
  });
});

describe('tables with a declared non-rowid key', () => {
  it('gives the same key the same ps_global_id on two devices, whatever inserted it', async () => {
    const setup = 'CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT)';
    const a = await openEngine({ deviceId: 'device-a' }, setup);
    const b = await openEngine({ deviceId: 'device-b' }, setup);
    const typed = a.insert('settings', { key: 'theme', value: 'dark' });
    b.execute("INSERT INTO settings (key, value) VALUES ('theme', 'light')");
    expect(typed).toMatch(KEY_ID);
    expect(typed).toMatch(WIRE_ID);
    expect(gidOf(b, 'SELECT ps_global_id FROM settings')).toEqual([typed]);
    expect(gidOf(a, 'SELECT ps_global_id FROM settings')).toEqual([typed]);
    expect(changes(a).map((c) => [c.operation, c.ps_global_id])).toEqual([['insert', typed]]);
    expect(changes(b).map((c) => [c.operation, c.ps_global_id])).toEqual([['insert', typed]]);
    expect(typed).toBe(keyIdentity(['theme']));
  });

  it('covers composite keys, WITHOUT ROWID tables with an INTEGER key, and INT keys', async () => {
    const setup = `
      CREATE TABLE members (team TEXT, person INTEGER, role TEXT, PRIMARY KEY (team, person));
      CREATE TABLE counters (id INTEGER PRIMARY KEY, n INTEGER) WITHOUT ROWID;
      CREATE TABLE codes (code INT PRIMARY KEY, label TEXT);`;
    const a = await openEngine({ deviceId: 'device-a' }, setup);
    const b = await openEngine({ deviceId: 'device-b' }, setup);
    for (const engine of [a, b]) {
      engine.insert('members', { team: 'red', person: 7, role: engine.deviceId });
      engine.execute('INSERT INTO counters (id, n) VALUES (42, 0)');
      engine.insert('codes', { code: 5, label: 'five' });
    }
    for (const table of ['members', 'counters', 'codes']) {
      const [id] = gidOf(a, `SELECT ps_global_id FROM ${table}`);
      expect(id).toMatch(KEY_ID);
      expect(gidOf(b, `SELECT ps_global_id FROM ${table}`)).toEqual([id]);
    }
    expect(gidOf(a, 'SELECT ps_global_id FROM members')).toEqual([keyIdentity(['red', 7n])]);
    expect(gidOf(a, 'SELECT ps_global_id FROM counters')).toEqual([keyIdentity([42n])]);
  });

  it('derives the id for rows that existed before PocketSync, recorded once as inserts', async () => {
    const engine = await openEngine({}, "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT); INSERT INTO settings VALUES ('a', '1'), ('b', '2')");
    expect(gidOf(engine, 'SELECT ps_global_id FROM settings ORDER BY key')).toEqual([keyIdentity(['a']), keyIdentity(['b'])]);
    expect(changes(engine).map((c) => [c.operation, c.ps_global_id])).toEqual([
      ['insert', keyIdentity(['a'])],
      ['insert', keyIdentity(['b'])],
    ]);
  });

  it('replaces an id the app gives with the key’s, and returns it', async () => {
    const engine = await openEngine({}, 'CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT)');
    expect(engine.insert('settings', { key: 'a', value: '1', ps_global_id: 'mine' })).toBe(keyIdentity(['a']));
    engine.execute("INSERT INTO settings (key, value, ps_global_id) VALUES ('b', '2', 'also-mine')");
    expect(gidOf(engine, 'SELECT ps_global_id FROM settings ORDER BY key')).toEqual([keyIdentity(['a']), keyIdentity(['b'])]);
    expect(changes(engine).map((c) => c.ps_global_id)).toEqual([keyIdentity(['a']), keyIdentity(['b'])]);
  });

  it('records an UPDATE that changes the key as a delete of the old identity and an insert of the new', async () => {
    const engine = await openEngine({}, 'CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT)');
    engine.insert('settings', { key: 'old', value: 'v' });
    engine.update('settings', { value: 'w' }, { key: 'old' });
    engine.update('settings', { key: 'new' }, { key: 'old' });
    const [, update, remove, insert] = changes(engine);
    expect(update).toMatchObject({ operation: 'update', ps_global_id: keyIdentity(['old']) });
    expect(remove).toMatchObject({ operation: 'delete', ps_global_id: keyIdentity(['old']) });
    expect(JSON.parse(remove!.payload)).toEqual({ old: { key: 'old', value: 'w', ps_global_id: keyIdentity(['old']) } });
    expect(insert).toMatchObject({ operation: 'insert', ps_global_id: keyIdentity(['new']) });
    expect(JSON.parse(insert!.payload)).toEqual({ row: { key: 'new', value: 'w' } });
    expect(changes(engine)).toHaveLength(4);
    expect(engine.query('SELECT key, ps_global_id FROM settings')).toEqual([{ key: 'new', ps_global_id: keyIdentity(['new']) }]);
  });

  it('keeps the id a remote row carries, and derives one when it has none', async () => {
    const engine = await openEngine({}, 'CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT)');
    engine.applyWithoutCapture(() => {
      engine.execute("INSERT INTO settings (key, value, ps_global_id) VALUES ('a', '1', 'server-said')");
      engine.execute("INSERT INTO settings (key, value) VALUES ('b', '2')");
    });
    expect(gidOf(engine, 'SELECT ps_global_id FROM settings ORDER BY key')).toEqual(['server-said', keyIdentity(['b'])]);
    expect(changes(engine)).toEqual([]);
  });

  it('gives rows whose key holds NULL (a rowid table allows it) random ids of their own', async () => {
    const engine = await openEngine({}, 'CREATE TABLE tags (name TEXT PRIMARY KEY, n INTEGER)');
    const first = engine.insert('tags', { name: null, n: 1 });
    engine.execute('INSERT INTO tags (name, n) VALUES (NULL, 2)');
    const ids = gidOf(engine, 'SELECT ps_global_id FROM tags ORDER BY n');
    expect(ids[0]).toBe(first);
    expect(ids.every((id) => typeof id === 'string' && RANDOM_ID.test(id))).toBe(true);
    expect(new Set(ids).size).toBe(2);
  });
});

describe('rowid tables', () => {
  it('keep random time-first ids for INTEGER PRIMARY KEY and keyless tables', async () => {
    const setup = 'CREATE TABLE todos (id INTEGER PRIMARY KEY, title TEXT); CREATE TABLE log (line TEXT)';
    const a = await openEngine({ deviceId: 'device-a' }, setup);
    const b = await openEngine({ deviceId: 'device-b' }, setup);
    for (const engine of [a, b]) {
      engine.insert('todos', { id: 1, title: 'x' });
      engine.execute("INSERT INTO log (line) VALUES ('x')");
    }
    for (const table of ['todos', 'log']) {
      const [idA] = gidOf(a, `SELECT ps_global_id FROM ${table}`);
      expect(idA).toMatch(RANDOM_ID);
      expect(gidOf(b, `SELECT ps_global_id FROM ${table}`)).not.toEqual([idA]);
    }
  });
});
