/**
 * The by-id model: one row per (dongle,) bus and CAN id with its count, rate, period, DLC, last data
 * (with the bytes that changed and when) and direction (rx, tx or both).
 *
 * Rates come from the frames' own timestamps and the sampler's `represents` counts: a sampled event at
 * time t stands for every frame of its bus+id since the previous passing one, so over a run of events
 * e0…en the rate is (rep1 + … + repn) / (t_n − t_0). This is exact whatever the sampling ratio, and it
 * needs no wall clock (a replayed log shows its recorded rates).
 *
 * Received and transmitted frames of one id keep separate windows and the row's rate is their sum:
 * transmitted frames may carry another clock (a group peer's frames relayed down keep the peer's
 * receive time), and one window over two clocks would run backwards. The sum stays exact because the
 * console samples rx and tx of a bus+id as one (`represents` counts both).
 *
 * Each window keeps a few seconds of events (at most WINDOW_MAX), so memory per row is fixed; rows are
 * capped too.
 */
import type { CanFrameData } from '../events.js';
import { tsToMs } from '../events.js';
import { idValue, type IdFilter } from '../filter.js';
import { busKey } from './trace.js';
import { formatSignal, unitOf } from '../signal-format.js';

/** "ENGINE_RPM 864 rpm · GEAR D", for the by-id table. */
function signalsText(signals: Record<string, number | string>, units: Record<string, string> | undefined): string {
  return Object.entries(signals)
    .map(([k, v]) => `${k} ${formatSignal(v, unitOf(units, k))}`)
    .join(' · ');
}

/** Milliseconds of history a rate is computed over (at least two events are always kept). */
const WINDOW_MS = 5000;
const WINDOW_MAX = 256;
/** Rows beyond this are evicted, least recently seen first (an id flood must not grow the page). */
export const MAX_ROWS = 4096;

/** A ring of (timestamp, represents) for one direction of one row. */
export class RateWindow {
  private readonly ts = new Float64Array(WINDOW_MAX);
  private readonly rep = new Float64Array(WINDOW_MAX);
  private start = 0;
  len = 0;

  push(ts: number, rep: number): void {
    // A frame older than the newest (a clock step, reordering): start over rather than span backwards.
    if (this.len > 0 && ts < this.newest()) this.len = 0;
    if (this.len === WINDOW_MAX) {
      this.start = (this.start + 1) % WINDOW_MAX;
      this.len--;
    }
    const at = (this.start + this.len) % WINDOW_MAX;
    this.ts[at] = ts;
    this.rep[at] = rep;
    this.len++;
    while (this.len > 2 && ts - this.ts[this.start]! > WINDOW_MS) {
      this.start = (this.start + 1) % WINDOW_MAX;
      this.len--;
    }
  }

  newest(): number {
    return this.ts[(this.start + this.len - 1) % WINDOW_MAX]!;
  }

  /**
   * Frames per second, or null with fewer than two events. `now` is the stream's clock: when the id has
   * gone quiet for much longer than its period, the silence counts too, so the rate falls instead of
   * freezing at its last value.
   */
  rate(now: number): number | null {
    if (this.len < 2) return null;
    const t0 = this.ts[this.start]!;
    const tn = this.newest();
    let frames = 0;
    for (let k = 1; k < this.len; k++) frames += this.rep[(this.start + k) % WINDOW_MAX]!;
    let span = tn - t0;
    if (span <= 0) return null;
    if (now - tn > Math.max((3 * span) / frames, 1000)) span = now - t0;
    return (frames * 1000) / span;
  }

  clear(): void {
    this.len = 0;
  }
}

