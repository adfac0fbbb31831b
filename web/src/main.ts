/**
 * The console page. Wires the stream (sse.ts) to the models (state/) and the views (views/).
 *
 * Data flow: every SSE message is parsed and applied to the bounded models at once (cheap, O(1) per
 * event, and it keeps working in a background tab where animation frames stop); drawing happens at most
 * once per animation frame, and the by-id table a few times per second.
 */
import { agentInfo, bridgeDongle, bridgeGroup, HttpError, recordingsPath, type AgentInfo } from './api.js';
import { candumpFileName, candumpLog } from './candump-export.js';
import { byId, download, h } from './dom.js';
import { messageEvent, type ConsoleEvent, type GroupStateData, type PresenceData } from './events.js';
import { parseIdFilter, type IdFilter, MATCH_ALL } from './filter.js';
import { consolePath, parseRoute, type Route } from './route.js';
import { ConsoleConnection, type StreamStatus } from './sse.js';
import { ByIdModel } from './state/by-id.js';
import { busesAfter } from './state/presence.js';
import { RateMeter, SamplingTracker } from './state/sampling.js';
import { busKey, TraceModel } from './state/trace.js';
import { ByIdTable } from './views/by-id-table.js';
import { GroupPanel } from './views/group-panel.js';
import { BusHealthView } from './views/bus-health.js';
import { HeaderView, type DongleStatus, type Presence } from './views/header.js';
import { RecordingsPanel } from './views/recordings.js';
import { SendForm } from './views/send-form.js';
import { SignalsModel } from './state/signals.js';
import { SignalChart } from './views/signal-chart.js';
import { SignalsTable } from './views/signals-table.js';
import { setFooter, TraceView } from './views/trace.js';
import { keepToken, showTokenPanel, TOKEN_HELP, TOKEN_KEY, wireTokenForm } from './views/token-panel.js';

/** A role check that could not be told (a 5xx, the network) is asked again this often. */
const ROLE_RETRY_MS = 5000;

const TABLE_INTERVAL_MS = 250;
const FIGURES_INTERVAL_MS = 500;
const BACKLOG = 200;
const MAX_BUSES = 64;

class App {
  private readonly byIdModel = new ByIdModel();
  private readonly trace = new TraceModel();
  private readonly sampling = new SamplingTracker();
  private readonly eventMeter = new RateMeter();
  /** Sampled frames per second shown (2 s: the banner should follow a flood quickly). */
  private readonly frameEventMeter = new RateMeter(2);
  private readonly header: HeaderView;
  private readonly busHealth = new BusHealthView();
  private readonly table: ByIdTable;
  private readonly traceView: TraceView;
  private readonly group: GroupPanel | null;
  private readonly sendForm: SendForm | null;
  private readonly recordings: RecordingsPanel | null;
  private readonly signalsModel = new SignalsModel();
  private readonly signalsTable: SignalsTable;
  private readonly chart: SignalChart;
  private lastSignals = 0;
  private conn: ConsoleConnection | null = null;
  private consoleUrl = '';
  private token = '';
  private readonly dongles = new Map<string, DongleStatus>();
  private readonly buses = new Set<string>();
  private idFilter: IdFilter = MATCH_ALL;
  private scheduled = false;
  private lastTable = 0;
  private lastFigures = 0;
  private lastState: StreamStatus['state'] = 'connecting';
  private readonly notice = byId('notice');

