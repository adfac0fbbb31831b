/**
 * Queues kept as an array and a head index (the items before the head are handled) — the agent's transmit
 * lanes and relayed batches, the bridge's backlog per group side. Handled items must be forgotten while
 * others still wait: a bus or a side that never drains would otherwise keep every item that ever went
 * through. One rule for all of them: the array is emptied once everything is handled, and cut once the
 * handled part is past `minHead` and most of the array (amortised: each item is moved at most once more).
 */
export function compactHead<T>(items: T[], head: number, minHead = 1024): number {
  if (head === 0) return 0;
  if (head === items.length) {
    items.length = 0;
    return 0;
  }
  if (head > minHead && head * 2 > items.length) {
    items.splice(0, head);
    return 0;
  }
  return head;
}
