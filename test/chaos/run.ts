/**
 * The chaos runner: fast-check generates scenarios (seeded), each run builds a World, plays its
 * steps in real time against the real server, brings it to quiescence, and checks it. A failing
 * run throws with its divergences; fast-check shrinks the schedule and reports the seed and path,
 * and the runner prints the command that replays it.
 *
 * Real sockets and timers make a replay likely, not certain, to take the same course: the
 * schedule is the same, the interleaving of frames may not be.
 */
import fc from 'fast-check';
import { check, type Divergence } from './checker.js';
import { scenarioArbitrary, SLOTS, valueFor, type Scenario, type Step } from './schedule.js';
import { BASIC, FULL, tablesOf, V2_COLUMN, World, type Features, type TableSpec } from './world.js';
import { SHARED_TABLES } from './world.js';
import type { SqlValue } from '../../lib/protocol/worker-api.js';

export const FEATURE_SETS: Record<string, Features> = {
  basic: BASIC,
  full: FULL,
  'natural-keys': { ...BASIC, naturalKeys: true, compositeKeys: true },
  constraints: { ...BASIC, naturalKeys: true, constraints: true },
  values: { ...BASIC, richValues: true },
  'schema-skew': { ...BASIC, schemaSkew: true },
  'row-lww': { ...BASIC, strategy: 'row-lww' },
  'server-wins': { ...BASIC, strategy: 'server-wins' },
  'client-wins': { ...BASIC, strategy: 'client-wins' },
  resolver: { ...BASIC, strategy: 'resolver' },
};

export interface ChaosOptions {
  readonly runs: number;
  readonly features: Features;
  readonly featureName?: string;
  readonly seed?: number;
  readonly path?: string;
  readonly maxSteps?: number;
  /** Stop (and report what was found) after this long, shrinking included. */
  readonly timeLimitMs?: number;
  readonly log?: (line: string) => void;
}

export interface ChaosReport {
  runs: number;
  operations: number;
  rejectedByApp: number;
  faults: Record<string, number>;
  divergences: number;
  /** The first failure: fast-check's report (seed, path, shrunk schedule) and the replay command. */
  failure: string | null;
  elapsedMs: number;
}

const QUIESCE_MS = 20_000;

export async function runChaos(options: ChaosOptions): Promise<ChaosReport> {
  const started = Date.now();
  const report: ChaosReport = { runs: 0, operations: 0, rejectedByApp: 0, faults: {}, divergences: 0, failure: null, elapsedMs: 0 };
  const add = (name: string, n: number) => (report.faults[name] = (report.faults[name] ?? 0) + n);
  let shrinking = false;
  const property = fc.asyncProperty(scenarioArbitrary(options.features, options.maxSteps ?? 60), async (scenario) => {
    const world = await World.create(options.features, scenario.users, scenario.skews, scenario.versions);
    try {
      const t0 = Date.now();
      for (const step of scenario.steps) await play(world, step);
      const t1 = Date.now();
      const divergences = await quiesce(world);
      if (process.env.CHAOS_DEBUG) console.log(`steps ${scenario.steps.length} play ${t1 - t0} ms, quiesce ${Date.now() - t1} ms`);
      if (divergences.length === 0) divergences.push(...(await check(world)));
      if (!shrinking) {
        report.runs++;
        world.collectTransportStats();
        const s = world.stats;
        report.operations += s.operations;
        report.rejectedByApp += s.rejectedByApp;
        add('cuts', s.cuts);
        add('lost acks', s.droppedAcks);
        add('delayed frames', s.delayedFrames);
        add('server restarts', s.restarts);
        add('device crashes', s.crashes);
        add('migrations', s.migrations);
        add('offline spells', s.offline);
      }
      if (divergences.length > 0) {
        if (!shrinking) report.divergences++;
        shrinking = true;
        throw new Error(describe(divergences));
      }
    } finally {
      await world.close();
    }
  });
  try {
    await fc.assert(property, {
      numRuns: options.runs,
      ...(options.seed !== undefined ? { seed: options.seed } : {}),
      ...(options.path !== undefined ? { path: options.path } : {}),
      ...(options.timeLimitMs !== undefined ? { interruptAfterTimeLimit: options.timeLimitMs } : {}),
      endOnFailure: false,
    });
  } catch (error) {
    const cause = error instanceof Error && error.cause instanceof Error ? `\n\nWhat the checker found in the shrunk run:\n${error.cause.message}` : '';
    const message = (error instanceof Error ? error.message : String(error)) + cause;
    const seed = /seed: (-?\d+)/.exec(message)?.[1];
    const path = /path: "([^"]*)"/.exec(message)?.[1];
    const replay = `npm run test:chaos -- --features ${options.featureName ?? 'basic'}${seed ? ` --seed ${seed}` : ''}${path ? ` --path ${path}` : ''} --runs 1`;
    report.failure = `${message}\n\nReplay: ${replay}`;
    if (report.divergences === 0) report.divergences = 1;
  }
  report.elapsedMs = Date.now() - started;
  return report;
}

