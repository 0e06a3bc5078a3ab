import { useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { api, attempt, project as path, type Point, type Stats } from '../api.js';

type Range = '5m' | '24h' | '7d';
const RANGES: Array<[Range, string]> = [['5m', 'Last 5 minutes'], ['24h', 'Last 24 hours'], ['7d', 'Last 7 days']];
/** Seconds per point of each range: counts are shown per second. */
const SPAN: Record<Range, number> = { '5m': 1, '24h': 60, '7d': 600 };

export function Overview({ project }: { project: string }) {
  const [stats, setStats] = useState<Stats | null>(null);
  const [range, setRange] = useState<Range>('5m');
  const [second, setSecond] = useState<Point | null>(null);
  useEffect(() => {
    let stop = false;
    let loading = false;
    const load = async () => {
      if (loading) return;
      loading = true;
      const data = await attempt(() => api<{ stats: Stats }>('GET', path(project)));
      loading = false;
      if (data && !stop) setStats(data.stats);
    };
    void load();
    // The counts follow the live stream: read again after a second that had changes or moved the
    // connections (a few indexed reads, never a count of the change log), and every 10 s anyway.
    let connections = -1;
    const source = new EventSource(path(project, '/live'));
    source.addEventListener('second', (event) => {
      const next = JSON.parse((event as MessageEvent<string>).data) as Point;
      setSecond(next);
      if (next.changes > 0 || next.connections !== connections) void load();
      connections = next.connections;
    });
    const timer = setInterval(() => void load(), 10_000);
    return () => {
      stop = true;
      source.close();
      clearInterval(timer);
    };
  }, [project]);
  return (
    <>
      <section aria-label="Counts" class="cards">
        <Card label="Users" value={stats?.users} detail={`${stats?.activeUsers ?? '…'} active today`} />
        <Card label="Devices" value={stats?.devices} detail={`${stats?.online ?? '…'} online now`} />
        <Card label="Changes (seq)" value={stats?.seq} detail={`${stats?.changesToday ?? '…'} pushed today`} />
        <Card label="Pending on devices" value={stats?.pending} detail="as the devices report" />
        <Card label="Conflicts today" value={stats?.conflictsToday} detail="writes that lost" />
        <Card label="Rejected today" value={stats?.rejectedToday} detail={`${stats?.quarantined ?? '…'} quarantined on devices`} />
      </section>
      <section class="panel" aria-labelledby="chart-heading">
        <div class="row">
          <h2 id="chart-heading">Throughput</h2>
          <div role="group" aria-label="Time range" class="segmented">
            {RANGES.map(([value, label]) => (
              <button key={value} type="button" aria-pressed={range === value} onClick={() => setRange(value)}>
                {label}
              </button>
            ))}
          </div>
        </div>
        <Chart project={project} range={range} second={second} />
        <p class="detail" data-live>
          {second ? `${second.changes} changes, ${second.pushes} pushes and ${second.connections} connections in the last second` : 'Waiting for the live stream…'}
        </p>
      </section>
    </>
  );
}

function Card({ label, value, detail }: { label: string; value: number | undefined; detail: string }) {
  return (
    <div class="card">
      <h2>{label}</h2>
      <p class="value" data-stat={label}>
        {value ?? '…'}
      </p>
      <p class="detail">{detail}</p>
    </div>
  );
}

/** Seconds each range shows, ending now. */
const WINDOW: Record<Range, number> = { '5m': 300, '24h': 86_400, '7d': 604_800 };

/** The chart: loaded for its range; in the 5-minute view, each live second is added as it comes. */
function Chart({ project, range, second }: { project: string; range: Range; second: Point | null }) {
  const box = useRef<HTMLDivElement>(null);
  const state = useRef<{ points: Point[]; plot: uPlot | null; draw: () => void } | null>(null);
  useEffect(() => {
    const element = box.current;
    if (!element) return;
    const span = SPAN[range];
    const current = { points: [] as Point[], plot: null as uPlot | null, draw: () => undefined as void };
    let closed = false;
    const data = (): uPlot.AlignedData => [
      current.points.map((p) => p.at / 1000),
      current.points.map((p) => p.changes / span),
      current.points.map((p) => p.pushes / span),
      current.points.map((p) => p.catchUpRows / span),
      current.points.map((p) => p.connections),
    ];
    current.draw = () => {
      if (closed) return;
      if (current.plot) {
        current.plot.setData(data());
        return;
      }
      current.plot = new uPlot(
        {
          width: Math.max(320, element.clientWidth),
          height: 260,
          scales: { x: { time: true, range: () => [Date.now() / 1000 - WINDOW[range], Date.now() / 1000] } },
          series: [
            {},
            { label: 'changes/s', stroke: '#2b59c3', width: 2 },
            { label: 'pushes/s', stroke: '#b5179e', width: 2, dash: [6, 4] },
            { label: 'catch-up rows/s', stroke: '#2a9d8f', width: 2 },
            { label: 'connections', stroke: '#e76f51', width: 2, scale: 'count' },
          ],
          axes: [{}, { label: 'per second' }, { side: 1, scale: 'count', label: 'connections', grid: { show: false } }],
        },
        data(),
        element,
      );
    };
    state.current = current;
    void attempt(() => api<{ points: Point[] }>('GET', path(project, `/activity?range=${range}`))).then((loaded) => {
      current.points = [...(loaded?.points ?? []), ...current.points];
      current.draw();
    });
    // The 24-hour and 7-day views move with each minute the server counts.
    const reload =
      range === '5m'
        ? null
        : setInterval(() => {
            void api<{ points: Point[] }>('GET', path(project, `/activity?range=${range}`)).then((loaded) => {
              current.points = loaded.points;
              current.draw();
            }, () => undefined);
          }, 60_000);
    return () => {
      if (reload !== null) clearInterval(reload);
      closed = true;
      state.current = null;
      current.plot?.destroy();
    };
  }, [project, range]);
  useEffect(() => {
    const current = state.current;
    if (!current || !second || range !== '5m') return;
    current.points = [...current.points.filter((p) => p.at !== second.at), second].slice(-300);
    current.draw();
  }, [second]);
  return <div ref={box} class="chart" data-range={range} />;
}
