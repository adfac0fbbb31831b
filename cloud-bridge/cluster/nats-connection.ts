/**
 * The bridge node's connection to NATS (cluster mode): connects to the --cluster servers, reconnects
 * forever on its own, and keeps what /healthz and /metrics say about it (reachable or not, disconnects,
 * messages that failed validation). Subjects are named here, in one place.
 */
import { connect, Events, type Msg, type NatsConnection, type Subscription } from 'nats';
import type { Logger } from 'pino';
import { EXIT_USAGE, StartupError } from '../../core/cli/exit-codes.js';
import { RateLimitedLog } from '../../core/log/rate-limited-log.js';

/** Every subject the cluster uses; dongle ids go in hex (an id may contain "."; NATS splits subjects on it). */
export const SUBJECTS = {
  /** Lease announcements and releases (ownership.ts), to every node. */
  lease: 'canrelay.lease',
  /** DOWN batches for dongles connected to `node`, bundled per sending node and turn (down-bundle.ts). */
  down: (node: string): string => `canrelay.down.${hexToken(node)}`,
  /** "Do you still hold this dongle?", asked of the lease holder before judging its lease by age. */
  holds: (node: string): string => `canrelay.holds.${hexToken(node)}`,
  /** DOWN acks of the dongles connected to one node (cumulative, at most one message every 20 ms), to every node. */
  ack: 'canrelay.ack',
  /** "Resend from the start": a receiving node saw a hole in a remote side's batch stream. */
  resend: 'canrelay.resend',
  /** A node reconnected to NATS: what others sent it meanwhile was dropped (no subscriber), so they resend. */
  back: 'canrelay.node_back',
  /** A dongle's agent (re)connected to `node`: batches sent to its previous link there may be lost, so senders resend. */
  relinked: 'canrelay.relinked',
  /** A recording list or chunk asked of the node that holds the dongle's link (remote-recordings.ts), request-reply. */
  recordings: (node: string): string => `canrelay.recordings.${hexToken(node)}`,
  /** The last UP batch a node took of an agent's run when its link there ended (up-positions.ts), to every node. */
  upPosition: 'canrelay.up_position',
  /** A console stream's events, numbered by the node that numbers it (console-sync.ts), to the nodes that mirror it. */
  consoleEvents: (stream: string): string => `canrelay.console.ev.${hexToken(stream)}`,
  /** Events made on a node that does not number their stream, to the node that does. */
  consoleIn: (node: string): string => `canrelay.console.in.${hexToken(node)}`,
  /** "Your stream's history after id n", asked of the numbering node by a node starting (or catching up) a mirror. */
  consoleHistory: (node: string): string => `canrelay.console.history.${hexToken(node)}`,
  /** "This node still mirrors the stream", to its numbering node (numbered events are published only while someone does). */
  consoleInterest: (node: string): string => `canrelay.console.interest.${hexToken(node)}`,
  /** The streams a node numbers that someone reads (there or in a mirror): other nodes forward their frames only for these. */
  consoleWatched: 'canrelay.console.watched',
} as const;

export const hexToken = (s: string): string => Buffer.from(s, 'utf8').toString('hex');
export const fromHexToken = (t: string): string => Buffer.from(t, 'hex').toString('utf8');

export interface NatsStats {
  connected: boolean;
  disconnects: number;
  reconnects: number;
  /** Cluster messages that failed validation and were ignored. */
  badMessages: number;
  /** Cluster operations (lease reads and writes, publishes, a message handler that threw) that failed, e.g. while NATS was away. */
  failedOps: number;
}

export class NatsLink {
  /** Called synchronously when NATS is back, before anything else can publish (remote-sides.ts resends). */
  private readonly reconnected: (() => void)[] = [];
  readonly stats: NatsStats = { connected: false, disconnects: 0, reconnects: 0, badMessages: 0, failedOps: 0 };
  private queued: { subject: string; data: Uint8Array | string; what: string }[] = [];
  private turnEnd: (() => void)[] = [];
  private scheduled = false;
  private readonly handlerErrors: RateLimitedLog;

  private constructor(
    readonly nc: NatsConnection,
    private readonly log: Logger,
  ) {
    this.stats.connected = true;
    this.handlerErrors = new RateLimitedLog(log, 60_000);
    void this.watch();
  }

  /** Connects (the first connection must succeed: a wrong --cluster URL is said at start, not hidden). */
  static async open(servers: string[], node: string, log: Logger, auth?: { user: string; pass: string }): Promise<NatsLink> {
    let nc: NatsConnection;
    try {
      nc = await connect({
        servers,
        ...auth,
        name: `canrelay-bridge:${node}`,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
        reconnectJitter: 250,
        pingInterval: 2000,
        maxPingOut: 2,
      });
    } catch (err) {
      const why = (err as Error).message;
      // A refused user or password is configuration: restarting cannot cure it (exit 2 stops systemd's retries).
      if (/authoriz|authentic/i.test(why))
        throw new StartupError(
          `cannot reach NATS at ${servers.join(', ')}: ${why}; check the NATS user in the --cluster URL (nats://user@host:4222) and its password (CANRELAY_NATS_PASSWORD or --cluster-password)`,
          EXIT_USAGE,
        );
      throw new Error(`cannot reach NATS at ${servers.join(', ')}: ${why}; start nats-server (with -js) or fix --cluster`);
    }
    return new NatsLink(nc, log);
  }

