/**
 * The trace: a virtual list over TraceModel.visible. Only the rows in view (plus a few) exist in the
 * DOM, absolutely placed in a tall spacer, so 2,000 rows scroll as smoothly as 20 and an update costs the
 * same at 200 or 2,000 events/s.
 *
 * Following: while the view is at the bottom it stays there as events arrive. Once the user scrolls up,
 * it stops following and keeps the rows they look at in place, even as old rows are trimmed from the
 * top; "Jump to newest" (or scrolling back down) follows again.
 */
import type { ConsoleEvent } from '../events.js';
import { formatClock, formatInt } from '../format.js';
import { h, setAttr, setText } from '../dom.js';
import type { TraceItem, TraceModel } from '../state/trace.js';

const OVERSCAN = 6;
/** Shortest interval between redraws caused by new events alone (about 30 per second). */
const MIN_REDRAW_MS = 30;

interface PoolRow {
  el: HTMLDivElement;
  seq: number;
  index: number;
}

export class TraceView {
  private readonly spacer: HTMLDivElement;
  private readonly pool: PoolRow[] = [];
  private rowH = 22;
  private following = true;
  /**
   * The scrollTop we last set: a scroll event that lands there is ours (following, keeping the place),
   * anything else is the user's. (A flag would be wrong when the browser coalesces our scroll with the
   * user's into one event.)
   */
  private lastSetTop = -1;
  private renderedVersion = -1;
  private lastHeight = 0;
  private lastRender = 0;
  onFollowChange: (following: boolean) => void = () => {};

  constructor(
    private readonly model: TraceModel,
    private readonly scroller: HTMLDivElement,
    head: HTMLElement,
    private readonly group: boolean,
  ) {
    this.spacer = scroller.querySelector<HTMLDivElement>('.trace-spacer')!;
    scroller.classList.toggle('group', group);
    head.classList.toggle('group', group);
    const cols: [string, string][] = [
      ['t', 'Time'],
      ['n', '#'],
      ['k', 'Dir'],
      ...(group ? [['d', 'Dongle'] as [string, string]] : []),
      ['b', 'Bus'],
      ['i', 'ID'],
      ['l', 'DLC'],
      ['x', 'Data'],
      ['o', 'Info'],
    ];
    head.append(...cols.map(([cls, text]) => h('span', { class: cls, text })));
    scroller.addEventListener('scroll', () => {
      if (Math.abs(this.scroller.scrollTop - this.lastSetTop) >= 2) {
        const atBottom = this.scroller.scrollTop + this.scroller.clientHeight >= this.scroller.scrollHeight - this.rowH;
        if (atBottom !== this.following) {
          this.following = atBottom;
          this.onFollowChange(atBottom);
        }
      }
      this.renderedVersion = -1;
    });
    new ResizeObserver(() => (this.renderedVersion = -1)).observe(scroller);
  }

  get isFollowing(): boolean {
    return this.following;
  }

  follow(): void {
    this.following = true;
    this.onFollowChange(true);
    this.renderedVersion = -1;
  }

  /**
   * Call once per animation frame; does nothing when neither the model nor the viewport changed. New
   * events alone redraw at most every MIN_REDRAW_MS (at 2,000 events/s every row changes every frame, and
   * nobody reads faster than that); scrolling and resizing redraw at once. Returns false when it skipped
   * a pending update, so the caller asks for another frame.
   */
  render(now: number = performance.now()): boolean {
    if (!this.scroller.offsetParent) return true; // hidden tab: nothing to draw
    const userChange = this.renderedVersion === -1 || this.lastHeight !== this.scroller.clientHeight;
    if (!userChange && this.renderedVersion === this.model.version) return true;
    if (!userChange && now - this.lastRender < MIN_REDRAW_MS) return false;
    this.lastRender = now;
    const shift = this.model.takeShift();
    this.renderedVersion = this.model.version;
    this.lastHeight = this.scroller.clientHeight;
    if (this.pool.length === 0) this.measure();

    const n = this.model.visible.length;
    const height = n * this.rowH;
    if (this.spacer.style.height !== `${height}px`) this.spacer.style.height = `${height}px`;
    const viewH = this.scroller.clientHeight;
    // Paused: the rows stay exactly where they are, even if the viewport changes size.
    if (this.following && !this.model.paused) this.setScroll(Math.max(0, height - viewH));
    else if (shift === 'rebuilt') this.setScroll(Math.min(this.scroller.scrollTop, Math.max(0, height - viewH)));
    else if (shift > 0) this.setScroll(Math.max(0, this.scroller.scrollTop - shift * this.rowH));

    const top = this.scroller.scrollTop;
    const first = Math.max(0, Math.floor(top / this.rowH) - OVERSCAN);
    const count = Math.min(n - first, Math.ceil(viewH / this.rowH) + 2 * OVERSCAN);
    while (this.pool.length < count) {
      const el = h('div', { class: 'trace-row', role: 'listitem' });
      this.scroller.append(el);
      this.pool.push({ el, seq: -1, index: -1 });
    }
    for (let k = 0; k < this.pool.length; k++) {
      const p = this.pool[k]!;
      if (k >= count) {
        if (!p.el.hidden) p.el.hidden = true;
        continue;
      }
      const index = first + k;
      const item = this.model.visible.get(index)!;
      if (p.el.hidden) p.el.hidden = false;
      if (p.index !== index) {
        p.el.style.transform = `translateY(${index * this.rowH}px)`;
        p.index = index;
      }
      if (p.seq !== item.seq || item.seq === 0) {
        p.seq = item.seq;
        fillRow(p.el, item, this.group);
      }
    }
    return true;
  }

