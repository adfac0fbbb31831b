/**
 * Decoded signals as the console shows them: the latest value of every (dongle,) bus + message + signal
 * seen in `can_frame` events (their `msg`, `signals`, `units`), and the last 60 s of the signals pinned
 * to the chart. The console is sampled, so a value here is the latest the console carried; the agent's
 * `GET /api/v1/signals` has the exact latest values.
 *
 * Bounded: at most MAX_SIGNALS rows (least recently updated evicted), at most MAX_PINNED pinned signals
 * with at most MAX_POINTS points each.
 */
import type { CanFrameData } from '../events.js';
import { tsToMs } from '../events.js';
import { signalNumber, unitOf } from '../signal-format.js';

export const MAX_SIGNALS = 5000;
export const MAX_PINNED = 8;
export const HISTORY_MS = 60_000;
const MAX_POINTS = 12_000;

export interface SignalRow {
  key: string;
  dongle: string;
  bus: string;
  msg: string;
  name: string;
  value: number | string;
  unit: string;
  /** Stream time (ms) of the frame that carried it, and the page time it arrived. */
  tsMs: number;
  arrival: number;
  updates: number;
  /** Lower-case "bus msg name unit" for the search box. */
  haystack: string;
}

/** A pinned signal's recent numeric values: parallel arrays, oldest first. */
export interface History {
  t: number[];
  v: number[];
}

export class SignalsModel {
  readonly rows = new Map<string, SignalRow>();
  readonly pinned = new Map<string, History>();
  /** Bumped on every change, so views can skip work when nothing happened. */
  version = 0;
  /**
   * Newest stream time seen per dongle (each gateway's own clock), for the chart's 60 s window: its end is
   * the newest of them. A dongle's clock stepped back by more than the window restarts its own (kept at the
   * old maximum, the chart stayed at the old time with every new point off its edge).
   */
  private readonly newestBy = new Map<string, number>();

  get newestMs(): number {
    let n = 0;
    for (const t of this.newestBy.values()) if (t > n) n = t;
    return n;
  }

  add(f: CanFrameData, now: number): void {
    if (f.msg === undefined || f.signals === undefined) return;
    const dongle = f.dongle ?? '';
    const ts = tsToMs(f.ts);
    if (Number.isFinite(ts)) {
      const newest = this.newestBy.get(dongle) ?? 0;
      if (ts > newest || ts < newest - HISTORY_MS) this.newestBy.set(dongle, ts);
    }
    for (const [name, value] of Object.entries(f.signals)) {
      const key = `${dongle}|${f.bus}|${f.msg}|${name}`;
      let row = this.rows.get(key);
      const unit = unitOf(f.units, name);
      if (!row) {
        row = { key, dongle, bus: f.bus, msg: f.msg, name, value, unit, tsMs: ts, arrival: now, updates: 0, haystack: `${dongle} ${f.bus} ${f.msg} ${name} ${unit}`.toLowerCase() };
        this.rows.set(key, row);
        if (this.rows.size > MAX_SIGNALS) this.evict();
      }
      row.value = value;
      row.unit = unit;
      row.tsMs = ts;
      row.arrival = now;
      row.updates++;
      const h = this.pinned.get(key);
      const n = signalNumber(value);
      if (h && n !== undefined && Number.isFinite(ts)) push(h, ts, n);
    }
    this.version++;
  }

  pin(key: string): boolean {
    if (this.pinned.has(key) || this.pinned.size >= MAX_PINNED || !this.rows.has(key)) return false;
    const h: History = { t: [], v: [] };
    const row = this.rows.get(key)!;
    const n = signalNumber(row.value);
    if (n !== undefined && Number.isFinite(row.tsMs)) push(h, row.tsMs, n);
    this.pinned.set(key, h);
    this.version++;
    return true;
  }

  unpin(key: string): void {
    if (this.pinned.delete(key)) this.version++;
  }

  /** Rows whose bus, message, name or unit contain every word of `query` (case-insensitive). */
  search(query: string): SignalRow[] {
    const words = query
      .toLowerCase()
      .split(/\s+/)
      .filter((w) => w !== '');
    const out: SignalRow[] = [];
    for (const r of this.rows.values()) if (words.every((w) => r.haystack.includes(w))) out.push(r);
    return out.sort((a, b) => a.dongle.localeCompare(b.dongle) || a.bus.localeCompare(b.bus) || a.msg.localeCompare(b.msg) || a.name.localeCompare(b.name));
  }

  private evict(): void {
    let oldest: SignalRow | undefined;
    for (const r of this.rows.values()) if (!this.pinned.has(r.key) && (!oldest || r.arrival < oldest.arrival)) oldest = r;
    if (oldest) this.rows.delete(oldest.key);
  }
}

function push(h: History, t: number, v: number): void {
  // A step back in time (a replay looping, a clock step): start the history over rather than zig-zag.
  if (h.t.length > 0 && t < h.t[h.t.length - 1]!) {
    h.t.length = 0;
    h.v.length = 0;
  }
  h.t.push(t);
  h.v.push(v);
  let drop = 0;
  while (drop < h.t.length && (t - h.t[drop]! > HISTORY_MS || h.t.length - drop > MAX_POINTS)) drop++;
  if (drop > 0) {
    h.t.splice(0, drop);
    h.v.splice(0, drop);
  }
}
