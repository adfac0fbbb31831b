/**
 * Command lifecycle on the bridge: queued (accepted by the admin API) → sent (written to the agent's
 * socket) → delivered → succeeded | failed (reported by the agent through mirrored command_status
 * events) | timed_out (no final status before the command's timeout). Every status is stored with its
 * history and published on the dongle's console (and so its group's).
 *
 * A command for an offline dongle stays queued until the agent connects or the timeout passes. A sent
 * command is not resent after a reconnect: a duplicated send_frame is a frame on the bus twice, so
 * commands are at most once; the timeout then reports what never completed.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { CommandState, CommandStatusData } from '../core/console/events.js';
import { commandStatusData } from '../core/console/normalize.js';
import { isoNow } from '../core/console/time.js';
import type { BridgeMessage, CommandBody } from '../core/uplink/messages.js';
import type { BridgeConsoles } from './consoles.js';
import { isTerminal, type BridgeStore, type CommandRow } from './store.js';

export type CommandMessage = Extract<BridgeMessage, { t: 'command' }>;

/** An agent connection as commands see it. */
export interface CommandLink {
  readonly ready: boolean;
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

const RANK: Record<CommandState, number> = { queued: 0, sent: 1, delivered: 2, succeeded: 3, failed: 3, timed_out: 3 };
const SWEEP_MS = 200;

export class CommandCenter {
  /** Unfinished commands and when they time out (ms). */
  private readonly deadlines = new Map<string, number>();
  private readonly timer: NodeJS.Timeout;
  /** Status transitions since start, by status (metrics). */
  readonly transitions = new Map<CommandState, number>();

  constructor(
    private readonly store: BridgeStore,
    private readonly consoles: BridgeConsoles,
    private readonly linkOf: (dongle: string) => CommandLink | undefined,
    private readonly defaultTimeoutS: number,
    private readonly log: Logger,
  ) {
    this.timer = setInterval(() => this.sweep(), SWEEP_MS);
    this.timer.unref();
  }

  /** Picks up unfinished commands from an earlier run: their timeouts still apply. */
  load(): void {
    for (const c of this.store.unfinishedCommands()) this.deadlines.set(c.id, Date.parse(c.expires_at));
    this.sweep();
  }

  /** Accepts a validated command: stored and published as queued; sent right after if the agent is up. */
  create(dongle: string, body: CommandBody, timeoutS?: number): CommandRow {
    const now = Date.now();
    const row: CommandRow = {
      id: randomUUID(),
      dongle,
      type: body.type,
      body: JSON.stringify(body),
      status: 'queued',
      created_at: isoNow(),
      expires_at: new Date(now + (timeoutS ?? this.defaultTimeoutS) * 1000).toISOString(),
    };
    this.store.insertCommand(row);
    this.deadlines.set(row.id, Date.parse(row.expires_at));
    this.announce(row, 'queued');
    // After the 202 has gone out, so the response's "queued" is what was true when it was written.
    setImmediate(() => {
      const current = this.store.command(row.id);
      if (current?.status === 'queued') this.send(current);
    });
    return row;
  }

  /** The dongle's agent has just been welcomed: send what waits for it, oldest first. */
  connected(dongle: string): void {
    const now = Date.now();
    for (const c of this.store.queuedCommands(dongle)) {
      if (Date.parse(c.expires_at) <= now) continue; // the sweep times it out
      if (!this.send(c)) break;
    }
  }

  /** A command_status mirrored from the agent: moves the stored command forward, never backwards. */
  agentStatus(dongle: string, d: CommandStatusData): void {
    const c = this.store.command(d.command_id);
    if (!c || c.dongle !== dongle) {
      this.log.warn({ dongle, command_id: d.command_id, status: d.status }, 'agent reported a status for a command unknown to this dongle; ignored');
      return;
    }
    if (isTerminal(c.status) || RANK[d.status] <= RANK[c.status]) {
      this.log.debug({ dongle, command_id: c.id, from: c.status, to: d.status }, 'late or repeated command status; stored status kept');
      return;
    }
    this.store.setCommandStatus(c.id, d.status, isoNow(), d.error);
    this.count(d.status);
    if (isTerminal(d.status)) this.deadlines.delete(c.id);
  }

  /** The dongle was deleted: what it still had to do fails, with the reason. */
  dongleRemoved(dongle: string): void {
    for (const c of this.store.unfinishedCommands(dongle)) this.transition(c, 'failed', 'the dongle was removed from the bridge');
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

  stop(): void {
    clearInterval(this.timer);
  }

  private send(c: CommandRow): boolean {
    const link = this.linkOf(c.dongle);
    if (!link?.ready) return false;
    const ok = link.sendCommand({ t: 'command', command_id: c.id, expires_at: c.expires_at, command: JSON.parse(c.body) as CommandBody });
    if (ok) this.transition(c, 'sent');
    return ok;
  }

  private transition(c: CommandRow, status: CommandState, error?: string): void {
    this.store.setCommandStatus(c.id, status, isoNow(), error);
    this.count(status);
    if (isTerminal(status)) this.deadlines.delete(c.id);
    this.announce(c, status, error);
  }

  private announce(c: CommandRow, status: CommandState, error?: string): void {
    this.consoles.dongleEvent(c.dongle, { type: 'command_status', data: commandStatusData(c.id, c.type, status, error) });
    if (status === 'queued') this.count(status);
  }

  private count(status: CommandState): void {
    this.transitions.set(status, (this.transitions.get(status) ?? 0) + 1);
  }

  private sweep(): void {
    const now = Date.now();
    for (const [id, at] of this.deadlines) {
      if (at > now) continue;
      const c = this.store.command(id);
      if (!c || isTerminal(c.status)) {
        this.deadlines.delete(id);
        continue;
      }
      const secs = Math.round((Date.parse(c.expires_at) - Date.parse(c.created_at)) / 100) / 10;
      this.transition(c, 'timed_out', `no final status within ${secs} s (last status: ${c.status}); check the dongle's console`);
    }
  }
}
