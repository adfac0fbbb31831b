/**
 * The recordings panel: on the agent a Record/Stop button with the running recording's size and
 * duration, and every recording with its download link (and Delete, which asks first); on the bridge's
 * dongle page the same list, download only (recordings are started on the gateway). The list is polled:
 * every second while one runs, every 5 s otherwise.
 */
import { deleteRecording, recordingTicket, HttpError, listRecordings, startRecording, stopRecording, type RecordingInfo } from '../api.js';
import { byId, h, setText } from '../dom.js';
import { formatInt } from '../format.js';

export interface RecordingsTarget {
  /** GET path of the list; a download is `<path>/<id>`. */
  path: string;
  /** The agent's own page: start, stop, delete. */
  control: boolean;
  token: () => string;
  /** 401/403: the page asks for a token. */
  refused: (status: number, message: string) => void;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

export function formatDuration(s: number): string {
  const t = Math.floor(s);
  const hh = Math.floor(t / 3600);
  const mm = Math.floor((t % 3600) / 60);
  const ss = String(t % 60).padStart(2, '0');
  return hh > 0 ? `${hh}:${String(mm).padStart(2, '0')}:${ss}` : `${mm}:${ss}`;
}

export class RecordingsPanel {
  private readonly toggle = byId<HTMLButtonElement>('rec-toggle');
  private readonly status = byId('rec-status');
  private readonly error = byId('rec-error');
  private readonly list = byId<HTMLUListElement>('rec-list');
  private running: RecordingInfo | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private busy = false;
  /** The newest list request: an older answer arriving after it (a poll overtaken by a Stop) is not shown. */
  private asked = 0;
  /**
   * The list's items by recording id, kept across polls and updated in place: rebuilt every second, the
   * link or Delete button under the keyboard focus or a mouse press was replaced, and the click was lost.
   */
  private readonly items = new Map<string, Item>();

  constructor(
    private readonly root: HTMLElement,
    private readonly t: RecordingsTarget,
    /** Asks before a destructive step, as the fleet page does (window.confirm; replaceable in tests). */
    private readonly confirm: (question: string) => boolean = (q) => window.confirm(q),
  ) {
    this.toggle.hidden = !t.control;
    this.toggle.addEventListener('click', () => void this.onToggle());
  }

  /** Shows the panel and starts polling (again, e.g. after a new token). */
  start(): void {
    this.root.hidden = false;
    void this.refresh();
  }

  private schedule(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.refresh(), this.running ? 1000 : 5000);
  }

  async refresh(): Promise<void> {
    const token = this.t.token();
    const asked = ++this.asked;
    try {
      const { recordings } = await listRecordings(this.t.path, token || undefined);
      if (asked !== this.asked) return;
      this.render(recordings);
      this.showError('');
    } catch (e) {
      // An answer to a request made with a token the page has since replaced (the first list, asked
      // before the token was entered) says nothing about the new one: the poll asks again.
      if (asked === this.asked && token === this.t.token()) this.fail(e);
    }
    this.schedule();
  }

  private async onToggle(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    this.toggle.disabled = true;
    try {
      if (this.running) await stopRecording(this.running.id, this.t.token() || undefined);
      else await startRecording(this.t.token() || undefined);
      this.showError('');
    } catch (e) {
      this.fail(e);
    } finally {
      this.busy = false;
      this.toggle.disabled = false;
    }
    await this.refresh();
  }

  private fail(e: unknown): void {
    if (e instanceof HttpError && (e.status === 401 || e.status === 403)) this.t.refused(e.status, e.message);
    this.showError(e instanceof Error ? e.message : String(e));
  }

  private showError(text: string): void {
    setText(this.error, text);
    this.error.hidden = text === '';
  }

