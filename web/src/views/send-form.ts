/**
 * Send a frame (bridge, admin token only): bus, id, data → POST /api/v1/dongles/<id>/commands, then the
 * command's progress queued → sent → delivered → succeeded | failed | timed_out as its command_status
 * events arrive on the console (and from GET /api/v1/commands/<id> after a reconnect).
 */
import { bytesToHex, parseHexBytes } from '../../../core/can/hex.js';
import { BUS_RULE } from '../../../core/names.js';
import { commandView, HttpError, sendCommand } from '../api.js';
import type { CommandState, CommandStatusData } from '../events.js';
import { formatClock } from '../format.js';
import { byId, h } from '../dom.js';
import { EarlyStatuses } from '../state/early-statuses.js';
import { parseSendId } from '../state/send-id.js';

const STEPS: readonly CommandState[] = ['queued', 'sent', 'delivered', 'succeeded'];
const FINAL = new Set<string>(['succeeded', 'failed', 'timed_out']);
const MAX_COMMANDS = 20;

interface Tracked {
  id: string;
  dongle: string;
  summary: string;
  status: string;
  error?: string;
  times: Map<string, string>;
  el: HTMLLIElement;
}

export class SendForm {
  private readonly panel = byId('send-panel');
  private readonly form = byId<HTMLFormElement>('send-form');
  private readonly dongleField = byId('send-dongle-field');
  private readonly dongleSel = byId<HTMLSelectElement>('send-dongle');
  private readonly bus = byId<HTMLInputElement>('send-bus');
  private readonly idIn = byId<HTMLInputElement>('send-id');
  private readonly data = byId<HTMLInputElement>('send-data');
  private readonly ext = byId<HTMLInputElement>('send-ext');
  private readonly err = byId('send-error');
  private readonly list = byId<HTMLOListElement>('commands');
  private readonly tracked = new Map<string, Tracked>();
  /** Statuses that arrived before the POST answered (fast agents): applied when it does. */
  private readonly early = new EarlyStatuses();

  constructor(
    private readonly token: () => string,
    dongles: string[],
  ) {
    this.setDongles(dongles);
    this.form.addEventListener('submit', (e) => {
      e.preventDefault();
      void this.submit();
    });
  }

  show(on: boolean): void {
    this.panel.hidden = !on;
  }

  setDongles(dongles: string[]): void {
    // Rebuilt only when the list changed: every group_state rebuilt it, closing an open dropdown.
    const now = [...this.dongleSel.options].map((o) => o.value);
    if (now.length === dongles.length && now.every((d, i) => d === dongles[i])) return;
    const cur = this.dongleSel.value;
    this.dongleSel.replaceChildren(...dongles.map((d) => h('option', { value: d, text: d })));
    if (dongles.includes(cur)) this.dongleSel.value = cur;
    this.dongleField.hidden = dongles.length < 2;
  }

  private fail(msg: string, field?: HTMLInputElement): void {
    this.err.textContent = msg;
    this.err.hidden = false;
    for (const f of [this.bus, this.idIn, this.data]) f.removeAttribute('aria-invalid');
    if (field) {
      field.setAttribute('aria-invalid', 'true');
      field.focus();
    }
  }