  private setScroll(top: number): void {
    if (Math.abs(this.scroller.scrollTop - top) < 1) return;
    this.scroller.scrollTop = top;
    this.lastSetTop = this.scroller.scrollTop;
  }

  private measure(): void {
    const probe = h('div', { class: 'trace-row' }, h('span', { text: 'x' }));
    this.scroller.append(probe);
    const hgt = probe.getBoundingClientRect().height;
    probe.remove();
    if (hgt > 4) this.rowH = hgt;
  }

  /** The 1-based range of rows in view and the total, for the footer. */
  viewRange(): { first: number; last: number; total: number } {
    const total = this.model.visible.length;
    const first = Math.min(total, Math.floor(this.scroller.scrollTop / this.rowH) + 1);
    const last = Math.min(total, Math.floor((this.scroller.scrollTop + this.scroller.clientHeight) / this.rowH));
    return { first, last, total };
  }
}

interface Cell {
  cls: string;
  text: string;
  title?: string;
}

/**
 * Fills one recycled row for an item. The row's spans are created once and reused: only classes and
 * texts that differ are written, which keeps a full-rate scroll (every row changes every frame) cheap.
 */
export function fillRow(el: HTMLElement, item: TraceItem, group: boolean): void {
  let rowCls = 'trace-row';
  const cells: Cell[] = [];
  const data: Record<string, string | undefined> = { kind: undefined, eventId: undefined, id: undefined, bus: undefined };
  if (item.kind === 'note') {
    rowCls += ` note note-${item.level}`;
    data.kind = item.level === 'gap' ? 'gap' : 'note';
    cells.push({ cls: 't', text: formatClock(item.ts), title: item.ts }, { cls: 'msg', text: item.text, title: item.text });
  } else {
    const ev = item.ev;
    data.kind = ev.type;
    data.eventId = String(ev.id);
    const time = 'ts' in ev.data ? ev.data.ts : '';
    cells.push({ cls: 't', text: time ? formatClock(time) : '', title: time }, { cls: 'n', text: ev.id ? String(ev.id) : '' });
    if (ev.type === 'can_frame') {
      const f = ev.data;
      data.id = f.id;
      data.bus = f.bus;
      const flags = [f.is_error ? `ERR ${f.error_text ?? ''}`.trim() : '', f.is_remote ? 'RTR' : '', f.is_fd ? 'FD' : '', f.brs ? 'BRS' : '', f.esi ? 'ESI' : '']
        .filter(Boolean)
        .join(' ');
      const rep = f.represents !== undefined && f.represents > 1 ? `×${formatInt(f.represents)}` : '';
      cells.push({ cls: `k dir-${f.direction}`, text: f.direction });
      if (group) cells.push({ cls: 'd', text: f.dongle ?? '' });
      cells.push(
        { cls: 'b', text: f.bus },
        { cls: 'i', text: f.id },
        { cls: 'l', text: String(f.dlc) },
        { cls: 'x', text: f.data_hex || (f.is_remote ? '(remote)' : '') },
        // An error frame's words can be longer than the column: the whole text as the cell's tooltip.
        { cls: 'o', text: [flags, rep].filter(Boolean).join(' '), title: rep ? `stands for ${f.represents} frames of this id (sampling)` : f.is_error ? flags : undefined },
      );
      if (f.direction === 'tx') rowCls += ' tx';
      if (f.is_error) rowCls += ' err';
    } else {
      const { tag, text, level } = describe(ev);
      rowCls += ` ev lvl-${level}`;
      if (ev.type === 'stream_reset') {
        rowCls += ' gap';
        data.kind = 'gap';
      }
      cells.push({ cls: 'k tag', text: tag }, { cls: 'msg', text, title: text });
    }
  }
  if (el.className !== rowCls) el.className = rowCls;
  for (const [k, v] of Object.entries(data)) {
    if (v === undefined) delete el.dataset[k];
    else if (el.dataset[k] !== v) el.dataset[k] = v;
  }
  // One span per column, made once per row element.
  const width = group ? 9 : 8;
  while (el.children.length < width) el.append(h('span'));
  for (let i = 0; i < width; i++) {
    const span = el.children[i] as HTMLSpanElement;
    const c = cells[i];
    if (!c) {
      if (!span.hidden) span.hidden = true;
      continue;
    }
    if (span.hidden) span.hidden = false;
    if (span.className !== c.cls) span.className = c.cls;
    setText(span, c.text);
    setAttr(span, 'title', c.title || null);
  }
}

