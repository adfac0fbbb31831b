/**
 * A real controller's transmit queue that fills, inside the guest. The emulated SJA1000 completes a
 * transmission inside the register write that starts it (qemu's can_sja1000.c sets "transmission complete"
 * and raises the interrupt before the write returns), so the driver's queue is awake again before the next
 * frame comes: on an idle machine its 10-frame queue never fills (2000/2000 relayed, 0 ENOBUFS; 10,000
 * socketcand sends, 0 ENOBUFS, even with the guest loaded). A token-bucket qdisc paces it like a real bus
 * (250 frames/s of 16-byte CAN skbs: 32 kbit/s of skb bytes, the frame rate of a ~30 kbit/s bus) with a
 * limit of 4 frames (64 bytes) and a 4-frame burst: a sender then meets ENOBUFS from the same kernel path
 * as on a real bus (can_send → dev_queue_xmit → the qdisc refuses → ENOBUFS). 4, not the driver's 10: the
 * agent leaves at most --tx-kernel-frames (8) of its frames in the kernel, so with 10 the kernel's queue
 * would never refuse it; with 4 queued and 1 in the controller it refuses first.
 * Used by bus-health-checks.ts (relay onto can2) and failure-checks.ts (socketcand sends on can2).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

const PACED = ['tbf', 'rate', '32kbit', 'burst', '64', 'limit', '64'];

function tc(args: string[]): string {
  const r = spawnSync('tc', args, { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`tc ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

/** Puts the paced queue in front of `dev`'s driver (a fresh one: its counters start at 0). */
export function pace(dev: string): void {
  tc(['qdisc', 'replace', 'dev', dev, 'root', ...PACED]);
}

/** Back to the interface's default queue. */
export function unpace(dev: string): void {
  spawnSync('tc', ['qdisc', 'del', 'dev', dev, 'root']);
}

/**
 * A queue that holds every frame for `ms` before the driver sees it: a bus nobody acknowledges, as the
 * sender sees it (the frames wait in the kernel, tx_packets does not move), which the emulated controller
 * cannot be (it never leaves a frame unacknowledged: docs/bus-health.md). After `ms` they go out — as
 * stale frames would when a node wakes.
 */
export function hold(dev: string, ms: number): void {
  tc(['qdisc', 'replace', 'dev', dev, 'root', 'netem', 'delay', `${ms}ms`, 'limit', '1000']);
}

/** The paced queue's counters (`tc -s qdisc`): frames handed to the driver, and frames refused (each an ENOBUFS to the sender). */
export function qdiscCounts(dev: string): { sent: number; dropped: number } {
  const out = tc(['-s', 'qdisc', 'show', 'dev', dev]);
  const m = /Sent \d+ bytes (\d+) pkt \(dropped (\d+),/.exec(out);
  assert.ok(m, `tc -s qdisc show dev ${dev}: ${out}`);
  return { sent: Number(m[1]), dropped: Number(m[2]) };
}
