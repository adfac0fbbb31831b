/**
 * Command lifecycle on the bridge: queued (accepted by the admin API) → sent (written to the agent's
 * socket) → delivered → succeeded | failed (reported by the agent through mirrored command_status
 * events) | timed_out (no final status before the command's timeout). Every status is stored with its
 * history and published on the dongle's console (and so its group's).
 *
 * A command for an offline dongle stays queued until the agent connects or the timeout passes; at most
 * `maxQueued` unfinished commands per dongle are accepted (the admin API answers 429 beyond). Delivery
 * is paced (command-delivery.ts). A sent command is not resent after a reconnect: a duplicated
 * send_frame is a frame on the bus twice, so commands are at most once.
 *
 * Timeouts: a command still queued at its deadline was never sent and times out then. A sent command is
 * the agent's to report: it refuses commands past their deadline and reports every one it received
 * through its durable outbox, so the bridge waits STATUS_GRACE_MS more for that report — counted only
 * while the agent is connected: a sent command whose agent is offline stays `sent` (the bridge cannot
 * know whether it reached the bus) until the agent has been back for STATUS_GRACE_MS, time enough for
 * its outbox to deliver the report. So a command the agent transmitted is not reported timed_out because
 * the link was down; a final report that arrives later still (a replaced or wiped agent) replaces
 * timed_out, so a command the agent carried out ends as what the agent says.
 * In a cluster the store decides each timeout (timeOutCommands: one node's transaction wins), so every
 * node may time a queued command and it still times out once; a sent one is timed by the node its agent
 * is connected to (connected() takes it up there), wherever it was sent from.
 * Deadlines are kept on the monotonic clock (RelayClock): a command's expiry is stored as a wall-clock
 * time, and a step of the bridge's wall clock back (NTP correcting a clock that was ahead) stretched the
 * life of every queued command by the step: a send_frame queued for an offline dongle went on the bus when
 * it came back, minutes later. The expiry a command is sent with is restated on the wall clock as it reads
 * at sending, which the agent's clock fix refers to. Only across a restart, or from another node, is the
 * remaining time read off the wall clock, and then it is never more than the whole timeout.
 * Finished commands are deleted `retentionS` after their deadline.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { CommandState, CommandStatusData } from '../core/console/events.js';
import { commandStatusData } from '../core/console/normalize.js';
import { isoNow } from '../core/console/time.js';
import type { BridgeMessage, CommandBody } from '../core/uplink/messages.js';
import { CommandDelivery } from './command-delivery.js';
import { RelayClock } from './relay-clock.js';
import { RetentionSweep } from './retention.js';
import type { BridgeConsoles } from './consoles.js';
import { isTerminal, replacesStatus, type CommandRow, type CommandTimeout } from './store.js';
import type { StateStore } from './state-store.js';

export type CommandMessage = Extract<BridgeMessage, { t: 'command' }>;

/** An agent connection as commands see it. */
export interface CommandLink {
  readonly ready: boolean;
  /** When this connection was accepted (ms since the epoch): the report wait counts from here. */
  readonly connectedAt: number;
  /** Writes the command to the socket; false when the link cannot take it now. */
  sendCommand(msg: CommandMessage): boolean;
}

export interface CommandView {
  command_id: string;
  dongle: string;
  type: string;
  command: unknown;
  status: CommandState;
  created_at: string;
  expires_at: string;
  history: { status: CommandState; ts: string; error?: string }[];
}

const SWEEP_MS = 200;
/** Commands whose statuses are held until this node's view has them (see `early`), and for how long. */
const EARLY_STATUSES_MAX = 1000;
const EARLY_STATUS_TTL_MS = 10 * 60_000;
/** Commands whose `queued` status this node keeps track of for the console's order (queuedOnConsole). */
const QUEUED_SHOWN_MAX = 10_000;
const SWEEP_MAX = 200;
/** How long after its deadline a sent command waits for the agent's report. */
export const STATUS_GRACE_MS = 10_000;

export interface CommandLimits {
  /** Unfinished commands per dongle. */
  maxQueued: number;
  /** Seconds a finished command is kept after its deadline. */
  retentionS: number;
}

export class TooManyCommandsError extends Error {}

