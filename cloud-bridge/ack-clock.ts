/**
 * One timer for every agent link's data acks. A link with batches to acknowledge joins the due set and
 * all due links are flushed together at the next tick. Per-link timers cost a setTimeout and a
 * clearTimeout per ack, and acking every batch at once costs a message per batch: at fleet shape
 * (thousands of agents each sending small batches) that was a large share of the bridge's CPU per frame.
 */
export interface Acker {
  flushAck(): void;
}

export class AckClock {
  private readonly due = new Set<Acker>();
  private timer: NodeJS.Timeout | undefined;

  constructor(readonly intervalMs: number) {}

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
