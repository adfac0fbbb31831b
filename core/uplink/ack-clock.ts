/**
 * Coalesced cumulative acks of numbered batches: one rule for both receiving ends of the data plane, the
 * bridge acking an agent's UP batches and an agent acking the bridge's DOWN batches. A link with batches
 * to acknowledge joins the due set of one shared clock, and all due links send their cumulative ack
 * together at its next tick (at most every ACK_INTERVAL_MS); a link with ACK_MAX_PENDING batches waiting
 * acks at once, so a sender's window never waits on the timer.
 *
 * Why: an ack per batch is a message and a socket write per batch on both ends. At fleet shape (an agent
 * batch every 10 ms) the bridge's acks at 100 ms cost ~6 % of its CPU, and the agents' DOWN acks, one per
 * DOWN batch, were a message read by the bridge for every message it sent (docs/benchmarks.md). A
 * per-link timer would cost a setTimeout and a clearTimeout per ack.
 *
 * What waiting costs: the sender holds the batches meanwhile (bounded on its side: a few hundred frames at
 * fleet rates, far below the bridge's DOWN window of 16,384 frames and the agent's --uplink-buffer-frames).
 * A batch acknowledged late is never applied twice: the receiver's BatchDedupe skips a resend. A link
 * closed on purpose sends its pending ack first.
 */
export const ACK_INTERVAL_MS = 250;
export const ACK_MAX_PENDING = 32;

export interface Acker {
  flushAck(): void;
}

export class AckClock {
  private readonly due = new Set<Acker>();
  private timer: NodeJS.Timeout | undefined;

  constructor(readonly intervalMs: number = ACK_INTERVAL_MS) {}

  schedule(a: Acker): void {
    this.due.add(a);
    this.timer ??= setTimeout(() => this.tick(), this.intervalMs);
  }

  cancel(a: Acker): void {
    this.due.delete(a);
  }

  private tick(): void {
    this.timer = undefined;
    const due = [...this.due];
    this.due.clear();
    for (const a of due) a.flushAck();
  }
}

/** One process, one clock: every link of the process acks on the same tick. */
export const processAckClock = new AckClock();

/** The batches one link has taken and not acknowledged yet. */
export class PendingAcks {
  private n = 0;

  constructor(
    private readonly owner: Acker,
    private readonly clock: AckClock = processAckClock,
  ) {}

  /** One more batch taken: acknowledged at the clock's next tick, or now once ACK_MAX_PENDING wait. */
  add(): void {
    if (++this.n >= ACK_MAX_PENDING) this.owner.flushAck();
    else this.clock.schedule(this.owner);
  }

  get due(): boolean {
    return this.n > 0;
  }

  /** The owner sent its cumulative ack (or gave up on it: the link is gone). */
  done(): void {
    this.n = 0;
    this.clock.cancel(this.owner);
  }

  /** The owner holds its ack for now (backpressure): asked again at the next tick. */
  later(): void {
    this.clock.schedule(this.owner);
  }
}
