/** The group page's state strip: mode, both sides (online, backlog), offline side, dropped, relay rate. */
import type { GroupStateData } from '../events.js';
import { formatAge, formatInt, formatRate } from '../format.js';
import { h } from '../dom.js';

export class GroupPanel {
  private last: GroupStateData | null = null;
  private receivedAt = 0;

  constructor(
    private readonly el: HTMLElement,
    private readonly group: string,
  ) {
    el.hidden = false;
    this.render();
  }

  get state(): GroupStateData | null {
    return this.last;
  }

  update(d: GroupStateData): void {
    this.last = d;
    this.receivedAt = Date.now();
    this.render();
  }

  /** Re-renders the "updated n s ago" line. */
  tick(): void {
    if (this.last) this.render();
  }

  private render(): void {
    const d = this.last;
    if (!d) {
      this.el.replaceChildren(
        h('div', { class: 'gp-title' }, h('span', { class: 'muted', text: 'Group ' }), h('strong', { text: this.group })),
        h('p', { class: 'muted', text: 'Waiting for the group state (sent on every change and every few seconds)…' }),
      );
      return;
    }
    const side = (k: 'a' | 'b'): HTMLElement => {
      const s = d.sides[k];
      const offline = d.offline_side === k || d.offline_side === 'both';
      return h(
        'div',
        { class: `gp-side ${s.online ? 'online' : 'offline'}`, 'data-side': k },
        h('span', { class: 'side', text: k.toUpperCase() }),
        h('span', { class: 'name', text: s.dongle }),
        h('span', { class: `pill ${s.online ? 'online' : 'offline'}`, text: s.online ? 'online' : 'offline' }),
        h('span', { class: 'gp-fig' }, h('span', { class: 'muted', text: 'backlog ' }), h('strong', { class: 'gp-backlog', text: formatInt(s.backlog) })),
        offline ? h('span', { class: 'muted', text: 'frames for it wait (bounded by count and age)' }) : null,
      );
    };
    const fig = (label: string, value: string, cls: string): HTMLElement =>
      h('div', { class: `gp-fig ${cls}` }, h('span', { class: 'muted', text: label }), h('strong', { text: value }));
    this.el.replaceChildren(
      h(
        'div',
        { class: 'gp-title' },
        h('span', { class: 'muted', text: 'Group ' }),
        h('strong', { text: d.group }),
        h('span', { class: `mode ${d.mode}`, 'data-mode': d.mode, text: d.mode }),
      ),
      side('a'),
      h('span', { class: 'gp-arrow', 'aria-hidden': 'true', text: '⇄' }),
      side('b'),
      h(
        'div',
        { class: 'gp-figs' },
        fig('Offline side', d.offline_side === null ? 'none' : d.offline_side === 'both' ? 'both' : d.offline_side.toUpperCase(), 'gp-offline'),
        fig('Dropped', formatInt(d.dropped), 'gp-dropped'),
        fig('Relay rate', `${formatRate(d.relay_rate)} /s`, 'gp-rate'),
        fig('Relayed', formatInt(d.relayed_total), 'gp-total'),
        h('span', { class: 'muted gp-age', text: `updated ${formatAge(this.receivedAt)}` }),
      ),
    );
  }
}
