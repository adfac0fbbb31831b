/**
 * The fleet page's two tables: dongles (sortable, filterable, paged — 100 rows exist at a time, so 2,000
 * dongles cost what 100 do) and groups. Rows link to the dongle's and group's console pages. With an
 * admin token a last column holds the row's management buttons (fleet-admin.ts provides them).
 */
import { h, setText } from '../dom.js';
import { formatAge } from '../format.js';
import { framesPerSecond, visibleDongles, type DongleRow, type DongleSort, type FleetModel } from '../state/fleet.js';
import type { GroupStateData } from '../events.js';

export const PAGE_SIZE = 100;

export interface RowActions {
  dongle(r: DongleRow): Node[];
  group(g: GroupStateData): Node[];
}

export class FleetTables {
  private sort: DongleSort = 'id';
  private desc = false;
  private filter = '';
  private page = 0;
  private drawn = -1;
  actions: RowActions | null = null;
  /** The dongle whose recent commands are shown (clicked in the "Last command" column). */
  onCommands: ((id: string) => void) | null = null;

  constructor(
    private readonly model: FleetModel,
    private readonly dongleBody: HTMLTableSectionElement,
    private readonly groupBody: HTMLTableSectionElement,
    private readonly els: { count: HTMLElement; pageInfo: HTMLElement; prev: HTMLButtonElement; next: HTMLButtonElement; head: HTMLElement },
  ) {
    els.head.addEventListener('click', (e) => {
      const b = (e.target as HTMLElement).closest<HTMLButtonElement>('button[data-sort]');
      if (!b) return;
      const s = b.dataset.sort as DongleSort;
      this.desc = this.sort === s ? !this.desc : false;
      this.sort = s;
      for (const x of els.head.querySelectorAll<HTMLElement>('button[data-sort]')) x.removeAttribute('aria-sort');
      b.setAttribute('aria-sort', this.desc ? 'descending' : 'ascending');
      this.draw(true);
    });
    els.prev.addEventListener('click', () => {
      this.page = Math.max(0, this.page - 1);
      this.draw(true);
    });
    els.next.addEventListener('click', () => {
      this.page++;
      this.draw(true);
    });
  }

  setFilter(f: string): void {
    this.filter = f;
    this.page = 0;
    this.draw(true);
  }

  /** Redraws when the model changed (or `force`); called a few times a second and on every control. */
  draw(force = false): void {
    if (!force && this.drawn === this.model.version) return;
    this.drawn = this.model.version;
    const rows = visibleDongles(this.model, this.filter, this.sort, this.desc);
    const pages = Math.max(1, Math.ceil(rows.length / PAGE_SIZE));
    this.page = Math.min(this.page, pages - 1);
    const now = Date.now();
    this.dongleBody.replaceChildren(...rows.slice(this.page * PAGE_SIZE, (this.page + 1) * PAGE_SIZE).map((r) => this.dongleRow(r, now)));
    setText(this.els.count, `${rows.length} of ${this.model.dongles.size}`);
    setText(this.els.pageInfo, `page ${this.page + 1} of ${pages}`);
    this.els.prev.disabled = this.page === 0;
    this.els.next.disabled = this.page >= pages - 1;
    const groups = [...this.model.groups.values()].sort((a, b) => (a.group < b.group ? -1 : 1));
    this.groupBody.replaceChildren(...groups.map((g) => this.groupRow(g)));
  }

  private dongleRow(r: DongleRow, now: number): HTMLTableRowElement {
    const status = r.online ? 'online' : 'offline';
    const buses = [...r.buses.values()].sort((a, b) => (a.bus < b.bus ? -1 : 1));
    const cmd = r.commands[0];
    return h(
      'tr',
      { 'data-dongle': r.id, 'data-status': status },
      h('td', {}, h('a', { href: `/console/dongles/${encodeURIComponent(r.id)}`, text: r.id })),
      h('td', {}, h('span', { class: `pill ${status}`, text: status }), Number.isNaN(r.sinceMs) ? null : h('span', { class: 'muted since', text: ` since ${formatAge(r.sinceMs, now)}`, title: new Date(r.sinceMs).toISOString() })),
      h('td', { class: 'muted', text: Number.isNaN(r.lastSeenMs) ? 'never' : formatAge(r.lastSeenMs, now), title: Number.isNaN(r.lastSeenMs) ? undefined : new Date(r.lastSeenMs).toISOString() }),
      h(
        'td',
        { class: 'buses' },
        ...buses.map((b) => h('span', { class: 'bus-state', 'data-bus': b.bus, 'data-state': b.link === 'down' ? 'down' : (b.state ?? 'none'), text: `${b.bus} ${b.link === 'down' ? 'down' : (b.state ?? 'up')}` })),
      ),
      h('td', {}, r.group ? h('a', { href: `/console/groups/${encodeURIComponent(r.group)}`, text: `${r.group} (${r.side.toUpperCase()})` }) : ''),
      h('td', { text: r.version }),
      h('td', { class: 'num', text: r.buses.size > 0 ? String(Math.round(framesPerSecond(r))) : '' }),
      h('td', {}, cmd ? h('button', { type: 'button', class: `small ghost cmd ${cmd.status}`, 'data-command-status': cmd.status, text: `${cmd.status}${cmd.error ? ': ' + cmd.error : ''}`, onclick: () => this.onCommands?.(r.id) }) : ''),
      this.actions ? h('td', { class: 'admin-only' }, ...this.actions.dongle(r)) : null,
    );
  }

  private groupRow(g: GroupStateData): HTMLTableRowElement {
    const side = (s: 'a' | 'b') => h('td', {}, h('a', { href: `/console/dongles/${encodeURIComponent(g.sides[s].dongle)}`, text: g.sides[s].dongle }), ' ', h('span', { class: `pill ${g.sides[s].online ? 'online' : 'offline'}`, text: g.sides[s].online ? 'online' : 'offline' }));
    return h(
      'tr',
      { 'data-group': g.group, 'data-mode': g.mode },
      h('td', {}, h('a', { href: `/console/groups/${encodeURIComponent(g.group)}`, text: g.group })),
      h('td', {}, h('span', { class: `pill mode-${g.mode}`, text: g.mode })),
      side('a'),
      side('b'),
      h('td', { class: 'num', text: String(g.sides.a.backlog + g.sides.b.backlog) }),
      h('td', { class: 'num', text: String(g.dropped) }),
      h('td', { class: 'num', text: String(g.relay_rate) }),
      this.actions ? h('td', { class: 'admin-only' }, ...this.actions.group(g)) : null,
    );
  }
}
