/**
 * Bus health per interface, once a second: the kernel's view (controller state, error counters, bit
 * timing, counters — ip-link.ts, SocketCAN only), the load from every frame (bus-load.ts) and the decoded
 * error frames per class. The step runs once a second, GRACE_MS after each whole second of the wall clock,
 * and reports the load of the last second bus-load.ts has closed. Publishes `bus_state` on every change
 * and every --bus-state-interval seconds, and a `warn` log when a bus degrades (error-warning,
 * error-passive, bus-off) or its controller restarts.
 * Its snapshot feeds the metrics (bus-health-metrics.ts). Nothing here touches the data plane.
 */
import { decodeErrorFrame, type ErrorClass } from '../../core/can/error-frame.js';
import type { CanFrame } from '../../core/can/frame.js';
import type { BusStateData, ControllerState, LogLevel } from '../../core/console/events.js';
import { busStateData } from '../../core/console/normalize.js';
import { BusLoadMeter, GRACE_MS } from './bus-load.js';
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
  /** Wall-clock Unix milliseconds, the clock of frame timestamps (tests pass a fake clock). */
  wallNow?: () => number;
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
  private readonly load: BusLoadMeter;
  private readonly errors = new Map<string, Map<ErrorClass, number>>();
  private links = new Map<string, LinkHealth>();
  /**
   * Bitrates for the load, from the last successful reading: a failed or slow `ip` read (seen under
   * emulation) leaves the state unknown but must not stop the load.
   */
  private readonly rates = new Map<string, { nominal: number | null; data: number | null }>();
  private readonly lastSent = new Map<string, { data: BusStateData; at: number }>();
  private readonly current = new Map<string, BusStateData>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = true;
  private reading = false;
  private linkError: string | null = null;
  private readonly now: () => number;
  private readonly wallNow: () => number;

  constructor(private readonly o: BusHealthOptions) {
    this.now = o.now ?? (() => performance.now());
    this.wallNow = o.wallNow ?? (() => Date.now());
    this.load = new BusLoadMeter(this.wallNow());
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
    this.stopped = false;
    this.schedule();
  }

  /** The next step GRACE_MS after the next whole second (a timer per step, not setInterval: it does not drift). */
  private schedule(): void {
    if (this.stopped) return;
    const wait = 1000 - ((((this.wallNow() - GRACE_MS) % 1000) + 1000) % 1000);
    this.timer = setTimeout(
      () => {
        void this.tick();
        this.schedule();
      },
      Math.max(10, wait),
    );
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
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
   * One step: close the seconds that ended (whatever `ip` costs), read the kernel when there is one and
   * no read is still running, publish what changed. Exposed for tests.
   */
  async tick(): Promise<void> {
    const t = this.now();
    const buses = this.o.buses();
    // The bitrates of the last reading: a bitrate change shows in the next second.
    this.load.roll(this.wallNow(), buses, (bus) => this.rates.get(bus) ?? { nominal: this.o.flagBitrates.get(bus) ?? null, data: null });
    if (this.o.readLinks && !this.reading) {
      this.reading = true;
      try {
        this.links = await this.o.readLinks();
        for (const [bus, l] of this.links) this.rates.set(bus, { nominal: l.bitrate ?? this.o.flagBitrates.get(bus) ?? null, data: l.dataBitrate ?? null });
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
    // The figures as of now (after a slow `ip` read a later step may have closed newer seconds: the
    // newest, with its own ts, so bus_state events never go back in time).
    for (const bus of buses) this.update(bus, t, this.load.figures(bus));
  }

  private update(bus: string, t: number, f: ReturnType<BusLoadMeter['figures']>): void {
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
    // The event's ts is the end of the second its load covers ([ts - 1 s, ts)), not when it was published.
    if (f.secondMs !== null) d.ts = new Date(f.secondMs + 1000).toISOString();
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
      this.o.log('warn', `${d.bus}: the controller restarted after bus-off (${restarts - before} time${restarts - before === 1 ? '' : 's'}, ${restarts} in all)`, 'bus_restarted', {
        ...details,
        restarts,
      });
    }
  }
}

function round(x: number | null): number | null {
  return x === null ? null : Math.round(x * 10000) / 10000;
}
