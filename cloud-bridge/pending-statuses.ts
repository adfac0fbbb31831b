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

/** Status changes held at most; beyond, the oldest are dropped (counted), `sent` ones last. */
export const MAX_PENDING_STATUSES = 10_000;

/** Trims `list` (oldest first) to the bound in place; returns how many were dropped. */
export function trimPendingStatuses(list: PendingStatus[]): number {
  let over = list.length - MAX_PENDING_STATUSES;
  if (over <= 0) return 0;
  const dropped = over;
  for (let i = 0; i < list.length && over > 0; ) {
    if (list[i]!.status !== 'sent') {
      list.splice(i, 1);
      over--;
    } else i++;
  }
  // Nothing but `sent` left to drop: the oldest of those, as before.
  if (over > 0) list.splice(0, over);
  return dropped;
}
