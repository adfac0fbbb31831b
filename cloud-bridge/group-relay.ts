/**
 * The group relay: every frame one side receives is sent DOWN to the other side, unsampled, in order,
 * on the mapped bus. Holds the live groups (loaded from the store, changed by the admin API), one
 * DownQueue per side (backlog + in-flight batches), the connected links, the counters, and publishes
 * `group_state` on every change and every interval.
 *
 * Loop guard: frames that arrived as `tx` (already transmitted by their agent) are never relayed, DOWN
 * batches from agents are refused upstream, and a frame never goes back to its origin dongle.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { GroupStateData } from '../core/console/events.js';
import { groupStateData, logData } from '../core/console/normalize.js';
import { RateLimitedLog } from '../core/log/rate-limited-log.js';
import { BRIDGE_CLOCK, type ClockFix } from '../core/uplink/clock.js';
import type { SequencedFrame } from '../core/uplink/frame-codec.js';
import type { BridgeConsoles } from './consoles.js';
import { GroupMembership, type Membership, type Side } from './group-membership.js';
import { DownQueue, pendingFrame, type DownLink, type DropReason } from './down-queue.js';
import { RELAY_CLOCK, type RelayClock } from './relay-clock.js';
import type { GroupRow } from './store.js';
import type { StateStore } from './state-store.js';

/** Frames waiting for a connected peer beyond which the sender's acks are held (see peerBehind). */
const PEER_BEHIND_FRAMES = 4096;
const SIDES: readonly Side[] = ['a', 'b'];
const other = (s: Side): Side => (s === 'a' ? 'b' : 'a');
export const DROP_REASONS: readonly DropReason[] = ['backlog_full', 'too_old', 'group_changed', 'bridge_stopped', 'internal_error', 'not_mapped'];
/** The reasons of frames lost, what group_state's `dropped` adds up: `not_mapped` is the bus map's choice, not a loss. */
const LOSS_REASONS: readonly DropReason[] = DROP_REASONS.filter((r) => r !== 'not_mapped');

/** A connected agent as the relay sees it. */
export interface RelayLink extends DownLink {
  /** Tells the agent its group membership or the group's revision changed (`rev`: undefined with no group). */
  notifyGroup(group: string | null, rev?: string): void;
}

export interface RelaySettings {
  backlogMaxFrames: number;
  backlogMaxAgeMs: number;
  groupStateIntervalMs: number;
  /** Cluster mode: one epoch for every node (DOWN numbers follow the clock there, see nextBatch). */
  epoch?: string;
  /** The wall and monotonic clocks held frames age by (tests give their own; default the bridge's). */
  clock?: RelayClock;
}

interface SideRuntime {
  group: string;
  side: Side;
  dongle: string;
  queue: DownQueue;
}

interface GroupRuntime {
  id: string;
  /** relayRevision of what it relays under now. */
  rev: string;
  sides: Record<Side, SideRuntime>;
  busMap: Record<string, string>;
  /**
   * Bus name translation for frames coming from side a (a→b: the map's keys to its values) and from side b
   * (b→a: values to keys). Empty (no bus map): every bus relays under its own name. Otherwise only the
   * buses the map names are relayed in that direction: a frame on another bus is skipped and counted
   * (`not_mapped`), never transmitted — under its own name it could land on a bus the map targets (can1 of
   * a map {can0: can1}), mixed with the frames mapped there.
   */
  map: Record<Side, Map<string, string>>;
  /** Frames sent to the target side for the first time, by direction of travel. */
  relayed: { a_to_b: number; b_to_a: number };
  /** Dropped frames by target side and reason, since this bridge process started. */
  dropped: Record<Side, Record<DropReason, number>>;
  /** Totals persisted by earlier runs. */
  base: { dropped: number; relayed: number };
  rate: { lastTotal: number; lastAt: number; value: number };
}

export interface GroupMetrics {
  group: string;
  relayed: { a_to_b: number; b_to_a: number };
  sides: { side: Side; dongle: string; backlog: number; inFlight: number; dropped: Record<DropReason, number> }[];
}

/** Longest a relayed frame waits for the end of its event-loop turn before its DOWN batch is sent anyway. */
const MAX_DEFER_MS = 5;
/** Sweep period: age-bound drops, and sends retried after a slow socket or a full window. */
const SWEEP_MS = 50;
/** At most one log line per this long for internal errors of the relay (each is counted). */
const ERROR_LOG_MS = 10_000;
/**
 * The periodic group_state pass is spread over its interval in slices about this long, each group once
 * per interval: all at once, 1,000 groups held the event loop 15-20 ms every interval (states, console
 * events, one counters transaction), which the relay's latency paid.
 */