function describe(divergences: readonly Divergence[]): string {
  const shown = divergences.slice(0, 12).map((d) => `  [${d.invariant}] ${d.detail}`);
  if (divergences.length > 12) shown.push(`  … and ${divergences.length - 12} more`);
  return `${divergences.length} divergence(s):\n${shown.join('\n')}`;
}

export function formatReport(report: ChaosReport, featureName: string): string {
  const faults = Object.entries(report.faults).map(([k, v]) => `${k} ${v}`).join(', ');
  return [
    `chaos (${featureName}): ${report.runs} runs, ${report.operations} operations (${report.rejectedByApp} refused by the local schema), faults injected: ${faults || 'none'}`,
    `divergences found: ${report.divergences} (${(report.elapsedMs / 1000).toFixed(1)} s)`,
    ...(report.failure ? ['', report.failure] : []),
  ].join('\n');
}

const pause = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Brings every device online with no faults, and waits until all are live, drained, caught up. */
async function quiesce(world: World): Promise<Divergence[]> {
  for (const device of world.devices) {
    device.transport.disarm();
    device.network.set(true);
  }
  const deadline = Date.now() + QUIESCE_MS;
  const since = new Map<number, number>();
  for (;;) {
    const seq = await world.store.currentSeq(world.projectId);
    let done = true;
    for (const device of world.devices) {
      const status = device.loop.status;
      if (status.state === 'error') return [];
      const ok = status.state === 'live' && device.replica.pendingCount() === 0 && device.replica.cursor >= seq;
      if (ok) {
        since.delete(device.index);
        continue;
      }
      done = false;
      // A device waiting out a reconnect back-off, or live but behind (its own pushes do not move
      // its cursor): a fresh connection now, as the network coming back would give it.
      const first = since.get(device.index) ?? Date.now();
      since.set(device.index, first);
      if (Date.now() - first > 50) {
        since.set(device.index, Date.now());
        device.network.set(false);
        device.network.set(true);
      }
    }
    if (done) return [];
    if (Date.now() > deadline) {
      return [{
        invariant: 'no-quiescence',
        detail: `after ${QUIESCE_MS} ms at seq ${seq}: ${world.devices.map((d) => `${d.name} ${d.loop.status.state} pending ${d.replica.pendingCount()} cursor ${d.replica.cursor}`).join('; ')}`,
      }];
    }
    await pause(5);
  }
}

async function play(world: World, step: Step): Promise<void> {
  switch (step.kind) {
    case 'wait':
      return pause(step.ms);
    case 'cut':
      return world.cut(step.device);
    case 'cut-up':
    case 'cut-down':
      return world.arm(step.device, { kind: step.kind, after: step.after });
    case 'drop-ack':
      return world.arm(step.device, { kind: 'drop-ack' });
    case 'delay':
      return world.arm(step.device, { kind: 'delay', ms: step.ms, frames: step.frames });
    case 'offline':
      return world.setOnline(step.device, false);
    case 'online':
      return world.setOnline(step.device, true);
    case 'restart':
      return world.restartServer();
    case 'crash':
      return world.crash(step.device);
    case 'migrate':
      if (world.devices[step.device]!.version === 1) world.crash(step.device, 2);
      return;
    case 'insert':
    case 'update':
    case 'delete':
      operate(world, step);
      // A little time for frames to move between operations.
      await pause(1);
      return;
  }
}

