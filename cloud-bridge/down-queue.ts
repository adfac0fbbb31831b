/**
 * The frames owed to one group side: a backlog of frames not yet batched (bounded by count and by age)
 * and the DOWN batches sent but not yet acknowledged by that side's agent, held in the shared SendWindow
 * (core/uplink/send-window.ts) and bounded by WINDOW_FRAMES.
 *
 * - Order: one FIFO per side, so frames leave in the order they arrived, per bus and overall.
 * - Count bound: past `maxFrames` waiting frames the OLDEST is dropped and counted (the newest state of
 *   a bus is worth more than its history).
 * - Age bound: a frame received by its origin more than `maxAgeMs` ago (clock offsets and their
 *   uncertainty counted against it) is dropped and counted, never sent — a stale motor command
 *   transmitted long after the fact is dangerous. The target agent checks again when it transmits.
 *   Frames age on the bridge's monotonic clock (relay-clock.ts), so a step of its wall clock while they
 *   wait neither lets stale ones out (back) nor drops fresh ones (forward); and a batch carries its origin's
 *   fix restated for the wall clock its receiver measured its offset against, which may have been stepped
 *   since the origin measured (`restated`): the receiver computes the true age.
 * - Unacknowledged batches are kept (same batch number) and resent when the side reconnects, before the
 *   backlog; the agent ignores batch numbers it has already applied (BatchDedupe). Stale frames are
 *   filtered out of a resend too; while the side is offline they expire like the backlog.
 * - Memory: at most maxFrames waiting + WINDOW_FRAMES in flight per side. A batch in flight is held as
 *   the bytes that were sent (kept for a resend) and one number per frame (its age), not as frame objects:
 *   frames wait there for the agent's ack, long enough to outlive V8's young generation, and as objects
 *   (~290 B each, with the UP batch copy they point into) they filled old space with garbage at fleet
 *   rates (docs/benchmarks.md, "Bridge cost at fleet shape").
 */
import type { CanFrame } from '../core/can/frame.js';
import { earliestOnBridgeMs, type ClockFix } from '../core/uplink/clock.js';
import { MAX_BUSES_PER_DONGLE } from '../core/names.js';
import { compactHead } from '../core/queue-head.js';
import { decodeBatch, encodeBatch, KIND_DOWN, MAX_FRAMES_PER_BATCH, type SequencedFrame } from '../core/uplink/frame-codec.js';
import { SendWindow, type WindowBatch } from '../core/uplink/send-window.js';
import { restated, TO_MONO_MARGIN_MS, type RelayTime } from './relay-clock.js';

export interface PendingFrame extends SequencedFrame {
  /** Bus already mapped to the target side's name. */
  frame: CanFrame;
  /** The origin agent's per-bus sequence number, kept end to end. */
  seq: number;
  /** Dongle the frame comes from (the loop guard's origin). */
  origin: string;
  /**
   * The earliest moment the origin agent can have received it, on the bridge's monotonic clock
   * (relay-clock.ts): what the age bound measures.
   */
  originMs: number;
  /**
   * The origin's clock fix: its frame times to the bridge's wall clock as it was in `clockDomainMs`.
   * Passed on in the DOWN batch (restated for the receiver's domain) so that the target agent checks the age too.
   */
  clock: ClockFix;
  /** The domain (the bridge's wall − monotonic clock, relay-clock.ts) in which the origin measured its fix. */
  clockDomainMs: number;
}

/**
 * A frame as the queue holds it: `f` (on the target's bus), from `origin`, whose fix `clock` its origin
 * measured against the bridge's wall clock in domain `clockDomainMs`.
 */
export function pendingFrame(f: CanFrame, seq: number, origin: string, clock: ClockFix, clockDomainMs: number): PendingFrame {
  return { frame: f, seq, origin, originMs: earliestOnBridgeMs(f.tsUs, clock) - clockDomainMs - TO_MONO_MARGIN_MS, clock, clockDomainMs };
}

/** Why frames owed to a side were not sent; `not_mapped` (GroupRelay: a bus the group's map leaves out) is a deliberate skip, not a loss. */
export type DropReason = 'backlog_full' | 'too_old' | 'group_changed' | 'bridge_stopped' | 'internal_error' | 'not_mapped';

/** The target agent's connection as the queue sees it. */
export interface DownLink {
  /** True while the link can carry DOWN batches (welcomed, socket open). */
  readonly ready: boolean;
  /** False while the socket's unsent bytes are past their bound: frames then wait in the backlog. */
  canSend(): boolean;
  /**
   * The domain (relay-clock.ts) of the bridge's wall clock when it last answered this agent's clock probe:
   * the clock its offset is measured against. Undefined (it never probed, or another node answers it): the
   * bridge's current one.
   */
  readonly clockDomainMs?: number | undefined;
  sendBinary(buf: Buffer): void;
}

