/**
 * The data plane, agent side: every received frame, unsampled, in binary UP batches.
 *
 * Frames get a per-bus sequence number (checked end to end at the receiving side) and are sealed into
 * batches on the next event-loop turn (or at 1024 frames), so batching adds no timer latency. A batch
 * stays here until the bridge acknowledges it; after a reconnect every unacknowledged batch is sent again
 * with its original number, and the bridge drops what it already had. Two bounds, both counted, never
 * silent: at most `maxBufferedFrames` frames wait (the oldest unsent batches go first; sent ones only past
 * twice the bound), and frames older than
 * `maxAgeMs` are not sent after an outage (a stale frame transmitted on the peer's bus is dangerous).
 */
import type { CanFrame } from '../../core/can/frame.js';
import { encodeBatch, KIND_UP, type SequencedFrame } from '../../core/uplink/frame-codec.js';
import type { FrameUplink } from '../frame-router.js';

export interface UplinkTransport {
  send(data: Buffer): void;
  /** Bytes queued in the socket and not yet sent. */
  bufferedAmount(): number;
}

interface PendingBatch {
  batch: number;
  frames: SequencedFrame[];
  createdMs: number;
  sent: boolean;
}

export interface UploaderOptions {
  maxBufferedFrames: number;
  maxAgeMs: number;
  /** Stop handing batches to the socket while it holds more than this (resumed by `flush()`). */
  maxSocketBytes?: number;
  now?: () => number;
}

const MAX_BATCH_FRAMES = 1024;

export class FrameUploader implements FrameUplink {
  private readonly seqByBus = new Map<string, number>();
  private current: SequencedFrame[] = [];
  private readonly pending: PendingBatch[] = [];
  private nextBatch = 1;
  private bufferedFrames = 0;
  private transport: UplinkTransport | undefined;
  private flushScheduled = false;
  private readonly now: () => number;
  readonly stats = { framesQueued: 0, framesSent: 0, framesAcked: 0, batchesResent: 0, droppedBufferFull: 0, droppedTooOld: 0 };

  constructor(private readonly opts: UploaderOptions) {
    this.now = opts.now ?? Date.now;
  }

  get buffered(): number {
    return this.bufferedFrames;
  }

  /** Hot path. */
  push(frame: CanFrame): void {
    const seq = ((this.seqByBus.get(frame.bus) ?? 0) + 1) >>> 0;
    this.seqByBus.set(frame.bus, seq);
    this.current.push({ frame, seq });
    this.bufferedFrames++;
    this.stats.framesQueued++;
    if (this.current.length >= MAX_BATCH_FRAMES) this.seal();
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushScheduled = false;
        this.flush();
      });
    }
  }

  /** The link is up and the bridge has welcomed us: resend what it has not acknowledged. */
  attach(transport: UplinkTransport): void {
    this.transport = transport;
    this.flush();
  }

  detach(): void {
    this.transport = undefined;
    // Without a link nothing is in flight: every batch waits to be (re)sent, oldest dropped first.
    for (const b of this.pending) {
      if (b.sent) this.stats.batchesResent++;
      b.sent = false;
    }
  }

  /** The bridge has taken every batch up to `batch`. */
  ack(batch: number): void {
    while (this.pending.length > 0 && this.pending[0]!.batch <= batch) {
      const b = this.pending.shift()!;
      this.bufferedFrames -= b.frames.length;
      this.stats.framesAcked += b.frames.length;
    }
  }

  flush(): void {
    this.seal();
    this.enforceBounds();
    const t = this.transport;
    if (!t) return;
    const maxSocket = this.opts.maxSocketBytes ?? 8 * 1024 * 1024;
    for (const b of this.pending) {
      if (b.sent) continue;
      if (t.bufferedAmount() > maxSocket) break;
      t.send(encodeBatch({ kind: KIND_UP, batch: b.batch, frames: b.frames }));
      b.sent = true;
      this.stats.framesSent += b.frames.length;
    }
  }

  private seal(): void {
    if (this.current.length === 0) return;
    this.pending.push({ batch: this.nextBatch++, frames: this.current, createdMs: this.now(), sent: false });
    this.current = [];
  }

  private enforceBounds(): void {
    // Over the bound, the oldest batches not yet sent go first: a sent batch is probably at the bridge
    // already (it holds its ack while the peer catches up), so dropping it would count a delivered frame.
    for (let i = 0; this.bufferedFrames > this.opts.maxBufferedFrames && i < this.pending.length; ) {
      const b = this.pending[i]!;
      if (b.sent) {
        i++;
        continue;
      }
      this.pending.splice(i, 1);
      this.bufferedFrames -= b.frames.length;
      this.stats.droppedBufferFull += b.frames.length;
    }
    // Hard memory bound: twice the limit, whatever was sent.
    while (this.bufferedFrames > 2 * this.opts.maxBufferedFrames && this.pending.length > 0) {
      const b = this.pending.shift()!;
      this.bufferedFrames -= b.frames.length;
      this.stats.droppedBufferFull += b.frames.length;
    }
    // Only unsent batches age out: once sent, the bridge may already be relaying them.
    const limit = this.now() - this.opts.maxAgeMs;
    while (this.pending.length > 0 && !this.pending[0]!.sent && this.pending[0]!.createdMs < limit) {
      const b = this.pending.shift()!;
      this.bufferedFrames -= b.frames.length;
      this.stats.droppedTooOld += b.frames.length;
    }
  }
}
