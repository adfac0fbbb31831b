/**
 * The "By id" table: one row per (dongle,) bus and CAN id, sortable by any column. Rows are keyed and
 * reused; a render only touches cells whose text changed, so a few hundred rows refresh cheaply several
 * times a second. Bytes that changed since the previous frame of their id are highlighted for a moment
 * (the highlight fades by CSS transition when the class goes). While no row changes (the model's version,
 * the sort and the filter stay), a render does nothing but, once a second, refresh what moves with time
 * alone: a quiet id's falling rate and period, its stale mark, a highlight's end.
 */
import type { IdFilter } from '../filter.js';
import { formatInt, formatPeriod, formatRate } from '../format.js';
import { type ByIdModel, comparator, directionLabel, type IdRow, rowShown, type SortKey } from '../state/by-id.js';
import { h, setAttr, setHidden, setText } from '../dom.js';

/** Rows drawn at most; more ids than this are counted below the table (narrow with the filter). */
const MAX_RENDERED = 500;
const HIGHLIGHT_MS = 1200;
/** While no row changes, how often what moves with time alone is refreshed (the page's clock ticks once a second too). */
const TIME_REFRESH_MS = 1000;

interface Column {
  key: SortKey | 'dongle' | 'bus' | 'signals';
  label: string;
  sort: SortKey;
  cls: string;
  title?: string;
  numeric?: boolean;
}

interface RowEls {
  tr: HTMLTableRowElement;
  cells: HTMLTableCellElement[];
  bytes: HTMLSpanElement[];
}

export class ByIdTable {
  private readonly columns: Column[];
  private readonly els = new Map<string, RowEls>();
  private order: string[] = [];
  private sortKey: SortKey = 'id';
  private desc = false;
  private idFilter: IdFilter | null = null;
  private bus = '';
  private readonly headButtons = new Map<SortKey, HTMLTableCellElement>();
  /** Forces a full pass (sort or filter changed). */
  private dirty = true;
  /** The model's version at the last render: unchanged, nothing is sorted or redrawn. */
  private drawnVersion = -1;
  /** The rows drawn, in order, from the last sort. */
  private shown: IdRow[] = [];
  /** Page time of the next refresh of what moves with time alone (rates, stale marks, highlights). */
  private refreshAt = 0;
  /** The earliest end of a highlight drawn in this pass. */
  private highlightEnd = Infinity;

  constructor(
    private readonly model: ByIdModel,
    private readonly table: HTMLTableElement,
    private readonly empty: HTMLElement,
    private readonly more: HTMLElement,
    group: boolean,
  ) {
    this.columns = [
      ...(group ? [{ key: 'dongle', label: 'Dongle', sort: 'id', cls: 'c-dongle' } as Column] : []),
      { key: 'bus', label: 'Bus', sort: 'id', cls: 'c-bus' },
      { key: 'id', label: 'ID', sort: 'id', cls: 'c-id' },
      { key: 'count', label: 'Count', sort: 'count', cls: 'c-count', numeric: true, title: 'Frames seen, including those the console sampled out' },
      { key: 'rate', label: 'Rate (Hz)', sort: 'rate', cls: 'c-rate', numeric: true, title: 'Frames per second over the last seconds' },
      { key: 'period', label: 'Period', sort: 'period', cls: 'c-period', numeric: true },
      { key: 'dlc', label: 'DLC', sort: 'dlc', cls: 'c-dlc', numeric: true },
      { key: 'data', label: 'Last data', sort: 'data', cls: 'c-data', title: 'Bytes that just changed are highlighted' },
      { key: 'dir', label: 'Dir', sort: 'dir', cls: 'c-dir' },
      { key: 'signals', label: 'Message · signals', sort: 'id', cls: 'c-signals', title: 'Decoded with the DBC files (--dbc), from the last frame shown' },
    ];
    const headRow = table.tHead!.rows[0]!;
    for (const c of this.columns) {
      const th = h('th', { scope: 'col', class: c.cls + (c.numeric ? ' num' : ''), title: c.title });
      if (c.key === 'dongle' || c.key === 'bus' || c.key === 'signals') th.textContent = c.label;
      else {
        const b = h('button', { type: 'button', class: 'sort', onclick: () => this.sortBy(c.sort) }, c.label, h('span', { class: 'arrow', 'aria-hidden': 'true' }));
        th.append(b);
        this.headButtons.set(c.sort, th);
      }
      headRow.append(th);
    }
    this.updateSortMarks();
  }

  setFilter(id: IdFilter, bus: string): void {
    this.idFilter = id;
    this.bus = bus;
    this.dirty = true;
  }

  sortBy(key: SortKey): void {
    if (this.sortKey === key) this.desc = !this.desc;
    else {
      this.sortKey = key;
      // Figures read best largest first; ids and data in ascending order.
      this.desc = key === 'count' || key === 'rate' || key === 'last';
    }
    this.updateSortMarks();
    this.dirty = true;
  }

  private updateSortMarks(): void {
    for (const [key, th] of this.headButtons) {
      const on = key === this.sortKey;
      setAttr(th, 'aria-sort', on ? (this.desc ? 'descending' : 'ascending') : null);
      setText(th.querySelector('.arrow')!, on ? (this.desc ? ' ▼' : ' ▲') : '');
    }
  }

