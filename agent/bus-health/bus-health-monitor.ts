/**
 * Bus health per interface, once a second: the kernel's view (controller state, error counters, bit
 * timing, counters — ip-link.ts, SocketCAN only), the load from every frame (bus-load.ts) and the decoded
 * error frames per class. Publishes `bus_state` on every change and every --bus-state-interval seconds,
 * and a `warn` log when a bus degrades (error-warning, error-passive, bus-off) or its controller restarts.
 * Its snapshot feeds the metrics (bus-health-metrics.ts). Nothing here touches the data plane.
 */
import { decodeErrorFrame, type ErrorClass } from '../../core/can/error-frame.js';
import type { CanFrame } from '../../core/can/frame.js';
import type { BusStateData, ControllerState, LogLevel } from '../../core/console/events.js';
import { busStateData } from '../../core/console/normalize.js';
import { isoNow } from '../../core/console/time.js';
import { BusLoadMeter } from './bus-load.js';
import type { LinkHealth } from './ip-link.js';

export interface BusHealthOptions {
  /** The buses to report (the source's). */
  buses: () => string[];
  /** Up/down as the source sees it (used where the kernel is not asked). */
  linkState: (bus: string) => 'up' | 'down' | undefined;
  /** The kernel's view of the interfaces; absent for sources without kernel interfaces (sim, replay). */
  readLinks?: () => Promise<Map<string, LinkHealth>>;
  /** --bitrate */
  flagBitrates: ReadonlyMap<string, number>;
  intervalSeconds: number;
  publish: (data: BusStateData) => void;
  log: (level: LogLevel, message: string, code: string, details: Record<string, string | number | boolean | null>) => void;
  /** Monotonic milliseconds (tests pass a fake clock). */
  now?: () => number;
}

/** Fields whose change is published at once (load changes every second and waits for the interval). */
const CHANGE_KEYS = ['link', 'state', 'bitrate', 'sample_point', 'data_bitrate', 'data_sample_point', 'restart_ms'] as const;

const DEGRADED: Partial<Record<ControllerState, { level: LogLevel; code: string; words: string }>> = {
  'error-warning': { level: 'warn', code: 'bus_error_warning', words: 'error-warning: an error counter passed 96' },
  'error-passive': { level: 'warn', code: 'bus_error_passive', words: 'error-passive: an error counter passed 127, the controller no longer signals errors actively' },
  'bus-off': { level: 'warn', code: 'bus_off', words: 'bus-off: the controller stopped taking part in bus traffic' },
  'error-active': { level: 'info', code: 'bus_error_active', words: 'error-active again' },
};

export class BusHealthMonitor {
  private readonly load = new BusLoadMeter();
  private readonly errors = new Map<string, Map<ErrorClass, number>>();
  private links = new Map<string, LinkHealth>();
  private readonly lastSent = new Map<string, { data: BusStateData; at: number }>();
  private readonly current = new Map<string, BusStateData>();
  private timer: NodeJS.Timeout | undefined;
  private lastTick: number;
  private reading = false;
  private linkError: string | null = null;
  private readonly now: () => number;

  constructor(private readonly o: BusHealthOptions) {
    this.now = o.now ?? (() => performance.now());
    this.lastTick = this.now();
  }

  /** Hot path: every frame, rx and tx. */
  frame(f: CanFrame): void {
    if (f.err) {
      let per = this.errors.get(f.bus);
      if (!per) this.errors.set(f.bus, (per = new Map()));
      for (const c of decodeErrorFrame(f.id, f.data).classes) per.set(c, (per.get(c) ?? 0) + 1);
      return;
    }
    this.load.add(f);
  }