  constructor(private readonly route: Route) {
    const isGroup = route.kind === 'group';
    const title = route.kind === 'agent' ? 'Dongle' : route.kind === 'dongle' ? 'Dongle' : 'Group';
    this.header = new HeaderView(title, () => this.conn?.reconnectNow());
    this.table = new ByIdTable(this.byIdModel, byId<HTMLTableElement>('byid'), byId('byid-empty'), byId('byid-more'), isGroup);
    this.traceView = new TraceView(this.trace, byId<HTMLDivElement>('trace'), document.querySelector<HTMLElement>('.trace-head')!, isGroup);
    this.signalsTable = new SignalsTable(this.signalsModel, byId<HTMLTableElement>('signals').tBodies[0]!, byId('signals-empty'), byId('signals-more'), isGroup);
    this.chart = new SignalChart(this.signalsModel, byId('chart'), byId('chart-pins'), byId('chart-empty'));
    // Exposed for the browser tests and for a technician's console: what the chart shows right now.
    (window as unknown as { canrelayChart: SignalChart }).canrelayChart = this.chart;
    this.group = isGroup ? new GroupPanel(byId('group-panel'), route.id) : null;
    this.sendForm = route.kind === 'agent' ? null : new SendForm(() => this.token, route.kind === 'dongle' ? [route.id] : []);
    this.recordings =
      route.kind === 'group'
        ? null
        : new RecordingsPanel(byId('rec-panel'), {
            path: recordingsPath(route.kind === 'agent' ? null : route.id),
            control: route.kind === 'agent',
            token: () => this.token,
            refused: (status, message) => this.refused(status, message),
          });
    for (const el of document.querySelectorAll<HTMLElement>('[data-group-only]')) el.hidden = !isGroup;
    document.body.dataset.mode = route.kind;
    this.wireControls();
    setInterval(() => this.tick(), 1000);
  }

  async start(): Promise<void> {
    if (this.route.kind === 'agent') {
      // The agent's API may need a token (--local-token-file): the same panel as on the bridge asks for it.
      this.token = sessionStorage.getItem(TOKEN_KEY) ?? '';
      const info = await this.loadInfo();
      if (!info) return;
      byId('token-change').hidden = !info.local_auth?.writes;
      this.recordings?.start();
      document.title = `${info.dongle} · canrelay console`;
      this.consoleUrl = info.console;
      this.setDongle(info.dongle, { presence: 'unknown', buses: info.buses });
      // The bus health now, not at the first bus_state (up to --bus-state-interval away).
      this.busHealth.seed(info.bus_health ?? []);
      this.busHealth.render();
      this.connect();
      return;
    }
    this.consoleUrl = consolePath(this.route);
    document.title = `${this.route.kind === 'group' ? 'group ' : ''}${this.route.id} · canrelay bridge`;
    byId('token-change').hidden = false;
    if (this.route.kind === 'dongle') this.setDongle(this.route.id, { presence: 'unknown' });
    this.token = sessionStorage.getItem(TOKEN_KEY) ?? '';
    if (this.token === '') this.showTokenPanel('');
    // Connect even without a token: the bridge's own answer (401) is what the page shows.
    this.connect();
    this.recordings?.start();
    if (this.token !== '') void this.probeRole();
  }

  /** The agent's /api/v1/info names its console; retried while the agent is unreachable; undefined while it wants a token. */
  private async loadInfo(): Promise<AgentInfo | undefined> {
    for (let attempt = 0; ; attempt++) {
      try {
        const info = await agentInfo(this.token || undefined);
        this.showNotice('');
        return info;
      } catch (e) {
        if (e instanceof HttpError && e.status === 401) {
          this.refused(401, e.message);
          return undefined;
        }
        this.showNotice(`Cannot reach the agent (${(e as Error).message}); retrying…`);
        await new Promise((r) => setTimeout(r, Math.min(10_000, 1000 * 2 ** attempt)));
      }
    }
  }

  private connect(): void {
    const resumeFrom = this.conn?.lastEventId;
    this.conn?.stop();
    this.conn = new ConsoleConnection({
      url: this.consoleUrl,
      token: this.token || undefined,
      backlog: BACKLOG,
      lastEventId: resumeFrom || undefined,
      onMessage: (m) => {
        const ev = messageEvent(m);
        if (ev) this.apply(ev);
      },
      onStatus: (s) => this.onStatus(s),
    });
    this.conn.start();
  }

  // ---- events ----

