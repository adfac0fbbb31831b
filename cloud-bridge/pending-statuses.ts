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
   * over the bound (a push past it, the steady state of a long outage): that one entry, found from the
   * oldest end with the index telling a command's latest — a short scan, not a copy of the list. More (a
   * failed batch put back in front of the statuses that came meanwhile: up to twice the bound): one pass
   * over the list, as one at a time would scan it once per entry dropped (seconds at 10,000).
   */
  trim(): string[] {
    const over = this.list.length - MAX_PENDING_STATUSES;
    if (over <= 0) return [];
    return over === 1 ? this.dropOne() : this.dropMany(over);
  }

  private isLatest(st: PendingStatus): boolean {
    return this.byId.get(st.id)!.at(-1) === st;
  }

  private dropOne(): string[] {
    // Superseded entries exist when the list holds more entries than commands.
    let i = this.list.length > this.byId.size ? this.list.findIndex((st) => !this.isLatest(st)) : -1;
    if (i < 0) i = this.list.findIndex((st) => st.status !== 'sent');
    if (i < 0) i = 0;
    const st = this.list.splice(i, 1)[0]!;
    const of = this.byId.get(st.id)!;
    of.splice(of.indexOf(st), 1);
    if (of.length === 0) this.byId.delete(st.id);
    return [st.id];
  }

  private dropMany(over: number): string[] {
    const dropped: string[] = [];
    let kept: PendingStatus[] = [];
    // Dropping a superseded entry changes no command's latest: isLatest holds through the pass.
    for (const st of this.list) {
      if (over > 0 && !this.isLatest(st)) {
        over--;
        dropped.push(st.id);
      } else kept.push(st);
    }
    if (over > 0) {
      const rest: PendingStatus[] = [];
      for (const st of kept) {
        if (over > 0 && st.status !== 'sent') {
          over--;
          dropped.push(st.id);
        } else rest.push(st);
      }
      kept = rest;
    }
    if (over > 0) {
      for (const st of kept.slice(0, over)) dropped.push(st.id);
      kept = kept.slice(over);
    }
    this.list = kept;
    this.byId.clear();
    for (const st of kept) {
      const of = this.byId.get(st.id);
      if (of) of.push(st);
      else this.byId.set(st.id, [st]);
    }
    return dropped;
  }
}
