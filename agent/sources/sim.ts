/**
 * A simulated vehicle bus: periodic frames shaped like a real car, for demos and tests without hardware.
 *
 * The id table comes from a real capture of a 2019 Honda Civic Type R (57 standard ids, 6 at 100 Hz, 13 at
 * 50 Hz, 4 at 25 Hz, 16 at 10 Hz, the rest at 5 to 1 Hz; ~1,660 frames/s). It is hard-coded here so the
 * simulator never needs that file. Like in the capture, the last byte of each Honda frame carries a 2-bit
 * rolling counter (bits 5-4) and a nibble checksum (bits 3-0). Two 29-bit J1939-style ids are added so the
 * console shows extended ids too. Speed, RPM, pedal, steering and temperatures follow a smooth drive cycle.
 *
 * Timing: one setInterval tick emits every frame that has come due, in time order, each stamped with its
 * scheduled time (at most one tick in the past, never in the future). The schedule advances by exact
 * periods, so the long-run rate is exact whatever the timer jitter; after a stall longer than
 * MAX_CATCH_UP_US the missed frames are dropped instead of burst out.
 *
 * Deterministic: for a given seed and rate, the sequence of frames (ids, payloads, relative times) is the
 * same on every run; only the absolute start time differs.
 */
import { type CanFrame, frameProblem, monotonicUsClock } from '../../core/can/frame.js';
import { BUS_RULE } from '../../core/names.js';
import type { FrameSource, SendResult, SourceSink } from './source.js';

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

/** 'honda': rolling counter and checksum in the last byte; 'plain': template, signals and noise only. */
type Layout = 'honda' | 'plain';

interface MessageSpec {
  id: number;
  ext: boolean;
  /** Period in the capture, ms. */
  periodMs: number;
  /** Typical payload from the capture, with counter and checksum bits cleared. */
  template: string;
  /** Bytes that wander (random walk around the template) like noisy sensors do. */
  walk: number[];
  layout: Layout;
}

// [id, period ms, template, wandering bytes]: derived from the capture (median period, a typical payload,
// bytes with more than 20 distinct values). 0x255 carries no Honda counter/checksum in the capture.
const HONDA: Array<[number, number, string, number[]]> = [
  [0x039, 40, '028000', []],
  [0x094, 10, '8B6507D9FB000C40', [0, 3, 4]],
  [0x112, 10, '250000', [0]],
  [0x130, 10, '0095009C00000480', [1, 3, 4]],
  [0x140, 10, '0000000000000000', []],
  [0x14a, 10, '0656FECA07064E00', [3, 6]], // steering sensors: bytes 0-1 = angle
  [0x158, 10, '0360000003600200', []], // engine data: speed, odometer
  [0x17c, 10, '000C03D230000000', []], // powertrain: pedal, rpm
  [0x1a4, 20, '0068042410800100', [1]],
  [0x1ab, 20, '801800', [1]],
  [0x1ac, 20, '7FFF030000000000', []],
  [0x1b0, 20, '580F0000030000', []],
  [0x1c2, 20, '2300000000000000', []],
  [0x1cc, 20, '000000', []],
  [0x1d0, 20, '070E0D081C103300', []], // wheel speeds
  [0x1d6, 20, '0000', []],
  [0x1dc, 20, '0004690000001000', [2]],
  [0x1dd, 20, 'FF361B4C00000000', [1, 3]],
  [0x1ea, 20, '0000000000000400', []],
  [0x1ed, 20, '21FF000000', []],
  [0x1fb, 20, '00', []],
  [0x221, 40, '310000000000', []],
  [0x255, 40, '09080808555553E2', [6, 7]],
  [0x296, 40, '00000000', []],
  [0x305, 100, '8054F700010000', []],
  [0x309, 100, '0348050503244080', [1, 5]],
  [0x31b, 100, '5A40000000000000', []],
  [0x320, 100, '0000005300000000', []],
  [0x324, 100, '7A5A014800000000', []], // temperatures, trip fuel
  [0x326, 100, '3E70000000000000', [0, 1]],
  [0x328, 100, '0000000000840040', []],
  [0x32f, 100, '0000000000000000', []],
  [0x339, 100, '8C399000', []],
  [0x34e, 100, '2C29106000000000', [1]],
  [0x371, 100, '0000000000000000', []],
  [0x372, 100, 'E0000000', []],
  [0x374, 100, '4700000013400000', []],
  [0x378, 100, '0000000010800040', []],
  [0x37b, 100, '0000002000000000', []],
  [0x396, 100, '00000047000000', []],
  [0x3a1, 200, '2E00000000000000', []],
  [0x3d7, 200, 'B000000000000040', []],
  [0x3d9, 200, '008400', []],
  [0x400, 300, '0000010200', []],
  [0x405, 300, '0000000000008000', []],
  [0x40c, 300, '8901541FE0000000', [0]],
  [0x428, 300, '00000000000000', []],
  [0x454, 300, '4AF6011A5A006000', []],
  [0x45b, 300, '0000', []],
  [0x465, 300, '0000000000000100', []],
  [0x510, 500, '0000000000000000', []],
  [0x516, 500, '0052600000100000', []],
  [0x551, 500, '0000000600', []],
  [0x555, 500, 'C122000600', []],
  [0x590, 1000, 'C029000600', []],
  [0x659, 1000, '0000000600', []],
  [0x661, 500, '0C510004F0014B00', []],
];

