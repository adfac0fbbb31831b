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
 *
 * Held frames and a stepped wall clock. A frame's `tsUs` is the wall clock at receipt (SocketCAN's kernel
 * timestamp is CLOCK_REALTIME), and the clock fix it travels with is measured when it is sent. Between the
 * two NTP may step the clock — typically on a cellular gateway that regains NTP and the uplink at the same
 * moment, after frames were held through the outage. A clock X s fast then stepped back made held frames
 * look X s younger than they were: they outlived the age limit here by X s, and on arrival, X s in the
 * future, the bridge moved them back to their arrival (noLaterThanArrival): fresh-looking, relayed and
 * transmitted. So each held frame keeps the wall-minus-monotonic offset of when it was received (`wm`):
 * it ages on the monotonic clock here, and when it is sent its timestamp is restated in the wall clock its
 * batch's clock fix was measured on (now's, unless the clock was stepped since the last probe) by the
 * offset's change (`ts + (wm of the fix − wm at receipt)`). That
 * restated time is also what the bridge's and the peer's consoles and recordings show: the moment of
 * receipt on the corrected clock, where the original stamp was off by the step (this agent's own console
 * and recordings keep the original, made at receipt). A change below RESTATE_MS (millisecond readings,
 * NTP slewing) restates nothing; one that makes the frames look younger is added to the batch's clock
 * error instead, so the age rule still counts it against them. The wire protocol is unchanged.
 * Sources that stamp frames on their own clock anchored at start (sim, replay: monotonicUsClock) do not
 * follow a step at all; their frames keep the error of the anchoring, as before.
 */
import type { CanFrame } from '../../core/can/frame.js';
import { frameTimeCheck, RESTATE_MS, type ClockFix } from '../../core/uplink/clock.js';
import { MAX_BUSES_PER_DONGLE } from '../../core/names.js';
import { encodeBatch, KIND_UP, type SequencedFrame } from '../../core/uplink/frame-codec.js';
import { SendWindow } from '../../core/uplink/send-window.js';
import type { FrameUplink } from '../frame-router.js';

export interface UplinkTransport {
  send(data: Buffer): void;
  /** Bytes queued in the socket and not yet sent. */
  bufferedAmount(): number;
  /** This agent's clock offset to the bridge, stamped on every batch; nothing is sent while unknown. */
  clock(): ClockFix | undefined;
  /**
   * The wall-minus-monotonic offset (ms) of the wall clock that fix is for (when its sample was taken).
   * Absent or undefined: the wall clock of now.
   */
  clockWallMinusMono?(): number | undefined;
}

export interface UploaderOptions {
  maxBufferedFrames: number;
  maxAgeMs: number;
  /** Stop handing batches to the socket while it holds more than this (resumed by `flush()`). */
  maxSocketBytes?: number;
  /** Longest a frame waits for others before its batch is sent (ms); 0: at the end of the event-loop turn. */
  batchMs?: number;
  /** The wall clock (ms; tests inject one). Default Date.now. */
  now?: () => number;
  /** The monotonic clock (ms; tests inject one). Default performance.now. */
  monoNow?: () => number;
}

const MAX_BATCH_FRAMES = 1024;

/** A frame held for the bridge, with the wall-minus-monotonic offset (ms) of when it was received. */
interface HeldFrame extends SequencedFrame {
  wm: number;
}

export class FrameUploader implements FrameUplink {
  private readonly seqByBus = new Map<string, number>();
  private current: HeldFrame[] = [];
  /** The wall-minus-monotonic offset read at the current batch's first frame. */
  private currentWm = 0;
  /** Frames age from their receive time (tsUs) on the monotonic clock: tsUs less the wall clock's offset then. */
  private readonly window = new SendWindow<HeldFrame>((h) => h.frame.tsUs / 1000 - h.wm);
  private nextBatch = 1;
  private transport: UplinkTransport | undefined;
  private flushScheduled = false;
  private flushTimer: NodeJS.Timeout | undefined;
  private readonly now: () => number;
  private readonly monoNow: () => number;
  readonly stats = {
    framesQueued: 0,
    framesSent: 0,
    framesAcked: 0,
    batchesResent: 0,
    droppedBufferFull: 0,
    droppedTooOld: 0,
    droppedBadTime: 0,
    droppedTooManyBuses: 0,
    /** Batches whose frame times were restated after a wall-clock step (diagnostics). */
    batchesRestated: 0,
  };

  constructor(private readonly opts: UploaderOptions) {
    this.now = opts.now ?? Date.now;
    this.monoNow = opts.monoNow ?? (() => performance.now());
  }