  private apply(ev: ConsoleEvent): void {
    const now = performance.now();
    this.eventMeter.add(1, Date.now());
    switch (ev.type) {
      case 'can_frame': {
        const f = ev.data;
        this.byIdModel.add(f, now);
        this.signalsModel.add(f, now);
        this.sampling.onFrame(f);
        this.frameEventMeter.add(1, Date.now());
        this.addBus(busKey(f.dongle, f.bus));
        // On the bridge, frames on a dongle's console come over its uplink: it is connected, even if the
        // page joined after the last presence event (a viewer cannot ask the admin API).
        if (this.route.kind === 'dongle' && this.dongles.get(this.route.id)?.presence === 'unknown') {
          this.setDongle(this.route.id, { presence: 'online', detail: 'frames arriving over its uplink' });
        }
        break;
      }
      case 'log':
        this.sampling.onLog(ev.data);
        break;
      case 'presence':
        this.onPresence(ev.data);
        break;
      case 'command_status':
        this.sendForm?.onStatus(ev.data);
        break;
      case 'group_state':
        this.onGroupState(ev.data);
        break;
      case 'bus_state':
        this.busHealth.update(ev.data);
        break;
      case 'stream_reset':
        // Rate windows would span the gap: start them over.
        this.byIdModel.clearRates();
        break;
    }
    this.trace.pushEvent(ev);
    this.schedule();
  }

  private onPresence(p: PresenceData): void {
    const dongle = p.dongle ?? this.singleDongle();
    if (!dongle) return;
    const cur = this.dongles.get(dongle);
    const buses = busesAfter(cur?.buses, p);
    if (p.bus) {
      // About one interface, not the dongle: its presence and detail stay.
      this.setDongle(dongle, { buses });
      return;
    }
    this.setDongle(dongle, { presence: p.state === 'offline' ? 'offline' : 'online', detail: p.reason ?? '', buses });
  }

  private onGroupState(g: GroupStateData): void {
    this.group?.update(g);
    for (const k of ['a', 'b'] as const) {
      const s = g.sides[k];
      this.setDongle(s.dongle, { side: k.toUpperCase(), presence: s.online ? 'online' : 'offline' });
    }
    this.sendForm?.setDongles([g.sides.a.dongle, g.sides.b.dongle]);
  }

  private singleDongle(): string | undefined {
    if (this.route.kind === 'group') return undefined;
    return this.dongles.keys().next().value;
  }

  private setDongle(dongle: string, patch: Partial<DongleStatus>): void {
    const cur = this.dongles.get(dongle) ?? { dongle, presence: 'unknown' as Presence, detail: '', buses: {} };
    this.dongles.set(dongle, { ...cur, ...patch });
    const list = [...this.dongles.values()].sort((a, b) => (a.side ?? '').localeCompare(b.side ?? ''));
    this.header.setTargets(list);
  }

  private addBus(key: string): void {
    if (this.buses.has(key) || this.buses.size >= MAX_BUSES) return;
    this.buses.add(key);
    const sel = byId<HTMLSelectElement>('filter-bus');
    const opts = [...this.buses].sort();
    const cur = sel.value;
    sel.replaceChildren(h('option', { value: '', text: 'All buses' }), ...opts.map((b) => h('option', { value: b, text: b })));
    sel.value = cur;
    const list = byId('bus-list');
    const plain = [...new Set([...this.buses].map((k) => k.split(' ').at(-1)!))].sort();
    list.replaceChildren(...plain.map((b) => h('option', { value: b })));
  }

  private onStatus(s: StreamStatus): void {
    const prev = this.lastState;
    this.lastState = s.state;
    this.header.setStatus(s);
    if (s.state === 'reconnecting' && prev !== 'reconnecting') {
      this.trace.pushNote('warn', `Connection lost (${s.detail}). Reconnecting with the last event id…`);
    }
    if (s.state === 'resumed') {
      this.trace.pushNote('info', `Reconnected: resumed after event #${s.resumedAfter ?? s.lastEventId}, nothing missed.`);
      void this.sendForm?.refresh();
    }
    if (s.state === 'reset') void this.sendForm?.refresh();
    if (this.route.kind === 'agent') {
      // On the agent the stream is the dongle: reachable means online, until it says it is stopping.
      const d = this.singleDongle();
      const cur = d ? this.dongles.get(d)?.presence : undefined;
      if (d && s.state === 'reconnecting' && cur !== 'offline') this.setDongle(d, { presence: 'unreachable', detail: s.detail });
      const connected = s.state === 'live' || s.state === 'resumed' || s.state === 'reset';
      if (d && connected && (prev === 'connecting' || prev === 'reconnecting')) this.setDongle(d, { presence: 'online', detail: '' });
    }
    if (s.state === 'refused') {
      const had = this.token !== '';
      sessionStorage.removeItem(TOKEN_KEY);
      this.token = '';
      this.sendForm?.show(false);
      const code = /^HTTP (\d+)/.exec(s.detail)?.[1] ?? '401';
      const who = this.route.kind === 'agent' ? 'The agent' : 'The bridge';
      this.showTokenPanel(had ? `${who} refused this token (HTTP ${code}).` : `${who} needs a token for this console (it answered HTTP ${code}).`, s.detail, had);
    } else if (s.state === 'reconnecting' && /^HTTP 4\d\d/.test(s.detail)) this.showNotice(s.detail);
    else if (s.state === 'live' || s.state === 'resumed' || s.state === 'reset') {
      this.showNotice('');
      // The role could not be told (the bridge restarting, the network away): asked again once it answers.
      if (document.body.dataset.role === 'unknown') void this.probeRole();
    }
    this.schedule();
  }

