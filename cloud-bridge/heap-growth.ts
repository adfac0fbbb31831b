/**
 * How far the bridge's V8 heap may grow past what is live before a full collection. By default V8 lets
 * the old generation reach up to ~4× its live size. At fleet shape the bridge promotes short-lived
 * garbage (DOWN batches held until the peer's coalesced ack, frames of a turn that outlive two young
 * collections), so at 200 dongles × 200 frames/s its heap stood at 100–115 MB with ~30 MB live and peak
 * RSS reached 260–320 MB. A growing factor of 2 keeps the heap near 50 MB: peak RSS ~180 MB (1.5: ~168 MB
 * but ~5 % more CPU than 2), for a few percent more CPU per relayed frame than V8's default (marking runs
 * more often, mostly on V8's helper threads). Measured side by side: docs/benchmarks.md, "Fourth round".
 *
 * Set at start with v8.setFlagsFromString because NODE_OPTIONS refuses this V8 flag; the growing factor is
 * read at every collection, so setting it before the bridge allocates is enough. A `--heap-growing-percent`
 * given to node by the operator wins.
 */
import { setFlagsFromString } from 'node:v8';

export const HEAP_GROWING_PERCENT = 100;

/** Applies HEAP_GROWING_PERCENT unless node was started with its own; returns the flag set, or undefined. */
export function limitHeapGrowth(execArgv: readonly string[] = process.execArgv): string | undefined {
  if (execArgv.some((a) => /^--heap[-_]growing[-_]percent\b/.test(a))) return undefined;
  const flag = `--heap-growing-percent=${HEAP_GROWING_PERCENT}`;
  setFlagsFromString(flag);
  return flag;
}