const STATE_SLICE_MS = 250;

/**
 * What a group relays under, as a short digest: its id and creation (a group deleted and made again is
 * another group), its sides and its bus map (in key order). A relayed frame held by an agent was addressed
 * under one revision; another revision means the frame may be for another bus or from another peer. The
 * same on every cluster node (made from the stored row alone), so a welcome from any node agrees.
 */
export function relayRevision(row: GroupRow, busMap: Record<string, string>): string {
  const map = Object.entries(busMap).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0));
  return createHash('sha256')
    .update(JSON.stringify([row.id, row.created_at, row.side_a, row.side_b, map]))
    .digest('base64url')
    .slice(0, 16);
}

export class GroupRelay {
  private readonly groups = new Map<string, GroupRuntime>();
  private readonly links = new Map<string, RelayLink>();
  /**
   * Random per bridge process, sent in every welcome: an agent forgets the last DOWN batch it applied
   * when it changes (a restarted bridge numbers afresh).
   */
  readonly epoch: string;
  /**
   * DOWN batch numbers come from one counter for every target. It also starts from the clock (×100, which
   * fits u48 until 2059), so numbers keep increasing across bridge restarts even for an agent that does
   * not look at the epoch.
   */
  private downBatch = Date.now() * 100;
  /** Highest DOWN batch sent to each dongle: an ack above it names a batch it never got. */
  private readonly highestDown = new Map<string, number>();
  private readonly sweepTimer: NodeJS.Timeout;
  private readonly stateTimer: NodeJS.Timeout;
  /** The periodic pass: slices per interval, the slice due next, the groups of the current interval. */
  private readonly stateSlices: number;
  private stateSlice = 0;
  private stateCycle: GroupRuntime[] = [];
  /** Frames that arrived as `tx` and were therefore not relayed. */
  loopGuarded = 0;
  /**
   * Sides that got frames during this event-loop turn: flushed together once the turn's reads are done
   * (setImmediate runs after the poll phase), so the UP batches of one origin read in one turn leave as
   * one DOWN batch (one send, one ack) instead of one each. Adds no timer delay; a turn that runs long (a
   * starved process reading thousands of sockets) flushes every MAX_DEFER_MS, so frames read early in it
   * do not age meanwhile.
   */
  private readonly dirty = new Set<SideRuntime>();
  private flushScheduled = false;
  private dirtySince = 0;
  /** Internal errors caught in the relay's work for a side (a bug; see `guarded`). */
  internalErrors = 0;
  private readonly errorLog: RateLimitedLog;
  private readonly clock: RelayClock;

  constructor(
    private readonly settings: RelaySettings,
    private readonly store: StateStore,
    private readonly consoles: BridgeConsoles,
    private readonly log: Logger,
    /** Which group and side each dongle is in: this relay keeps it, the rest of the bridge reads it. */
    readonly membership: GroupMembership = new GroupMembership(),
  ) {
    this.epoch = settings.epoch ?? randomUUID();
    this.errorLog = new RateLimitedLog(log, ERROR_LOG_MS);
    this.clock = settings.clock ?? RELAY_CLOCK;
    this.sweepTimer = setInterval(() => this.sweep(), SWEEP_MS);
    this.sweepTimer.unref();
    this.stateSlices = Math.max(1, Math.round(settings.groupStateIntervalMs / STATE_SLICE_MS));
    this.stateTimer = setInterval(() => this.periodic(), settings.groupStateIntervalMs / this.stateSlices);
    this.stateTimer.unref();
  }

  /** Loads every stored group (at start), without announcing them. */
  load(): void {
    for (const row of this.store.groups()) this.apply(row, false);
  }

  /** The dongle's group and side (group-membership.ts). */
  groupOf(dongle: string): Membership | undefined {
    return this.membership.of(dongle);
  }

  /**
   * Frames another node relayed to `dongle` under a revision of its group this node does not relay under
   * (cluster/remote-sides.ts drops such a batch): counted as `group_changed` on its side here, as a local
   * group change counts what it drops. Not counted anywhere else: the sending node counted them relayed.
   */
  droppedForGroupChange(dongle: string, frames: number): void {
    const m = this.memberOf(dongle);
    if (m !== undefined) m.group.dropped[m.side].group_changed += frames;
  }

