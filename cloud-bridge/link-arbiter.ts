/**
 * One live connection per dongle. When an agent says hello while another connection of the same dongle
 * is current, the arbiter decides:
 *  - the current one is healthy (heard from within TAKEOVER_HEARTBEATS ping intervals): the newcomer is
 *    refused with CLOSE.DUPLICATE_AGENT, counted, and announced on the dongle's console as a `log` event
 *    (`code: "duplicate_agent"`). Two gateways sharing a token must not take turns on the link (each
 *    takeover would mix two buses on the peer), so the one already connected keeps it;
 *  - the current one has missed its heartbeats (a half-open TCP connection, a frozen process): the
 *    newcomer takes over and the silent link is cut.
 */
import type { Logger } from 'pino';
import { logData } from '../core/console/normalize.js';
import type { BridgeConsoles } from './consoles.js';
import type { BridgeStats } from './metrics.js';

/** A connection silent for this many ping intervals has missed its heartbeats (≤ the 2.5 that cut it). */
export const TAKEOVER_HEARTBEATS = 2;
/** At most one duplicate_agent console event per dongle this often (the refusals are all counted). */
const ANNOUNCE_EVERY_MS = 5000;

export interface ArbitratedLink {
  /** How long the link has been silent (ms), now. */
  readonly silentMs: number;
}

export type Verdict = 'accept' | 'takeover' | 'refuse';

export class LinkArbiter {
  private readonly announced = new Map<string, { at: number; unannounced: number }>();

  constructor(
    private readonly pingMs: number,
    private readonly consoles: BridgeConsoles,
    private readonly stats: BridgeStats,
    private readonly log: Logger,
  ) {}

  /** Milliseconds of silence after which the current link may be taken over. */
  get takeoverAfterMs(): number {
    return this.pingMs * TAKEOVER_HEARTBEATS;
  }

  decide(dongle: string, current: ArbitratedLink | undefined, remote: string | undefined, now = Date.now()): Verdict {
    if (current === undefined) return 'accept';
    const silentMs = current.silentMs;
    if (silentMs >= this.takeoverAfterMs) {
      // Not counted yet: in a cluster the lease may still be lost to another node (then refused).
      this.log.info({ dongle, silent_ms: silentMs, remote }, 'the current agent link missed its heartbeats: a new connection of the dongle may take over');
      return 'takeover';
    }
    this.refused(dongle, remote, now);
    return 'refuse';
  }

  /** A takeover verdict was carried out: the newcomer is admitted and the silent link cut. */
  tookOver(dongle: string, remote: string | undefined): void {
    this.stats.takeovers++;
    this.log.warn({ dongle, remote }, 'a new connection of the dongle took over from a link that had missed its heartbeats');
  }

  forget(dongle: string): void {
    this.announced.delete(dongle);
  }

  /** The refusal itself is counted by the link (rejected_messages_total{reason="duplicate_agent"}). */
  private refused(dongle: string, remote: string | undefined, now: number): void {
    const a = this.announced.get(dongle);
    if (a !== undefined && now - a.at < ANNOUNCE_EVERY_MS) {
      a.unannounced++;
      return;
    }
    const before = a?.unannounced ?? 0;
    this.announced.set(dongle, { at: now, unannounced: 0 });
    const message = `a second agent connected with dongle "${dongle}"'s token while the first is connected and healthy; it was refused. Two gateways share one token: give each its own dongle id and token.`;
    this.log.warn({ dongle, remote, refused_since_last_notice: before }, message);
    this.consoles.dongleEvent(dongle, {
      type: 'log',
      data: logData('warn', message, 'duplicate_agent', { remote: remote ?? null, refused_since_last_notice: before }),
    });
  }
}