export interface DownQueueHooks {
  /** Next DOWN batch number (strictly increasing for every target, also across bridge restarts). */
  nextBatch(): number;
  dropped(reason: DropReason, n: number): void;
  /** Frames written to the target for the first time (not on resend), as batch `batch`. */
  sent(frames: readonly PendingFrame[], batch: number): void;
}

export interface DownQueueLimits {
  maxFrames: number;
  maxAgeMs: number;
}

/** Frames in flight (sent, not yet acknowledged) per side; beyond it frames wait in the backlog. */
export const WINDOW_FRAMES = 16_384;
/**
 * Buses one DOWN batch names, at most: as many as one dongle may have. One origin's frames can name more
 * (its links come and go while a side is offline, each allowed MAX_BUSES_PER_DONGLE); the wire format's
 * limit is 255 (encodeBatch refuses more), and a receiver keeps per-bus state for what it is sent.
 */
export const MAX_BUSES_PER_DOWN_BATCH = MAX_BUSES_PER_DONGLE;

interface SentAs {
  bytes: Buffer;
  times: number[];
  /** The origin's fix and the domain it was measured in. */
  clock: ClockFix;
  domain: number;
  /** The domain the fix in `bytes` was restated for. */
  sentFor: number;
}

export class DownQueue {
  private items: (PendingFrame | undefined)[] = [];
  private head = 0;
  /** Sent, not yet acknowledged; each batch carries frames of one origin. An item is a frame's originMs. */
  private readonly window = new SendWindow<number>((ms) => ms);
  /**
   * What each batch in the window was sent as: its bytes, and its items array as it was then (`expire`
   * replaces a batch's array when it removes frames, so `times` still lists every frame of `bytes`); the
   * origin's fix and its domain, and the domain the bytes' fix was restated for.
   */
  private readonly sentAs = new WeakMap<WindowBatch<number>, SentAs>();

  constructor(
    readonly dongle: string,
    private readonly limits: DownQueueLimits,
    private readonly hooks: DownQueueHooks,
  ) {}

  /** Frames waiting to be sent. */
  get waiting(): number {
    return this.items.length - this.head;
  }

  /** Frames this side has not confirmed yet: waiting plus in flight. */
  get backlog(): number {
    return this.waiting + this.window.size;
  }

  get inFlight(): number {
    return this.window.size;
  }

  push(p: PendingFrame): void {
    this.items.push(p);
    if (this.items.length - this.head > this.limits.maxFrames) {
      this.items[this.head++] = undefined;
      this.hooks.dropped('backlog_full', 1);
    }
  }

  /** The side (re)connected: unacknowledged batches go out again before the backlog. */
  linkUp(): void {
    this.window.resendAll();
  }

  /** The side's link went away: what was in flight is due again (and ages like the backlog meanwhile). */
  linkDown(): void {
    this.window.resendAll();
  }

  /** Cumulative ack from the agent: every batch up to `batch` is done. */
  ack(batch: number): void {
    this.window.ack(batch);
  }

  /** Drops what is too old: the backlog's head, and batches due for resend. */
  expire(now: RelayTime): void {
    const cutoff = now.monoMs - this.limits.maxAgeMs;
    let n = 0;
    while (this.head < this.items.length && this.items[this.head]!.originMs < cutoff) {
      this.items[this.head++] = undefined;
      n++;
    }
    n += this.window.expire(cutoff);
    if (n > 0) this.hooks.dropped('too_old', n);
    this.compact();
  }