  // ---- bridge: token and role ----

  private showTokenPanel(error: string, detail = '', invalid = false, cancellable = false): void {
    showTokenPanel(error, detail, invalid, cancellable);
  }

  private acceptToken(token: string): void {
    this.token = token;
    keepToken(token);
    if (this.route.kind === 'agent' && this.consoleUrl === '') return void this.start();
    this.connect();
    this.recordings?.start();
    void this.probeRole();
  }

  /** A 401/403 from the agent's or the bridge's API (not the stream): ask for a (better) token. */
  private refused(status: number, message: string): void {
    if (this.route.kind !== 'agent' || !byId('token-panel').hidden) return;
    const had = this.token !== '';
    const what =
      status === 403
        ? `This token may only read (HTTP 403): recording needs an admin token.`
        : had
          ? `The agent refused this token (HTTP ${status}).`
          : `The agent needs a token (HTTP ${status}).`;
    byId('token-help').textContent =
      'This gateway asks for a token from its --local-token-file: a read token to watch and download, the admin token to record and delete. It is kept for this browser tab only.';
    // A read token asked to record still reads: the technician may go back to the page with it.
    this.showTokenPanel(what, message, had, status === 403 && had);
  }

  /** Admin or viewer? A GET on the admin API answers 200 for the admin token, 403 for a viewer's. */
  private async probeRole(): Promise<void> {
    const route = this.route;
    // The answer is about this token: one for a token since replaced (an admin's, answered after a
    // viewer's was entered) must not show the Send form.
    const token = this.token;
    if (route.kind === 'agent' || token === '') return;
    try {
      if (route.kind === 'dongle') {
        const d = await bridgeDongle(route.id, token);
        this.setDongle(route.id, { presence: d.online ? 'online' : 'offline', detail: d.last_seen ? `last seen ${d.last_seen}` : '' });
      } else {
        const g = await bridgeGroup(route.id, token);
        if (isGroupState(g)) this.onGroupState(g);
      }
      if (token !== this.token) return;
      document.body.dataset.role = 'admin';
      this.sendForm?.show(true);
    } catch (e) {
      if (token !== this.token) return;
      document.body.dataset.role = e instanceof HttpError && e.status === 403 ? 'viewer' : 'unknown';
      this.sendForm?.show(false);
      if (e instanceof HttpError && e.status === 404) this.showNotice(e.message);
      // Not told (a 5xx, the network): asked again shortly, and when the stream is back (an admin's Send
      // form stayed hidden for the whole tab after one failed check).
      else if (!(e instanceof HttpError && e.status === 403))
        setTimeout(() => token === this.token && document.body.dataset.role === 'unknown' && void this.probeRole(), ROLE_RETRY_MS);
    }
  }

  private showNotice(text: string): void {
    this.notice.textContent = text;
    this.notice.hidden = text === '';
  }

  // ---- controls ----

