/**
 * Frames relayed down from the group peer: validated (frame times within a sane window of now: a bad
 * batch is refused whole, before any of its frames is queued), deduplicated by batch number
 * (core/uplink/batch-dedupe.ts), checked by their end-to-end per-bus sequence numbers
 * (core/uplink/seq-checker.ts: gaps, duplicates, reordering counted), transmitted in order through the
 * TxQueue, and acknowledged once every frame of the batch — and of every batch before it — was
 * transmitted or counted as dropped.
 * The age rule holds end to end: each frame gets a transmit deadline on this agent's clock, `maxAgeMs`
 * (this agent's --relay-max-age-ms: the bus it transmits on is its to protect) after the earliest moment
 * its origin can have received it, every clock uncertainty counted against it; the TxQueue checks it at
 * the moment it hands the frame to the kernel. They are shown on the local console as `tx` by the router
 * and are never sent up again (no loops).
 *
 * Acks are cumulative (the bridge forgets every batch up to the number), and the TxQueue's buses drain
 * independently: a batch for a bus that keeps up finishes before an earlier one waiting on a busy bus. So
 * the ack is the highest batch such that every batch taken at or below it is done, never simply the
 * highest done — else the bridge would forget the waiting batch, never resend it if this agent stopped,
 * and its window (16,384 frames per side) would no longer bound what waits here. A resend of a batch still
 * waiting here (after a reconnect) is skipped by the dedupe and acknowledged only once it is done, on
 * whatever connection is current then (`onAck`).
 */
import { transmittedFrame } from '../../core/can/frame.js';
import { BatchDedupe } from '../../core/uplink/batch-dedupe.js';
import { BRIDGE_CLOCK, frameTimesProblem, transmitDeadlineMs, type ClockFix } from '../../core/uplink/clock.js';
import type { Batch } from '../../core/uplink/frame-codec.js';
import { SeqChecker } from '../../core/uplink/seq-checker.js';
import { compactHead } from '../../core/queue-head.js';
import type { RelayedDropReason, TxQueue } from '../tx-queue.js';
import type { DownPosition } from './down-position.js';

/** How often a moved ack position is saved (the ack clock's pace: a crash loses at most this much of it). */
const SAVE_EVERY_MS = 250;

export class Downlink {
  /** DOWN batch numbering belongs to one bridge process (its relay epoch). */
  private readonly dedupe = new BatchDedupe();
  /** Batches of the current epoch taken and not done yet (their frames wait in the TxQueue). */
  private open = new Set<number>();
  /** Batches of the current epoch taken, in order (numbers increase), from `takenHead` on not yet covered by `doneUpTo`. */
  private taken: number[] = [];
  private takenHead = 0;
  /** The cumulative ack: every batch of this epoch taken at or below it is done (-1: none yet). */
  private doneUpTo = -1;
  /** Counts epochs: a batch of an earlier bridge process that finishes late acks nothing. */
  private epochGen = 0;
  /** Where the cumulative ack goes: the current connection's DownAcks (uplink-client.ts). */
  onAck: ((upTo: number) => void) | undefined;
  private readonly seq = new SeqChecker();
  /** Origin-receive to local-transmit latency samples (ms), a ring of the most recent. */
  private readonly latency = new Float64Array(65_536);
  private latencyCount = 0;
  private readonly counts = { batches: 0, duplicateBatches: 0, frames: 0, errorFrames: 0, noGroupFrames: 0 };

  /** The position saved in the state file is behind `doneUpTo`: a save is due (timer pending). */
  private saveTimer: NodeJS.Timeout | undefined;

  /**
   * `saved`: where the position is kept across runs (down-position.ts); without it each run starts with
   * none, and batches the bridge resends to it are taken as new.
   */
  constructor(
    private readonly tx: TxQueue,
    private readonly maxAgeMs: number,
    private readonly saved?: DownPosition,
  ) {}

  get stats(): {
    batches: number;
    duplicateBatches: number;
    frames: number;
    errorFrames: number;
    noGroupFrames: number;
    seqGaps: number;
    seqDuplicates: number;
    seqReordered: number;
  } {
    const t = this.seq.totals;
    return { ...this.counts, seqGaps: t.gaps, seqDuplicates: t.duplicates, seqReordered: t.reordered };
  }

  /** A new bridge process numbers its batches afresh (what an earlier one's batches still hold is acked to nobody). */
  setEpoch(epoch: string | undefined): void {
    const stream = epoch ?? '';
    if (stream === this.dedupe.position.stream) return;
    this.savePosition();
    this.dedupe.setStream(stream);
    this.epochGen++;
    this.open = new Set();
    this.taken = [];
    this.takenHead = 0;
    this.doneUpTo = -1;
    // The same bridge process as a previous run of this agent: every batch up to its saved ack was done
    // there (transmitted or counted), so a resend of one is a duplicate — skipped and acknowledged.
    const last = stream === '' ? undefined : this.saved?.load();
    if (last?.epoch === stream && last.upTo >= 0) {
      this.dedupe.accept(last.upTo);
      this.doneUpTo = last.upTo;
    }
  }

  /** Saves the ack position now if it moved (the agent stopping: after the transmit queue, whose stop finishes every batch taken). */
  savePosition(): void {
    clearTimeout(this.saveTimer);
    this.saveTimer = undefined;
    const epoch = this.dedupe.position.stream;
    if (this.saved && epoch !== '' && this.doneUpTo >= 0) this.saved.save({ epoch, upTo: this.doneUpTo });
  }

