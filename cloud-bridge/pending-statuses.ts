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
