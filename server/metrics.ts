/**
 * `GET /metrics` in Prometheus's text format (prom-client): what the server does, counted as it
 * happens. Every series but the process's own is labelled by project; past MAX_PROJECT_LABELS
 * projects, the rest share the label `_other`, so a server with many projects keeps a bounded
 * number of series.
 *
 *   pocketsync_connections{project}                 sockets past their hello, now (gauge)
 *   pocketsync_pushes_total{project}                pushes accepted (socket, HTTP, backend API)
 *   pocketsync_changes_total{project,outcome}       pushed changes: applied, superseded, duplicate, rejected
 *   pocketsync_conflicts_total{project}             writes discarded by the merge
 *   pocketsync_catchup_rows_total{project}          rows sent in catch-up batches
 *   pocketsync_push_duration_seconds{project}       from a push's arrival to its ack (histogram)
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { PushOutput } from './store/store.js';

export const MAX_PROJECT_LABELS = 100;
const OTHER = '_other';

export class Metrics {
  readonly registry = new Registry();
  readonly #projects = new Set<string>();
  readonly #pushes: Counter<'project'>;
  readonly #changes: Counter<'project' | 'outcome'>;
  readonly #conflicts: Counter<'project'>;
  readonly #catchUpRows: Counter<'project'>;
  readonly #pushSeconds: Histogram<'project'>;

  /** `connections` says how many sockets each project has now; it is read at each scrape. */
  constructor(connections: () => ReadonlyMap<string, number>) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'pocketsync_' });
    const label = (project: string) => this.#label(project);
    new Gauge({
      name: 'pocketsync_connections',
      help: 'Sockets past their hello, per project',
      labelNames: ['project'] as const,
      registers,
      collect() {
        this.reset();
        for (const [project, count] of connections()) this.inc({ project: label(project) }, count);
      },
    });
    this.#pushes = new Counter({ name: 'pocketsync_pushes_total', help: 'Pushes accepted (socket, HTTP and backend API)', labelNames: ['project'] as const, registers });
    this.#changes = new Counter({ name: 'pocketsync_changes_total', help: 'Pushed changes, by outcome', labelNames: ['project', 'outcome'] as const, registers });
    this.#conflicts = new Counter({ name: 'pocketsync_conflicts_total', help: 'Writes discarded by the merge', labelNames: ['project'] as const, registers });
    this.#catchUpRows = new Counter({ name: 'pocketsync_catchup_rows_total', help: 'Rows sent in catch-up batches', labelNames: ['project'] as const, registers });
    this.#pushSeconds = new Histogram({
      name: 'pocketsync_push_duration_seconds',
      help: 'From a push’s arrival to its ack (checks, merge and commit)',
      labelNames: ['project'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
  }

  /** A push was acknowledged after `seconds`. */
  pushed(projectId: string, out: PushOutput, seconds: number): void {
    const project = this.#label(projectId);
    this.#pushes.inc({ project });
    const outcomes = new Map<string, number>();
    for (const result of out.results) outcomes.set(result.outcome, (outcomes.get(result.outcome) ?? 0) + 1);
    for (const [outcome, count] of outcomes) this.#changes.inc({ project, outcome }, count);
    if (out.conflicts.length > 0) this.#conflicts.inc({ project }, out.conflicts.length);
    this.#pushSeconds.observe({ project }, seconds);
  }

  /** A catch-up batch of `rows` rows was sent. */
  caughtUp(projectId: string, rows: number): void {
    if (rows > 0) this.#catchUpRows.inc({ project: this.#label(projectId) }, rows);
  }

  #label(projectId: string): string {
    if (this.#projects.has(projectId)) return projectId;
    if (this.#projects.size >= MAX_PROJECT_LABELS) return OTHER;
    this.#projects.add(projectId);
    return projectId;
  }
}