  /** The live group a dongle is a side of, with its side. */
  private memberOf(dongle: string): { group: GroupRuntime; side: Side } | undefined {
    const m = this.membership.of(dongle);
    if (m === undefined) return undefined;
    const g = this.groups.get(m.group);
    return g && { group: g, side: m.side };
  }

  has(gid: string): boolean {
    return this.groups.has(gid);
  }

  // ---- links ----

  /** A side's agent is up (after its welcome): resend what it has not acknowledged, then its backlog. */
  attach(dongle: string, link: RelayLink): void {
    this.links.set(dongle, link);
    const m = this.memberOf(dongle);
    if (!m) return;
    const side = m.group.sides[m.side];
    this.guarded(side, 'sending to a side that connected', () => {
      side.queue.linkUp();
      side.queue.flush(link, this.clock.now());
    });
    this.publishState(m.group);
  }

  detach(dongle: string, link: RelayLink): void {
    if (this.links.get(dongle) !== link) return; // already replaced by a newer connection
    this.links.delete(dongle);
    const m = this.memberOf(dongle);
    if (!m) return;
    const side = m.group.sides[m.side];
    this.guarded(side, 'a side disconnected', () => side.queue.linkDown());
    this.publishState(m.group);
  }

  // ---- data plane ----

  /**
   * Frames from one dongle's UP batch: queued for the peer side, sent at the end of this event-loop turn if
   * it can take them. `clock`: the origin's fix, measured against the bridge's wall clock in domain
   * `clockDomainMs` (its link's, relay-clock.ts; undefined: the current one).
   */
  relay(dongle: string, frames: readonly SequencedFrame[], clock: ClockFix = BRIDGE_CLOCK, clockDomainMs?: number): void {
    const m = this.memberOf(dongle);
    if (!m) return;
    const target = m.group.sides[other(m.side)];
    if (target.dongle === dongle) return;
    const map = m.group.map[m.side];
    const mapped = map.size > 0;
    const q = target.queue;
    const now = this.clock.now();
    const domain = clockDomainMs ?? now.wallMinusMonoMs;
    let notMapped = 0;
    for (let i = 0; i < frames.length; i++) {
      const sf = frames[i]!;
      const f = sf.frame;
      if (f.direction === 'tx') {
        this.loopGuarded++;
        continue;
      }
      const bus = mapped ? map.get(f.bus) : undefined;
      if (mapped && bus === undefined) {
        notMapped++;
        continue;
      }
      // Ages from when the origin received it (its clock converted, uncertainty against the frame), on the
      // monotonic clock.
      q.push(pendingFrame(bus === undefined ? f : { ...f, bus }, sf.seq, dongle, clock, domain));
    }
    if (notMapped > 0) m.group.dropped[target.side].not_mapped += notMapped;
    this.dirty.add(target);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      this.dirtySince = now.monoMs;
      setImmediate(() => this.flushDirty());
    } else if (now.monoMs - this.dirtySince >= MAX_DEFER_MS) {
      // The pending setImmediate then finds nothing (or the next turn's frames) to send: harmless.
      this.flushDirty();
    }
  }

  /**
   * Shutdown, before the links close: what this turn's UP batches queued goes out now, ahead of each
   * link's close frame. Those frames' batches were already taken from their origin (and will be
   * acknowledged to it), so left waiting they would die with the process, uncounted.
   */
  flushNow(): void {
    this.flushDirty();
  }

  /**
   * Shutdown, after flushNow() and before the links close: what is still held for a side (an offline
   * side's backlog, a connected side's frames beyond its window or slow socket) would die with the
   * process, so it is counted (`bridge_stopped`, in the group's persisted `dropped` that the next start's
   * group_state shows) and logged. Not persisted for delivery: see docs/architecture.md's drop table.
   */
  dropHeldAtStop(): void {
    for (const g of this.groups.values()) {
      for (const s of SIDES) {
        const side: SideRuntime = g.sides[s];
        const connected = this.links.get(side.dongle)?.ready === true;
        const n = side.queue.dropAtStop(connected);
        if (n === 0) continue;
        const msg = `bridge stopping: ${n} frames held for side ${s} (${side.dongle}${connected ? ', connected' : ', offline'}) of group ${g.id} are dropped, counted in the group's dropped total`;
        this.log.warn({ group: g.id, side: s, dongle: side.dongle, connected, frames: n, code: 'relay_dropped_at_stop' }, msg);
        this.consoles.groupLog(g.id, logData('warn', msg, 'relay_dropped_at_stop', { side: s, dongle: side.dongle, frames: n }));
      }
    }
  }

  /** Sends what this turn's UP batches queued (see `dirty`). */
  private flushDirty(): void {
    this.flushScheduled = false;
    const now = this.clock.now();
    for (const side of this.dirty) this.guarded(side, 'sending relayed frames', () => side.queue.flush(this.links.get(side.dongle), now));
    this.dirty.clear();
  }

  /**
   * One side's queue work. The relay runs it from timers and setImmediate (sweep, flushDirty) and from
   * links' messages: a throw there (a bug: a batch that cannot be encoded or re-encoded) must not end the
   * process (nothing would catch it) nor cost the side every reconnect. It is counted, logged with the group,
   * side and error (at most one line per ERROR_LOG_MS, with how many were held back), and what the side's
   * queue held is dropped and counted as `internal_error` (frames already on the current link's wire are
   * the agent's), so the same frames cannot fail again and the relay goes on with the next.
   */
  private guarded(side: SideRuntime, what: string, work: () => void): void {
    try {
      work();
    } catch (err) {
      this.internalErrors++;
      const frames = side.queue.backlog;
      try {
        side.queue.clear('internal_error');
      } catch (clearErr) {
        this.log.error({ err: clearErr, group: side.group, side: side.side }, 'relay: could not clear a side after an internal error');
      }
      this.errorLog.write(
        'error',
        { err, group: side.group, side: side.side, dongle: side.dongle, frames, code: 'relay_internal_error' },
        `internal error in the relay while ${what} (group ${side.group}, side ${side.side}, ${side.dongle}): the frames held for that side are dropped, counted as internal_error; the relay goes on`,
      );
    }
  }

  /**
   * True while this dongle's peer is connected but falling behind (frames pile up for it). The bridge then
   * holds its acks of this dongle's UP batches, so the backpressure reaches the sender: a replay waits,
   * a live bus fills the agent's own bounded, counted buffer. An offline peer is not "behind": its frames
   * go to the bounded backlog and are acked, or the sender would stall until the peer returns.
   */
  peerBehind(dongle: string): boolean {
    const m = this.memberOf(dongle);
    if (!m) return false;
    const target = m.group.sides[other(m.side)];
    return this.links.has(target.dongle) && target.queue.waiting > PEER_BEHIND_FRAMES;
  }

  /** The agent's cumulative ack of DOWN batches. False when it acknowledges something never sent to it. */
  downAck(dongle: string, batch: number): boolean {
    if (batch > (this.highestDown.get(dongle) ?? -1)) return false;
    const m = this.memberOf(dongle);
    if (!m) return true; // e.g. a late ack after the group ended: nothing is owed any more
    const side = m.group.sides[m.side];
    this.guarded(side, 'taking an ack', () => {
      side.queue.ack(batch);
      side.queue.flush(this.links.get(dongle), this.clock.now());
    });
    return true;
  }

  /**
   * A DOWN ack relayed from the node the dongle is connected to (cluster mode): acknowledges this node's
   * batches to it. Cumulative, like the agent's: an agent ignores a batch numbered at or below one it applied.
   */
  remoteAck(dongle: string, batch: number): void {
    const m = this.memberOf(dongle);
    if (!m) return;
    const side = m.group.sides[m.side];
    this.guarded(side, 'taking an ack from another node', () => {
      side.queue.ack(batch);
      side.queue.flush(this.links.get(dongle), this.clock.now());
    });
  }

  /** The dongle was deleted (its group, if any, removed before): what the relay kept of it goes too. */
  forget(dongle: string): void {
    this.highestDown.delete(dongle);
  }

  /** Every dongle that is a side of a group. */
  memberDongles(): IterableIterator<string> {
    return this.membership.dongles();
  }

  // ---- groups (admin API) ----

  /** A group was created or updated in the store: apply it and announce it. */
  put(row: GroupRow, created: boolean): void {
    const g = this.apply(row, true);
    this.consoles.groupLog(
      g.id,
      logData('info', `group ${created ? 'created' : 'updated'}: a=${g.sides.a.dongle}, b=${g.sides.b.dongle}`, created ? 'group_created' : 'group_updated', {
        a: g.sides.a.dongle,
        b: g.sides.b.dongle,
        bus_map: JSON.stringify(g.busMap),
      }),
    );
    this.publishState(g);
  }

  /** A group ended (deleted, or one of its dongles was): its frames in waiting are dropped. */
  remove(gid: string): void {
    const g = this.groups.get(gid);
    if (!g) return;
    this.groups.delete(gid);
    for (const s of SIDES) {
      const side: SideRuntime = g.sides[s];
      side.queue.clear('group_changed');
      if (this.membership.of(side.dongle)?.group === g.id) {
        this.membership.delete(side.dongle);
        this.links.get(side.dongle)?.notifyGroup(null);
      }
    }
  }

  state(gid: string): GroupStateData | undefined {
    const g = this.groups.get(gid);
    return g ? this.stateOf(g) : undefined;
  }

  /** Every group's state, by group id. */
  states(): GroupStateData[] {
    return [...this.groups.values()].sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0)).map((g) => this.stateOf(g));
  }

  metrics(): GroupMetrics[] {
    return [...this.groups.values()].map((g) => ({
      group: g.id,
      relayed: g.relayed,
      sides: SIDES.map((s) => ({ side: s, dongle: g.sides[s].dongle, backlog: g.sides[s].queue.backlog, inFlight: g.sides[s].queue.inFlight, dropped: g.dropped[s] })),
    }));
  }

  /** Stops the timers and saves the counters. */
  stop(): void {
    clearInterval(this.sweepTimer);
    clearInterval(this.stateTimer);
    for (const g of this.groups.values()) this.persist(g);
    this.dirty.clear();
  }

  // ---- internals ----

  private apply(row: GroupRow, announce: boolean): GroupRuntime {
    const busMap = JSON.parse(row.bus_map) as Record<string, string>;
    const map = {
      a: new Map(Object.entries(busMap)),
      b: new Map(Object.entries(busMap).map(([a, b]) => [b, a] as [string, string])),
    };
    const rev = relayRevision(row, busMap);
    let g = this.groups.get(row.id);
    const dongles: Record<Side, string> = { a: row.side_a, b: row.side_b };
    if (g === undefined) {
      g = {
        id: row.id,
        rev,
        sides: { a: this.makeSide(row.id, 'a', dongles.a), b: this.makeSide(row.id, 'b', dongles.b) },
        busMap,
        map,
        relayed: { a_to_b: 0, b_to_a: 0 },
        dropped: { a: zeroDrops(), b: zeroDrops() },
        base: { dropped: row.dropped, relayed: row.relayed_total },
        rate: { lastTotal: 0, lastAt: this.clock.now().monoMs, value: 0 },
      };
      this.groups.set(row.id, g);
    } else if (g.rev !== rev) {
      g.rev = rev;
      g.busMap = busMap;
      g.map = map;
      // Waiting frames were mapped and addressed under the old revision (its sides, its bus map): they are
      // dropped, not redirected. Each side still in the group is told the new revision below, and drops
      // what it already holds (agent/tx-queue.ts); a dongle that left is told it has no group.
      for (const s of SIDES) {
        const old: SideRuntime = g.sides[s];
        old.queue.clear('group_changed');
        if (old.dongle !== dongles.a && old.dongle !== dongles.b && this.membership.of(old.dongle)?.group === g.id) {
          this.membership.delete(old.dongle);
          if (announce) this.links.get(old.dongle)?.notifyGroup(null);
        }
      }
      if (g.sides.a.dongle !== dongles.a || g.sides.b.dongle !== dongles.b) g.sides = { a: this.makeSide(row.id, 'a', dongles.a), b: this.makeSide(row.id, 'b', dongles.b) };
    }
    for (const s of SIDES) {
      const d = g.sides[s].dongle;
      const before = this.membership.of(d);
      this.membership.set(d, g.id, s, rev);
      if (announce && (before?.group !== g.id || before.rev !== rev)) this.links.get(d)?.notifyGroup(g.id, rev);
    }
    return g;
  }

  private makeSide(gid: string, side: Side, dongle: string): SideRuntime {
    const queue = new DownQueue(
      dongle,
      { maxFrames: this.settings.backlogMaxFrames, maxAgeMs: this.settings.backlogMaxAgeMs },
      {
        // Never below the clock ×100: numbers from different cluster nodes keep increasing for an agent
        // whose DOWN sender moves to another node (clocks kept by NTP; see docs/cluster.md).
        nextBatch: () => (this.downBatch = Math.max(this.downBatch + 1, Date.now() * 100)),
        dropped: (reason, n) => {
          const g = this.groups.get(gid);
          if (g) g.dropped[side][reason] += n;
        },
        sent: (frames, batch) => {
          this.highestDown.set(dongle, batch);
          const g = this.groups.get(gid);
          if (!g) return;
          if (side === 'b') g.relayed.a_to_b += frames.length;
          else g.relayed.b_to_a += frames.length;
          this.consoles.downFrames(dongle, frames);
        },
      },
    );
    return { group: gid, side, dongle, queue };
  }

  private stateOf(g: GroupRuntime): GroupStateData {
    const online = { a: this.links.get(g.sides.a.dongle)?.ready === true, b: this.links.get(g.sides.b.dongle)?.ready === true };
    let dropped = g.base.dropped;
    for (const s of SIDES) for (const r of LOSS_REASONS) dropped += g.dropped[s][r];
    return groupStateData({
      group: g.id,
      mode: online.a && online.b ? 'relaying' : online.a || online.b ? 'degraded' : 'down',
      sides: {
        a: { dongle: g.sides.a.dongle, online: online.a, backlog: g.sides.a.queue.backlog },
        b: { dongle: g.sides.b.dongle, online: online.b, backlog: g.sides.b.queue.backlog },
      },
      offline_side: online.a && online.b ? null : !online.a && !online.b ? 'both' : online.a ? 'b' : 'a',
      dropped,
      relay_rate: g.rate.value,
      relayed_total: g.base.relayed + g.relayed.a_to_b + g.relayed.b_to_a,
    });
  }

  private publishState(g: GroupRuntime): void {
    this.consoles.groupState(g.id, this.stateOf(g));
  }

  private sweep(): void {
    const now = this.clock.now();
    for (const g of this.groups.values()) {
      for (const s of SIDES) {
        const side: SideRuntime = g.sides[s];
        // Nothing waiting and nothing in flight: nothing to age or send (most sides of a large, quiet fleet).
        if (side.queue.backlog === 0) continue;
        const link = this.links.get(side.dongle);
        this.guarded(side, 'the periodic sweep', () => {
          side.queue.expire(now);
          side.queue.flush(link, now);
        });
      }
    }
  }

  /** One slice of the periodic pass: each group's rate, its group_state, its counters saved. */
  private periodic(): void {
    if (this.stateSlice === 0) this.stateCycle = [...this.groups.values()];
    const n = this.stateCycle.length;
    const from = Math.floor((this.stateSlice * n) / this.stateSlices);
    const to = Math.floor(((this.stateSlice + 1) * n) / this.stateSlices);
    this.stateSlice = (this.stateSlice + 1) % this.stateSlices;
    const now = this.clock.now().monoMs;
    const rows: { id: string; dropped: number; relayedTotal: number }[] = [];
    for (let i = from; i < to; i++) {
      const g = this.stateCycle[i]!;
      if (this.groups.get(g.id) !== g) continue; // removed or replaced since the interval began
      const total = g.relayed.a_to_b + g.relayed.b_to_a;
      const secs = (now - g.rate.lastAt) / 1000;
      g.rate.value = secs > 0 ? Math.round(((total - g.rate.lastTotal) / secs) * 10) / 10 : 0;
      g.rate.lastTotal = total;
      g.rate.lastAt = now;
      const s = this.stateOf(g);
      rows.push({ id: g.id, dropped: s.dropped, relayedTotal: s.relayed_total });
      // A timer's work: a throw (a bug in a console) is logged, never the end of the process.
      try {
        this.consoles.groupState(g.id, s);
      } catch (err) {
        this.internalErrors++;
        this.errorLog.write('error', { err, group: g.id, code: 'relay_internal_error' }, `internal error publishing the group_state of ${g.id}; the relay goes on`);
      }
    }
    if (rows.length === 0) return;
    // One transaction for the slice's groups, not one per group (a fleet has hundreds).
    try {
      this.store.saveAllGroupCounters(rows);
    } catch (err) {
      this.log.warn({ err }, 'could not save the group counters');
    }
  }

  private persist(g: GroupRuntime): void {
    const s = this.stateOf(g);
    try {
      this.store.saveGroupCounters(g.id, s.dropped, s.relayed_total);
    } catch (err) {
      this.log.warn({ err, group: g.id }, 'could not save the group counters');
    }
  }
}

function zeroDrops(): Record<DropReason, number> {
  return { backlog_full: 0, too_old: 0, group_changed: 0, bridge_stopped: 0, internal_error: 0, not_mapped: 0 };
}
