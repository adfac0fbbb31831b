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

/** Trims `list` (oldest first) to the bound in place; returns how many were dropped. */
export function trimPendingStatuses(list: PendingStatus[]): number {
  let over = list.length - MAX_PENDING_STATUSES;
  if (over <= 0) return 0;
  const dropped = over;
  // A command's latest change decides its status: dropping it could leave a finished command unfinished
  // for ever (its deadline is gone, it holds a --max-queued-commands slot) or make a sent one read as
  // queued. The changes before it only write history rows.
  const latest = new Map<string, number>();
  for (let i = 0; i < list.length; i++) latest.set(list[i]!.id, i);
  const kept: PendingStatus[] = [];
  for (let i = 0; i < list.length; i++) {
    if (over > 0 && latest.get(list[i]!.id) !== i) over--;
    else kept.push(list[i]!);
  }
  // Still over (more commands than the bound with a change each): the oldest go, `sent` ones last.
  for (let i = 0; i < kept.length && over > 0; ) {
    if (kept[i]!.status !== 'sent') {
      kept.splice(i, 1);
      over--;
    } else i++;
  }
  if (over > 0) kept.splice(0, over);
  list.length = 0;
  for (const x of kept) list.push(x);
  return dropped;
}

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
   * Trims to the bound by trimPendingStatuses' rule; returns the command id of each status dropped (a
   * store re-reads those commands' statuses). Past the bound only: O(waiting), as the splice it replaces.
   */
  trim(): string[] {
    if (this.list.length <= MAX_PENDING_STATUSES) return [];
    const before = this.list.slice();
    trimPendingStatuses(this.list);
    // What is left is a subsequence of what was: what the walk does not meet again was dropped.
    const dropped: string[] = [];
    let j = 0;
    for (const st of before) {
      if (this.list[j] === st) {
        j++;
        continue;
      }
      dropped.push(st.id);
      const of = this.byId.get(st.id)!;
      of.splice(of.indexOf(st), 1);
      if (of.length === 0) this.byId.delete(st.id);
    }
    return dropped;
  }
}
