/**
 * Console events leaving this node for NATS, bounded: they are queued (O(1), called from the relay and
 * uplink paths, which must never wait for NATS) and published on the next event-loop turn. A full queue or
 * an unreachable NATS drops the event, counted by reason: a mirror that misses it sees a hole in the ids
 * and starts again there, so its readers get a stream_reset, never a silent gap.
 */
import type { NatsLink } from './nats-connection.js';

/** Events waiting for the next turn at most (about 2 × a default console's rate × 50 streams per turn). */
export const OUTBOX_MAX = 20_000;

export type OutboxDrop = 'queue_full' | 'nats_down';

export class ConsoleOutbox {
  private queue: { subject: string; payload: string }[] = [];
  private scheduled = false;
  readonly dropped: Record<OutboxDrop, number> = { queue_full: 0, nats_down: 0 };
  sent = 0;

  constructor(private readonly nats: NatsLink) {}

  push(subject: string, payload: string): void {
    if (!this.nats.connected) {
      this.dropped.nats_down++;
      return;
    }
    if (this.queue.length >= OUTBOX_MAX) {
      this.dropped.queue_full++;
      return;
    }
    this.queue.push({ subject, payload });
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.scheduled = false;
    const q = this.queue;
    this.queue = [];
    for (const m of q) {
      if (!this.nats.connected) {
        this.dropped.nats_down++;
        continue;
      }
      try {
        this.nats.nc.publish(m.subject, m.payload);
        this.sent++;
      } catch (err) {
        this.dropped.nats_down++;
        this.nats.failed('console publish', err);
      }
    }
  }
}
