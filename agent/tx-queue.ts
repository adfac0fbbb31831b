/**
 * Frames waiting to be transmitted on the local buses (relayed from the group peer, sent by a command or a
 * socketcand client), in order per bus. A full kernel transmit queue (ENOBUFS/EAGAIN: the source answers
 * `busy`) is retried for up to `retryMs` (or the `waitMs` the answer gives: a controller mode not read
 * yet), holding back the frames behind it on that bus so order is kept —
 * never another bus's: one bus that stays busy held every bus's relayed frames until they were too old —
 * then the frame is dropped and counted.
 * Never fatal. Bounded twice, both counted: past `maxQueuedPerBus` frames waiting for one bus, or
 * `maxQueued` for all buses together, new frames are refused. The per-bus bound is what keeps one bus
 * that stays busy (no ACK on it: it drains about one frame per `retryMs`) from filling the shared bound
 * and getting every other bus's frames refused; the shared bound keeps the memory as it was.
 * A frame may carry a deadline (relayed frames: the end-to-end age rule; commands: their expiry); it is
 * checked at the moment the frame would be handed to the kernel, on every attempt, and a frame past it is
 * dropped and counted, never transmitted. Relayed frames (enqueueRelayed) can be dropped while they wait
 * when what they were relayed under ends (the group changed, the bridge refused the link: dropRelayed),
 * and a sender's frames when the sender goes (a socketcand client disconnects: dropOwned).
 * A transmit or a sender's callback that throws is caught and counted: a frame chosen by a client must
 * never kill the agent (the throw would leave it at its lane's head, and every later frame would throw).
 * After stop() nothing more is taken.
 */
import type { CanFrame } from '../core/can/frame.js';
import { MAX_BUSES_PER_DONGLE } from '../core/names.js';
import { compactHead } from '../core/queue-head.js';
import type { SendResult } from './sources/source.js';

export type TxDone = (r: SendResult) => void;

interface Item {
  frame: CanFrame;
  done: TxDone | undefined;
  /** Monotonic ms (performance.now()) of the first busy answer of its kind (waiting for the mode, or the kernel's queue full), 0 before. */
  firstTryMs: number;
  /** Which kind of busy answer firstTryMs dates: a wait for the mode must not use up the ENOBUFS retry window. */
  waiting: boolean;
  /**
   * Monotonic ms (performance.now()) at or after which the frame must not be transmitted: given on the
   * wall clock, turned monotonic when queued, so a wall clock stepped back meanwhile cannot extend it.
   */
  notAfter: number;
  /** Why it is refused once past it. */
  late: string;
  /** Who queued it, for dropping what a sender left behind: RELAYED (the group peer), a socketcand session, or none (commands). */
  owner: object | undefined;
}

/** The owner of relayed frames (dropRelayed). */
const RELAYED = Object.freeze({ relayed: true });

/** The refusal of a relayed frame past its deadline (the end-to-end age rule). */
const RELAY_TOO_OLD = 'older than the relay age limit (--relay-max-age-ms): not transmitted';

/** One bus's frames, in order: a bus that stays busy holds back its own frames only. */
interface Lane {
  bus: string;
  q: Item[];
  head: number;
  timer: NodeJS.Timeout | undefined;
  /** In drain(): a frame queued by a `done` callback is taken by that loop, not by a nested one. */
  draining: boolean;
}

/** Why relayed frames still waiting are dropped (dropRelayed): the stats field that counts them. */
export type RelayedDropReason = 'droppedGroupChanged' | 'droppedUnauthorized';
/** Why a sender's frames still waiting are dropped (dropOwned). */
export type OwnedDropReason = 'droppedSenderGone' | 'droppedUnauthorized';

export interface TxQueueOptions {
  retryMs: number;
  /** Frames waiting for all buses together. */
  maxQueued: number;
  /** Frames waiting for one bus; default half of `maxQueued` (see the file's comment). */
  maxQueuedPerBus?: number;
  onFailure?: (f: CanFrame, error: string) => void;
}

export class TxQueue {
  private readonly lanes = new Map<string, Lane>();
  /** Frames waiting, every bus together (the bound is for all of them). */
  private waiting = 0;
  private readonly maxPerBus: number;
  private isStopped = false;
  readonly stats = {
    sent: 0,
    failed: 0,
    droppedBusy: 0,
    droppedFull: 0,
    droppedTooOld: 0,
    droppedGroupChanged: 0,
    droppedUnauthorized: 0,
    /** A socketcand client's frames still waiting when it disconnected (its sends are for while it is there). */
    droppedSenderGone: 0,
    /** A transmit threw (the frame counts as failed, not retried) or a sender's callback did (a defect); the queue goes on. */
    internalErrors: 0,
    /** Frames still waiting when the queue stopped (the agent stopping): not transmitted, their senders told. */
    droppedStopping: 0,
    /** Frames refused because the queue had stopped (the agent stopping). */
    refusedStopped: 0,
    retries: 0,
  };