  render(now: number): void {
    const changed = this.dirty || this.model.version !== this.drawnVersion;
    if (!changed && now < this.refreshAt) return;
    this.drawnVersion = this.model.version;
    // A rate sort moves with time too (a quiet id's rate falls): re-sorted on the time refresh as well.
    if (changed || this.sortKey === 'rate') this.select();
    const shown = this.shown;
    this.highlightEnd = Infinity;
    for (const r of shown) this.update(r, now);
    // The next refresh without a change: in a second, or when a highlight ends if sooner.
    this.refreshAt = Math.min(now + TIME_REFRESH_MS, this.highlightEnd);
    const tbody = this.table.tBodies[0]!;
    const keys = shown.map((r) => r.key);
    // Re-order only when the order changed: moving rows resets hover and selection.
    if (this.dirty || keys.length !== this.order.length || keys.some((k, i) => k !== this.order[i])) {
      let prev: Element | null = null;
      for (const k of keys) {
        const tr = this.els.get(k)!.tr;
        const want: Element | null = prev ? prev.nextElementSibling : tbody.firstElementChild;
        if (want !== tr) {
          if (prev) prev.after(tr);
          else tbody.prepend(tr);
        }
        prev = tr;
      }
      this.order = keys;
    }
    this.dirty = false;
  }

  /** Filters and sorts the model's rows into `shown`, updates the notes under the table and drops the rows gone. */
  private select(): void {
    const f = this.idFilter;
    const rows: IdRow[] = [];
    for (const r of this.model.rows.values()) if (rowShown(r, f, this.bus)) rows.push(r);
    rows.sort(comparator(this.model, this.sortKey, this.desc));
    this.shown = rows.length > MAX_RENDERED ? rows.slice(0, MAX_RENDERED) : rows;
    const filteredOut = this.model.rows.size > 0 && rows.length === 0;
    setHidden(this.empty, this.model.rows.size > 0 && !filteredOut);
    setText(this.empty, filteredOut ? 'No id matches the filter.' : 'Waiting for frames…');
    setHidden(this.more, rows.length <= MAX_RENDERED);
    if (rows.length > MAX_RENDERED) setText(this.more, `Showing ${MAX_RENDERED} of ${formatInt(rows.length)} ids: narrow them with the filter.`);
    const live = new Set(this.shown.map((r) => r.key));
    for (const [k, e] of this.els) {
      if (!live.has(k)) {
        e.tr.remove();
        this.els.delete(k);
      }
    }
  }

  private update(r: IdRow, now: number): void {
    let e = this.els.get(r.key);
    if (!e) {
      const cells = this.columns.map((c) => h('td', { class: c.cls + (c.numeric ? ' num' : '') }));
      const tr = h('tr', { 'data-key': r.key, 'data-id': r.id, 'data-bus': r.bus, 'data-dongle': r.dongle || undefined });
      tr.append(...cells);
      e = { tr, cells, bytes: [] };
      this.els.set(r.key, e);
    }
    const rate = this.model.rate(r, performance.now());
    const stale = now - r.lastArrival > Math.max(5000, rate ? (5 * 1000) / rate : 0);
    e.tr.classList.toggle('stale', stale);
    this.columns.forEach((c, i) => {
      const td = e.cells[i]!;
      switch (c.key) {
        case 'dongle':
          setText(td, r.dongle);
          break;
        case 'bus':
          setText(td, r.bus);
          break;
        case 'id':
          setText(td, r.id + (r.kind ? ` ${r.kind}` : ''));
          break;
        case 'count':
          setText(td, formatInt(r.count));
          break;
        case 'rate':
          setText(td, formatRate(rate));
          break;
        case 'period':
          setText(td, formatPeriod(rate));
          break;
        case 'dlc':
          setText(td, String(r.dlc));
          break;
        case 'data':
          this.bytes(e, td, r, now);
          break;
        case 'dir':
          setText(td, directionLabel(r.dirs));
          break;
        case 'signals':
          this.signals(td, r);
          break;
        default:
          break;
      }
    });
  }

  private signals(td: HTMLTableCellElement, r: IdRow): void {
    if (td.dataset.msg !== r.msg) {
      td.dataset.msg = r.msg;
      td.replaceChildren(h('strong', { class: 'msg', text: r.msg }), h('span', { class: 'sigs' }));
    }
    setText(td.lastElementChild!, r.msg === '' ? '' : ' ' + r.signals);
    setAttr(td, 'title', r.signals === '' ? null : r.signals);
  }

  private bytes(e: RowEls, td: HTMLTableCellElement, r: IdRow, now: number): void {
    while (e.bytes.length < r.bytes.length) {
      const s = h('span', { class: 'byte' });
      e.bytes.push(s);
      td.append(s);
    }
    while (e.bytes.length > r.bytes.length) e.bytes.pop()!.remove();
    for (let i = 0; i < r.bytes.length; i++) {
      const s = e.bytes[i]!;
      setText(s, r.bytes[i]!);
      const at = r.changedAt[i] ?? 0;
      const on = at > 0 && now - at < HIGHLIGHT_MS;
      s.classList.toggle('chg', on);
      if (on) this.highlightEnd = Math.min(this.highlightEnd, at + HIGHLIGHT_MS);
    }
    if (r.bytes.length === 0) setAttr(td, 'data-empty', r.kind === 'RTR' ? 'remote' : 'no data');
    else setAttr(td, 'data-empty', null);
  }
}
