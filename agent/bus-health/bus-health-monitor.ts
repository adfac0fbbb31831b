/**
 * Bus health per interface, once a second: the kernel's view (controller state, error counters, bit
 * timing, counters — ip-link.ts, SocketCAN only), the load from every frame (bus-load.ts) and the decoded
 * error frames per class. The step runs once a second, GRACE_MS after each whole second of the wall clock,
 * and reports the load of the last second bus-load.ts has closed. Publishes `bus_state` on every change
 * and every --bus-state-interval seconds, and a `warn` log when a bus degrades (error-warning,
 * error-passive, bus-off) or its controller restarts. A failed `ip` read changes nothing shown: the last
 * known kernel view stays (and transitions compare with the last known state), and the failure is logged
 * at most once a minute.
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
  /**
   * The kernel's notices of link changes (link-monitor.ts), with readLinks: each makes the bus's mode
   * unknown until a reading begun after it. Returns what stops watching.
   */
  watchLinks?: (changed: (ifname: string) => void) => () => void;
  /** --bitrate */
  flagBitrates: ReadonlyMap<string, number>;
  /** What the source does about its frames the kernel holds (--tx-kernel-frames, --tx-flush-stale), for the error-passive advice. */
  kernelHeld?: KernelHeldPolicy;
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

/**
 * At most one `bus_health_unavailable` line per minute: under load `ip` times out now and then, and a line
 * (and a `bus_health_restored`) for every such read would flood the console log and the journal.
 */
const UNAVAILABLE_LOG_MS = 60_000;

/** Reads failed before any worked after which the load uses --bitrate (see goodRead). */
const FIRST_READS_FAILED = 3;

/**
 * How long a send may wait for the reading that tells a bus's controller mode (see modeKnownFrom): longer
 * than `ip`'s own 3 s timeout (ip-link.ts), so a reading begun at once answers or fails first. One asked
 * while another runs begins only after it: under load the send may fail first (refused, never sent).
 */
export const MODE_WAIT_MS = 4000;

/** Why a bus takes no send now. `waitMs`: not yet known — the sender may ask again for up to that long. */
export interface SendRefusal {
  error: string;
  waitMs?: number;
}

const DEGRADED: Partial<Record<ControllerState, { level: LogLevel; code: string; words: string }>> = {
  'error-warning': { level: 'warn', code: 'bus_error_warning', words: 'error-warning: an error counter passed 96' },
  'error-passive': { level: 'warn', code: 'bus_error_passive', words: 'error-passive: an error counter passed 127, the controller no longer signals errors actively' },
  'bus-off': { level: 'warn', code: 'bus_off', words: 'bus-off: the controller stopped taking part in bus traffic' },
  'error-active': { level: 'info', code: 'bus_error_active', words: 'error-active again' },
};

