/**
 * The fleet page's two tables: dongles (sortable, filterable, paged — 100 rows exist at a time, so 2,000
 * dongles cost what 100 do) and groups. Rows link to the dongle's and group's console pages. With an
 * admin token a last column holds the row's management buttons (fleet-admin.ts provides them).
 * Rows are keyed: a draw rebuilds only the cells of rows that changed (the row's `rev`, a group's new
 * group_state), updates the ages in place and moves rows only when the order changed. A live fleet thus
 * costs what changes, and a row (its buttons, a text selection) stays put while it is clicked.
 */
import { h, setAttr, setText } from '../dom.js';
import { formatAge } from '../format.js';
import { framesPerSecond, visibleDongles, type DongleRow, type DongleSort, type FleetModel } from '../state/fleet.js';
import type { GroupStateData } from '../events.js';

export const PAGE_SIZE = 100;

export interface RowActions {
  dongle(r: DongleRow): Node[];
  group(g: GroupStateData): Node[];
}

interface DrawnDongle {
  row: DongleRow;
  rev: number;
  tr: HTMLTableRowElement;
  /** The cells whose text is an age, refreshed in place (they change with time, not with the row). */
  since: HTMLElement | null;
  seen: HTMLElement;
}

interface DrawnGroup {
  g: GroupStateData;
  tr: HTMLTableRowElement;
}

/** Puts `rows` into `body` in this order, moving only the rows out of place and removing the others. */
function placeRows(body: HTMLTableSectionElement, rows: HTMLTableRowElement[]): void {
  const have = body.children;
  for (let i = 0; i < rows.length; i++) if (have[i] !== rows[i]) body.insertBefore(rows[i]!, have[i] ?? null);
  while (have.length > rows.length) have[have.length - 1]!.remove();
}

/** How often the ages ("12 s ago") are refreshed while nothing else changes. */
const AGE_MS = 1000;

