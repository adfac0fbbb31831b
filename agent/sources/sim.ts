/**
 * A simulated vehicle bus: periodic frames shaped like a real car, for demos and tests without hardware.
 * This file is the generator; the car (id table, counters and checksums, drive cycle, signal layout) is
 * sim-vehicle.ts, and the OBD-II ECU that answers requests is sim-obd.ts.
 *
 * Timing: one setInterval tick emits every frame that has come due, in time order, each stamped with its
 * scheduled time (at most one tick in the past, never in the future). The schedule advances by exact
 * periods, so the long-run rate is exact whatever the timer jitter; after a stall longer than
 * MAX_CATCH_UP_US the missed frames are dropped instead of burst out.
 *
 * Deterministic: for a given seed and rate, the sequence of frames (ids, payloads, relative times) is the
 * same on every run; only the absolute start time differs.
 */
import { type CanFrame, sendProblem, monotonicUsClock } from '../../core/can/frame.js';
import { parseHexBytes } from '../../core/can/hex.js';
import { BUS_RULE } from '../../core/names.js';
import { OBD_RESPONSE_ID, obdRequestPid, obdResponseData } from './sim-obd.js';
import { DriveSignals, hondaChecksum, SIM_BASE_RATE, SIM_MESSAGES as MESSAGES, vehicleState } from './sim-vehicle.js';
import type { FrameSource, SendResult, SourceSink } from './source.js';

export { vehicleState, type VehicleState } from './sim-vehicle.js';

export interface SimOptions {
  /** Interface name of the simulated bus. Default "can0". */
  bus?: string;
  /** Total frames per second; every period is scaled so the sum is this. Default 2000. */
  rate?: number;
  /** PRNG seed for phases and sensor noise. Default a fixed seed, so runs are reproducible. */
  seed?: number;
  /** Scheduler tick in milliseconds. Default 5. */
  tickMs?: number;
  /** Wall clock in microseconds since the Unix epoch (tests inject one). */
  now?: () => number;
}

/** Behind schedule by more than this: drop the missed frames rather than emit a burst. */
const MAX_CATCH_UP_US = 1_000_000;
/** Delay before the simulated ECU answers an OBD-II request. */
const OBD_RESPONSE_DELAY_MS = 2;
const DEFAULT_SEED = 0x5eed;

