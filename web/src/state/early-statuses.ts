/**
 * command_status events that arrive before the POST that made their command has answered (a fast agent:
 * the statuses come through the stream first). Held only while a POST is on its way, and forgotten when
 * none is: the statuses of other people's commands must not fill the buffer, or the page's own early
 * status would find it full and be lost until the next one.
 */
import type { CommandStatusData } from '../events.js';

/** Command ids held at most while POSTs are on their way. */
const MAX_HELD = 50;

export class EarlyStatuses {
  private readonly held = new Map<string, CommandStatusData[]>();
  private posting = 0;

  /** A POST is sent; returns the function to call once it has answered (or failed). */
  posted(): () => void {
    this.posting++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      if (--this.posting === 0) this.held.clear();
    };
  }

  /** A status of a command the page does not track (yet): kept if a POST may be its. */
  offer(d: CommandStatusData): void {
    if (this.posting === 0) return;
    const list = this.held.get(d.command_id);
    if (list !== undefined) list.push(d);
    else if (this.held.size < MAX_HELD) this.held.set(d.command_id, [d]);
  }

  /** What arrived early for `commandId` (now tracked), in order; forgotten here. */
  take(commandId: string): CommandStatusData[] {
    const list = this.held.get(commandId) ?? [];
    this.held.delete(commandId);
    return list;
  }
}