  /** Sends what the link takes now: first batches due for resend, then the backlog in batches. */
  flush(link: DownLink | undefined, now: RelayTime): void {
    if (!link?.ready) return;
    const cutoff = now.monoMs - this.limits.maxAgeMs;
    // The wall clock the receiver's offset is measured against (its fix of ours).
    const target = link.clockDomainMs ?? now.wallMinusMonoMs;
    if (this.window.hasUnsent) {
      const stale = this.window.expire(cutoff);
      if (stale > 0) this.hooks.dropped('too_old', stale);
      for (const b of this.window.unsent()) {
        if (!link.canSend()) return;
        link.sendBinary(this.resendBytes(b, target));
        this.window.markSent(b);
      }
    }
    let stale = 0;
    try {
      while (this.head < this.items.length && this.window.size < WINDOW_FRAMES && link.canSend()) {
        // A batch carries frames of one origin and one clock fix (the fix changes rarely: at a better probe;
        // its domain at a step of the bridge's clock).
        const first = this.items[this.head]!;
        const origin = first.origin;
        const clock = first.clock;
        const domain = first.clockDomainMs;
        const room = Math.min(MAX_FRAMES_PER_BATCH, WINDOW_FRAMES - this.window.size);
        const frames: PendingFrame[] = [];
        // The buses this batch names; a new one past the limit starts the next batch.
        const buses: string[] = [];
        let lastBus: string | undefined;
        // Taken from the queue only once the batch is encoded: should that throw (a bug), its frames are
        // still here, for the owner to count (GroupRelay clears the side), not lost uncounted.
        let h = this.head;
        let staleHere = 0;
        while (h < this.items.length && frames.length < room) {
          const p = this.items[h]!;
          if (p.originMs < cutoff) {
            h++;
            staleHere++;
            continue;
          }
          if (p.origin !== origin || p.clockDomainMs !== domain || (p.clock !== clock && (p.clock.offsetMs !== clock.offsetMs || p.clock.errorMs !== clock.errorMs))) break;
          const bus = p.frame.bus;
          if (bus !== lastBus) {
            if (!buses.includes(bus)) {
              if (buses.length === MAX_BUSES_PER_DOWN_BATCH) break;
              buses.push(bus);
            }
            lastBus = bus;
          }
          frames.push(p);
          h++;
        }
        const batch = frames.length > 0 ? this.hooks.nextBatch() : 0;
        const bytes = frames.length > 0 ? encodeBatch({ kind: KIND_DOWN, batch, clock: restated(clock, domain, target), origin, frames }) : undefined;
        for (let i = this.head; i < h; i++) this.items[i] = undefined;
        this.head = h;
        stale += staleHere;
        if (bytes === undefined) continue;
        link.sendBinary(bytes);
        const times = new Array<number>(frames.length);
        for (let i = 0; i < frames.length; i++) times[i] = frames[i]!.originMs;
        this.sentAs.set(this.window.add(batch, times, true), { bytes, times, clock, domain, sentFor: target });
        this.hooks.sent(frames, batch);
      }
    } finally {
      if (stale > 0) this.hooks.dropped('too_old', stale);
      this.compact();
    }
  }

  /**
   * The bridge is stopping and the frames held here die with the process (they were taken from, and
   * acknowledged to, their origin): counted as `bridge_stopped`. Frames never sent on the current link
   * always; frames sent but not acknowledged only when the side is offline — a connected side has them
   * ahead of its close frame, while an offline one may or may not have applied them before its link went
   * (its relay_seq_gaps can then be lower than this count by at most those). Returns the count.
   */
  dropAtStop(connected: boolean): number {
    const n = this.waiting + (connected ? this.window.size - this.window.inFlight : this.window.clear());
    this.items = [];
    this.head = 0;
    if (n > 0) this.hooks.dropped('bridge_stopped', n);
    return n;
  }

  /**
   * Forgets everything (the side left the group, its map changed). Counted under `reason`: the frames
   * waiting, and those of batches not on the current link's wire. Frames sent on the current link and not
   * yet acknowledged are not dropped here: they are on their way to the agent, which transmits them (or, on
   * a group change, drops and counts what it still holds). An offline side's unacknowledged batches count:
   * they were sent on a link that is gone, and may or may not have arrived (as in dropAtStop).
   */
  clear(reason: DropReason): void {
    const n = this.waiting + this.window.size - this.window.inFlight;
    this.window.clear();
    this.items = [];
    this.head = 0;
    if (n > 0) this.hooks.dropped(reason, n);
  }

  /**
   * A batch due again, as it was sent, or without the frames `expire` removed from it since (exactly the
   * frames older than the oldest one kept: `expire` removes everything older than a cutoff), and with its
   * fix restated for the receiver's domain `target` when that changed (the bridge's clock was stepped, and
   * the agent measured its offset again on its new link).
   */
  private resendBytes(b: WindowBatch<number>, target: number): Buffer {
    const was = this.sentAs.get(b)!;
    if (b.items === was.times && was.sentFor === target) return was.bytes;
    let oldestKept = Infinity;
    for (const t of b.items) if (t < oldestKept) oldestKept = t;
    const old = decodeBatch(was.bytes);
    const frames = b.items === was.times ? old.frames : old.frames.filter((_, i) => was.times[i]! >= oldestKept);
    const bytes = encodeBatch({ ...old, clock: restated(was.clock, was.domain, target), frames });
    this.sentAs.set(b, { ...was, bytes, times: b.items, sentFor: target });
    return bytes;
  }

  private compact(): void {
    this.head = compactHead(this.items, this.head, 4096);
  }
}
