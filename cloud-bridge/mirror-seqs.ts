/**
 * Where each dongle's mirrored console events stand on the bridge: the highest outbox seq stored, and
 * which outbox (agent state) those numbers belong to. An agent's outbox numbers its events 1, 2, 3 … for
 * as long as its state lives; a gateway whose state was wiped (a new gateway, a corrupt file) starts at 1
 * again with a new outbox identity, sent in `hello`. When the identity changes the dongle's numbering
 * starts afresh here, so the fresh agent's events are published instead of being taken for redeliveries.
 * Nothing is applied twice: a reconnect with the same identity keeps deduplicating by seq. An agent that
 * sends no identity (older versions) keeps the old behaviour.
 */
import type { Logger } from 'pino';
import { logData } from '../core/console/normalize.js';
import type { BridgeConsoles } from './consoles.js';
import type { StateStore } from './state-store.js';

export class MirrorSeqs {
  /** Highest seq stored per dongle (a cache of the store). */
  private readonly seqs = new Map<string, number>();

  constructor(
    private readonly store: StateStore,
    private readonly consoles: BridgeConsoles,
    private readonly log: Logger,
  ) {}

  /** An agent was accepted: the seq its welcome acknowledges, after a reset if its outbox is new. */
  start(dongle: string, outbox: string | undefined): number {
    const row = this.store.dongle(dongle);
    if (row === undefined) return 0;
    if (outbox !== undefined && row.outbox_id !== outbox) {
      this.store.setMirrorOrigin(dongle, outbox);
      this.seqs.set(dongle, 0);
      if (row.outbox_id !== null) {
        const message = `the agent's event outbox is new (its state was lost, or a new gateway took this dongle's token): mirrored events are numbered afresh from 1 (they were at ${row.event_seq})`;
        this.log.warn({ dongle, previous_outbox: row.outbox_id, outbox, previous_seq: row.event_seq }, message);
        this.consoles.dongleEvent(dongle, { type: 'log', data: logData('warn', message, 'mirror_reset', { previous_seq: row.event_seq }) });
      }
      return 0;
    }
    if (!this.seqs.has(dongle)) this.seqs.set(dongle, row.event_seq);
    return this.seqs.get(dongle)!;
  }

  /** The highest seq stored. */
  stored(dongle: string): number {
    return this.seqs.get(dongle) ?? 0;
  }

  /** Records `seq` as stored; false when it was already (a redelivery, never published twice). */
  accept(dongle: string, seq: number): boolean {
    if (seq <= this.stored(dongle)) return false;
    this.store.setEventSeq(dongle, seq);
    this.seqs.set(dongle, seq);
    return true;
  }

  forget(dongle: string): void {
    this.seqs.delete(dongle);
  }
}