/** mulberry32: tiny, fast, good enough for noise; deterministic per seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class SimSource implements FrameSource {
  readonly kind = 'sim' as const;

  private readonly bus: string;
  private readonly rate: number;
  private readonly seed: number;
  private readonly tickMs: number;
  private readonly now: () => number;

  private readonly periodUs: Float64Array;
  private readonly nextDue: Float64Array;
  private readonly counter: Uint8Array;
  private readonly templates: Uint8Array[];
  /** Current offset of each wandering byte from its template value, per message. */
  private readonly walkOffset: Int16Array[];
  /** Min-heap of message indices ordered by nextDue (ties by index, for determinism). */
  private readonly heap: Int32Array;
  private random: () => number;

  private sink: SourceSink | null = null;
  private timer: NodeJS.Timeout | null = null;
  private readonly obdTimers = new Set<NodeJS.Timeout>();
  private running = false;
  private startUs = 0;
  private drive = new DriveSignals(0);
  private emitted = 0;

  constructor(options: SimOptions = {}) {
    this.bus = options.bus ?? 'can0';
    if (!BUS_RULE.test(this.bus)) throw new Error(`sim bus ${JSON.stringify(this.bus)} is not an interface name (letters, digits, _ . : -)`);
    this.rate = options.rate ?? 2000;
    if (!Number.isFinite(this.rate) || this.rate <= 0 || this.rate > 1_000_000) {
      throw new Error(`sim rate must be between 1 and 1000000 frames/s, got ${options.rate}`);
    }
    this.tickMs = options.tickMs ?? 5;
    if (!Number.isFinite(this.tickMs) || this.tickMs < 1 || this.tickMs > 100) {
      throw new Error(`sim tick must be between 1 and 100 ms, got ${options.tickMs}`);
    }
    this.seed = options.seed ?? DEFAULT_SEED;
    this.now = options.now ?? monotonicUsClock();
    this.random = prng(this.seed);

    const scale = SIM_BASE_RATE / this.rate;
    const n = MESSAGES.length;
    this.periodUs = new Float64Array(n);
    this.nextDue = new Float64Array(n);
    this.counter = new Uint8Array(n);
    this.heap = new Int32Array(n);
    this.templates = MESSAGES.map((m) => parseHexBytes(m.template)!);
    this.walkOffset = MESSAGES.map((m) => new Int16Array(m.walk.length));
    for (let i = 0; i < n; i++) this.periodUs[i] = MESSAGES[i]!.periodMs * 1000 * scale;
  }

  buses(): string[] {
    return [this.bus];
  }

  /** Periodic frames emitted since start (OBD-II responses not included). */
  framesEmitted(): number {
    return this.emitted;
  }

  async start(sink: SourceSink): Promise<void> {
    if (this.sink) throw new Error('sim already started; create a new SimSource to start again');
    this.sink = sink;
    this.random = prng(this.seed);
    this.startUs = this.now();
    this.drive = new DriveSignals(this.startUs);
    // Stagger first transmissions over one period, like ECUs that powered up at slightly different times.
    for (let i = 0; i < MESSAGES.length; i++) {
      this.nextDue[i] = this.startUs + this.random() * this.periodUs[i]!;
      this.heap[i] = i;
    }
    for (let i = (MESSAGES.length >> 1) - 1; i >= 0; i--) this.siftDown(i);
    this.running = true;
    sink.busState(this.bus, 'up');
    sink.log('info', `simulated vehicle bus ${this.bus} started at ~${Math.round(this.rate)} frames/s`, 'sim_started', {
      bus: this.bus,
      rate: Math.round(this.rate),
      ids: MESSAGES.length,
    });
    this.timer = setInterval(() => this.tick(), this.tickMs);
  }

  send(frame: CanFrame): SendResult {
    if (!this.running) return { ok: false, busy: false, error: 'the simulator is not running' };
    if (frame.bus !== this.bus) {
      return { ok: false, busy: false, error: `the simulator has no bus ${JSON.stringify(frame.bus)}; it simulates ${this.bus}` };
    }
    const problem = sendProblem(frame);
    if (problem) return { ok: false, busy: false, error: `cannot send this frame: ${problem}` };
    this.maybeAnswerObd(frame);
    return { ok: true, tsUs: this.now() };
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const t of this.obdTimers) clearTimeout(t);
    this.obdTimers.clear();
    this.sink?.busState(this.bus, 'down', 'simulator stopped');
  }

  // ---------------------------------------------------------------------------------------------------

  private tick(now: number = this.now()): void {
    if (!this.running) return;
    const heap = this.heap;
    const due = this.nextDue;
    let i = heap[0]!;
    if (now - due[i]! > MAX_CATCH_UP_US) this.skipMissed(now);
    while (this.running) {
      i = heap[0]!;
      const t = due[i]!;
      if (t > now) break;
      this.emit(i, t);
      due[i] = t + this.periodUs[i]!;
      this.siftDown(0);
    }
  }

  /** After a long stall: drop whole missed periods (keeping each message's phase), then rebuild the heap. */
  private skipMissed(now: number): void {
    const limit = now - MAX_CATCH_UP_US;
    for (let i = 0; i < MESSAGES.length; i++) {
      const d = this.nextDue[i]!;
      if (d < limit) {
        const p = this.periodUs[i]!;
        this.nextDue[i] = d + Math.ceil((limit - d) / p) * p;
      }
    }
    for (let i = (MESSAGES.length >> 1) - 1; i >= 0; i--) this.siftDown(i);
  }

  private less(a: number, b: number): boolean {
    const da = this.nextDue[a]!;
    const db = this.nextDue[b]!;
    return da < db || (da === db && a < b);
  }

  private siftDown(pos: number): void {
    const heap = this.heap;
    const n = heap.length;
    const item = heap[pos]!;
    for (;;) {
      const l = 2 * pos + 1;
      if (l >= n) break;
      const r = l + 1;
      const child = r < n && this.less(heap[r]!, heap[l]!) ? r : l;
      if (!this.less(heap[child]!, item)) break;
      heap[pos] = heap[child]!;
      pos = child;
    }
    heap[pos] = item;
  }

  private emit(index: number, dueUs: number): void {
    const spec = MESSAGES[index]!;
    const data = this.templates[index]!.slice();
    const tsUs = Math.floor(dueUs);
    const v = vehicleState((dueUs - this.startUs) / 1e6);
    this.drive.apply(spec.id, data, v, dueUs);

    const walk = spec.walk;
    if (walk.length > 0) {
      const offsets = this.walkOffset[index]!;
      for (let k = 0; k < walk.length; k++) {
        // Bounded random walk: drifts a little each frame, pulled back towards the template value.
        let o = offsets[k]! + Math.round((this.random() - 0.5) * 6);
        if (o > 40 || o < -40) o = Math.trunc(o * 0.8);
        offsets[k] = o;
        data[walk[k]!] = (data[walk[k]!]! + o) & 0xff;
      }
    }

    if (spec.layout === 'honda') {
      const last = data.length - 1;
      const c = this.counter[index]!;
      this.counter[index] = (c + 1) & 3;
      data[last] = (data[last]! & 0xc0) | (c << 4);
      data[last] = data[last]! | hondaChecksum(spec.id, data);
    }

    this.emitted++;
    this.sink!.frame({
      bus: this.bus,
      id: spec.id,
      ext: spec.ext,
      rtr: false,
      err: false,
      fd: false,
      brs: false,
      esi: false,
      dlc: data.length,
      data,
      tsUs,
      direction: 'rx',
    });
  }

  /** Answers an OBD-II request (sim-obd.ts) after a couple of milliseconds, as an ECU would. */
  private maybeAnswerObd(req: CanFrame): void {
    const pid = obdRequestPid(req);
    if (pid === null) return;
    const timer = setTimeout(() => {
      this.obdTimers.delete(timer);
      if (!this.running) return;
      const now = this.now();
      const data = obdResponseData(pid, vehicleState((now - this.startUs) / 1e6));
      if (!data) return;
      // Emit the periodic frames that are already due first, and stamp the answer with that same instant,
      // so timestamps on the bus stay in order.
      this.tick(now);
      if (!this.running) return;
      this.sink!.frame({
        bus: this.bus,
        id: OBD_RESPONSE_ID,
        ext: false,
        rtr: false,
        err: false,
        fd: false,
        brs: false,
        esi: false,
        dlc: 8,
        data,
        tsUs: Math.floor(now),
        direction: 'rx',
      });
    }, OBD_RESPONSE_DELAY_MS);
    this.obdTimers.add(timer);
  }
}
