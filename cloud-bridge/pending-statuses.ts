/**
 * Command status changes a store holds in memory while its database refuses them (a full disk,
 * PostgreSQL away), for both stores (store.ts, pg-store.ts): bounded, and what is dropped past the bound
 * chosen so that no command is sent twice — a `sent` lost would make the command read as `queued` again.
 */
import type { CommandState } from '../core/console/events.js';

export interface PendingStatus {
  id: string;
  status: CommandState;
  ts: string;
  error: string | null;
}

/**
 * Status changes held at most; beyond, the oldest are dropped (counted): first those a later change of
 * the same command supersedes (only a history row is lost: the command still ends in its latest status),
 * then the latest ones, `sent` last.
 */
export const MAX_PENDING_STATUSES = 10_000;

/**
 * The waiting status changes of one store (or of one batch of PgStore), oldest first, with an index by
 * command: a lookup (a command's status, its waiting history) reads only that command's entries. The
 * stores overlay these on every command row they return, so a scan of the whole list per row made a
 * dongle's lookups cost rows × waiting statuses (seconds at 1,000 waiting, on the event loop).
 */
export class PendingStatuses {
  private list: PendingStatus[] = [];
  private readonly byId = new Map<string, PendingStatus[]>();

  get length(): number {
    return this.list.length;
  }

  push(st: PendingStatus): void {
    this.list.push(st);
    const of = this.byId.get(st.id);
    if (of) of.push(st);
    else this.byId.set(st.id, [st]);
  }

  /** The newest waiting status of command `id`, if any. */
  latest(id: string): PendingStatus | undefined {
    return this.byId.get(id)?.at(-1);
  }

  /** Command `id`'s waiting statuses, oldest first. */
  of(id: string): readonly PendingStatus[] {
    return this.byId.get(id) ?? [];
  }

  /** Every waiting status, oldest first (to write them; lookups use latest()/of()). */
  entries(): readonly PendingStatus[] {
    return this.list;
  }

  /** The ids of the commands with waiting statuses. */
  ids(): IterableIterator<string> {
    return this.byId.keys();
  }

  /**
   * Trims to the bound (MAX_PENDING_STATUSES' rule: superseded changes first, then the oldest, `sent` ones
   * last); returns the command id of each status dropped (a store re-reads those commands' statuses). One
   * entry at a time from the oldest end, with the index telling a command's latest: past the bound a push
   * costs a short scan, not a copy and a map of the whole list (every status, during a long outage).
   */
  trim(): string[] {
    const dropped: string[] = [];
    while (this.list.length > MAX_PENDING_STATUSES) {
      // Superseded entries exist when the list holds more entries than commands.
      let i = this.list.length > this.byId.size ? this.list.findIndex((st) => this.byId.get(st.id)!.at(-1) !== st) : -1;
      if (i < 0) i = this.list.findIndex((st) => st.status !== 'sent');
      if (i < 0) i = 0;
      const st = this.list.splice(i, 1)[0]!;
      const of = this.byId.get(st.id)!;
      of.splice(of.indexOf(st), 1);
      if (of.length === 0) this.byId.delete(st.id);
      dropped.push(st.id);
    }
    return dropped;
  }
}