  /**
   * Publishes at the end of this event-loop turn (setImmediate), with everything else queued in it. nats.js
   * writes its buffer to the socket on a microtask after the first publish, and each agent's message is
   * handled in a callback of its own: published at once, every DOWN ack was a socket write (12.7 % of a
   * node's CPU with 200 dongles at 200 frames/s; make bench-cluster). Queued in order; a publish that fails
   * is counted, and the relay resends what was not acknowledged.
   */
  publishSoon(subject: string, data: Uint8Array | string, what = 'publish'): void {
    this.queued.push({ subject, data, what });
    this.schedule();
  }

  /**
   * Subscribes with `handle` guarded: every subscription of the cluster goes through here. A handler that
   * throws (a bug) costs its message, never the connection: nats.js calls subscription callbacks from its
   * socket reader, and a throw there ends the reader ("reader closed" on stdout) — nothing more is read,
   * the connection is dropped at the next ping-out, and every remote side and console mirror starts over.
   * Counted in failedOps, logged with the subject (error, at most once a minute).
   */
  subscribe(subject: string, handle: (m: Msg) => void): Subscription {
    return this.nc.subscribe(subject, {
      callback: (err, m) => {
        if (err) return this.failed(`subscription ${subject}`, err);
        this.guarded('a message handler', () => handle(m), { subject });
      },
    });
  }

  /**
   * Runs `f`; a throw (a bug) is counted in failedOps and logged (error, at most once a minute), never
   * fatal: for subscription handlers, reconnect callbacks and the cluster's timers — in a timer a throw
   * ended the bridge, in the status loop it ended the loop (no later reconnect was ever acted on).
   */
  guarded(what: string, f: () => void, details: Record<string, string> = {}): void {
    try {
      f();
    } catch (e) {
      this.stats.failedOps++;
      this.handlerErrors.write(
        'error',
        { what, ...details, err: e },
        'internal error: cluster work failed (a bug: please report it with this line); it is skipped, the bridge goes on',
      );
    }
  }

  /** Calls `f` once at the end of this turn, before the queued publishes leave (it may queue more). */
  atTurnEnd(f: () => void): void {
    this.turnEnd.push(f);
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.flushQueued());
  }

  private flushQueued(): void {
    // Cleared first: a callback that throws (or one that schedules more) must not leave every later publish
    // waiting for a flush that never comes; a throw is counted, never fatal.
    this.scheduled = false;
    const fs = this.turnEnd;
    this.turnEnd = [];
    for (const f of fs) {
      try {
        f();
      } catch (err) {
        this.failed('end-of-turn work', err);
      }
    }
    const q = this.queued;
    this.queued = [];
    for (const m of q) {
      try {
        this.nc.publish(m.subject, m.data);
      } catch (err) {
        this.failed(m.what, err);
      }
    }
  }

  onReconnect(f: () => void): void {
    this.reconnected.push(f);
  }

  get connected(): boolean {
    return this.stats.connected && !this.nc.isClosed();
  }

  failed(what: string, err: unknown): void {
    this.stats.failedOps++;
    this.log.debug({ err: (err as Error).message }, `cluster: ${what} failed`);
  }

  private async watch(): Promise<void> {
    for await (const s of this.nc.status()) {
      if (s.type === Events.Disconnect) {
        if (this.stats.connected) this.log.warn({ server: s.data }, 'NATS unreachable: cross-node relay, consoles and leases wait; local links go on; reconnecting');
        this.stats.connected = false;
        this.stats.disconnects++;
      } else if (s.type === Events.Reconnect) {
        this.stats.connected = true;
        this.stats.reconnects++;
        this.log.info({ server: s.data }, 'NATS reachable again');
        for (const f of this.reconnected) this.guarded('work after a NATS reconnect', f);
      }
    }
  }

  /**
   * Drains (what this turn queued, a stopping relay's last batches, leaves with it), for at most
   * `drainMs`, then closes. A frozen nats-server (sockets open, no answers) never ends a drain, and one
   * that is gone ends it with the connection still reconnecting: close() ends the connection either way,
   * so the stop that awaits this goes on.
   */
  async close(drainMs = DRAIN_MS): Promise<void> {
    this.flushQueued();
    this.stats.connected = false;
    const drained = await within(
      this.nc.drain().then(
        () => true,
        () => false,
      ),
      drainMs,
      false,
    );
    if (!drained && !this.nc.isClosed())
      this.log.warn({ drain_ms: drainMs }, 'NATS did not confirm the last publishes of this node (unreachable or not answering); closing the connection');
    await within(
      this.nc.close().catch(() => {}),
      drainMs,
      undefined,
    );
  }
}

/** How long a stop waits for NATS to confirm the last publishes (the bridge's hard stop is 4.5 s). */
const DRAIN_MS = 1000;

/** `p`'s value, or `otherwise` once `ms` have passed. */
function within<T>(p: Promise<T>, ms: number, otherwise: T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<T>((resolve) => {
    timer = setTimeout(() => resolve(otherwise), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}