export class CommandCenter {
  /** Unfinished commands and when they time out (ms, monotonic). */
  private readonly deadlines = new Map<string, number>();
  /** Each tracked command's expiry on the monotonic clock (ms): kept while it has a deadline. */
  private readonly expiries = new Map<string, number>();
  /** Commands being inserted per dongle (awaited with PostgreSQL): counted against --max-queued-commands. */
  private readonly inserting = new Map<string, number>();
  /** Commands whose timeout the store is deciding (PostgreSQL: a transaction in flight). */
  private readonly timingOut = new Set<string>();
  /**
   * Statuses an agent reported for a command this node's view does not have (yet): in a cluster, one
   * stored by another node whose change this node has not read — its NOTIFY behind, or PostgreSQL away
   * while the agent moved here. Acknowledged to the agent (its outbox forgets them), so they are kept
   * here and applied when the view learns the command (storedElsewhere); before, they were dropped and a
   * command the agent had carried out ended timed_out. Bounded: EARLY_STATUSES_MAX commands, the oldest
   * given up first, each for EARLY_STATUS_TTL_MS.
   */
  private readonly early = new Map<string, { dongle: string; at: number; statuses: CommandStatusData[] }>();
  /**
   * Per command (the newest QUEUED_SHOWN_MAX): whether its `queued` status is on this node's console of
   * its dongle (`shown`), or this node has sent it (`sent`). In a cluster the `queued` status made by the
   * posting node travels to the node that delivers the command over NATS, while the command itself comes
   * through PostgreSQL's notice, and either can be first: a `queued` arriving after `sent` was shown read
   * "sent, delivered, succeeded, queued". So the delivering node shows `queued` itself before `sent` when
   * it has not arrived, and a `queued` arriving later is not shown (admitForwardedStatus).
   */
  private readonly queuedOnConsole = new Map<string, 'shown' | 'sent'>();
  private readonly timer: NodeJS.Timeout;
  private readonly pruning: RetentionSweep;
  private readonly delivery: CommandDelivery;
  /** Status transitions since start, by status (metrics). */
  readonly transitions = new Map<CommandState, number>();
  /** Commands refused because their dongle had maxQueued unfinished (metrics). */
  refusedFull = 0;
  /** Finished commands deleted after the retention (metrics). */
  get pruned(): number {
    return this.pruning.pruned;
  }

  /** Status changes dropped from memory while the database refused writes (metrics). */
  get statusesDropped(): number {
    return this.store.statusesDropped;
  }

  constructor(
    private readonly store: StateStore,
    private readonly consoles: BridgeConsoles,
    private readonly linkOf: (dongle: string) => CommandLink | undefined,
    private readonly defaultTimeoutS: number,
    private readonly log: Logger,
    private readonly limits: CommandLimits = { maxQueued: 1000, retentionS: 7 * 86_400 },
    private readonly clock: RelayClock = new RelayClock(),
  ) {
    this.delivery = new CommandDelivery({ queued: (d, n) => this.store.queuedCommands(d, n), send: (c) => this.send(c) });
    this.timer = setInterval(() => this.sweep(), SWEEP_MS);
    this.timer.unref();
    // Finished commands past the retention, a batch per event-loop turn (retention.ts: the cadence of every such sweep).
    this.pruning = new RetentionSweep(
      limits.retentionS * 1000,
      (before, limit) => this.store.pruneFinishedCommands(before, limit),
      (n) => this.log.debug({ pruned: n }, 'finished commands past the retention deleted'),
    );
  }

  /** Picks up unfinished commands from an earlier run: their timeouts still apply. */
  load(): void {
    for (const c of this.store.unfinishedCommands()) this.deadlines.set(c.id, this.deadlineOf(c));
    this.sweep();
    this.pruning.run();
  }

  /**
   * Accepts a validated command: stored (committed, when the store is PostgreSQL) and published as queued; sent soon after if the agent is up.
   * Throws TooManyCommandsError when the dongle already has maxQueued unfinished commands.
   */
  async create(dongle: string, body: CommandBody, timeoutS?: number): Promise<CommandRow> {
    // Inserts still on their way count: with PostgreSQL the insert is awaited, and concurrent POSTs all
    // passed the check before any was stored.
    const inserting = this.inserting.get(dongle) ?? 0;
    const open = this.store.unfinishedCount(dongle) + inserting;
    if (open >= this.limits.maxQueued) {
      this.refusedFull++;
      throw new TooManyCommandsError(
        `dongle "${dongle}" already has ${open} unfinished commands (--max-queued-commands ${this.limits.maxQueued}); wait for them to finish or time out, then retry`,
      );
    }
    const { wallMs: now, monoMs } = this.clock.now();
    const timeoutMs = (timeoutS ?? this.defaultTimeoutS) * 1000;
    const row: CommandRow = {
      id: randomUUID(),
      dongle,
      type: body.type,
      body: JSON.stringify(body),
      status: 'queued',
      created_at: new Date(now).toISOString(),
      expires_at: new Date(now + timeoutMs).toISOString(),
    };
    this.inserting.set(dongle, inserting + 1);
    try {
      await this.store.insertCommand(row);
    } finally {
      const left = (this.inserting.get(dongle) ?? 1) - 1;
      if (left > 0) this.inserting.set(dongle, left);
      else this.inserting.delete(dongle);
    }
    // From its acceptance, whatever the wall clock does while it waits.
    this.expiries.set(row.id, monoMs + timeoutMs);
    this.deadlines.set(row.id, monoMs + timeoutMs);
    this.announce(row, 'queued');
    // On a later turn, after the 202 has gone out, so the response's "queued" was true when written.
    this.delivery.kick(dongle);
    return row;
  }