export class BusHealthMonitor {
  private readonly load: BusLoadMeter;
  private readonly errors = new Map<string, Map<ErrorClass, number>>();
  /**
   * Buses whose controller is bus-off, and since when (monotonic): from the CAN_ERR_BUSOFF error frame at
   * once, or a reading that says so. Until any sign it is back on the bus: CAN_ERR_RESTARTED, a frame
   * received (a bus-off controller receives nothing), the interface going down and up again, or a reading
   * begun after it that says otherwise — where there are no readings (sim, replay, vcan, ip failing) the
   * others still clear it, or every send on the bus was refused until a restart of the agent.
   */
  private readonly busOff = new Map<string, number>();
  /** When each bus's controller last said CAN_ERR_RESTARTED (monotonic): a reading begun before it is stale. */
  private readonly restartedAt = new Map<string, number>();
  /** Each bus's interface state at the last step (a down → up clears bus-off). */
  private readonly lastLink = new Map<string, 'up' | 'down' | undefined>();
  /**
   * The kernel's view from the last successful reading. A failed read (ip failing, or killed by its 3 s
   * timeout, which happens under load) keeps it: otherwise the state would flip to unknown for one step and
   * back — a bus_state with state null, the canrelay_bus_state series gone (an alert resolving and firing
   * again), and the transitions compared with nothing.
   */
  private links = new Map<string, LinkHealth>();
  /**
   * Per bus, the last controller state and restart count a reading gave: what transitions compare with, so
   * a step without a state for the bus (no reading yet, or the interface missing from one) neither repeats
   * a warning nor loses a change or a restart.
   */
  private readonly known = new Map<string, { state: ControllerState; restarts: number }>();
  /**
   * Bitrates for the load of the source's buses, from the last successful reading: a failed or slow `ip`
   * read (seen under emulation) must not stop the load.
   */
  private readonly rates = new Map<string, { nominal: number | null; data: number | null }>();
  private readonly lastSent = new Map<string, { data: BusStateData; at: number }>();
  private readonly current = new Map<string, BusStateData>();
  /**
   * When each bus's interface last came up or changed (monotonic), by the source or the kernel's link
   * notices: a controller's mode (listen-only) is set while the interface is down, so what a reading
   * before it said no longer holds. A bus not in the map came up before this monitor was made.
   */
  private readonly cameUp = new Map<string, number>();
  private readonly madeAt: number;
  /**
   * When the last reading that ended (answered or failed) was begun (monotonic). A bus that came up after
   * it has a mode nobody has read yet: a send waits (sendRefusal) rather than be taken by a listen-only
   * controller, which drops it without an error — the first second after the agent started, or after the
   * interface was set up again, used to go by the previous (or no) reading. A failed read ends the wait
   * too: with `ip` unusable sends go by the last known reading, as before (and it is logged).
   */
  private modeKnownFrom = Number.NEGATIVE_INFINITY;
  private timer: NodeJS.Timeout | undefined;
  private stopped = true;
  private reading = false;
  /** A reading was asked for while one ran: one more follows it (a bus came up during it). */
  private readAgain = false;
  private unwatch: (() => void) | undefined;
  /**
   * A read has worked, or FIRST_READS_FAILED reads failed before one did (`ip` missing or unusable): from
   * then on the load uses the bitrates known, else --bitrate. Until then no second closes.
   */
  private goodRead = false;
  private failedFirstReads = 0;
  /** The failure last logged as `bus_health_unavailable` while reads fail; null while they work (or it was held back). */
  private loggedLinkError: string | null = null;
  private lastUnavailableLogAt = Number.NEGATIVE_INFINITY;
  /** Reads failed since the last `bus_health_unavailable` line (the line says how many). */
  private failedReads = 0;
  private readonly now: () => number;
  private readonly wallNow: () => number;

  constructor(private readonly o: BusHealthOptions) {
    this.now = o.now ?? (() => performance.now());
    this.wallNow = o.wallNow ?? (() => Date.now());
    this.load = new BusLoadMeter(this.wallNow());
    this.madeAt = this.now();
  }

  /**
   * The source says `bus` went up or down. Up: its controller mode is unknown until a reading begun now
   * answers, and one is asked for at once rather than at the next step.
   */
  linkChanged(bus: string, state: 'up' | 'down'): void {
    if (state === 'up') this.modeMayHaveChanged(bus);
  }

  /** The bus's interface changed (came up, or the kernel noticed a change): its mode is read again before a send. */
  private modeMayHaveChanged(bus: string): void {
    if (!this.o.readLinks) return;
    this.cameUp.set(bus, this.now());
    if (!this.stopped) this.readNow();
  }

  /** Hot path: every frame, rx and tx. */
  frame(f: CanFrame): void {
    if (f.err) {
      let per = this.errors.get(f.bus);
      if (!per) this.errors.set(f.bus, (per = new Map()));
      for (const c of decodeErrorFrame(f.id, f.data).classes) {
        per.set(c, (per.get(c) ?? 0) + 1);
        if (c === 'bus_off') this.busOff.set(f.bus, this.now());
        else if (c === 'restarted') {
          this.busOff.delete(f.bus);
          this.restartedAt.set(f.bus, this.now());
        }
      }
      return;
    }
    if (this.busOff.size > 0 && f.direction === 'rx') this.busOff.delete(f.bus);
    this.load.add(f);
  }

  /** Starts the steps, with a reading at once: sends wait for the first (see modeKnownFrom). */
  start(): void {
    this.stopped = false;
    this.unwatch = this.o.watchLinks?.((ifname) => {
      if (this.o.buses().includes(ifname)) this.modeMayHaveChanged(ifname);
    });
    this.readNow();
    this.schedule();
  }

  /** A reading now, or right after the one running (which may have begun before what asked for it). */
  private readNow(): void {
    if (!this.o.readLinks) return;
    if (this.reading) this.readAgain = true;
    else void this.read();
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
    this.unwatch?.();
    this.unwatch = undefined;
  }

  /** The latest state of every bus (for /metrics and /api/v1/info). */
  snapshot(): BusStateData[] {
    return [...this.current.values()];
  }

