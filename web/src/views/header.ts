/**
 * The header: who we watch (one dongle, or both sides of a group) with online/offline, the stream's
 * connection state, live figures, and the sampling banner.
 */
import { formatInt, formatRate, roughly } from '../format.js';
import { byId, h, setAttr, setText } from '../dom.js';
import type { StreamStatus } from '../sse.js';

export type Presence = 'online' | 'offline' | 'unreachable' | 'unknown';

export interface DongleStatus {
  dongle: string;
  /** "A" / "B" on a group page. */
  side?: string;
  presence: Presence;
  detail: string;
  buses: Record<string, 'up' | 'down'>;
}

export const STATE_TEXT: Record<string, string> = {
  connecting: 'connecting',
  live: 'live',
  reconnecting: 'reconnecting',
  resumed: 'resumed',
  reset: 'reset',
  refused: 'refused',
};

export class HeaderView {
  private readonly target = byId('target');
  private readonly state = byId('stream-state');
  /**
   * The badge's words and its countdown, apart: the badge is a live region, and a countdown inside it
   * was read out every second during an outage. The countdown is hidden from assistive technology.
   */
  private readonly stateWords = document.createTextNode('');
  private readonly countdown = h('span', { 'aria-hidden': 'true' });
  private readonly reconnect = byId<HTMLButtonElement>('reconnect');
  private readonly events = byId('fig-events');
  private readonly frames = byId('fig-frames');
  private readonly last = byId('fig-last');
  private readonly banner = byId('sampling');
  private readonly bannerText = byId('sampling-text');
  private targetKey = '';
  private status: StreamStatus | null = null;

  constructor(
    private readonly title: string,
    onReconnect: () => void,
  ) {
    this.reconnect.addEventListener('click', onReconnect);
  }

  setTargets(list: DongleStatus[]): void {
    const key = JSON.stringify(list);
    if (key === this.targetKey) return;
    this.targetKey = key;
    const nodes: Node[] = [h('span', { class: 'target-title', text: this.title })];
    for (const d of list) {
      const buses = Object.entries(d.buses);
      nodes.push(
        h(
          'span',
          { class: 'dongle', 'data-dongle': d.dongle, 'data-presence': d.presence, title: d.detail || undefined },
          d.side ? h('span', { class: 'side', text: d.side }) : null,
          h('span', { class: 'name', text: d.dongle }),
          h('span', { class: `pill ${d.presence}`, text: d.presence }),
          buses.length > 0 ? h('span', { class: 'buses muted', text: buses.map(([b, s]) => (s === 'up' ? b : `${b} down`)).join(' · ') }) : null,
        ),
      );
    }
    this.target.replaceChildren(...nodes);
  }

  setStatus(s: StreamStatus): void {
    this.status = s;
    this.renderStatus();
  }

  /** Called every second or so: the "retry in n s" countdown. */
  tick(): void {
    if (this.status?.state === 'reconnecting') this.renderStatus();
  }

  private renderStatus(): void {
    const s = this.status;
    if (!s) return;
    if (this.stateWords.parentNode !== this.state) this.state.replaceChildren(this.stateWords, this.countdown);
    const words = STATE_TEXT[s.state] ?? s.state;
    if (this.stateWords.data !== words) this.stateWords.data = words;
    setText(this.countdown, s.state === 'reconnecting' && s.retryAt ? ` (${Math.max(0, Math.ceil((s.retryAt - Date.now()) / 1000))} s)` : '');
    setAttr(this.state, 'data-state', s.state);
    setAttr(this.state, 'data-reconnects', String(s.reconnects));
    setAttr(this.state, 'data-resets', String(s.resets));
    const tip = [s.detail, s.reconnects ? `${s.reconnects} reconnect(s)` : '', s.resets ? `${s.resets} reset(s)` : ''].filter(Boolean).join(' · ');
    setAttr(this.state, 'title', tip || null);
    this.reconnect.hidden = s.state !== 'reconnecting';
    setText(this.last, s.lastEventId || '—');
  }

  setFigures(eventsPerSec: number, framesPerSec: number, lastEventId: string): void {
    setText(this.events, formatInt(Math.round(eventsPerSec)));
    setText(this.last, lastEventId || '—');
    setText(this.frames, formatRate(framesPerSec > 0 ? framesPerSec : null));
  }

  /** The banner: "showing ~200 of 5,000 frames/s", or hidden. */
  setSampling(active: boolean, shown: number, total: number): void {
    this.banner.hidden = !active;
    this.banner.dataset.active = String(active);
    if (!active) return;
    const s = shown > 0 ? formatInt(roughly(shown)) : '?';
    const t = total > 0 ? formatInt(roughly(total)) : '?';
    setText(this.bannerText, `showing ~${s} of ${t} frames/s`);
  }
}