  /**
   * The dongle's agent has just been welcomed: what waits for it goes out, oldest first, paced; and its
   * unfinished commands are timed from here — a sent one may have been sent by another node (cluster) or
   * before a restart, and this is the node that can now tell whether the agent had time to report it.
   */
  connected(dongle: string): void {
    for (const c of this.store.unfinishedCommands(dongle)) this.track(c);
    this.delivery.connected(dongle);
  }

  /**
   * Cluster mode: a command was stored or changed by another node. Every node times a queued command
   * (whichever reaches its deadline first decides it in the store, once); a sent one is timed only where
   * its agent is connected. Delivered from here when its agent is connected here.
   */
  storedElsewhere(id: string): void {
    const held = this.early.get(id);
    if (held !== undefined) {
      this.early.delete(id);
      // Applied, and shown as they would have been on arrival (the console, the fleet's last command).
      if (Date.now() - held.at < EARLY_STATUS_TTL_MS)
        for (const st of held.statuses) if (this.agentStatus(held.dongle, st)) this.consoles.dongleEvent(held.dongle, { type: 'command_status', data: st });
    }
    const c = this.store.command(id);
    if (!c || isTerminal(c.status)) return;
    const here = this.linkOf(c.dongle)?.ready === true;
    if (c.status !== 'queued' && !here) return;
    this.track(c);
    if (c.status === 'queued' && here) this.delivery.kick(c.dongle);
  }

  /** A command_status mirrored from the agent: moves the stored command forward, never backwards. */
  /** Returns false for a command unknown to this dongle (ignored: not shown anywhere either). */
  agentStatus(dongle: string, d: CommandStatusData): boolean {
    const c = this.store.command(d.command_id);
    if (!c) {
      this.holdEarly(dongle, d);
      return false;
    }
    if (c.dongle !== dongle) {
      this.log.warn({ dongle, command_id: d.command_id, status: d.status }, 'agent reported a status for a command unknown to this dongle; ignored');
      return false;
    }
    // The agent's own final word replaces a timeout the bridge declared while it could not hear it.
    const lateReport = c.status === 'timed_out' && (d.status === 'succeeded' || d.status === 'failed');
    if (!replacesStatus(c.status, d.status)) {
      this.log.debug({ dongle, command_id: c.id, from: c.status, to: d.status }, 'late or repeated command status; stored status kept');
      return true;
    }
    if (lateReport) this.log.warn({ dongle, command_id: c.id, status: d.status }, 'the agent reported a command the bridge had timed out; its report replaces the timeout');
    this.store.setCommandStatus(c.id, d.status, isoNow(), d.error);
    this.count(d.status);
    if (isTerminal(d.status)) this.finish(c);
    return true;
  }

  /** The dongle was deleted: what it still had to do fails, with the reason. */
  dongleRemoved(dongle: string): void {
    for (const c of this.store.unfinishedCommands(dongle)) this.transition(c, 'failed', 'the dongle was removed from the bridge');
    this.delivery.forget(dongle);
  }

  view(id: string): CommandView | undefined {
    const c = this.store.command(id);
    if (!c) return undefined;
    return {
      command_id: c.id,
      dongle: c.dongle,
      type: c.type,
      command: JSON.parse(c.body) as unknown,
      status: c.status,
      created_at: c.created_at,
      expires_at: c.expires_at,
      history: this.store.commandHistory(id).map((h) => (h.error === null ? { status: h.status, ts: h.ts } : { status: h.status, ts: h.ts, error: h.error })),
    };
  }

  /** A dongle's newest commands, newest first, each as `view()` shows it. */
  recent(dongle: string, limit: number): CommandView[] {
    return this.store.recentCommandIds(dongle, limit).flatMap((id) => this.view(id) ?? []);
  }

  /** Commands in flight to the dongle's current connection (metrics). */
  inFlight(dongle: string): number {
    return this.delivery.inFlightCount(dongle);
  }