/** J1939 PGNs (priority 6, source address 0): CCVS (vehicle speed) and ET1 (engine temperatures). */
const J1939_CCVS = 0x18fef100;
const J1939_ET1 = 0x18feee00;

const MESSAGES: MessageSpec[] = [
  ...HONDA.map(([id, periodMs, template, walk]): MessageSpec => ({
    id,
    ext: false,
    periodMs,
    template,
    walk,
    layout: id === 0x255 ? 'plain' : 'honda',
  })),
  { id: J1939_CCVS, ext: true, periodMs: 100, template: 'F30000000000001F', walk: [], layout: 'plain' },
  { id: J1939_ET1, ext: true, periodMs: 1000, template: '0000000000FFFFFF', walk: [], layout: 'plain' },
];

/** Frames per second of the table at its recorded periods (~1,671). */
const BASE_RATE = MESSAGES.reduce((sum, m) => sum + 1000 / m.periodMs, 0);

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

function hexBytes(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out;
}

/** Honda nibble checksum over id and payload (excluding the checksum nibble itself), as in the capture. */
function hondaChecksum(id: number, data: Uint8Array): number {
  let sum = 0;
  for (let v = id; v > 0; v >>>= 4) sum += v & 15;
  const last = data.length - 1;
  for (let i = 0; i < last; i++) sum += (data[i]! >> 4) + (data[i]! & 15);
  sum += data[last]! >> 4;
  return (8 - sum) & 15;
}

function smoothstep(x: number): number {
  const c = x < 0 ? 0 : x > 1 ? 1 : x;
  return c * c * (3 - 2 * c);
}

/** The car's state at `t` seconds after start: a 90 s cycle of idle, acceleration, cruise, braking, idle. */
export interface VehicleState {
  speedKph: number;
  rpm: number;
  pedalPct: number;
  steeringDeg: number;
  coolantC: number;
  oilC: number;
  intakeC: number;
}

const GEAR_UP_KPH = [15, 30, 50, 70, 90];
const RPM_PER_KPH = [110, 62, 42, 32, 26, 22];