export interface IdRow {
  key: string;
  dongle: string;
  bus: string;
  /** "0x7E8" as the console writes it. */
  id: string;
  idNum: number;
  extended: boolean;
  /** Frames this row stands for (sum of `represents`, 1 per unsampled event). */
  count: number;
  /** Console events received for it. */
  events: number;
  dlc: number;
  bytes: string[];
  /** performance.now() of the last change of each byte (by index); 0 = never changed. */
  changedAt: number[];
  /** 1 = rx seen, 2 = tx seen. */
  dirs: number;
  kind: '' | 'FD' | 'RTR' | 'ERR';
  /** Timestamp (ms) of its newest frame, and the page time it arrived. */
  lastTs: number;
  lastArrival: number;
  /** Rate windows: [rx, tx]. */
  windows: [RateWindow, RateWindow];
  /** From a DBC, when one describes the id: the message name and its signals of the last frame. */
  msg: string;
  signals: string;
}

export class ByIdModel {
  readonly rows = new Map<string, IdRow>();
  /** Newest frame timestamp per dongle and direction: the stream's own clocks. */
  private readonly clock = new Map<string, number>();
  /** The page time (the `now` given to add()) at which each clock last moved. */
  private readonly clockArrival = new Map<string, number>();
  /** Bumped on every change, so views can skip work when nothing happened. */
  version = 0;

  add(f: CanFrameData, now: number): IdRow | undefined {
    const idNum = idValue(f.id);
    if (!Number.isFinite(idNum)) return undefined;
    const dongle = f.dongle ?? '';
    const key = `${dongle}|${f.bus}|${f.id}${f.is_error ? '!' : ''}`;
    const ts = tsToMs(f.ts);
    const rep = f.represents !== undefined && f.represents >= 1 ? f.represents : 1;
    let row = this.rows.get(key);
    if (!row) {
      row = {
        key,
        dongle,
        bus: f.bus,
        id: f.id,
        idNum,
        extended: f.is_extended,
        count: 0,
        events: 0,
        dlc: f.dlc,
        bytes: [],
        changedAt: [],
        dirs: 0,
        kind: '',
        lastTs: ts,
        lastArrival: now,
        windows: [new RateWindow(), new RateWindow()],
        msg: '',
        signals: '',
      };
      this.rows.set(key, row);
      if (this.rows.size > MAX_ROWS + 256) this.evict();
    }
    row.count += rep;
    row.events++;
    const dir = f.direction === 'tx' ? 1 : 0;
    row.dirs |= dir + 1;
    row.kind = f.is_error ? 'ERR' : f.is_remote ? 'RTR' : f.is_fd ? 'FD' : '';
    // Changed bytes: compare with the previous frame; a new length counts as a change of every byte.
    const bytes = f.data_hex === '' ? [] : f.data_hex.split(' ');
    if (row.events > 1) {
      const relen = bytes.length !== row.bytes.length;
      for (let i = 0; i < bytes.length; i++) if (relen || bytes[i] !== row.bytes[i]) row.changedAt[i] = now;
      row.changedAt.length = bytes.length;
    } else row.changedAt = bytes.map(() => 0);
    row.bytes = bytes;
    row.dlc = f.dlc;
    row.msg = f.msg ?? '';
    row.signals = f.signals ? signalsText(f.signals, f.units) : '';
    row.lastArrival = now;
    if (Number.isFinite(ts)) {
      row.lastTs = ts;
      row.windows[dir].push(ts, rep);
      const ck = `${dongle}|${dir}`;
      const clock = this.clock.get(ck) ?? 0;
      // Forward, or back by more than a window (the gateway's clock stepped back: NTP after an RTC that
      // ran fast): kept at the old maximum, every rate read as frames over the step plus the window.
      if (ts > clock || ts < clock - WINDOW_MS) {
        this.clock.set(ck, ts);
        this.clockArrival.set(ck, now);
      }
    }
    this.version++;
    return row;
  }