  stop(): void {
    clearInterval(this.timer);
    this.pruning.stop();
    this.delivery.stop();
  }

  private holdEarly(dongle: string, d: CommandStatusData): void {
    const held = this.early.get(d.command_id);
    if (held !== undefined) {
      // The first dongle to report the id keeps its entry: a report of another (a confused agent) must not
      // replace the statuses of the one whose command it is; whose it is is checked once the view has it.
      if (held.dongle === dongle && held.statuses.length < 8) held.statuses.push(d);
      return;
    }
    this.log.info({ dongle, command_id: d.command_id, status: d.status }, 'agent reported a status for a command this node does not know (yet): held until it does');
    while (this.early.size >= EARLY_STATUSES_MAX) this.early.delete(this.early.keys().next().value!);
    this.early.set(d.command_id, { dongle, at: Date.now(), statuses: [d] });
  }

  private send(c: CommandRow): 'sent' | 'skipped' | 'blocked' {
    const { wallMs, monoMs } = this.clock.now();
    const left = this.expiryOf(c) - monoMs;
    if (left <= 0) {
      this.timeOut([c]);
      // PostgreSQL deciding: the dongle's next round comes when it has (timeOut kicks it).
      return this.timingOut.has(c.id) ? 'blocked' : 'skipped';
    }
    const link = this.linkOf(c.dongle);
    if (!link?.ready) return 'blocked';
    // The expiry on the wall clock as it reads now (the agent's fix is against it), never later than stored.
    const expiresAt = new Date(Math.min(Date.parse(c.expires_at), wallMs + left)).toISOString();
    if (!link.sendCommand({ t: 'command', command_id: c.id, expires_at: expiresAt, command: JSON.parse(c.body) as CommandBody })) return 'blocked';
    // Its `queued` first, when it is not on this node's console yet (posted on another node, or before a restart).
    if (this.queuedOnConsole.get(c.id) !== 'shown') this.consoles.dongleEvent(c.dongle, { type: 'command_status', data: commandStatusData(c.id, c.type, 'queued') });
    this.markQueued(c.id, 'sent');
    this.transition(c, 'sent');
    // A sent command's deadline now includes the wait for the agent's report.
    this.deadlines.set(c.id, this.expiryOf(c) + STATUS_GRACE_MS);
    return 'sent';
  }

  private transition(c: CommandRow, status: CommandState, error?: string): void {
    this.store.setCommandStatus(c.id, status, isoNow(), error);
    this.count(status);
    if (isTerminal(status)) this.finish(c);
    this.announce(c, status, error);
  }

  private finish(c: CommandRow): void {
    this.untrack(c.id);
    this.delivery.finished(c.dongle, c.id);
  }

  private track(c: CommandRow): void {
    if (!this.deadlines.has(c.id)) this.deadlines.set(c.id, this.deadlineOf(c));
  }

  private untrack(id: string): void {
    this.deadlines.delete(id);
    this.expiries.delete(id);
  }

  /**
   * The command's expiry on the monotonic clock. Set at acceptance; for a command this process did not
   * accept (an earlier run's, another node's), from the time its wall-clock expiry leaves now, at most its
   * whole timeout (a clock stepped back since then gives it no more).
   */
  private expiryOf(c: CommandRow): number {
    let at = this.expiries.get(c.id);
    if (at === undefined) {
      const { wallMs, monoMs } = this.clock.now();
      const expires = Date.parse(c.expires_at);
      at = monoMs + Math.min(expires - wallMs, expires - Date.parse(c.created_at));
      this.expiries.set(c.id, at);
    }
    return at;
  }

  /** When the sweep gives up on a command (monotonic): its expiry, plus the report wait once it was sent. */
  private deadlineOf(c: CommandRow): number {
    return this.expiryOf(c) + (c.status === 'queued' ? 0 : STATUS_GRACE_MS);
  }