  private render(recs: RecordingInfo[]): void {
    this.running = recs.find((r) => r.state === 'recording');
    this.toggle.textContent = this.running ? '■ Stop' : '● Record';
    this.toggle.classList.toggle('recording', this.running !== undefined);
    this.toggle.title = this.running ? 'Stop the recording' : 'Record every frame of every bus (unsampled) on the gateway';
    setText(
      this.status,
      this.running ? `Recording · ${formatBytes(this.running.bytes)} · ${formatDuration(this.running.duration_s)} · ${formatInt(this.running.frames)} frames` : '',
    );
    const order: HTMLLIElement[] = [];
    for (const r of recs) {
      let it = this.items.get(r.id);
      if (it === undefined) this.items.set(r.id, (it = this.item(r)));
      this.update(it, r);
      order.push(it.li);
    }
    const shown = new Set(recs.map((r) => r.id));
    for (const id of [...this.items.keys()]) if (!shown.has(id)) this.items.delete(id);
    if (recs.length === 0) {
      this.list.replaceChildren(
        h('li', { class: 'muted', text: this.t.control ? 'No recordings yet: Record keeps every frame, not just what the console shows.' : 'No recordings on this gateway.' }),
      );
      return;
    }
    // Moved only when the order changed (a new recording on top): otherwise every element stays put.
    const now = [...this.list.children];
    if (now.length !== order.length || order.some((li, i) => now[i] !== li)) this.list.replaceChildren(...order);
  }

  /** A recording's list item, built once; its text is kept current by update(). */
  private item(r: RecordingInfo): Item {
    const href = `${this.t.path}/${encodeURIComponent(r.id)}`;
    const when = new Date(r.started_at).toLocaleString();
    const it: Item = {
      li: h('li', { 'data-id': r.id }),
      facts: h('span', { class: 'muted' }),
      incomplete: h('span', { class: 'rec-incomplete', text: ' incomplete' }),
      del: undefined,
      latest: r,
      when,
    };
    it.li.append(
      h(
        'a',
        {
          href,
          download: '',
          class: 'rec-download',
          title: 'Download the candump -L file',
          // With a token, the download goes through a ticket: a link cannot send the token in a header,
          // and a token in its URL would stay in the browser's history and download list.
          onclick: (ev: Event) => {
            const token = this.t.token();
            if (!token) return;
            ev.preventDefault();
            void recordingTicket(this.t.path, r.id, token).then(
              (t) => h('a', { href: t.url, download: '' }).click(),
              (e: unknown) => this.fail(e),
            );
          },
        },
        when,
      ),
      it.facts,
      it.incomplete,
    );
    return it;
  }

  private update(it: Item, r: RecordingInfo): void {
    it.latest = r;
    it.li.dataset.state = r.state;
    setText(it.facts, ` ${r.state} · ${formatInt(r.frames)} frames · ${formatBytes(r.bytes)} · ${formatDuration(r.duration_s)}`);
    it.incomplete.hidden = r.complete;
    const why = [...r.problems, r.error ?? ''].join(' ').trim();
    if (it.incomplete.title !== why) it.incomplete.title = why;
    if (this.t.control && r.state !== 'recording' && it.del === undefined) {
      it.del = h('button', {
        type: 'button',
        class: 'small ghost rec-delete',
        text: 'Delete',
        onclick: () => {
          const now = it.latest;
          // A recording exists only on the gateway: one stray click must not lose it.
          if (!this.confirm(`Delete the recording of ${it.when} (${formatInt(now.frames)} frames, ${formatBytes(now.bytes)})? Its files are removed from the gateway.`)) return;
          void deleteRecording(now.id, this.t.token() || undefined).then(
            () => this.refresh(),
            (e: unknown) => this.fail(e),
          );
        },
      });
      it.li.append(it.del);
    }
  }
}

interface Item {
  li: HTMLLIElement;
  facts: HTMLElement;
  incomplete: HTMLElement;
  del: HTMLButtonElement | undefined;
  latest: RecordingInfo;
  when: string;
}