  constructor(
    /** `origin`: who queued the frame (enqueue's owner), for the outputs that must not show it to its sender. */
    /** `notAfter`: the frame's deadline, monotonic (Infinity: none), for the source to tell when the kernel holds it past that. */
    private readonly transmit: (f: CanFrame, origin: object | undefined, notAfter: number) => SendResult,
    private readonly opts: TxQueueOptions,
  ) {
    this.maxPerBus = Math.min(opts.maxQueued, opts.maxQueuedPerBus ?? Math.ceil(opts.maxQueued / 2));
  }

  get length(): number {
    return this.waiting;
  }

  /** stop() was called: nothing more is taken. */
  get stopped(): boolean {
    return this.isStopped;
  }

  /**
   * `notAfterMs`: the wall-clock deadline (Date.now() ms); `late`: the error given when it passes first;
   * `owner`: the sender, whose waiting frames dropOwned(owner) drops.
   */
  enqueue(frame: CanFrame, done?: TxDone, notAfterMs = Infinity, late = RELAY_TOO_OLD, owner?: object): void {
    this.add(frame, done, notAfterMs, late, owner);
  }

  /** A frame relayed from the group peer: like enqueue, and dropped by dropRelayed() while it waits. */
  enqueueRelayed(frame: CanFrame, done: TxDone, notAfterMs: number): void {
    this.add(frame, done, notAfterMs, RELAY_TOO_OLD, RELAYED);
  }

  private add(frame: CanFrame, done: TxDone | undefined, notAfterMs: number, late: string, owner: object | undefined): void {
    if (this.isStopped) {
      this.stats.refusedStopped++;
      this.tell(frame, done, { ok: false, busy: false, error: 'the agent is stopping: not transmitted' });
      return;
    }
    let lane = this.lanes.get(frame.bus);
    const onBus = lane === undefined ? 0 : lane.q.length - lane.head;
    if (this.waiting >= this.opts.maxQueued || onBus >= this.maxPerBus) {
      this.stats.droppedFull++;
      const error =
        onBus >= this.maxPerBus ? `transmit queue of ${frame.bus} full (${this.maxPerBus} frames waiting for it)` : `transmit queue full (${this.opts.maxQueued} frames waiting)`;
      this.tell(frame, done, { ok: false, busy: true, error });
      return;
    }
    // A deadline that is not a number (a clock fix gone wrong upstream) fails closed: compared with NaN,
    // no time is ever past it, and the frame would go out however old.
    const notAfter = Number.isNaN(notAfterMs) ? -Infinity : Number.isFinite(notAfterMs) ? performance.now() + (notAfterMs - Date.now()) : notAfterMs;
    if (lane === undefined) this.lanes.set(frame.bus, (lane = { bus: frame.bus, q: [], head: 0, timer: undefined, draining: false }));
    lane.q.push({ frame, done, firstTryMs: 0, waiting: false, notAfter, late, owner });
    this.waiting++;
    if (lane.timer === undefined && !lane.draining) this.drain(lane);
  }

  /**
   * Drops every relayed frame still waiting (commands' and socketcand clients' frames stay), counted under
   * `reason`; each is reported to its sender as not transmitted (a relayed batch is then done, and
   * acknowledged). Returns how many were dropped.
   */
  dropRelayed(reason: RelayedDropReason, why: string): number {
    return this.dropOf(RELAYED, reason, why);
  }

  /** Drops every frame `owner` queued that still waits, counted under `reason`, each reported to it as `why`. */
  dropOwned(owner: object, reason: OwnedDropReason, why: string): number {
    return this.dropOf(owner, reason, why);
  }

  private dropOf(owner: object, reason: RelayedDropReason | OwnedDropReason, why: string): number {
    const dropped: Item[] = [];
    for (const lane of this.lanes.values()) {
      let kept: Item[] | undefined;
      for (let i = lane.head; i < lane.q.length; i++) {
        const item = lane.q[i]!;
        if (item.owner === owner) {
          if (kept === undefined) kept = lane.q.slice(lane.head, i);
          dropped.push(item);
        } else kept?.push(item);
      }
      if (kept === undefined) continue;
      // The head may have been retrying: its replacement starts its own retry window.
      lane.q = kept;
      lane.head = 0;
    }
    this.waiting -= dropped.length;
    this.stats[reason] += dropped.length;
    for (const item of dropped) this.tell(item.frame, item.done, { ok: false, busy: false, error: why });
    return dropped.length;
  }

  private drain(lane: Lane): void {
    lane.timer = undefined;
    lane.draining = true;
    try {
      this.drainLane(lane);
    } finally {
      lane.draining = false;
    }
  }

