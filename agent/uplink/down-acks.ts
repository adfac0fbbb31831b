/**
 * The agent's cumulative acks of the DOWN batches of one bridge connection, coalesced on the process's ack
 * clock (core/uplink/ack-clock.ts, the rule the bridge uses for UP batches): one `data_ack` per clock tick
 * instead of one per DOWN batch. An ack still means "every frame of every batch up to this one was
 * transmitted or counted as dropped": the Downlink gives only such a number (the batches done without a
 * gap below them, downlink.ts); the bridge holds the rest in its window meanwhile.
 */
import { PendingAcks, type Acker } from '../../core/uplink/ack-clock.js';

export class DownAcks implements Acker {
  private highest = -1;
  private closed = false;
  private readonly pending = new PendingAcks(this);

  constructor(private readonly send: (batch: number) => void) {}

  /** Every batch up to `upTo` is done (cumulative). Sent at the next tick unless this link has acked as much already. */
  ack(upTo: number): void {
    if (this.closed || upTo <= this.highest) return;
    this.highest = upTo;
    this.pending.add();
  }

  /** Sends the pending ack now (the clock's tick, a full count, or the link closing on purpose). */
  flushAck(): void {
    if (!this.pending.due || this.closed) return;
    this.pending.done();
    this.send(this.highest);
  }

  /** The connection is gone: acks of its batches can no longer be sent (the bridge resends them, and the dedupe acks those). */
  close(): void {
    this.closed = true;
    this.pending.done();
  }
}