  /**
   * Why nothing may be sent on `bus` now, by the last good reading: a controller in listen-only mode takes
   * a frame and drops it (the kernel counts it in tx_dropped), so a send would read as done when nothing
   * reached the bus. While no reading since the interface came up has ended, the sender is told to wait.
   * Null when sending is up to the source.
   */
  sendRefusal(bus: string): SendRefusal | null {
    if (this.o.readLinks && (this.cameUp.get(bus) ?? this.madeAt) > this.modeKnownFrom)
      return { error: `${bus}: its controller mode (listen-only or not) is not read yet (ip -details link show ${bus}); not sent`, waitMs: MODE_WAIT_MS };
    const l = this.links.get(bus);
    if (l?.listenOnly) return { error: `${bus} is in listen-only mode (ip link set ${bus} type can … listen-only on): its controller transmits nothing; not sent` };
    // Bus-off: the kernel turns the carrier off and its queue discipline drops what is written, without an
    // error; until the link watch says the interface is down (up to about a second) a send read as done.
    if (this.busOff.has(bus))
      return {
        error: `${bus} is bus-off: its controller takes no part in the bus until it restarts (${l?.restartMs ? `automatically after ${l.restartMs} ms` : `ip link set ${bus} type can restart, or restart-ms`}); not sent`,
      };
    return null;
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
    // The bitrates of the last reading: a bitrate change shows in the next second. Until a reading has
    // worked (the first can take seconds under load, or time out), no second closes: --bitrate is only a
    // fallback for a bus the kernel gives no bitrate for, and seconds closed with it showed double the load
    // on a controller running at twice the flag's rate (seen under emulation: the first second of a run).
    const known = !this.o.readLinks || this.goodRead || this.failedFirstReads >= FIRST_READS_FAILED;
    this.load.roll(this.wallNow(), buses, (bus) => (known ? (this.rates.get(bus) ?? { nominal: this.o.flagBitrates.get(bus) ?? null, data: null }) : null));
    if (this.o.readLinks && !this.reading) await this.read();
    // The figures as of now (after a slow `ip` read a later step may have closed newer seconds: the
    // newest, with its own ts, so bus_state events never go back in time).
    for (const bus of buses) {
      // The interface set down and up again (how a bus-off controller is restarted by hand): back on the bus.
      const link = this.o.linkState(bus);
      if (this.lastLink.get(bus) === 'down' && link === 'up') this.busOff.delete(bus);
      this.lastLink.set(bus, link);
      this.update(bus, t, this.load.figures(bus));
    }
    for (const bus of this.lastLink.keys()) if (!buses.includes(bus)) this.lastLink.delete(bus);
  }

  /** One `ip` reading: the kernel's view, bus-off cleared or set by it, the bitrates for the load. */
  private async read(): Promise<void> {
    const readLinks = this.o.readLinks!;
    const buses = this.o.buses();
    const askedAt = this.now();
    this.reading = true;
    try {
      this.links = await readLinks();
      this.goodRead = true;
      for (const bus of buses) {
        const state = this.links.get(bus)?.state;
        // A reading begun before the controller's restart says what was, not what is.
        if (state === 'bus-off' && (this.restartedAt.get(bus) ?? -Infinity) < askedAt) this.busOff.set(bus, this.busOff.get(bus) ?? askedAt);
        else if (state !== null && state !== undefined && state !== 'bus-off' && (this.busOff.get(bus) ?? Infinity) < askedAt) this.busOff.delete(bus);
      }
      // The source's buses only: ip lists every interface (veth*, docker*, … come and go on a gateway), and
      // an entry per name ever seen would grow for as long as the agent runs. A bus missing from a reading
      // keeps its bitrate (the load goes on); one the source no longer has is forgotten.
      for (const bus of buses) {
        const l = this.links.get(bus);
        if (l) this.rates.set(bus, { nominal: l.bitrate ?? this.o.flagBitrates.get(bus) ?? null, data: l.dataBitrate ?? null });
      }
      for (const bus of this.rates.keys()) if (!buses.includes(bus)) this.rates.delete(bus);
      // Restored only after a failure that was said: a held-back one has nothing to take back.
      if (this.loggedLinkError !== null) this.o.log('info', 'reading interface state works again', 'bus_health_restored', {});
      this.loggedLinkError = null;
    } catch (err) {
      // this.links stays the last good reading (see there).
      const msg = (err as Error).message;
      this.failedReads++;
      if (!this.goodRead) this.failedFirstReads++;
      if (this.loggedLinkError !== msg && askedAt - this.lastUnavailableLogAt >= UNAVAILABLE_LOG_MS) {
        this.o.log('warn', `cannot read controller state and error counters: ${msg}; the last known values are shown until a read works`, 'bus_health_unavailable', {
          failed_reads: this.failedReads,
        });
        this.loggedLinkError = msg;
        this.lastUnavailableLogAt = askedAt;
        this.failedReads = 0;
      }
    } finally {
      this.reading = false;
      // Answered or failed: a bus up before it was asked no longer waits (see modeKnownFrom).
      this.modeKnownFrom = Math.max(this.modeKnownFrom, askedAt);
      if (this.readAgain) {
        this.readAgain = false;
        void this.read();
      }
    }
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
    this.current.set(bus, d);
    this.transitions(d);
    const sent = this.lastSent.get(bus);
    const changed = !sent || CHANGE_KEYS.some((k) => sent.data[k] !== d[k]) || (sent.data.counters.restarts ?? 0) !== (d.counters.restarts ?? 0);
    if (changed || t - sent.at >= this.o.intervalSeconds * 1000 - 50) {
      this.lastSent.set(bus, { data: d, at: t });
      this.o.publish(d);
    }
  }

