/**
 * The fleet page (the bridge's `/` and `/console/`): the fleet stream (GET /api/v1/streams/fleet) into
 * FleetModel, drawn by FleetTables a few times a second. Token handling as on the console page (kept in
 * sessionStorage for the tab, a 401/403 shows the token form with the bridge's reason); the admin token
 * (GET /api/v1/dongles answers 200, a viewer's 403) adds the management controls of FleetAdmin.
 */
import { listDongles, HttpError, recentCommands } from './api.js';
import { byId, h, setText } from './dom.js';
import { formatDay, formatWhen } from './format.js';
import { messageEvent, type CommandState } from './events.js';
import { ConsoleConnection, type StreamStatus } from './sse.js';
import { FleetModel } from './state/fleet.js';
import { FleetAdmin } from './views/fleet-admin.js';
import { FleetTables } from './views/fleet-tables.js';
import { STATE_TEXT } from './views/header.js';
import { keepToken, showTokenPanel, TOKEN_HELP, TOKEN_KEY, wireTokenForm } from './views/token-panel.js';

const FLEET_STREAM = '/api/v1/streams/fleet';
const DRAW_MS = 250;

class FleetPage {
  private readonly model = new FleetModel();
  private readonly tables: FleetTables;
  private admin: FleetAdmin | null = null;
  private conn: ConsoleConnection | null = null;
  private token = sessionStorage.getItem(TOKEN_KEY) ?? '';
  private commandsOf = '';
  /** The day the commands were drawn on: past midnight they are drawn again (yesterday's times then need their date). */
  private commandsDay = '';

  constructor() {
    const t = byId<HTMLTableElement>('dongles');
    this.tables = new FleetTables(this.model, t.tBodies[0]!, byId<HTMLTableElement>('groups').tBodies[0]!, {
      count: byId('dongle-count'),
      pageInfo: byId('page-info'),
      prev: byId<HTMLButtonElement>('page-prev'),
      next: byId<HTMLButtonElement>('page-next'),
      head: t.tHead!,
    });
    this.tables.onCommands = (id) => {
      this.commandsOf = id;
      this.drawCommands();
      void this.loadCommands(id);
    };
    // Exposed for the browser tests: the model's size and snapshots seen.
    (window as unknown as { canrelayFleet: FleetModel }).canrelayFleet = this.model;
    byId<HTMLInputElement>('dongle-filter').addEventListener('input', (e) => this.tables.setFilter((e.target as HTMLInputElement).value));
    wireTokenForm(
      TOKEN_HELP.fleet(),
      (t) => this.acceptToken(t),
      () => {
        this.conn?.stop();
        this.token = '';
        this.setRole('');
      },
    );
    byId('reconnect').addEventListener('click', () => this.conn?.reconnectNow());
    setInterval(() => this.draw(), DRAW_MS);
  }

  start(): void {
    if (this.token === '') showTokenPanel('');
    // Connect even without a token: the bridge's own answer (401) is what the page shows.
    this.connect();
    if (this.token !== '') void this.probeRole();
  }

  private connect(): void {
    this.conn?.stop();
    this.conn = new ConsoleConnection({
      url: FLEET_STREAM,
      token: this.token || undefined,
      onMessage: (m) => {
        // A snapshot event has no id of its own: it gets id 0, which is how the model knows a snapshot.
        const ev = messageEvent(m);
        if (ev === null || ev.type === 'stream_reset') return;
        this.model.apply(ev);
        if (ev.type === 'command_status' && ev.data.dongle === this.commandsOf) this.drawCommands();
      },
      onStatus: (s) => this.onStatus(s),
    });
    this.conn.start();
  }

  private onStatus(s: StreamStatus): void {
    const el = byId('stream-state');
    setText(el, STATE_TEXT[s.state] ?? s.state);
    el.dataset.state = s.state;
    el.title = s.detail;
    byId('reconnect').hidden = s.state !== 'reconnecting';
    if (s.state === 'refused') {
      const had = this.token !== '';
      sessionStorage.removeItem(TOKEN_KEY);
      this.token = '';
      this.setRole('');
      const code = /^HTTP (\d+)/.exec(s.detail)?.[1] ?? '401';
      showTokenPanel(had ? `The bridge refused this token (HTTP ${code}).` : `The bridge needs a token for the fleet (it answered HTTP ${code}).`, s.detail, had);
    } else if (s.state === 'reconnecting') this.notice(`Connection lost (${s.detail}); reconnecting with the last event id…`);
    else {
      this.notice('');
      // The role could not be told (the bridge restarting, the network away): asked again once it answers.
      if ((s.state === 'live' || s.state === 'resumed' || s.state === 'reset') && this.token !== '' && document.body.dataset.role === '') void this.probeRole();
    }
  }

