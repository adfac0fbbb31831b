/**
 * The frames this agent handed to one interface's kernel transmit path that the kernel has not put on the
 * bus yet. A frame the kernel took cannot be asked back: on a bus nobody acknowledges, the controller
 * retries its frame for as long as that lasts and the queue (txqueuelen) waits behind it — all of it goes
 * on the bus whenever a node returns, however old. So the SocketCAN source (socketcan.ts) leaves at most
 * `max` frames of its own there at once (`--tx-kernel-frames`; the others wait in the agent's TxQueue,
 * where their deadline still applies), and learns here which of those it handed over have passed their
 * deadline still in the kernel (it then warns, or flushes the interface: `--tx-flush-stale`).
 *
 * "Put on the bus" is read from the interface's counters in sysfs: tx_packets, which most controller
 * drivers count when the controller reports the frame sent, i.e. acknowledged (sja1000, mcp251x, m_can,
 * flexcan, gs_usb; vcan at once), and tx_dropped (frames a driver discarded: never going out either).
 * Some count earlier — slcan when the serial line took the frame, peak_usb and mcba_usb when the USB write
 * completed — so frames in such an adapter's own buffer are not seen. Where the count cannot follow, the
 * count is started again from the counters (`reset`): the interface was seen down, or the kernel said its
 * link changed (a quick down and up empties the queue without a count), or carrier_changes moved (bus-off,
 * a restart). A controller in one-shot mode discards a frame nobody acknowledged without counting it in
 * either counter (only tx_errors, which also moves for every failed retransmission of a frame still
 * held): it cannot put a frame on the bus late, so it is not tracked (`oneShot`). Frames written by
 * other programs on the same interface count as ours when they go out — the counters are read again every
 * look while none of ours is held, so only what they send while ours wait can hide ours; with the agent as
 * the only writer (a gateway's relay) the count is exact.
 */
import { join } from 'node:path';
import { readNumber } from './socketcan-probe.js';

/** A frame in the kernel less than this long is not called stale: it was handed over just before its deadline, on a bus that is moving. */
export const KERNEL_STUCK_MS = 200;

/** Past this many frames held (`max` 0: no limit), the oldest are forgotten: what is tracked stays bounded whatever the kernel's queue. */
const MAX_TRACKED = 4096;

export class KernelHeldFrames {
  /** performance.now() of each write, oldest first, from `head`. */
  private at: number[] = [];
  /** Each write's deadline (performance.now() ms; Infinity: none), in the same order. */
  private notAfter: number[] = [];
  private head = 0;
  /** tx_packets + tx_dropped at the last read; null before the first. */
  private done: number | null = null;
  private carrierChanges: number | null = null;
  private readonly dir: string;
  /** After a flush, one frame at a time until the counters move again (the bus takes frames). */
  private probing = false;
  /** One-shot mode (from the controller's reading): not tracked. */
  private untracked = false;

  constructor(
    sysfsRoot: string,
    iface: string,
    /** Frames of this agent the kernel may hold at once; 0: no limit (the kernel's own queue). */
    readonly max: number,
  ) {
    this.dir = join(sysfsRoot, 'class', 'net', iface);
    this.read();
  }

  /** Frames handed over and not seen go out (as of the last refresh). */
  get count(): number {
    return this.at.length - this.head;
  }

  /** How long the oldest held frame has been in the kernel, in ms (0: none held). */
  oldestMs(now: number): number {
    return this.count > 0 ? now - this.at[this.head]! : 0;
  }

  /** The cap is reached, after reading the counters again (a sysfs read only when it seems reached). */
  full(): boolean {
    const max = this.limit;
    if (max === 0 || this.count < max) return false;
    this.refresh();
    return this.count >= this.limit;
  }

  /** The bound now: `max`, or 1 while probing after a flush; 0 (none) in one-shot mode. */
  get limit(): number {
    if (this.untracked || this.max === 0) return 0;
    return this.probing ? 1 : this.max;
  }

  /** A frame was handed to the kernel at `now`, to be on the bus by `notAfter` (Infinity: no deadline). */
  wrote(now: number, notAfter: number): void {
    if (this.untracked) return;
    if (this.count >= MAX_TRACKED) this.forget(1);
    this.at.push(now);
    this.notAfter.push(notAfter);
  }

  /** Reads the counters: the frames that went out (or were discarded) since the last read leave the count, oldest first. */
  refresh(): void {
    const before = this.done;
    const carrier = this.carrierChanges;
    this.read();
    if (this.carrierChanges !== carrier || before === null || this.done === null || this.done < before) {
      // Emptied by the kernel (bus-off, restart) or counters started over (a re-created interface).
      this.clear();
      return;
    }
    if (this.done > before) this.probing = false;
    this.forget(this.done - before);
  }

  /** Starts the count again from the counters as they are now: the kernel emptied its queue (down and up, a link change). */
  reset(): void {
    this.clear();
    this.read();
  }

  /** While none of ours is held: the counters read again, so other programs' frames sent meanwhile are not taken for ours later. */
  rebaseline(): void {
    if (this.count === 0) this.read();
  }

  /** After a flush: one frame at a time until the counters show the bus taking frames again. */
  probe(): void {
    this.probing = true;
  }

  /** The controller's one-shot mode, from its latest reading: a frame nobody acknowledges is discarded, not held. */
  set oneShot(on: boolean) {
    if (on === this.untracked) return;
    this.untracked = on;
    this.reset();
  }

  /** Held frames whose deadline has passed, handed over at least KERNEL_STUCK_MS ago. */
  stale(now: number): number {
    let n = 0;
    for (let i = this.head; i < this.at.length; i++) if (this.notAfter[i]! <= now && now - this.at[i]! >= KERNEL_STUCK_MS) n++;
    return n;
  }

  /** Forgets every held frame (the kernel's queue was emptied); returns how many there were. */
  clear(): number {
    const n = this.count;
    this.at = [];
    this.notAfter = [];
    this.head = 0;
    return n;
  }

  private forget(n: number): void {
    this.head = Math.min(this.at.length, this.head + n);
    if (this.head === this.at.length) {
      this.clear();
    } else if (this.head > 1024 && this.head * 2 > this.at.length) {
      this.at = this.at.slice(this.head);
      this.notAfter = this.notAfter.slice(this.head);
      this.head = 0;
    }
  }

  private read(): void {
    const stats = join(this.dir, 'statistics');
    const packets = readNumber(join(stats, 'tx_packets'), 10);
    const dropped = readNumber(join(stats, 'tx_dropped'), 10);
    this.done = packets === null ? null : packets + (dropped ?? 0);
    this.carrierChanges = readNumber(join(this.dir, 'carrier_changes'), 10);
  }
}