export class FleetTables {
  private readonly drawnDongles = new Map<string, DrawnDongle>();
  private readonly drawnGroups = new Map<string, DrawnGroup>();
  private drawnAt = 0;
  private actionsDrawn: RowActions | null = null;
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
      this.markSort();
      this.draw(true);
    });
    this.markSort();
    els.prev.addEventListener('click', () => {
      this.page = Math.max(0, this.page - 1);
      this.draw(true);
    });
    els.next.addEventListener('click', () => {
      this.page++;
      this.draw(true);
    });
  }

  /** aria-sort on the sorted column's header cell: ARIA reads it on the columnheader, not on a button in it. */
  private markSort(): void {
    for (const b of this.els.head.querySelectorAll<HTMLButtonElement>('button[data-sort]')) {
      const th = b.closest('th');
      if (th) setAttr(th, 'aria-sort', b.dataset.sort === this.sort ? (this.desc ? 'descending' : 'ascending') : null);
    }
  }

  setFilter(f: string): void {
    this.filter = f;
    this.page = 0;
    this.draw(true);
  }

  /**
   * Redraws what changed since the last draw (`force`: the sort, filter, page or role changed, so the
   * visible rows are recomputed even if the model did not move); called a few times a second.
   */
  draw(force = false): void {
    const now = Date.now();
    const changed = force || this.drawn !== this.model.version;
    if (!changed && now - this.drawnAt < AGE_MS) return;
    this.drawnAt = now;
    if (this.actionsDrawn !== this.actions) {
      // Admin buttons appeared or went: every row is rebuilt once.
      this.actionsDrawn = this.actions;
      this.drawnDongles.clear();
      this.drawnGroups.clear();
    }
    if (!changed) {
      for (const d of this.drawnDongles.values()) this.refreshAges(d, now);
      return;
    }
    this.drawn = this.model.version;
    const rows = visibleDongles(this.model, this.filter, this.sort, this.desc);
    const pages = Math.max(1, Math.ceil(rows.length / PAGE_SIZE));
    this.page = Math.min(this.page, pages - 1);
    const shown = rows.slice(this.page * PAGE_SIZE, (this.page + 1) * PAGE_SIZE);
    const keep = new Set<string>();
    const trs = shown.map((r) => {
      keep.add(r.id);
      return this.dongleRow(r, now);
    });
    for (const id of this.drawnDongles.keys()) if (!keep.has(id)) this.drawnDongles.delete(id);
    placeRows(this.dongleBody, trs);
    setText(this.els.count, `${rows.length} of ${this.model.dongles.size}`);
    setText(this.els.pageInfo, `page ${this.page + 1} of ${pages}`);
    this.els.prev.disabled = this.page === 0;
    this.els.next.disabled = this.page >= pages - 1;

    const groups = [...this.model.groups.values()].sort((a, b) => (a.group < b.group ? -1 : 1));
    for (const gid of this.drawnGroups.keys()) if (!this.model.groups.has(gid)) this.drawnGroups.delete(gid);
    placeRows(
      this.groupBody,
      groups.map((g) => this.groupRow(g)),
    );
  }

  private refreshAges(d: DrawnDongle, now: number): void {
    if (d.since) setText(d.since, ` since ${formatAge(d.row.sinceMs, now)}`);
    if (!Number.isNaN(d.row.lastSeenMs)) setText(d.seen, formatAge(d.row.lastSeenMs, now));
  }

  /** The row of `r`: the drawn one when `r` did not change (ages refreshed), else its cells rebuilt. */
  private dongleRow(r: DongleRow, now: number): HTMLTableRowElement {
    const d = this.drawnDongles.get(r.id);
    if (d && d.row === r && d.rev === r.rev) {
      this.refreshAges(d, now);
      return d.tr;
    }
    const status = r.online ? 'online' : 'offline';
    const buses = [...r.buses.values()].sort((a, b) => (a.bus < b.bus ? -1 : 1));
    const cmd = r.commands[0];
    const since = Number.isNaN(r.sinceMs) ? null : h('span', { class: 'muted since', text: ` since ${formatAge(r.sinceMs, now)}`, title: new Date(r.sinceMs).toISOString() });
    const seen = h('td', {
      class: 'muted',
      text: Number.isNaN(r.lastSeenMs) ? 'never' : formatAge(r.lastSeenMs, now),
      title: Number.isNaN(r.lastSeenMs) ? undefined : new Date(r.lastSeenMs).toISOString(),
    });
    const cells = [
      h('td', {}, h('a', { href: `/console/dongles/${encodeURIComponent(r.id)}`, text: r.id })),
      h('td', {}, h('span', { class: `pill ${status}`, text: status }), since),
      seen,
      h(
        'td',
        { class: 'buses' },
        ...buses.map((b) =>
          h('span', {
            // Offline: what the dongle last said, not its buses now.
            class: r.online ? 'bus-state' : 'bus-state last-known',
            title: r.online ? undefined : 'last known, before the dongle went offline',
            'data-bus': b.bus,
            'data-state': b.link === 'down' ? 'down' : (b.state ?? 'none'),
            text: `${b.bus} ${b.link === 'down' ? 'down' : (b.state ?? 'up')}`,
          }),
        ),
      ),
      h('td', {}, r.group ? h('a', { href: `/console/groups/${encodeURIComponent(r.group)}`, text: `${r.group} (${r.side.toUpperCase()})` }) : ''),
      h('td', { text: r.version }),
      h('td', { class: 'num', text: r.online && r.buses.size > 0 ? String(Math.round(framesPerSecond(r))) : '' }),
      h(
        'td',
        {},
        cmd
          ? h('button', {
              type: 'button',
              class: `small ghost cmd ${cmd.status}`,
              'data-command-status': cmd.status,
              text: `${cmd.status}${cmd.error ? ': ' + cmd.error : ''}`,
              onclick: () => this.onCommands?.(r.id),
            })
          : '',
      ),
    ];
    let tr: HTMLTableRowElement;
    if (d && d.row === r) {
      // Changed: its cells are replaced one by one; the management cell (its buttons) stays as it is.
      tr = d.tr;
      cells.forEach((c, i) => tr.replaceChild(c, tr.cells[i]!));
    } else {
      tr = h('tr', { 'data-dongle': r.id }, ...cells, this.actions ? h('td', { class: 'admin-only' }, ...this.actions.dongle(r)) : null);
    }
    setAttr(tr, 'data-status', status);
    this.drawnDongles.set(r.id, { row: r, rev: r.rev, tr, since, seen });
    return tr;
  }

  /** The row of group `g`: the drawn one while its group_state is the same object, else rebuilt. */
  private groupRow(g: GroupStateData): HTMLTableRowElement {
    const d = this.drawnGroups.get(g.group);
    if (d && d.g === g) return d.tr;
    const tr = this.buildGroupRow(g);
    if (d) d.tr.replaceWith(tr);
    this.drawnGroups.set(g.group, { g, tr });
    return tr;
  }

  private buildGroupRow(g: GroupStateData): HTMLTableRowElement {
    const side = (s: 'a' | 'b') =>
      h(
        'td',
        {},
        h('a', { href: `/console/dongles/${encodeURIComponent(g.sides[s].dongle)}`, text: g.sides[s].dongle }),
        ' ',
        h('span', { class: `pill ${g.sides[s].online ? 'online' : 'offline'}`, text: g.sides[s].online ? 'online' : 'offline' }),
      );
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