  private wireControls(): void {
    const filterIn = byId<HTMLInputElement>('filter-id');
    const filterErr = byId('filter-error');
    const busSel = byId<HTMLSelectElement>('filter-bus');
    let debounce: ReturnType<typeof setTimeout> | undefined;
    const applyFilter = (): void => {
      const r = parseIdFilter(filterIn.value);
      if (!r.ok) {
        filterErr.textContent = r.error;
        filterErr.hidden = false;
        filterIn.setAttribute('aria-invalid', 'true');
        return;
      }
      filterErr.hidden = true;
      filterIn.removeAttribute('aria-invalid');
      this.idFilter = r.filter;
      this.applyFilters();
    };
    filterIn.addEventListener('input', () => {
      clearTimeout(debounce);
      debounce = setTimeout(applyFilter, 150);
    });
    filterIn.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') {
        clearTimeout(debounce);
        applyFilter();
      } else if (e.key === 'Escape') {
        filterIn.value = '';
        applyFilter();
      }
    });
    busSel.addEventListener('change', () => this.applyFilters());
    for (const cb of document.querySelectorAll<HTMLInputElement>('.types input[type=checkbox]')) cb.addEventListener('change', () => this.applyFilters());

    // Tabs (arrow keys move between them, as the ARIA tabs pattern has it).
    const tabs = [byId<HTMLButtonElement>('tab-byid'), byId<HTMLButtonElement>('tab-trace'), byId<HTMLButtonElement>('tab-signals')];
    const select = (i: number, focus: boolean): void => {
      tabs.forEach((t, k) => {
        const on = k === i;
        t.setAttribute('aria-selected', String(on));
        t.tabIndex = on ? 0 : -1;
        byId(t.getAttribute('aria-controls')!).hidden = !on;
      });
      if (focus) tabs[i]!.focus();
      history.replaceState(null, '', ['#by-id', '#trace', '#signals'][i]!);
      this.lastTable = 0;
      this.lastSignals = 0;
      this.schedule();
    };
    tabs.forEach((t, i) => {
      t.addEventListener('click', () => select(i, false));
      t.addEventListener('keydown', (e) => {
        if (e.key === 'ArrowRight' || e.key === 'ArrowLeft') {
          e.preventDefault();
          select((i + (e.key === 'ArrowRight' ? 1 : tabs.length - 1)) % tabs.length, true);
        }
      });
    });
    if (location.hash === '#trace') select(1, false);
    if (location.hash === '#signals') select(2, false);
    this.wireSignals();

    const help = byId<HTMLButtonElement>('help-toggle');
    help.addEventListener('click', () => {
      const open = help.getAttribute('aria-expanded') !== 'true';
      help.setAttribute('aria-expanded', String(open));
      byId('filter-help').hidden = !open;
    });

    const pause = byId<HTMLButtonElement>('pause');
    const togglePause = (): void => {
      if (this.trace.paused) this.trace.resume();
      else this.trace.pause();
      pause.setAttribute('aria-pressed', String(this.trace.paused));
      pause.textContent = this.trace.paused ? 'Resume' : 'Pause';
      pause.classList.toggle('active', this.trace.paused);
      this.schedule();
    };
    pause.addEventListener('click', togglePause);

    const follow = byId<HTMLButtonElement>('follow');
    this.traceView.onFollowChange = (on) => (follow.hidden = on);
    follow.addEventListener('click', () => {
      this.traceView.follow();
      this.schedule();
    });

    byId('export').addEventListener('click', () => {
      const withDir = byId<HTMLInputElement>('export-dir').checked;
      const text = candumpLog(this.trace.visibleFrames(), { direction: withDir });
      if (text === '') {
        this.showNotice('No frames in the trace to export (check the filter).');
        setTimeout(() => this.showNotice(''), 4000);
        return;
      }
      const name = this.route.kind === 'agent' ? ([...this.dongles.keys()][0] ?? 'console') : this.route.id;
      download(candumpFileName(name), text);
    });

    wireTokenForm(
      TOKEN_HELP.console(),
      (t) => this.acceptToken(t),
      () => {
        this.conn?.stop();
        this.token = '';
        this.sendForm?.show(false);
      },
    );

    // Keyboard: "/" filter, "p" pause, "1"/"2"/"3" views — not while typing.
    document.addEventListener('keydown', (e) => {
      const t = e.target as HTMLElement;
      if (e.ctrlKey || e.metaKey || e.altKey || t.closest('input, select, textarea')) return;
      if (e.key === '/') {
        e.preventDefault();
        filterIn.focus();
      } else if (e.key === 'p') togglePause();
      else if (e.key === '1') select(0, true);
      else if (e.key === '2') select(1, true);
      else if (e.key === '3') select(2, true);
    });
    window.addEventListener('online', () => this.conn?.reconnectNow());
  }

  private wireSignals(): void {
    const search = byId<HTMLInputElement>('signal-search');
    search.addEventListener('input', () => {
      this.signalsTable.setQuery(search.value);
      this.lastSignals = 0;
      this.schedule();
    });
    this.signalsTable.onPinChange = () => {
      this.lastSignals = 0;
      this.schedule();
    };
    const pause = byId<HTMLButtonElement>('chart-pause');
    pause.addEventListener('click', () => {
      this.chart.setPaused(!this.chart.isPaused);
      pause.setAttribute('aria-pressed', String(this.chart.isPaused));
      pause.textContent = this.chart.isPaused ? 'Resume' : 'Pause';
      pause.classList.toggle('active', this.chart.isPaused);
      this.schedule();
    });
    byId('chart-reset').addEventListener('click', () => this.chart.resetZoom());
  }

  private applyFilters(): void {
    const bus = byId<HTMLSelectElement>('filter-bus').value;
    const types = new Set<string>();
    for (const cb of document.querySelectorAll<HTMLInputElement>('.types input[type=checkbox]')) if (cb.checked) types.add(cb.value);
    if (this.route.kind !== 'group') types.add('group_state');
    // Nothing ticked shows no events (notes and gap markers stay), on every page alike.
    this.trace.setFilter({ id: this.idFilter, bus, types });
    this.table.setFilter(this.idFilter, bus);
    this.lastTable = 0;
    this.schedule();
  }

  // ---- drawing ----

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => this.draw());
  }

  private draw(): void {
    this.scheduled = false;
    const now = performance.now();
    if (!this.traceView.render(now)) this.scheduleLater(16);
    const pending = byId('pending');
    const text = this.trace.paused ? `Paused · ${this.trace.pending.toLocaleString('en-US')} new events waiting` : '';
    if (pending.textContent !== text) pending.textContent = text;
    setFooter(byId('trace-count'), this.traceView, this.trace.paused);
    if (now - this.lastTable >= TABLE_INTERVAL_MS && !byId('panel-byid').hidden) {
      this.lastTable = now;
      this.table.render(now);
    } else if (!byId('panel-byid').hidden) this.scheduleLater(TABLE_INTERVAL_MS);
    if (!byId('panel-signals').hidden) {
      if (now - this.lastSignals >= TABLE_INTERVAL_MS) {
        this.lastSignals = now;
        this.signalsTable.render(now);
        this.chart.render();
      } else this.scheduleLater(TABLE_INTERVAL_MS);
    }
    if (now - this.lastFigures >= FIGURES_INTERVAL_MS) {
      this.lastFigures = now;
      const total = this.byIdModel.totalRate(performance.now());
      this.header.setFigures(this.eventMeter.rate(Date.now()), total, this.conn?.lastEventId ?? '');
      const shown = this.frameEventMeter.rate(Date.now()) || this.sampling.announced?.output || 0;
      const input = total || this.sampling.announced?.input || 0;
      this.header.setSampling(this.sampling.active, shown, input);
      this.busHealth.render();
    }
  }

  private later: ReturnType<typeof setTimeout> | undefined;
  private scheduleLater(ms: number): void {
    if (this.later) return;
    this.later = setTimeout(() => {
      this.later = undefined;
      this.schedule();
    }, ms);
  }

  private tick(): void {
    this.header.tick();
    this.group?.tick();
    this.lastFigures = 0;
    this.schedule();
  }
}

function isGroupState(x: Record<string, unknown>): x is GroupStateData & Record<string, unknown> {
  const s = x.sides as { a?: { dongle?: unknown }; b?: { dongle?: unknown } } | undefined;
  return typeof x.group === 'string' && typeof s?.a?.dongle === 'string' && typeof s?.b?.dongle === 'string';
}

const app = new App(parseRoute(location.pathname));
void app.start();
