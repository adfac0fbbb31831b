/**
 * The trace model: every received event in arrival order, bounded, with the filtered "visible" list the
 * view scrolls through, and pause.
 *
 * Memory is bounded twice: `all` keeps the last RAW_CAP items (so a new filter can be applied to recent
 * history), `visible` keeps at most VISIBLE_CAP rows. Pause freezes `visible` while new items still go
 * into `all`; resume appends what arrived meanwhile (with a note when more arrived than `all` could
 * hold), so the user loses neither their place nor, within the bounds, any event.
 */
import type { ConsoleEvent } from '../events.js';
import { MATCH_ALL, idValue, type IdFilter } from '../filter.js';
import { Deque } from './deque.js';

export const RAW_CAP = 10_000;
export const VISIBLE_CAP = 2_000;

export type TraceItem =
  | { seq: number; kind: 'event'; ev: ConsoleEvent; idNum: number; busKey: string }
  | { seq: number; kind: 'note'; level: 'info' | 'warn' | 'gap'; text: string; ts: string };

/** The event types the trace can show; stream_reset (the gap marker) and notes are always shown. */
export const TRACE_TYPES = ['can_frame', 'log', 'command_status', 'presence', 'group_state'] as const;
export type TraceType = (typeof TRACE_TYPES)[number];

export interface TraceFilter {
  id: IdFilter;
  /** '' = every bus; otherwise a bus key ("can0", or "gw1 can0" on a group console). */
  bus: string;
  types: ReadonlySet<string>;
}

export const SHOW_ALL: TraceFilter = { id: MATCH_ALL, bus: '', types: new Set(TRACE_TYPES) };

export function busKey(dongle: string | undefined, bus: string): string {
  return dongle ? `${dongle} ${bus}` : bus;
}

export function matches(f: TraceFilter, item: TraceItem): boolean {
  if (item.kind === 'note') return true;
  const ev = item.ev;
  if (ev.type === 'stream_reset') return true;
  if (!f.types.has(ev.type)) return false;
  if (ev.type !== 'can_frame') return true;
  if (f.bus !== '' && item.busKey !== f.bus) return false;
  // An error frame's idNum is its error class: the filter keeps error frames whatever it says.
  return f.id.all || f.id.matchesFrame(item.idNum, ev.data.is_extended, ev.data.is_error === true);
}

export class TraceModel {
  readonly all = new Deque<TraceItem>();
  readonly visible = new Deque<TraceItem>();
  filter: TraceFilter = SHOW_ALL;
  paused = false;
  /** Matching items that arrived while paused (shown on resume). */
  pending = 0;
  version = 0;
  private seq = 0;
  /** Seq of the newest item when pause began. */
  private pausedAt = 0;
  /** Rows removed from the top of `visible` since the view last asked (it keeps its place with this). */
  private trimmed = 0;
  /** The visible list was rebuilt (filter change): the view cannot keep its place by counting rows. */
  private rebuilt = false;

  pushEvent(ev: ConsoleEvent): TraceItem {
    const item: TraceItem =
      ev.type === 'can_frame'
        ? { seq: ++this.seq, kind: 'event', ev, idNum: idValue(ev.data.id), busKey: busKey(ev.data.dongle, ev.data.bus) }
        : { seq: ++this.seq, kind: 'event', ev, idNum: NaN, busKey: '' };
    this.push(item);
    return item;
  }

  pushNote(level: 'info' | 'warn' | 'gap', text: string, ts: string = new Date().toISOString()): TraceItem {
    const item: TraceItem = { seq: ++this.seq, kind: 'note', level, text, ts };
    this.push(item);
    return item;
  }

  private push(item: TraceItem): void {
    this.all.push(item);
    if (this.all.length > RAW_CAP) this.all.shift();
    if (!matches(this.filter, item)) return;
    if (this.paused) this.pending++;
    else this.appendVisible(item);
    this.version++;
  }

  private appendVisible(item: TraceItem): void {
    this.visible.push(item);
    if (this.visible.length > VISIBLE_CAP) {
      this.visible.shift();
      this.trimmed++;
    }
  }

  pause(): void {
    if (this.paused) return;
    this.paused = true;
    this.pausedAt = this.seq;
    this.pending = 0;
    this.version++;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    const fresh: TraceItem[] = [];
    for (const item of this.all) if (item.seq > this.pausedAt && matches(this.filter, item)) fresh.push(item);
    const first = this.all.first();
    const lost = first && first.seq > this.pausedAt + 1 ? first.seq - this.pausedAt - 1 : 0;
    if (lost > 0) {
      // More arrived while paused than the history holds: say so, just above what is shown.
      this.appendVisible({
        seq: 0,
        kind: 'note',
        level: 'warn',
        text: `${lost} events arrived during the pause and are no longer in memory (counted before the filter: no longer known whether they matched)`,
        ts: new Date().toISOString(),
      });
      for (const item of fresh.slice(-(VISIBLE_CAP - 1))) this.appendVisible(item);
    } else for (const item of fresh) this.appendVisible(item);
    this.pending = 0;
    this.version++;
  }

  setFilter(f: TraceFilter): void {
    this.filter = f;
    const upTo = this.paused ? this.pausedAt : Infinity;
    const picked: TraceItem[] = [];
    // Walk back from the newest so only the last VISIBLE_CAP matches are touched.
    for (let i = this.all.length - 1; i >= 0 && picked.length < VISIBLE_CAP; i--) {
      const item = this.all.get(i)!;
      if (item.seq <= upTo && matches(f, item)) picked.push(item);
    }
    this.visible.clear();
    for (let i = picked.length - 1; i >= 0; i--) this.visible.push(picked[i]!);
    if (this.paused) {
      this.pending = 0;
      for (const item of this.all) if (item.seq > this.pausedAt && matches(f, item)) this.pending++;
    }
    this.rebuilt = true;
    this.version++;
  }

  clear(): void {
    this.all.clear();
    this.visible.clear();
    this.pending = 0;
    this.pausedAt = this.seq;
    this.rebuilt = true;
    this.version++;
  }

  /** For the view: rows trimmed from the top since the last call, or 'rebuilt'. */
  takeShift(): number | 'rebuilt' {
    if (this.rebuilt) {
      this.rebuilt = false;
      this.trimmed = 0;
      return 'rebuilt';
    }
    const n = this.trimmed;
    this.trimmed = 0;
    return n;
  }

  /** The can_frame payloads among the visible rows, oldest first (what "export" writes). */
  *visibleFrames(): IterableIterator<Extract<ConsoleEvent, { type: 'can_frame' }>['data']> {
    for (const item of this.visible) if (item.kind === 'event' && item.ev.type === 'can_frame') yield item.ev.data;
  }
}