  /** Logs a change of controller state and a restart, against the last known state and restart count of the bus. */
  private transitions(d: BusStateData): void {
    // No state for this bus in this step (no controller, no reading yet, or the interface missing from it):
    // nothing to compare, and the last known state stays the reference.
    if (d.state === null) return;
    const was = this.known.get(d.bus);
    const restarts = d.counters.restarts ?? 0;
    this.known.set(d.bus, { state: d.state, restarts });
    const details = { bus: d.bus, tec: d.tec, rec: d.rec, state: d.state };
    // The first state known: said only when degraded (already so when the agent started: once).
    if (was ? was.state !== d.state : d.state !== 'error-active') {
      const m = DEGRADED[d.state];
      if (m)
        this.o.log(m.level, `${d.bus}: ${m.words} (TX errors ${d.tec ?? '?'}, RX errors ${d.rec ?? '?'})${heldFramesAdvice(d, this.links.get(d.bus), this.o.kernelHeld)}`, m.code, {
          ...details,
          previous: was?.state ?? null,
        });
    }
    // The first count known is where counting starts (restarts before the agent are not news).
    if (was && restarts > was.restarts) {
      const n = restarts - was.restarts;
      this.o.log('warn', `${d.bus}: the controller restarted after bus-off (${n} time${n === 1 ? '' : 's'}, ${restarts} in all)`, 'bus_restarted', { ...details, restarts });
    }
  }
}

/** --tx-kernel-frames (0: no bound) and --tx-flush-stale, as the SocketCAN source applies them. */
export interface KernelHeldPolicy {
  max: number;
  flush: boolean;
}

/**
 * Error-passive with the TX counter at 128 or more is how a controller stays when no node acknowledges
 * (docs/bus-health.md, "No node acknowledging"): it retries its frame and the kernel's queue holds the ones
 * behind it, all sent whenever a node returns — maybe long after their deadline, which the agent checked
 * when it handed them over and cannot recall. It leaves at most `max` of its own there, and with `flush` it
 * drops those past their deadline (socketcan.ts): then nothing is left to advise. Otherwise said where it
 * matters, with the cure, unless the controller already gives up on unacknowledged frames (one-shot) or
 * the queue holds one at most.
 */
export function heldFramesAdvice(d: BusStateData, l: LinkHealth | undefined, held?: KernelHeldPolicy): string {
  if (d.state !== 'error-passive' || (d.tec ?? 0) < 128 || !l || l.oneShot || (l.txqlen !== null && l.txqlen <= 1) || held?.flush) return '';
  const ours = held !== undefined && held.max > 0 ? `, of this agent's at most ${held.max}: --tx-kernel-frames` : '';
  return `; if no node acknowledges, the frame being retried and up to ${l.txqlen ?? '?'} the kernel holds (txqueuelen${ours}) go out whenever one returns, however old: ip link set ${d.bus} type can one-shot on, or ip link set ${d.bus} txqueuelen 1, or run the agent with --tx-flush-stale (docs/bus-health.md)`;
}

function round(x: number | null): number | null {
  return x === null ? null : Math.round(x * 10000) / 10000;
}