  private async submit(): Promise<void> {
    this.err.hidden = true;
    const bus = this.bus.value.trim();
    const data = this.data.value.trim().replace(/[\s:.-]+/g, ' ');
    if (!BUS_RULE.test(bus)) return this.fail('Bus: an interface name such as can0.', this.bus);
    const sid = parseSendId(this.idIn.value, this.ext.checked);
    if (!sid.ok) return this.fail(sid.error, this.idIn);
    const parsed = parseHexBytes(data);
    if (parsed === null) return this.fail('Data: whole hex bytes, e.g. 02 01 0C.', this.data);
    const bytes = bytesToHex(parsed).match(/../g) ?? [];
    if (bytes.length > 64) return this.fail('Data: at most 64 bytes.', this.data);
    for (const f of [this.bus, this.idIn, this.data]) f.removeAttribute('aria-invalid');
    const dongle = this.dongleSel.value;
    const { canId, extended } = sid;
    const dataHex = bytes.join(' ').toUpperCase();
    const button = this.form.querySelector<HTMLButtonElement>('button[type=submit]')!;
    button.disabled = true;
    const answered = this.early.posted();
    try {
      const r = await sendCommand(dongle, { type: 'send_frame', bus, id: canId, data_hex: dataHex, is_extended: extended }, this.token());
      this.track(r.command_id, dongle, `${bus} ${canId}#${dataHex.replace(/ /g, '') || '(no data)'}`, r.status ?? 'queued');
    } catch (e) {
      this.fail(e instanceof HttpError ? `Refused (HTTP ${e.status}): ${e.message}` : `Could not send: ${(e as Error).message}`);
    } finally {
      answered();
      button.disabled = false;
    }
  }

  private track(id: string, dongle: string, summary: string, status: string): void {
    const el = h('li', { class: 'command', 'data-command-id': id });
    const t: Tracked = { id, dongle, summary, status, times: new Map(), el };
    this.tracked.set(id, t);
    this.list.prepend(el);
    while (this.tracked.size > MAX_COMMANDS) {
      const oldest = [...this.tracked.values()].find((x) => FINAL.has(x.status)) ?? this.tracked.values().next().value!;
      oldest.el.remove();
      this.tracked.delete(oldest.id);
    }
    this.render(t);
    for (const d of this.early.take(id)) this.onStatus(d);
  }

  /** A command_status event from the stream. */
  onStatus(d: CommandStatusData): void {
    const t = this.tracked.get(d.command_id);
    if (!t) {
      // It may be ours, with the POST answer still on its way.
      this.early.offer(d);
      return;
    }
    t.times.set(d.status, d.ts);
    if (!FINAL.has(t.status) || FINAL.has(d.status)) {
      if (rank(d.status) >= rank(t.status)) t.status = d.status;
    }
    if (d.error) t.error = d.error;
    this.render(t);
  }

  /** After a reconnect: the stream may have skipped some statuses; ask for the unfinished ones. */
  async refresh(): Promise<void> {
    for (const t of this.tracked.values()) {
      if (FINAL.has(t.status)) continue;
      try {
        const v = await commandView(t.id, this.token());
        for (const h of v.history) this.onStatus({ ts: h.ts, command_id: t.id, type: 'send_frame', status: h.status as CommandState, error: h.error });
      } catch {
        /* the next event will tell */
      }
    }
  }

  private render(t: Tracked): void {
    t.el.dataset.status = t.status;
    const failed = t.status === 'failed' || t.status === 'timed_out';
    const steps = failed ? [...STEPS.slice(0, 3), t.status] : STEPS;
    const reached = rank(t.status);
    t.el.replaceChildren(
      h('div', { class: 'cmd-head' }, h('code', { text: t.summary }), h('span', { class: 'muted', text: ` → ${t.dongle}` })),
      h(
        'ol',
        { class: 'steps', 'aria-label': `Command ${t.id}: ${t.status}` },
        ...steps.map((s) => {
          const done = t.times.has(s) || rank(s) <= reached;
          const cls = ['step', done ? 'done' : '', s === t.status ? 'current' : '', failed && s === t.status ? 'bad' : ''].filter(Boolean).join(' ');
          const ts = t.times.get(s);
          return h('li', { class: cls, title: ts ? formatClock(ts) : undefined, text: s.replace('_', ' ') });
        }),
      ),
      ...(t.error ? [h('p', { class: 'error', text: t.error })] : []),
      h('p', { class: 'muted cmd-id', text: t.id }),
    );
  }
}

function rank(s: string): number {
  return s === 'queued' ? 0 : s === 'sent' ? 1 : s === 'delivered' ? 2 : 3;
}