  /**
   * Frames per second of a row (both directions), or null while unknown. `pageNow` (performance.now()):
   * the stream's clock also moves on by the page time since its newest frame came — when every frame
   * stops (the bus, the replay or the dongle went quiet), the stream's own clock stops too, and the rates
   * would stay at their last values for ever. Without it: the stream's clock alone.
   */
  rate(row: IdRow, pageNow?: number): number | null {
    let sum: number | null = null;
    for (let dir = 0; dir < 2; dir++) {
      const w = row.windows[dir]!;
      if (w.len === 0) continue;
      const ck = `${row.dongle}|${dir}`;
      const clock = this.clock.get(ck);
      const now = clock === undefined ? w.newest() : clock + (pageNow === undefined ? 0 : Math.max(0, pageNow - (this.clockArrival.get(ck) ?? pageNow)));
      const r = w.rate(now);
      if (r !== null) sum = (sum ?? 0) + r;
    }
    return sum;
  }

  /** Sum of the rates of every row: the frames per second the stream stands for. */
  totalRate(pageNow?: number): number {
    let sum = 0;
    for (const r of this.rows.values()) sum += this.rate(r, pageNow) ?? 0;
    return sum;
  }

  /** After a gap in the stream (stream_reset) the windows would span it: start them over. */
  clearRates(): void {
    for (const r of this.rows.values()) for (const w of r.windows) w.clear();
    this.version++;
  }

  clear(): void {
    this.rows.clear();
    this.clock.clear();
    this.clockArrival.clear();
    this.version++;
  }

  private evict(): void {
    const byAge = [...this.rows.values()].sort((a, b) => a.lastArrival - b.lastArrival);
    for (let i = 0; i < byAge.length - MAX_ROWS; i++) this.rows.delete(byAge[i]!.key);
  }
}

export type SortKey = 'id' | 'count' | 'rate' | 'period' | 'dlc' | 'data' | 'dir' | 'last';

export function directionLabel(dirs: number): string {
  return dirs === 3 ? 'rx+tx' : dirs === 2 ? 'tx' : 'rx';
}

/**
 * Whether the table shows a row under the page's bus and id filters. The id filter's own rule decides
 * (matchesFrame): an error row's idNum is its error class, and error rows are kept whatever the ids are.
 */
export function rowShown(r: IdRow, id: IdFilter | null, bus: string): boolean {
  if (bus !== '' && busKey(r.dongle, r.bus) !== bus) return false;
  return !id || id.all || id.matchesFrame(r.idNum, r.extended, r.kind === 'ERR');
}

/** Comparator for the table; ties always fall back to dongle, bus, id so the order is stable. */
export function comparator(model: ByIdModel, key: SortKey, desc: boolean): (a: IdRow, b: IdRow) => number {
  const base = (a: IdRow, b: IdRow): number => a.dongle.localeCompare(b.dongle) || a.bus.localeCompare(b.bus) || Number(a.extended) - Number(b.extended) || a.idNum - b.idNum;
  const pageNow = performance.now();
  const rateOf = (r: IdRow): number => model.rate(r, pageNow) ?? -1;
  const cmp = (x: number, y: number): number => (x < y ? -1 : x > y ? 1 : 0);
  let f: (a: IdRow, b: IdRow) => number;
  switch (key) {
    case 'count':
      f = (a, b) => cmp(a.count, b.count);
      break;
    case 'rate':
      f = (a, b) => cmp(rateOf(a), rateOf(b));
      break;
    case 'period': {
      const p = (r: IdRow): number => {
        const x = model.rate(r);
        return x && x > 0 ? 1 / x : Infinity;
      };
      f = (a, b) => cmp(p(a), p(b));
      break;
    }
    case 'dlc':
      f = (a, b) => cmp(a.dlc, b.dlc);
      break;
    case 'data':
      f = (a, b) => a.bytes.join('').localeCompare(b.bytes.join(''));
      break;
    case 'dir':
      f = (a, b) => cmp(a.dirs, b.dirs);
      break;
    case 'last':
      f = (a, b) => cmp(a.lastArrival, b.lastArrival);
      break;
    default:
      f = () => 0;
  }
  return (a, b) => {
    const v = f(a, b);
    if (v !== 0) return desc ? -v : v;
    const t = base(a, b);
    return key === 'id' && desc ? -t : t;
  };
}
