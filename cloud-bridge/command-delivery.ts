/**
 * Paced delivery of queued commands to a connected agent. A dongle may have up to
 * --max-queued-commands waiting (e.g. queued while it was offline); sending them all at once would block
 * the bridge's event loop, flood the agent's transmit queue and its outbox with statuses, and let the
 * bridge time out commands the agent did carry out. So per dongle at most IN_FLIGHT_WINDOW commands are
 * sent and not yet finished on the current connection; each final status frees a slot, and every send
 * round runs in its own event-loop turn (setImmediate), so HTTP and the relay are served in between.
 */
import type { CommandRow } from './store.js';

/** Commands sent to one agent connection and not finished yet. */
export const IN_FLIGHT_WINDOW = 32;

export interface DeliveryPort {
  /** The oldest `limit` queued commands of the dongle. */
  queued(dongle: string, limit: number): CommandRow[];
  /** Sends one command (queued → sent); 'skipped' when it finished instead (expired); 'blocked' when the link cannot take it now. */
  send(c: CommandRow): 'sent' | 'skipped' | 'blocked';
}

export class CommandDelivery {
  /** Per dongle: ids sent on the current connection and not finished. */
  private readonly inFlight = new Map<string, Set<string>>();
  private readonly scheduled = new Set<string>();
  private stopped = false;

  constructor(private readonly port: DeliveryPort) {}

  /** A new connection of the dongle: its window starts empty (statuses of earlier sends may still come). */
  connected(dongle: string): void {
    this.inFlight.set(dongle, new Set());
    this.kick(dongle);
  }

  /** Something may be sendable now (a command was queued, or a slot freed): one round, next turn. */
  kick(dongle: string): void {
    if (this.stopped || this.scheduled.has(dongle)) return;
    this.scheduled.add(dongle);
    setImmediate(() => {
      this.scheduled.delete(dongle);
      this.round(dongle);
    });
  }

  /** A command reached a final status: its slot is free. */
  finished(dongle: string, id: string): void {
    if (this.inFlight.get(dongle)?.delete(id)) this.kick(dongle);
  }

  forget(dongle: string): void {
    this.inFlight.delete(dongle);
  }

  inFlightCount(dongle: string): number {
    return this.inFlight.get(dongle)?.size ?? 0;
  }

  stop(): void {
    this.stopped = true;
  }

  private round(dongle: string): void {
    if (this.stopped) return;
    let window = this.inFlight.get(dongle);
    if (window === undefined) this.inFlight.set(dongle, (window = new Set()));
    const room = IN_FLIGHT_WINDOW - window.size;
    if (room <= 0) return;
    for (const c of this.port.queued(dongle, room)) {
      const r = this.port.send(c);
      if (r === 'blocked') return; // not connected (or not writable): connected() starts again
      if (r === 'sent') window.add(c.id);
      else this.kick(dongle); // the skipped one left room for the next
    }
  }
}