  private drainLane(lane: Lane): void {
    while (lane.head < lane.q.length) {
      const item = lane.q[lane.head]!;
      if (item.notAfter !== Infinity && performance.now() >= item.notAfter) {
        this.stats.droppedTooOld++;
        this.handled(lane);
        this.tell(item.frame, item.done, { ok: false, busy: false, error: item.late });
        continue;
      }
      const r = this.tryTransmit(item.frame, item.owner, item.notAfter);
      if (!r.ok && r.busy) {
        // Monotonic: a wall clock stepped back must not stretch the retries (and hold the bus's frames) by as much.
        const now = performance.now();
        const waiting = r.waitMs !== undefined;
        if (item.firstTryMs === 0 || item.waiting !== waiting) {
          item.firstTryMs = now;
          item.waiting = waiting;
        }
        const limit = r.waitMs ?? this.opts.retryMs;
        if (now - item.firstTryMs < limit) {
          // tx_retries counts the kernel's ENOBUFS only (each one a retry); a wait for the mode, or for the
          // kernel to send frames of ours it holds (--tx-kernel-frames), is not one.
          if (r.waitMs === undefined && r.kernelHeld !== true) this.stats.retries++;
          this.compact(lane);
          lane.timer = setTimeout(() => this.drain(lane), 1);
          return;
        }
        if (r.waitMs === undefined) {
          this.stats.droppedBusy++;
          this.opts.onFailure?.(item.frame, `transmit queue of ${item.frame.bus} stayed full for ${limit} ms: ${r.error}`);
        } else {
          // Refused as a listen-only controller's send is (tx_failed), after waiting for its mode.
          this.stats.failed++;
          this.opts.onFailure?.(item.frame, `still so after ${limit} ms: ${r.error}`);
        }
      } else if (!r.ok) {
        this.stats.failed++;
        this.opts.onFailure?.(item.frame, r.error);
      } else this.stats.sent++;
      this.handled(lane);
      this.tell(item.frame, item.done, r);
    }
    lane.q.length = 0;
    lane.head = 0;
    // Kept for the bus's next frame (no allocation per frame on a bus that keeps up), but frames may come
    // for any bus name (commands for buses this gateway lacks): past a gateway's buses, empty lanes go.
    if (this.lanes.size > MAX_BUSES_PER_DONGLE) for (const [bus, l] of this.lanes) if (l.q.length === 0 && l.timer === undefined && !l.draining) this.lanes.delete(bus);
  }

  /**
   * A transmit that throws is a failed frame, not retried (the source may have sent it before throwing: a
   * retry could put it on the bus twice).
   */
  private tryTransmit(f: CanFrame, origin: object | undefined, notAfter: number): SendResult {
    try {
      return this.transmit(f, origin, notAfter);
    } catch (err) {
      this.stats.internalErrors++;
      return { ok: false, busy: false, error: `internal error while transmitting: ${(err as Error).message ?? String(err)}` };
    }
  }

  /** Tells the sender; its callback throwing must not stop the lane (or escape into a timer and end the agent). */
  private tell(frame: CanFrame, done: TxDone | undefined, r: SendResult): void {
    try {
      done?.(r);
    } catch (err) {
      this.stats.internalErrors++;
      this.opts.onFailure?.(frame, `internal error in a sender's callback: ${(err as Error).message ?? String(err)}`);
    }
  }

  private handled(lane: Lane): void {
    lane.head++;
    this.waiting--;
  }

  /**
   * Forgets the items already handled while others wait. Without it, a bus that stays busy (a peer
   * relaying onto a full bus, a flat-out socketcand client) never lets the queue empty, and every frame
   * ever queued would stay in memory. Amortised: only once the handled part is most of the array.
   */
  private compact(lane: Lane): void {
    lane.head = compactHead(lane.q, lane.head);
  }

  /** Items held in memory, handled ones not yet forgotten included (tests: the queue's memory stays bounded). */
  get heldItems(): number {
    let n = 0;
    for (const lane of this.lanes.values()) n += lane.q.length;
    return n;
  }

  /**
   * Stops transmitting. The frames still waiting are not transmitted: each is reported to its sender as
   * such (counted in `droppedStopping`), so every relayed batch taken is done and acknowledged with the
   * link's last ack. Left unacknowledged, a batch waiting behind a busy bus held back the ack of the later
   * batches already transmitted on other buses, and the bridge resent those to the next run, which
   * transmitted them again (a restart within the age limit). Returns how many; the caller says so in its
   * last log lines. From here on every frame is refused (counted in `refusedStopped`; the Downlink takes no
   * DOWN batch any more, so none is acknowledged: the bridge resends it to the next run).
   */
  stop(): number {
    this.isStopped = true;
    const waiting: Item[] = [];
    for (const lane of this.lanes.values()) {
      clearTimeout(lane.timer);
      lane.timer = undefined;
      for (let i = lane.head; i < lane.q.length; i++) waiting.push(lane.q[i]!);
      lane.q = [];
      lane.head = 0;
    }
    this.waiting = 0;
    this.stats.droppedStopping += waiting.length;
    for (const item of waiting) this.tell(item.frame, item.done, { ok: false, busy: false, error: 'the agent is stopping: not transmitted' });
    return waiting.length;
  }
}
