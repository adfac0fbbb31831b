/**
 * Frames waiting to be transmitted on the local bus (relayed from the group peer, or sent by a command),
 * in order. A full kernel transmit queue (ENOBUFS/EAGAIN: the source answers `busy`) is retried for up
 * to `retryMs`, holding back the frames behind it so order is kept; then the frame is dropped and counted.
 * Never fatal. Bounded: past `maxQueued` new frames are refused and counted. A frame may carry a
 * deadline (relayed frames: the end-to-end age rule; commands: their expiry); it is checked at the moment
 * the frame would be handed to the kernel, on every attempt, and a frame past it is dropped and counted,
 * never transmitted.
 */
import type { CanFrame } from '../core/can/frame.js';
import type { SendResult } from './sources/source.js';

export type TxDone = (r: SendResult) => void;

interface Item {
  frame: CanFrame;
  done: TxDone | undefined;
  firstTryMs: number;
  /**
   * Monotonic ms (performance.now()) at or after which the frame must not be transmitted: given on the
   * wall clock, turned monotonic when queued, so a wall clock stepped back meanwhile cannot extend it.
   */
  notAfter: number;
  /** Why it is refused once past it. */
  late: string;
}

/** The refusal of a relayed frame past its deadline (the end-to-end age rule). */
const RELAY_TOO_OLD = 'older than the relay age limit (--relay-max-age-ms): not transmitted';

export class TxQueue {
  private readonly q: Item[] = [];
  private head = 0;
  private timer: NodeJS.Timeout | undefined;
  readonly stats = { sent: 0, failed: 0, droppedBusy: 0, droppedFull: 0, droppedTooOld: 0, retries: 0 };

  constructor(
    private readonly transmit: (f: CanFrame) => SendResult,
    private readonly opts: { retryMs: number; maxQueued: number; onFailure?: (f: CanFrame, error: string) => void },
  ) {}

  get length(): number {
    return this.q.length - this.head;
  }

  /** `notAfterMs`: the wall-clock deadline (Date.now() ms); `late`: the error given when it passes first. */
  enqueue(frame: CanFrame, done?: TxDone, notAfterMs = Infinity, late = RELAY_TOO_OLD): void {
    if (this.length >= this.opts.maxQueued) {
      this.stats.droppedFull++;
      done?.({ ok: false, busy: true, error: `transmit queue full (${this.opts.maxQueued} frames waiting)` });
      return;
    }
    const notAfter = Number.isFinite(notAfterMs) ? performance.now() + (notAfterMs - Date.now()) : notAfterMs;
    this.q.push({ frame, done, firstTryMs: 0, notAfter, late });
    if (this.timer === undefined) this.drain();
  }

  private drain(): void {
    this.timer = undefined;
    while (this.head < this.q.length) {
      const item = this.q[this.head]!;
      if (item.notAfter !== Infinity && performance.now() >= item.notAfter) {
        this.stats.droppedTooOld++;
        this.head++;
        item.done?.({ ok: false, busy: false, error: item.late });
        continue;
      }
      const r = this.transmit(item.frame);
      if (!r.ok && r.busy) {
        const now = Date.now();
        if (item.firstTryMs === 0) item.firstTryMs = now;
        if (now - item.firstTryMs < this.opts.retryMs) {
          this.stats.retries++;
          this.compact();
          this.timer = setTimeout(() => this.drain(), 1);
          return;
        }
        this.stats.droppedBusy++;
        this.opts.onFailure?.(item.frame, `transmit queue of ${item.frame.bus} stayed full for ${this.opts.retryMs} ms: ${r.error}`);
      } else if (!r.ok) {
        this.stats.failed++;
        this.opts.onFailure?.(item.frame, r.error);
      } else this.stats.sent++;
      this.head++;
      item.done?.(r);
    }
    this.q.length = 0;
    this.head = 0;
  }

  /**
   * Forgets the items already handled while others wait. Without it, a bus that stays busy (a peer
   * relaying onto a full bus, a flat-out socketcand client) never lets the queue empty, and every frame
   * ever queued would stay in memory. Amortised: only once the handled part is most of the array.
   */
  private compact(): void {
    if (this.head > 1024 && this.head * 2 > this.q.length) {
      this.q.splice(0, this.head);
      this.head = 0;
    }
  }

  /** Items held in memory, handled ones not yet forgotten included (tests: the queue's memory stays bounded). */
  get heldItems(): number {
    return this.q.length;
  }

  /**
   * Stops transmitting. Returns how many frames were still waiting: not transmitted, and not reported to
   * their senders (relayed batches stay unacknowledged, so the bridge resends them to the next run, where
   * the age rule decides); the caller says so in its last log lines.
   */
  stop(): number {
    clearTimeout(this.timer);
    this.timer = undefined;
    return this.length;
  }
}
