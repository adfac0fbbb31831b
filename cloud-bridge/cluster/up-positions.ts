/**
 * UP positions handed from node to node (cluster mode). An agent resends, after every reconnect, each UP
 * batch it holds unacknowledged, and the node it reconnects to takes as new only those above the last
 * batch of that run anyone took. The store's copy of that position is written at most once a second,
 * so when the agent moves to another node (its link dropped, its node drained) the batches the old node
 * took in that last second — relayed already, their acks lost with the link — were relayed again:
 * transmitted twice on the peer's bus. So the node where an agent's link ends publishes the position it
 * reached (SUBJECTS.upPosition), and every node keeps the latest per dongle for its next welcome
 * (agent-server.ts takes the furthest of its own, the store's and this one).
 */
import type { Logger } from 'pino';
import { z } from 'zod';
import type { BatchPosition } from '../../core/uplink/batch-dedupe.js';
import { parseJson } from './console-wire.js';
import { SUBJECTS, type NatsLink } from './nats-connection.js';

const positionMessage = z
  .object({
    node: z.string().min(1).max(200),
    dongle: z.string().min(1).max(64),
    run: z.string().min(1).max(64),
    batch: z.number().int().min(0),
  })
  .strict();

export class UpPositions {
  /** The last position heard per dongle: only for registered dongles (a confused peer cannot grow it). */
  private readonly last = new Map<string, BatchPosition>();

  constructor(
    private readonly nats: NatsLink,
    private readonly node: string,
    private readonly isDongle: (dongle: string) => boolean,
    private readonly log: Logger,
  ) {
    nats.subscribe(SUBJECTS.upPosition, (m) => this.onPosition(m.data));
  }

  /** An agent's link ended here at `pos` (the last UP batch taken of its run). */
  linkEnded(dongle: string, pos: BatchPosition): void {
    if (pos.batch < 0 || !this.nats.connected) return;
    this.note(dongle, pos);
    try {
      this.nats.nc.publish(SUBJECTS.upPosition, JSON.stringify({ node: this.node, dongle, run: pos.stream, batch: pos.batch }));
    } catch (err) {
      this.nats.failed('UP position publish', err);
    }
  }

  /** The last batch of `run` another node said it took for the dongle, or -1. */
  of(dongle: string, run: string): number {
    const p = this.last.get(dongle);
    return p !== undefined && p.stream === run ? p.batch : -1;
  }

  forget(dongle: string): void {
    this.last.delete(dongle);
  }

  private note(dongle: string, pos: BatchPosition): void {
    const p = this.last.get(dongle);
    // Within a run batch numbers only grow; another run replaces it.
    if (p === undefined || p.stream !== pos.stream) this.last.set(dongle, { stream: pos.stream, batch: pos.batch });
    else if (pos.batch > p.batch) p.batch = pos.batch;
  }

  private onPosition(data: Uint8Array): void {
    const m = parseJson(data, positionMessage);
    if (m === undefined) {
      this.nats.stats.badMessages++;
      return;
    }
    if (m.node === this.node) return;
    if (!this.isDongle(m.dongle)) {
      this.log.debug({ dongle: m.dongle, node: m.node }, 'UP position of an unknown dongle ignored');
      return;
    }
    this.note(m.dongle, { stream: m.run, batch: m.batch });
  }
}