export function vehicleState(t: number): VehicleState {
  const c = t % 90;
  let speed: number;
  let pedal: number;
  if (c < 10) {
    speed = 0;
    pedal = 0;
  } else if (c < 30) {
    speed = 80 * smoothstep((c - 10) / 20);
    pedal = 30 + 20 * Math.sin((Math.PI * (c - 10)) / 20);
  } else if (c < 55) {
    speed = 80 + 3 * Math.sin((2 * Math.PI * (c - 30)) / 12.5);
    pedal = 14 + 4 * Math.sin((2 * Math.PI * (c - 30)) / 12.5);
  } else if (c < 70) {
    speed = 80 * (1 - smoothstep((c - 55) / 15));
    pedal = 0;
  } else {
    speed = 0;
    pedal = 0;
  }
  const coolant = 20 + 68 * (1 - Math.exp(-t / 180));
  // A cold engine idles higher; the idle settles as the coolant warms up.
  const idle = 750 + 350 * Math.max(0, (60 - coolant) / 40) + 15 * Math.sin(t * 2.1);
  let gear = 0;
  while (gear < GEAR_UP_KPH.length && speed >= GEAR_UP_KPH[gear]!) gear++;
  const rpm = Math.min(6800, Math.max(idle, speed * RPM_PER_KPH[gear]!));
  const moving = speed > 1 ? 1 : 0.2;
  return {
    speedKph: speed,
    rpm,
    pedalPct: pedal,
    steeringDeg: moving * (25 * Math.sin((2 * Math.PI * t) / 11) + 6 * Math.sin((2 * Math.PI * t) / 3.1)),
    coolantC: coolant,
    oilC: 20 + 75 * (1 - Math.exp(-t / 400)),
    intakeC: 30 + 4 * Math.sin(t / 37),
  };
}