  /**
   * Relayed frames still waiting in the TxQueue are dropped (counted under `reason`): what they were relayed
   * under has ended (the group, the link's authorization). Returns how many.
   */
  dropQueued(reason: RelayedDropReason, why: string): number {
    return this.tx.dropRelayed(reason, why);
  }

  /**
   * The group changed (another group, peer or bus map): what waits is dropped (`tx_dropped_group_changed`),
   * and the sequence streams start afresh — a stream is checked per origin and target bus, and under a new
   * bus map another origin bus's numbers arrive on the same target bus (not gaps, not a new run). Returns
   * how many frames were dropped.
   */
  groupChanged(why: string): number {
    this.seq.restart();
    return this.tx.dropRelayed('droppedGroupChanged', why);
  }

  /**
   * Applies a DOWN batch; once it and every batch before it are fully handled, `onAck` gets the cumulative
   * ack (a duplicate gets the current one). `local`: this agent's clock fix (undefined: not measured, so no
   * frame can be proven fresh). `inGroup` false: the bridge said this agent is in no group, so no frame is
   * anyone's to transmit here — a batch still on its way (another cluster node's view lagging) is taken,
   * counted (`relay_no_group_frames`) and acknowledged, never transmitted. Returns the reason when the
   * batch is refused (nothing of it applied).
   * Once the TxQueue has stopped (the agent stopping), a batch is not taken at all, and not acknowledged:
   * the bridge resends it to the next run, where the age rule decides.
   */
  apply(b: Batch, local: ClockFix | undefined, inGroup = true): string | undefined {
    if (this.tx.stopped) return undefined;
    const origin = b.clock ?? BRIDGE_CLOCK;
    const now = Date.now();
    if (local) {
      const bad = frameTimesProblem(b.frames, origin, now, local);
      if (bad) return bad;
    }
    if (!this.dedupe.accept(b.batch)) {
      this.counts.duplicateBatches++;
      // Covered by the ack only once it (and what came before it) is done: maybe not yet.
      if (this.doneUpTo >= 0) this.onAck?.(this.doneUpTo);
      return undefined;
    }
    this.counts.batches++;
    const from = b.origin ?? '?';
    const gen = this.epochGen;
    this.open.add(b.batch);
    this.taken.push(b.batch);
    let left = b.frames.length;
    if (left === 0 || !inGroup) {
      this.counts.frames += left;
      if (!inGroup) this.counts.noGroupFrames += left;
      this.done(gen, b.batch);
      return undefined;
    }
    for (const { frame, seq } of b.frames) {
      this.seq.check(`${from}/${frame.bus}`, seq, frame.tsUs);
      this.counts.frames++;
      if (frame.err) {
        // The origin's controller reporting its own bus (it travels up for the bridge's consoles and
        // recordings, numbered with the bus's frames): a report about another bus, never traffic for this one.
        this.counts.errorFrames++;
        if (--left === 0) this.done(gen, b.batch);
        continue;
      }
      const originUs = frame.tsUs;
      // Without a clock fix nothing can be proven fresh: a deadline already past drops it (counted). With
      // one, never later than maxAgeMs from now: the origin received it before it got here, whatever the
      // clocks say (this agent's own fix may be stale after its clock was stepped).
      const notAfterMs = local ? Math.min(transmitDeadlineMs(frame.tsUs, origin, local, this.maxAgeMs), now + this.maxAgeMs) : -Infinity;
      this.tx.enqueueRelayed(
        transmittedFrame(frame),
        (r) => {
          if (r.ok) this.latency[this.latencyCount++ % this.latency.length] = (r.tsUs - originUs) / 1000;
          if (--left === 0) this.done(gen, b.batch);
        },
        notAfterMs,
      );
    }
    return undefined;
  }

  /** Every frame of `batch` is transmitted or counted: the ack moves over every batch done without a gap. */
  private done(gen: number, batch: number): void {
    if (gen !== this.epochGen) return;
    this.open.delete(batch);
    const before = this.doneUpTo;
    while (this.takenHead < this.taken.length && !this.open.has(this.taken[this.takenHead]!)) this.doneUpTo = this.taken[this.takenHead++]!;
    this.takenHead = compactHead(this.taken, this.takenHead);
    if (this.doneUpTo === before) return;
    this.onAck?.(this.doneUpTo);
    if (this.saved && this.saveTimer === undefined) {
      this.saveTimer = setTimeout(() => this.savePosition(), SAVE_EVERY_MS);
      this.saveTimer.unref();
    }
  }

  /**
   * p50/p99 of the recent origin-to-transmit latency in ms, raw clock readings: meaningful when the clocks
   * agree (one host: the benchmarks). Not corrected by the clock offsets on purpose: their error (a few
   * ms) would swamp sub-millisecond figures; the age rule uses the corrected, conservative times.
   */
  latencyQuantiles(): { p50: number; p99: number; samples: number } | undefined {
    const n = Math.min(this.latencyCount, this.latency.length);
    if (n === 0) return undefined;
    // A typed-array sort is numeric and about ten times faster than Array#sort with a comparator:
    // this runs on every /metrics scrape, in the event loop that transmits relayed frames.
    const sorted = this.latency.slice(0, n).sort();
    return { p50: sorted[Math.floor(n * 0.5)]!, p99: sorted[Math.min(n - 1, Math.floor(n * 0.99))]!, samples: n };
  }
}
