/**
 * The data plane, agent side: every received frame, unsampled, in binary UP batches.
 *
 * Frames get a per-bus sequence number (checked end to end at the receiving side) and are sealed into
 * batches on the next event-loop turn (or at 1024 frames), so batching adds no timer latency — unless
 * --uplink-batch-ms asks frames to wait up to that long for company: on a quiet bus a batch per turn is a
 * message per frame, and messages are what the bridge and the gateway pay for (docs/benchmarks.md,
 * "Fourth round": 2 frames per message ~18 µs of bridge CPU per frame, 20 frames ~5.5 µs). Batches are
 * held in the shared SendWindow (core/uplink/send-window.ts) until the bridge acknowledges them; after a
 * reconnect every unacknowledged batch is sent again with its original number, and the bridge drops what
 * it already had. Two bounds, both counted, never silent: at most `maxBufferedFrames` frames wait (the
 * oldest unsent batches go first; sent ones only past twice the bound), and frames received more than
 * `maxAgeMs` ago are not sent after an outage (a stale frame transmitted on the peer's bus is dangerous).
 */
import type { CanFrame } from '../../core/can/frame.js';
import { frameTimeCheck, type ClockFix } from '../../core/uplink/clock.js';
import { encodeBatch, KIND_UP, type SequencedFrame } from '../../core/uplink/frame-codec.js';
import { SendWindow } from '../../core/uplink/send-window.js';
import type { FrameUplink } from '../frame-router.js';

export interface UplinkTransport {
  send(data: Buffer): void;
  /** Bytes queued in the socket and not yet sent. */
  bufferedAmount(): number;
  /** This agent's clock offset to the bridge, stamped on every batch; nothing is sent while unknown. */
  clock(): ClockFix | undefined;
}

export interface UploaderOptions {
  maxBufferedFrames: number;
  maxAgeMs: number;
  /** Stop handing batches to the socket while it holds more than this (resumed by `flush()`). */
  maxSocketBytes?: number;
  /** Longest a frame waits for others before its batch is sent (ms); 0: at the end of the event-loop turn. */
  batchMs?: number;
  now?: () => number;
}

const MAX_BATCH_FRAMES = 1024;

export class FrameUploader implements FrameUplink {
  private readonly seqByBus = new Map<string, number>();
  private current: SequencedFrame[] = [];
  /** Frames receive time (their tsUs) is what ages them. */
  private readonly window = new SendWindow<SequencedFrame>((sf) => sf.frame.tsUs / 1000);
  private nextBatch = 1;
  private transport: UplinkTransport | undefined;
  private flushScheduled = false;
  private flushTimer: NodeJS.Timeout | undefined;
  private readonly now: () => number;
  readonly stats = { framesQueued: 0, framesSent: 0, framesAcked: 0, batchesResent: 0, droppedBufferFull: 0, droppedTooOld: 0, droppedBadTime: 0 };

  constructor(private readonly opts: UploaderOptions) {
    this.now = opts.now ?? Date.now;
  }

  get buffered(): number {
    return this.window.size + this.current.length;
  }

  /** Hot path. */
  push(frame: CanFrame): void {
    const seq = ((this.seqByBus.get(frame.bus) ?? 0) + 1) >>> 0;
    this.seqByBus.set(frame.bus, seq);
    this.current.push({ frame, seq });
    this.stats.framesQueued++;
    if (this.current.length >= MAX_BATCH_FRAMES) {
      this.seal();
      // A full batch does not wait for the batch window.
      if (this.flushTimer !== undefined) this.flushAfter(0);
    }
    // The bound holds at every frame, not only at the next flush: a frame past it makes room at once.
    if (this.window.size + this.current.length > this.opts.maxBufferedFrames) this.bound();
    if (!this.flushScheduled) this.flushAfter(this.opts.batchMs ?? 0);
  }

  /** Flushes after `ms` (0: at the end of this event-loop turn), replacing a flush already scheduled. */
  private flushAfter(ms: number): void {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    this.flushScheduled = true;
    const run = (): void => {
      this.flushScheduled = false;
      this.flushTimer = undefined;
      this.flush();
    };
    if (ms > 0) this.flushTimer = setTimeout(run, ms);
    else setImmediate(run);
  }

  /**
   * The link is up and the bridge has welcomed us: resend what it has not acknowledged. The bridge acks
   * what it already has of this run before its welcome, so what is still held now surely never arrived:
   * from here on it may age out or be trimmed (and counted as dropped).
   */
  attach(transport: UplinkTransport): void {
    this.transport = transport;
    this.window.settle();
    this.flush();
  }

  detach(): void {
    this.transport = undefined;
    // Without a link nothing is in flight: every batch waits to be (re)sent, oldest dropped first. Batches
    // written to the lost link may have reached the bridge: they are kept (not aged, not trimmed below the
    // hard bound) until the next welcome says, else frames that arrived would be counted as dropped.
    this.stats.batchesResent += this.window.resendAll(true);
  }

  /** The bridge has taken every batch up to `batch`. */
  ack(batch: number): void {
    this.stats.framesAcked += this.window.ack(batch);
  }

  flush(): void {
    this.bound();
    // Only unsent batches age out here: once sent, the bridge and the receiving agent check the age.
    this.stats.droppedTooOld += this.window.expire(this.now() - this.opts.maxAgeMs);
    const t = this.transport;
    if (!t || !this.window.hasUnsent) return;
    const clock = t.clock();
    if (!clock) return;
    const maxSocket = this.opts.maxSocketBytes ?? 8 * 1024 * 1024;
    const timeOk = frameTimeCheck(clock, this.now(), clock);
    for (const b of this.window.unsent()) {
      if (t.bufferedAmount() > maxSocket) break;
      // A frame time the bridge would refuse (a source's broken clock) would wedge the link: resent and
      // refused after every reconnect. Left out here instead, and counted.
      if (!b.items.every((sf) => timeOk(sf.frame.tsUs))) this.stats.droppedBadTime += this.window.filter(b, (sf) => timeOk(sf.frame.tsUs));
      t.send(encodeBatch({ kind: KIND_UP, batch: b.batch, clock, frames: b.items }));
      this.window.markSent(b);
      this.stats.framesSent += b.items.length;
    }
  }

  /** Seals the current batch and keeps the window within --uplink-buffer-frames (oldest unsent first), counted. */
  private bound(): void {
    this.seal();
    this.stats.droppedBufferFull += this.window.trim(this.opts.maxBufferedFrames, 2 * this.opts.maxBufferedFrames);
  }

  private seal(): void {
    if (this.current.length === 0) return;
    this.window.add(this.nextBatch++, this.current);
    this.current = [];
  }
}