function clampByte(v: number): number {
  return v < 0 ? 0 : v > 255 ? 255 : Math.round(v);
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
  private lastEngineUs = 0;
  private odometerM = 0;
  private tripFuelMl = 0;
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

    const scale = BASE_RATE / this.rate;
    const n = MESSAGES.length;
    this.periodUs = new Float64Array(n);
    this.nextDue = new Float64Array(n);
    this.counter = new Uint8Array(n);
    this.heap = new Int32Array(n);
    this.templates = MESSAGES.map((m) => hexBytes(m.template));
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
    this.lastEngineUs = this.startUs;
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
    const problem = frameProblem(frame);
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
    this.applySignals(spec.id, data, v, dueUs);

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

  /** Writes the drive-cycle signals into the messages that carry them. */
  private applySignals(id: number, d: Uint8Array, v: VehicleState, dueUs: number): void {
    switch (id) {
      case 0x158: {
        // Engine data: vehicle speed twice (0.01 km/h, big-endian) and a wrapping odometer byte.
        const dt = (dueUs - this.lastEngineUs) / 1e6;
        this.lastEngineUs = dueUs;
        this.odometerM += (v.speedKph / 3.6) * dt;
        this.tripFuelMl += (0.02 + v.rpm * v.pedalPct * 2e-7) * dt * 1000;
        const s = Math.round(v.speedKph * 100);
        d[0] = s >> 8;
        d[1] = s & 0xff;
        d[4] = s >> 8;
        d[5] = s & 0xff;
        d[6] = Math.floor(this.odometerM / 10) & 0xff;
        break;
      }
      case 0x17c: {
        // Powertrain: accelerator pedal (0-255) and engine RPM (big-endian).
        const rpm = Math.round(v.rpm);
        d[0] = clampByte(v.pedalPct * 2.55);
        d[2] = rpm >> 8;
        d[3] = rpm & 0xff;
        break;
      }
      case 0x14a: {
        // Steering angle, signed 0.1 degree, big-endian.
        const a = Math.round(v.steeringDeg * 10) & 0xffff;
        d[0] = a >> 8;
        d[1] = a & 0xff;
        break;
      }
      case 0x1d0: {
        // Four wheel speeds, 14 bits each (0.01 km/h, saturating), packed MSB first into bytes 0-6.
        const w = (k: number): number => Math.min(0x3fff, Math.round(v.speedKph * k * 100));
        const front = w(1.0) * 0x4000 + w(1.004); // 28 bits: bytes 0-2 and the high nibble of byte 3
        const rear = w(0.997) * 0x4000 + w(1.002); // 28 bits: the low nibble of byte 3 and bytes 4-6
        d[0] = Math.floor(front / 0x100000) & 0xff;
        d[1] = (front >>> 12) & 0xff;
        d[2] = (front >>> 4) & 0xff;
        d[3] = ((front & 0xf) << 4) | (Math.floor(rear / 0x1000000) & 0xf);
        d[4] = (rear >>> 16) & 0xff;
        d[5] = (rear >>> 8) & 0xff;
        d[6] = rear & 0xff;
        break;
      }
      case 0x324: {
        // Coolant and oil temperature (+40 °C offset), trip fuel consumed (ml, big-endian).
        const fuel = Math.floor(this.tripFuelMl) & 0xffff;
        d[0] = clampByte(v.coolantC + 40);
        d[1] = clampByte(v.oilC + 40);
        d[2] = fuel >> 8;
        d[3] = fuel & 0xff;
        break;
      }
      case J1939_CCVS: {
        // Wheel-based vehicle speed, 1/256 km/h, little-endian (J1939 SPN 84).
        const s = Math.min(0xfaff, Math.round(v.speedKph * 256));
        d[1] = s & 0xff;
        d[2] = s >> 8;
        break;
      }
      case J1939_ET1: {
        // Coolant and fuel temperature (+40 °C), oil temperature 0.03125 °C/bit -273 (little-endian).
        const oil = Math.round((v.oilC + 273) / 0.03125);
        d[0] = clampByte(v.coolantC + 40);
        d[1] = clampByte(v.intakeC + 40);
        d[2] = oil & 0xff;
        d[3] = oil >> 8;
        break;
      }
    }
  }

  /**
   * A tiny OBD-II ECU: answers mode 01 requests on 0x7DF (functional) or 0x7E0 (physical) from 0x7E8
   * after a couple of milliseconds, for the PIDs below. Unsupported PIDs get no answer, like real ECUs.
   */
  private maybeAnswerObd(req: CanFrame): void {
    if (req.ext || req.fd || req.rtr || req.err || (req.id !== 0x7df && req.id !== 0x7e0)) return;
    const d = req.data;
    if (d.length < 3 || d[0]! < 2 || d[0]! > 7 || d[1] !== 0x01) return;
    const pid = d[2]!;
    const timer = setTimeout(() => {
      this.obdTimers.delete(timer);
      if (!this.running) return;
      const now = this.now();
      const values = this.obdValues(pid, vehicleState((now - this.startUs) / 1e6));
      if (!values) return;
      // Emit the periodic frames that are already due first, and stamp the answer with that same instant,
      // so timestamps on the bus stay in order.
      this.tick(now);
      if (!this.running) return;
      const data = new Uint8Array(8).fill(0x55);
      data[0] = 2 + values.length;
      data[1] = 0x41;
      data[2] = pid;
      data.set(values, 3);
      this.sink!.frame({
        bus: this.bus,
        id: 0x7e8,
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

  private obdValues(pid: number, v: VehicleState): number[] | null {
    switch (pid) {
      case 0x00: {
        // Supported PIDs 01-20: bit (32 - pid) of a big-endian 32-bit mask.
        let mask = 0;
        for (const p of [0x05, 0x0c, 0x0d, 0x0f, 0x11]) mask |= 1 << (32 - p);
        return [(mask >>> 24) & 0xff, (mask >>> 16) & 0xff, (mask >>> 8) & 0xff, mask & 0xff];
      }
      case 0x05:
        return [clampByte(v.coolantC + 40)];
      case 0x0c: {
        const q = Math.round(v.rpm * 4);
        return [(q >> 8) & 0xff, q & 0xff];
      }
      case 0x0d:
        return [clampByte(v.speedKph)];
      case 0x0f:
        return [clampByte(v.intakeC + 40)];
      case 0x11:
        return [clampByte(v.pedalPct * 2.55)];
      default:
        return null;
    }
  }
}
