/**
 * Bus health in the header: per bus a state badge (error-active … bus-off, or "no controller"), a load
 * gauge with the one-minute peak and a sparkline of the last 60 per-second loads, from `bus_state`
 * events. A bus in error-passive or bus-off also raises the alert bar under the header, which stays
 * until the bus is healthy again: a technician cannot miss it. So does a controller the kernel reports
 * stopped (its interface is down: nothing is read from that bus), with its own remedy. On the agent's
 * page the figures the agent holds at load (GET /api/v1/info `bus_health`) are shown at once: the next
 * bus_state may be --bus-state-interval seconds away.
 */
import { byId, h, setAttr, setText } from '../dom.js';
import { type BusStateData, tsToMs } from '../events.js';
import { Freshness } from '../state/freshness.js';

const SERIOUS = new Set(['error-passive', 'bus-off']);
/** How long after load a report older than the agent's snapshot is taken for one of the backlog (see update). */
const SEED_MS = 10_000;

function pct(x: number | null): string {
  return x === null ? '—' : `${(x * 100).toFixed(x < 0.1 ? 1 : 0)} %`;
}

function sparkline(history: number[]): SVGSVGElement {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('class', 'spark');
  svg.setAttribute('viewBox', '0 0 60 20');
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('aria-hidden', 'true');
  const line = document.createElementNS(ns, 'polyline');
  const start = 60 - history.length;
  line.setAttribute('points', history.map((v, i) => `${start + i},${(20 - Math.min(1, v) * 20).toFixed(1)}`).join(' '));
  svg.append(line);
  return svg;
}

export class BusHealthView {
  private readonly box = byId('bus-health');
  private readonly alert = byId('bus-alert');
  private readonly buses = new Map<string, BusStateData>();
  private readonly freshness = new Freshness();
  /** Which buses were drawn stale: a change redraws. */
  private drawnStale = '';
  private dirty = false;
  /** Per bus, the time of the snapshot the page loaded with and until when (page time) it guards it. */
  private readonly seeded = new Map<string, { ts: number; until: number }>();

  /** The agent's latest figures at load (GET /api/v1/info `bus_health`), shown until its stream says more. */
  seed(list: readonly BusStateData[]): void {
    const until = performance.now() + SEED_MS;
    for (const d of list) {
      this.update(d);
      this.seeded.set(keyOf(d), { ts: tsToMs(d.ts), until });
    }
  }

  update(d: BusStateData): void {
    const key = keyOf(d);
    const seed = this.seeded.get(key);
    if (seed !== undefined) {
      // The backlog replayed on connect holds reports published before the snapshot was read (the agent
      // refreshes it every second, publishes every interval): drawn after it, the panel would go back in
      // time. Only for a while after load: a gateway clock stepped back must not hold the reports back.
      if (tsToMs(d.ts) < seed.ts && performance.now() < seed.until) return;
      this.seeded.delete(key);
    }
    this.buses.set(key, d);
    this.freshness.seen(key, performance.now());
    this.dirty = true;
  }

  render(): void {
    const now = performance.now();
    const stale = [...this.buses.keys()].filter((k) => this.freshness.staleFor(k, now) !== null).join('|');
    if (!this.dirty && stale === this.drawnStale) return;
    this.dirty = false;
    this.drawnStale = stale;
    const nodes: Node[] = [];
    const alarms: string[] = [];
    const texts: string[] = [];
    for (const [key, d] of [...this.buses].sort(([a], [b]) => a.localeCompare(b))) {
      const state = d.link === 'down' ? (d.state ?? 'down') : (d.state ?? 'no controller');
      const load = d.load;
      const staleMs = this.freshness.staleFor(key, now);
      const title = [
        staleMs !== null ? `no report for ${Math.round(staleMs / 1000)} s: the last known figures` : '',
        `${key}: ${state}`,
        d.tec !== null ? `TX errors ${d.tec}, RX errors ${d.rec}` : '',
        d.bitrate !== null ? `${(d.bitrate / 1000).toLocaleString('en-US')} kbit/s${d.bitrate_source === 'flag' ? ' (--bitrate)' : ''}` : 'bitrate unknown (set --bitrate)',
        d.sample_point !== null ? `sample point ${d.sample_point}` : '',
        d.data_bitrate !== null ? `data ${(d.data_bitrate / 1000).toLocaleString('en-US')} kbit/s` : '',
        `load ${pct(load)}, peak 1 min ${pct(d.load_peak_1m)}, ${d.frame_rate.toLocaleString('en-US')} frames/s`,
        Object.keys(d.error_frames).length
          ? 'error frames: ' +
            Object.entries(d.error_frames)
              .map(([c, n]) => `${c} ${n}`)
              .join(', ')
          : '',
      ]
        .filter(Boolean)
        .join('\n');
      nodes.push(
        h(
          'span',
          { class: 'bus-health-item', 'data-bus': key, 'data-state': state, 'data-stale': staleMs !== null ? 'true' : undefined, title },
          h('span', { class: 'bus-name', text: key }),
          h('span', { class: 'bus-state', 'data-state': state, text: state }),
          h(
            'span',
            {
              class: 'gauge',
              role: 'meter',
              'aria-label': `${key} bus load`,
              'aria-valuemin': 0,
              'aria-valuemax': 100,
              'aria-valuenow': load === null ? undefined : Math.round(load * 100),
            },
            h('span', {
              class: 'gauge-fill',
              style: `width:${Math.min(100, (load ?? 0) * 100).toFixed(1)}%`,
              'data-level': load === null ? 'none' : load >= 0.8 ? 'high' : load >= 0.5 ? 'mid' : 'low',
            }),
          ),
          h('span', { class: 'bus-load', text: staleMs !== null ? `${pct(load)} (last known)` : pct(load) }),
          sparkline(d.load_history),
        ),
      );
      if (SERIOUS.has(state)) {
        const what = `${key} is ${state.toUpperCase()}${d.tec !== null ? ` (TX errors ${d.tec}, RX errors ${d.rec})` : ''}`;
        alarms.push(what);
        texts.push(`${what} — check wiring, termination and bitrate`);
      } else if (state === 'stopped') {
        alarms.push(`${key} is STOPPED`);
        texts.push(`${key} is STOPPED — its interface is down, nothing is read (ip link set ${d.bus} up)`);
      }
    }
    this.box.replaceChildren(...nodes);
    this.box.hidden = nodes.length === 0;
    this.alert.hidden = alarms.length === 0;
    setAttr(this.alert, 'data-buses', alarms.length ? alarms.join('; ') : null);
    setText(this.alert, alarms.length ? `Bus problem: ${texts.join('; ')}.` : '');
  }
}

/** A group page shows both sides' buses: the key includes the dongle. */
function keyOf(d: BusStateData): string {
  return d.dongle ? `${d.dongle} ${d.bus}` : d.bus;
}
