/**
 * The "Signals" view: every decoded signal with its live value and unit, searchable, each with a pin
 * button that puts it on the chart (views/signal-chart.ts). Rows are keyed and reused (a click on a pin
 * button is never lost to a redraw); at most MAX_RENDERED rows are drawn. While no signal changes (the
 * model's version and the search stay), a render neither searches nor sorts: once a second it refreshes
 * the ages, the only thing that moves with time alone.
 */
import { h, setAttr, setHidden, setText } from '../dom.js';
import { formatAge } from '../format.js';
import { formatSignal, signalNumber } from '../signal-format.js';
import { MAX_PINNED, type SignalRow, type SignalsModel } from '../state/signals.js';

const MAX_RENDERED = 500;
/** While no signal changes, how often the ages are refreshed (they count whole seconds). */
const AGE_REFRESH_MS = 1000;

interface RowEls {
  tr: HTMLTableRowElement;
  pin: HTMLButtonElement;
  value: HTMLTableCellElement;
  age: HTMLTableCellElement;
}

export class SignalsTable {
  private readonly els = new Map<string, RowEls>();
  private order: string[] = [];
  /** The rows drawn, in order, from the last search. */
  private shown: SignalRow[] = [];
  private query = '';
  private lastVersion = -1;
  /** Page time of the last refresh of the ages. */
  private agesAt = 0;
  onPinChange: () => void = () => {};

  constructor(
    private readonly model: SignalsModel,
    private readonly tbody: HTMLTableSectionElement,
    private readonly empty: HTMLElement,
    private readonly more: HTMLElement,
    private readonly group: boolean,
  ) {
    // One listener for every pin button: rows come and go.
    tbody.addEventListener('click', (e) => {
      const b = (e.target as HTMLElement).closest<HTMLButtonElement>('button.pin');
      const key = b?.closest('tr')?.dataset.key;
      if (!b || key === undefined) return;
      if (this.model.pinned.has(key)) this.model.unpin(key);
      else if (!this.model.pin(key)) {
        b.title = `At most ${MAX_PINNED} signals on the chart: unpin one first`;
        return;
      }
      this.lastVersion = -1;
      this.onPinChange();
    });
  }

  setQuery(q: string): void {
    this.query = q;
    this.lastVersion = -1;
  }

  render(nowMs: number): void {
    if (this.lastVersion === this.model.version) {
      if (nowMs - this.agesAt < AGE_REFRESH_MS) return;
      this.agesAt = nowMs;
      for (const r of this.shown) this.age(r, nowMs);
      return;
    }
    this.agesAt = nowMs;
    const rows = this.model.search(this.query);
    setHidden(this.empty, rows.length > 0);
    setText(this.empty, this.model.rows.size === 0 ? 'No decoded signals yet: the agent decodes frames with its --dbc files.' : 'No signal matches the search.');
    setHidden(this.more, rows.length <= MAX_RENDERED);
    if (rows.length > MAX_RENDERED) setText(this.more, `Showing ${MAX_RENDERED} of ${rows.length} signals: narrow them with the search.`);
    const shown = rows.slice(0, MAX_RENDERED);
    this.shown = shown;
    const live = new Set(shown.map((r) => r.key));
    for (const [k, e] of this.els) {
      if (!live.has(k)) {
        e.tr.remove();
        this.els.delete(k);
      }
    }
    for (const r of shown) this.update(r, nowMs);
    const keys = shown.map((r) => r.key);
    if (keys.length !== this.order.length || keys.some((k, i) => k !== this.order[i])) {
      this.tbody.replaceChildren(...keys.map((k) => this.els.get(k)!.tr));
      this.order = keys;
    }
    this.lastVersion = this.model.version;
  }

  get stale(): boolean {
    return this.lastVersion !== this.model.version;
  }

  private update(r: SignalRow, nowMs: number): void {
    let e = this.els.get(r.key);
    if (!e) {
      const pin = h('button', { type: 'button', class: 'pin small', 'aria-label': `Pin ${r.name} to the chart` }, 'Pin');
      const value = h('td', { class: 'c-value num' });
      const age = h('td', { class: 'c-age num' });
      const tr = h(
        'tr',
        { 'data-key': r.key, 'data-signal': r.name },
        h('td', { class: 'c-pin' }, pin),
        ...(this.group ? [h('td', { class: 'c-dongle', text: r.dongle })] : []),
        h('td', { class: 'c-bus', text: r.bus }),
        h('td', { class: 'c-msg', text: r.msg }),
        h('td', { class: 'c-signal', text: r.name }),
        value,
        h('td', { class: 'c-unit', text: r.unit }),
        age,
      );
      e = { tr, pin, value, age };
      this.els.set(r.key, e);
    }
    setText(e.value, formatSignal(r.value, ''));
    this.age(r, nowMs);
    const pinned = this.model.pinned.has(r.key);
    setAttr(e.pin, 'aria-pressed', String(pinned));
    e.pin.classList.toggle('active', pinned);
    setText(e.pin, pinned ? 'Unpin' : 'Pin');
    const plottable = signalNumber(r.value) !== undefined;
    const disabled = !plottable && !pinned;
    // Only when it changes: writing `disabled` again is a DOM mutation, every render.
    if (e.pin.disabled !== disabled) e.pin.disabled = disabled;
    setAttr(e.pin, 'title', plottable ? (pinned ? 'Unpin from the chart' : 'Pin to the chart') : 'A text value (value table) cannot be plotted');
  }

  private age(r: SignalRow, nowMs: number): void {
    const e = this.els.get(r.key);
    if (e) setText(e.age, Number.isFinite(r.arrival) ? formatAge(performance.timeOrigin + r.arrival, performance.timeOrigin + nowMs) : '');
  }
}