  /**
   * Times the commands out through the store, which decides (PostgreSQL: one node's transaction wins);
   * only what it moved is counted and announced, so each timeout is one event however many nodes tried.
   * Not decided (PostgreSQL away): still tracked, tried again at a later sweep.
   */
  private timeOut(cs: CommandRow[]): void {
    const todo = cs.filter((c) => !this.timingOut.has(c.id));
    if (todo.length === 0) return;
    const ts = isoNow();
    const rows: CommandTimeout[] = todo.map((c) => ({ id: c.id, ts, error: timeoutError(c) }));
    const decided = (moved: ReadonlySet<string>): void => {
      todo.forEach((c, i) => {
        if (!moved.has(c.id)) return;
        this.count('timed_out');
        this.finish(c);
        this.announce(c, 'timed_out', rows[i]!.error);
      });
    };
    const r = this.store.timeOutCommands(rows);
    if (!(r instanceof Promise)) return decided(r);
    for (const c of todo) this.timingOut.add(c.id);
    r.then(
      (moved) => {
        for (const c of todo) this.timingOut.delete(c.id);
        decided(moved);
        // A command that expired in delivery held its dongle's round (send: 'blocked').
        for (const d of new Set(todo.map((c) => c.dongle))) this.delivery.kick(d);
      },
      (err: unknown) => {
        for (const c of todo) this.timingOut.delete(c.id);
        this.log.debug({ err: (err as Error).message, commands: todo.length }, 'command timeouts not recorded (the database is away); tried again');
      },
    );
  }

  /** Whether the dongle's agent has been connected long enough to have reported a command it received. */
  private hadTimeToReport(dongle: string, now: number): boolean {
    const link = this.linkOf(dongle);
    return link?.ready === true && now - link.connectedAt >= STATUS_GRACE_MS;
  }

  private announce(c: CommandRow, status: CommandState, error?: string): void {
    this.consoles.dongleEvent(c.dongle, { type: 'command_status', data: commandStatusData(c.id, c.type, status, error) });
    if (status === 'queued') {
      this.count(status);
      this.markQueued(c.id, 'shown');
    }
  }

  /**
   * Cluster mode: a `command_status` another node forwarded for a dongle console numbered here. A
   * `queued` is shown unless this node showed it already or has sent the command (then it would come
   * after `sent`); every other status is shown.
   */
  admitForwardedStatus(d: CommandStatusData): boolean {
    if (d.status !== 'queued') return true;
    if (this.queuedOnConsole.has(d.command_id)) return false;
    this.markQueued(d.command_id, 'shown');
    return true;
  }

  private markQueued(id: string, state: 'shown' | 'sent'): void {
    this.queuedOnConsole.delete(id);
    this.queuedOnConsole.set(id, state);
    if (this.queuedOnConsole.size > QUEUED_SHOWN_MAX) this.queuedOnConsole.delete(this.queuedOnConsole.keys().next().value!);
  }

  private count(status: CommandState): void {
    this.transitions.set(status, (this.transitions.get(status) ?? 0) + 1);
  }

  /**
   * Who times a command out (docs/cluster.md, "Commands"): a queued one, every node that knows it — the
   * store decides, once; a sent or delivered one, only the node its agent is connected to, once the agent
   * has been there STATUS_GRACE_MS. Elsewhere it is dropped from the deadlines: connected() takes it up
   * wherever the agent arrives (before, the sending node kept it for a link it no longer held, and the
   * node the agent moved to never timed it: `sent` for ever).
   */
  private sweep(): void {
    const { wallMs, monoMs: now } = this.clock.now();
    let budget = SWEEP_MAX; // a mass expiry is spread over several sweeps, not one long turn
    const later: [string, number][] = [];
    const due: CommandRow[] = [];
    for (const [id, at] of this.deadlines) {
      if (at > now) continue;
      if (budget-- <= 0) break;
      const c = this.store.command(id);
      if (!c || isTerminal(c.status)) {
        this.untrack(id);
        continue;
      }
      const until = this.deadlineOf(c); // sent meanwhile (by another node too): the report wait applies
      if (until > now || this.timingOut.has(id)) later.push([id, Math.max(at, until)]);
      else if (c.status === 'queued') due.push(c);
      else if (this.linkOf(c.dongle) === undefined) this.untrack(id);
      else if (!this.hadTimeToReport(c.dongle, wallMs)) later.push([id, at]);
      else due.push(c);
    }
    // To the back of the line, so that the next sweeps reach what is behind them (hundreds of sent
    // commands waiting for their agent took every sweep, and a queued command behind them never timed out).
    for (const [id, at] of later) {
      this.deadlines.delete(id);
      this.deadlines.set(id, at);
    }
    if (due.length > 0) this.timeOut(due);
  }
}

function timeoutError(c: CommandRow): string {
  const secs = Math.round((Date.parse(c.expires_at) - Date.parse(c.created_at)) / 100) / 10;
  return c.status === 'queued'
    ? `not sent within its ${secs} s timeout: the dongle was offline or busy; it was never transmitted`
    : `no report from the agent within ${secs} s + ${STATUS_GRACE_MS / 1000} s of being connected (last status: ${c.status}); the agent may have lost its state: check the dongle's console`;
}