function scopeKey(world: World, spec: TableSpec, user: string): string {
  return SHARED_TABLES.includes(spec.name) ? 'shared' : user;
}

/** The declared key of slot `slot` in a natural-key table. */
function keyOf(spec: TableSpec, slot: number): Record<string, SqlValue> {
  switch (spec.name) {
    case 'settings':
      return { key: `k${slot}` };
    case 'labels':
      return { name: `L${slot}` };
    case 'members':
      return { team: `t${slot % 2}`, member: `m${slot}` };
    default:
      return {};
  }
}

function operate(world: World, step: Extract<Step, { kind: 'insert' | 'update' | 'delete' }>): void {
  const specs = tablesOf(world.features);
  const spec = specs[step.table % specs.length]!;
  const device = world.devices[step.device]!;
  if (spec.since > device.version) return;
  const columns = Object.keys(spec.columns);
  if (spec.name === 'notes' && device.version === 2) columns.push(V2_COLUMN);
  const slotKey = `${spec.name}:${scopeKey(world, spec, device.user)}:${step.slot % SLOTS}`;
  const kindOf = (c: string) => spec.columns[c] ?? 'text';
  const counter = world.stats.operations + 1;
  let gid: string | undefined;
  const where: Record<string, SqlValue> = {};
  if (spec.key === null) {
    gid = world.slots.get(slotKey);
    if (gid !== undefined) where.ps_global_id = gid;
  } else {
    Object.assign(where, keyOf(spec, step.slot % SLOTS));
    const [found] = device.engine.query(`SELECT ps_global_id FROM "${spec.name}" WHERE ${Object.keys(where).map((k) => `"${k}" = ?`).join(' AND ')}`, Object.values(where));
    gid = found ? String(found.ps_global_id) : undefined;
  }
  const before = world.lastChangeId(device, spec.name, gid);
  try {
    if (step.kind === 'insert') {
      const values: Record<string, SqlValue> = { ...(spec.key === null ? {} : where) };
      for (const column of columns) values[column] = valueFor(kindOf(column), step.value, counter);
      if (spec.name === 'items') {
        values.name = `n${typeof values.name === 'string' ? values.name.length % 3 : 0}`;
        values.label = step.slot % 2 === 0 ? null : `L${step.slot % SLOTS}`;
      }
      const id = device.engine.insert(spec.name, values);
      world.stats.operations++;
      if (id === null) return;
      if (spec.key === null) world.slots.set(slotKey, id);
      world.record(device, spec.name, id, 'insert', values, before);
    } else if (step.kind === 'update') {
      if (gid === undefined) return;
      const column = columns[step.column % columns.length]!;
      let value = valueFor(kindOf(column), step.value, counter);
      if (spec.name === 'items' && column === 'name') value = `n${counter % 3}`;
      if (spec.name === 'items' && column === 'label') value = `L${counter % SLOTS}`;
      const changed = device.engine.update(spec.name, { [column]: value }, where);
      world.stats.operations++;
      if (changed > 0) world.record(device, spec.name, gid, 'update', { [column]: value }, before);
    } else {
      if (gid === undefined) return;
      const changed = device.engine.delete(spec.name, where);
      world.stats.operations++;
      if (changed > 0) world.record(device, spec.name, gid, 'delete', {}, before);
    }
  } catch {
    // The local schema refused it (UNIQUE, CHECK, NOT NULL, FOREIGN KEY): the app's error.
    world.stats.operations++;
    world.stats.rejectedByApp++;
    return;
  }
  device.loop.localWrite();
}

export type { Scenario };