  private figuresAt = -1;

  private draw(): void {
    this.tables.draw();
    if (!byId('commands-panel').hidden && formatDay(new Date()) !== this.commandsDay) this.drawCommands();
    if (this.figuresAt === this.model.version) return;
    this.figuresAt = this.model.version;
    let online = 0;
    for (const r of this.model.dongles.values()) if (r.online) online++;
    setText(byId('fig-online'), String(online));
    setText(byId('fig-dongles'), String(this.model.dongles.size));
    setText(byId('fig-groups'), String(this.model.groups.size));
  }

  private drawCommands(): void {
    const panel = byId('commands-panel');
    const r = this.model.dongles.get(this.commandsOf);
    panel.hidden = r === undefined;
    if (!r) return;
    setText(byId('commands-title'), `Recent commands of ${r.id}`);
    const now = new Date();
    this.commandsDay = formatDay(now);
    byId<HTMLTableElement>('commands').tBodies[0]!.replaceChildren(
      ...r.commands.map((c) =>
        h(
          'tr',
          { 'data-command': c.command_id, 'data-status': c.status },
          h('td', { text: formatWhen(c.ts, now), title: c.ts }),
          h('td', {}, h('code', { text: c.command_id })),
          h('td', { text: c.type }),
          h('td', { text: c.status }),
          h('td', { text: c.error ?? '' }),
        ),
      ),
    );
  }

  /** With an admin token, the commands from before the page opened come from the admin API. */
  private async loadCommands(id: string): Promise<void> {
    if (document.body.dataset.role !== 'admin') return;
    try {
      const { commands } = await recentCommands(id, this.token);
      this.model.mergeCommands(
        id,
        commands.map((c) => {
          const last = c.history[c.history.length - 1];
          return {
            ts: last?.ts ?? new Date().toISOString(),
            command_id: c.command_id,
            type: c.type,
            status: c.status as CommandState,
            ...(last?.error ? { error: last.error } : {}),
            dongle: id,
          };
        }),
      );
      if (this.commandsOf === id) this.drawCommands();
    } catch (e) {
      this.notice(`could not load the recent commands of ${id}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  private acceptToken(token: string): void {
    this.token = token;
    keepToken(token);
    this.connect();
    void this.probeRole();
  }

  /** Admin or viewer? The admin API answers 200 for the admin token, 403 for a viewer's. */
  private async probeRole(): Promise<void> {
    // The answer is about this token: one for a token since replaced (an admin's, answered after a
    // viewer's was entered) must not show the Manage panel.
    const token = this.token;
    try {
      await listDongles(token);
      if (token === this.token) this.setRole('admin');
    } catch (e) {
      if (token !== this.token) return;
      const viewer = e instanceof HttpError && e.status === 403;
      this.setRole(viewer ? 'viewer' : '');
      // Not told (a 5xx, the network): asked again shortly (the Manage panel stayed hidden for the whole tab).
      if (!viewer) setTimeout(() => token === this.token && document.body.dataset.role === '' && void this.probeRole(), 5000);
    }
  }

  private setRole(role: '' | 'admin' | 'viewer'): void {
    document.body.dataset.role = role;
    const admin = role === 'admin';
    byId('admin-panel').hidden = !admin;
    for (const el of document.querySelectorAll<HTMLElement>('.admin-only')) el.hidden = !admin;
    if (admin && this.admin === null) this.admin = new FleetAdmin(() => this.token);
    this.tables.actions = admin ? this.admin : null;
    this.tables.draw(true);
  }

  private notice(text: string): void {
    const n = byId('notice');
    n.textContent = text;
    n.hidden = text === '';
  }
}

new FleetPage().start();