  /** Wall clock minus monotonic clock (ms): constant until the wall clock is stepped (or slewed). */
  private wallMinusMono(): number {
    return this.now() - this.monoNow();
  }

  get buffered(): number {
    return this.window.size + this.current.length;
  }

  /**
   * What is held when the agent stops, lost with the process: frames never sent (the next run numbers its
   * frames afresh, so no receiver can see them missing), and frames sent whose ack did not come (the
   * bridge may have them).
   */
  held(): { neverSent: number; maybeDelivered: number } {
    const maybeDelivered = this.window.maybeDelivered;
    return { neverSent: this.buffered - maybeDelivered, maybeDelivered };
  }

  /** Hot path. */
  push(frame: CanFrame): void {
    const last = this.seqByBus.get(frame.bus);
    // A dongle has at most MAX_BUSES_PER_DONGLE buses (a replay log may name more): the bridge refuses a
    // batch past them, so frames of further buses stay here, counted.
    if (last === undefined && this.seqByBus.size >= MAX_BUSES_PER_DONGLE) {
      this.stats.droppedTooManyBuses++;
      return;
    }
    const seq = ((last ?? 0) + 1) >>> 0;
    this.seqByBus.set(frame.bus, seq);
    // Two clock readings per batch, not per frame; a step within the batch is settled at seal().
    if (this.current.length === 0) this.currentWm = this.wallMinusMono();
    this.current.push({ frame, seq, wm: this.currentWm });
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

  /**
   * The bridge has taken every batch up to `batch`. False, and nothing freed, when it acknowledges a batch
   * never sent: the frames of unsent batches would be counted as delivered and never sent (the caller
   * ends the link).
   */
  ack(batch: number): boolean {
    if (!this.window.wasSent(batch)) return false;
    this.stats.framesAcked += this.window.ack(batch);
    return true;
  }

  flush(): void {
    this.bound();
    // Only unsent batches age out here: once sent, the bridge and the receiving agent check the age. On the
    // monotonic clock: a wall clock stepped meanwhile neither stretches nor shortens a frame's life here.
    this.stats.droppedTooOld += this.window.expire(this.monoNow() - this.opts.maxAgeMs);
    const t = this.transport;
    if (!t || !this.window.hasUnsent) return;
    const clock = t.clock();
    if (!clock) return;
    const maxSocket = this.opts.maxSocketBytes ?? 8 * 1024 * 1024;
    // Frame times are sent in the wall clock the fix was measured on: now's, unless stepped since.
    const mono = this.monoNow();
    const wmFix = t.clockWallMinusMono?.() ?? this.now() - mono;
    const timeOk = frameTimeCheck(clock, mono + wmFix, clock);
    for (const b of this.window.unsent()) {
      if (t.bufferedAmount() > maxSocket) break;
      // Every frame of a batch has the same offset (seal()). Their times in the clock the fix measures:
      const step = b.items.length > 0 ? wmFix - b.items[0]!.wm : 0;
      const restate = Math.abs(step) > RESTATE_MS;
      const stepUs = restate ? Math.round(step * 1000) : 0;
      // A frame time the bridge would refuse (a source's broken clock) would wedge the link: resent and
      // refused after every reconnect. Left out here instead, and counted.
      if (!b.items.every((h) => timeOk(h.frame.tsUs + stepUs))) this.stats.droppedBadTime += this.window.filter(b, (h) => timeOk(h.frame.tsUs + stepUs));
      let frames: SequencedFrame[] = b.items;
      let fix = clock;
      if (restate) {
        // A copy: the frame object is shared with this agent's console, recordings and taps.
        frames = b.items.map((h) => ({ frame: { ...h.frame, tsUs: h.frame.tsUs + stepUs }, seq: h.seq }));
        // The offset's two readings are good to a millisecond: counted against the frames.
        fix = { offsetMs: clock.offsetMs, errorMs: clock.errorMs + 1 };
        this.stats.batchesRestated++;
      } else if (step < 0) {
        // Not restated, and the frames were received up to that much earlier than their stamp says.
        fix = { offsetMs: clock.offsetMs, errorMs: clock.errorMs - step };
      }
      t.send(encodeBatch({ kind: KIND_UP, batch: b.batch, clock: fix, frames }));
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
    // The wall clock stepped forward since the batch's first frame (the offset grew): which frames were
    // stamped before the step is not known, so all take the larger offset — older, never younger, than
    // they may be. (Stepped back, the offset read first is already the larger.)
    const wm = this.wallMinusMono();
    if (wm > this.currentWm) for (const h of this.current) h.wm = wm;
    this.window.add(this.nextBatch++, this.current);
    this.current = [];
  }
}
