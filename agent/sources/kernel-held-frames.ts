/**
 * The frames this agent handed to one interface's kernel transmit path that the kernel has not put on the
 * bus yet. A frame the kernel took cannot be asked back: on a bus nobody acknowledges, the controller
 * retries its frame for as long as that lasts and the queue (txqueuelen) waits behind it — all of it goes
 * on the bus whenever a node returns, however old. So the SocketCAN source (socketcan.ts) leaves at most
 * `max` frames of its own there at once (`--tx-kernel-frames`; the others wait in the agent's TxQueue,
 * where their deadline still applies), and learns here which of those it handed over have passed their
 * deadline still in the kernel (it then warns, or flushes the interface: `--tx-flush-stale`).
 *
 * "Put on the bus" is read from the interface's counters in sysfs: tx_packets, which a controller driver
 * counts when the controller reports the frame sent (acknowledged; vcan at once), and tx_dropped (frames
 * the driver discarded: never going out either). A change of carrier_changes (the interface went down,
 * bus-off, a restart) means the kernel emptied its queue: nothing of ours is held any more. Frames written
 * by other programs on the same interface count as ours when they go out, so with other writers the count
 * errs toward fewer held — never toward holding the agent's frames back for another program's; with the
 * agent as the only writer (a gateway's relay) it is exact.
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
    if (this.max === 0 || this.count < this.max) return false;
    this.refresh();
    return this.count >= this.max;
  }

  /** A frame was handed to the kernel at `now`, to be on the bus by `notAfter` (Infinity: no deadline). */
  wrote(now: number, notAfter: number): void {
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
      // Emptied by the kernel (down, bus-off, restart) or counters started over (a re-created interface).
      this.clear();
      return;
    }
    this.forget(this.done - before);
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