  start(): void {
    this.lastTick = this.now();
    this.timer = setInterval(() => void this.tick(), 1000);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** The latest state of every bus (for /metrics and /api/v1/info). */
  snapshot(): BusStateData[] {
    return [...this.current.values()];
  }

  /** Error frames per class on a bus since start. */
  errorCounts(bus: string): ReadonlyMap<ErrorClass, number> {
    return this.errors.get(bus) ?? new Map();
  }

  /**
   * One step: close the load window (every second, whatever `ip` costs), read the kernel when there is
   * one and no read is still running, publish what changed. Exposed for tests.
   */
  async tick(): Promise<void> {
    // The event's ts is when its load window closed, not when the (possibly slow) `ip` read finished.
    const closedAt = isoNow();
    const t = this.now();
    const elapsed = (t - this.lastTick) / 1000;
    this.lastTick = t;
    const buses = this.o.buses();
    // The bitrates of the last reading: a bitrate change shows in the next window.
    this.load.roll(elapsed, buses, (bus) => {
      const l = this.links.get(bus);
      return { nominal: l?.bitrate ?? this.o.flagBitrates.get(bus) ?? null, data: l?.dataBitrate ?? null };
    });
    // This window's figures, taken now: a slow `ip` read must not let the next window's load carry this ts.
    const figures = new Map(buses.map((b) => [b, this.load.figures(b)]));
    if (this.o.readLinks && !this.reading) {
      this.reading = true;
      try {
        this.links = await this.o.readLinks();
        if (this.linkError !== null) this.o.log('info', 'reading interface state works again', 'bus_health_restored', {});
        this.linkError = null;
      } catch (err) {
        const msg = (err as Error).message;
        if (this.linkError !== msg) this.o.log('warn', `cannot read controller state and error counters: ${msg}`, 'bus_health_unavailable', {});
        this.linkError = msg;
        this.links = new Map();
      } finally {
        this.reading = false;
      }
    }
    for (const bus of buses) this.update(bus, t, closedAt, figures.get(bus)!);
  }

  private update(bus: string, t: number, closedAt: string, f: ReturnType<BusLoadMeter['figures']>): void {
    const l = this.links.get(bus);
    const flagRate = this.o.flagBitrates.get(bus);
    const errs = this.errors.get(bus);
    const d = busStateData({
      bus,
      link: l ? (l.up ? 'up' : 'down') : (this.o.linkState(bus) ?? 'down'),
      state: l?.state ?? null,
      tec: l?.tec ?? null,
      rec: l?.rec ?? null,
      bitrate: l?.bitrate ?? flagRate ?? null,
      bitrate_source: l?.bitrate ? 'kernel' : flagRate ? 'flag' : null,
      sample_point: l?.samplePoint ?? null,
      data_bitrate: l?.dataBitrate ?? null,
      data_sample_point: l?.dataSamplePoint ?? null,
      restart_ms: l?.restartMs ?? null,
      counters: { ...(l?.counters ?? {}) },
      load: round(f.load),
      load_peak_1m: round(f.peak),
      load_history: f.history.map((x) => round(x)!),
      frame_rate: Math.round(f.frameRate),
      error_frames: errs ? Object.fromEntries(errs) : {},
    });
    d.ts = closedAt;
    const prev = this.current.get(bus);
    this.current.set(bus, d);
    this.transitions(prev, d);
    const sent = this.lastSent.get(bus);
    const changed = !sent || CHANGE_KEYS.some((k) => sent.data[k] !== d[k]) || (sent.data.counters.restarts ?? 0) !== (d.counters.restarts ?? 0);
    if (changed || t - sent.at >= this.o.intervalSeconds * 1000 - 50) {
      this.lastSent.set(bus, { data: d, at: t });
      this.o.publish(d);
    }
  }

  private transitions(prev: BusStateData | undefined, d: BusStateData): void {
    const details = { bus: d.bus, tec: d.tec, rec: d.rec, state: d.state };
    if (prev && d.state !== null && prev.state !== d.state && !(prev.state === null && d.state === 'error-active')) {
      const m = DEGRADED[d.state];
      if (m) this.o.log(m.level, `${d.bus}: ${m.words} (TX errors ${d.tec ?? '?'}, RX errors ${d.rec ?? '?'})`, m.code, { ...details, previous: prev.state });
    } else if (!prev && d.state && d.state !== 'error-active' && DEGRADED[d.state]) {
      // Already degraded when the agent started: say so once.
      const m = DEGRADED[d.state]!;
      this.o.log(m.level, `${d.bus}: ${m.words} (TX errors ${d.tec ?? '?'}, RX errors ${d.rec ?? '?'})`, m.code, { ...details, previous: null });
    }
    const restarts = d.counters.restarts ?? 0;
    const before = prev?.counters.restarts ?? restarts;
    if (restarts > before) {
      this.o.log('warn', `${d.bus}: the controller restarted after bus-off (${restarts - before} time${restarts - before === 1 ? '' : 's'}, ${restarts} in all)`, 'bus_restarted', { ...details, restarts });
    }
  }
}

function round(x: number | null): number | null {
  return x === null ? null : Math.round(x * 10000) / 10000;
}