function who(d: { dongle?: string }): string {
  return d.dongle ? `${d.dongle}: ` : '';
}

/** One-line description of a non-frame event. */
export function describe(ev: Exclude<ConsoleEvent, { type: 'can_frame' }>): { tag: string; text: string; level: string } {
  switch (ev.type) {
    case 'log': {
      const d = ev.data;
      const details = d.details
        ? ' ' +
          Object.entries(d.details)
            .map(([k, v]) => `${k}=${v}`)
            .join(' ')
        : '';
      return { tag: d.level, text: `${who(d)}${d.message}${d.code ? ` [${d.code}]` : ''}${details}`, level: d.level };
    }
    case 'presence': {
      const d = ev.data;
      const buses = d.buses
        ? ' · ' +
          Object.entries(d.buses)
            .map(([b, s]) => `${b} ${s}`)
            .join(', ')
        : '';
      const subject = d.bus ? `interface ${d.bus} ` : '';
      return { tag: 'presence', text: `${who(d)}${subject}${d.state}${d.reason ? ` — ${d.reason}` : ''}${buses}`, level: d.state === 'offline' ? 'warn' : 'info' };
    }
    case 'command_status': {
      const d = ev.data;
      return {
        tag: 'command',
        text: `${who(d)}${d.type} ${d.command_id}: ${d.status}${d.error ? ` — ${d.error}` : ''}`,
        level: d.status === 'failed' || d.status === 'timed_out' ? 'error' : 'info',
      };
    }
    case 'group_state': {
      const d = ev.data;
      const side = (k: 'a' | 'b'): string => `${k.toUpperCase()} ${d.sides[k].dongle} ${d.sides[k].online ? 'online' : 'offline'} (backlog ${formatInt(d.sides[k].backlog)})`;
      return {
        tag: 'group',
        text: `${d.group} ${d.mode}: ${side('a')}, ${side('b')} · relay ${formatInt(d.relay_rate)}/s · dropped ${formatInt(d.dropped)}`,
        level: d.mode === 'relaying' ? 'info' : 'warn',
      };
    }
    case 'bus_state': {
      const d = ev.data;
      const load = d.load === null ? '' : ` · load ${(d.load * 100).toFixed(1)} %`;
      return {
        tag: 'bus',
        text: `${who(d)}${d.bus} ${d.state ?? d.link}${d.tec !== null ? ` (TX errors ${d.tec}, RX errors ${d.rec})` : ''}${load}`,
        level: d.state === 'bus-off' || d.state === 'error-passive' ? 'error' : 'info',
      };
    }
    case 'stream_reset': {
      const d = ev.data;
      return { tag: 'GAP', text: resetText(d), level: 'gap' };
    }
  }
}

const RESET_WHY: Record<string, string> = {
  previous_run: 'the server restarted',
  too_old: 'the history we needed has been discarded',
  future: 'the server does not know our last event',
  invalid: 'our last event id was not valid',
  slow_client: 'we fell too far behind',
};

export function resetText(d: { reason: string; requested: number | string | null; oldest_available: number | null; latest: number }): string {
  const why = RESET_WHY[d.reason] ?? d.reason;
  const from = d.requested !== null ? `last seen #${d.requested}, ` : '';
  return `Gap — events were missed: ${why} (${d.reason}); ${from}continuing after #${d.latest}.`;
}

export function setFooter(el: HTMLElement, view: TraceView, paused: boolean): void {
  const r = view.viewRange();
  setText(el, r.total === 0 ? 'No events yet.' : `Rows ${formatInt(r.first)}–${formatInt(r.last)} of ${formatInt(r.total)} (the last 2,000 are kept)${paused ? ' · paused' : ''}`);
}
