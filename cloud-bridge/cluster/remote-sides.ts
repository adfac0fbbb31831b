/**
 * Group relay across nodes. The frames a side sends arrive on the node its agent is connected to; that
 * node's GroupRelay queues them for the peer side as always (same DownQueue: order, bound, age rule,
 * batch numbers, window). When the peer's agent is connected to ANOTHER node, the queue's link is a
 * RemoteSide: each encoded DOWN batch is published to the owner node (SUBJECTS.down; the batches of one
 * event-loop turn for one node go in one message, down-bundle.ts), which writes it to the agent's socket
 * unchanged. The agent's cumulative DOWN ack goes back to every node (SUBJECTS.ack, one message per turn), so
 * the sending node's window empties and backpressure (window, peerBehind) holds across nodes exactly as
 * on one node: memory stays bounded by the same limits.
 *
 * A RemoteSide is ready while the owner's lease is fresh and NATS is reachable; otherwise the queue
 * holds (and ages, and counts) frames as for an offline side, and resends unacknowledged batches once the
 * side is back, wherever it reconnected — its node says so at every welcome (SUBJECTS.relinked), since a
 * new connection to the same node changes no lease (a takeover of a silent link) while the batches in
 * flight to the old one are lost with it — and after every NATS reconnect, since core NATS loses what was
 * in transit when a connection breaks.
 */
import { randomUUID } from 'node:crypto';
import type { Msg } from 'nats';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { AgentLink } from '../agent-link.js';
import type { GroupRelay, RelayLink } from '../group-relay.js';
import { BUNDLE_MAX_BYTES, BundleWriter, readBundle, type BundledBatch } from './down-bundle.js';
import { batchFrameCount } from '../../core/uplink/frame-codec.js';
import { SUBJECTS, type NatsLink } from './nats-connection.js';
import type { Ownership } from './ownership.js';

const resendMessage = z.object({ dongle: z.string().min(1).max(64), node: z.string().min(1).max(200) }).strict();
const backMessage = z.object({ node: z.string().min(1).max(200) }).strict();
const relinkedMessage = z.object({ dongle: z.string().min(1).max(64), node: z.string().min(1).max(200) }).strict();
/** At most this many dongles' acks per message (a node with more connected dongles sends several). */
const ACKS_PER_MESSAGE = 1000;
/**
 * DOWN acks are published at most this often. Published every event-loop turn, they were most of a node's
 * NATS messages (every DOWN batch is acknowledged): the writes and parses cost a node more than the frames
 * (make bench-cluster profile). 20 ms more in the sender's window (16,384 frames per side) costs nothing.
 */
const ACK_EVERY_MS = 20;
/** Sending nodes' streams kept per dongle connected here (a peer moving has two for a moment). */
const MAX_SENDING_NODES = 16;
/** How often a socket over its bound is looked at, to ask the sender to start over once it drained. */
const DRAIN_CHECK_MS = 50;
/** At least this long between two "start over" requests for one slow agent. */
const DRAIN_RESEND_MIN_MS = 1000;
const ackMessage = z
  .object({
    node: z.string().min(1).max(200),
    acks: z
      .array(z.tuple([z.string().min(1).max(64), z.number().int().min(0)]))
      .min(1)
      .max(ACKS_PER_MESSAGE),
  })
  .strict();

export interface RemoteSidesStats {
  /** DOWN batches published to another node / received from one and written to a local agent. */
  batchesOut: number;
  batchesIn: number;
  /**
   * Batches received for a dongle no longer connected here (the sender resends them wherever it went), or
   * while its socket here is over the bound a local side keeps (the sender resends them once it drained).
   */
  batchesUndeliverable: number;
  /**
   * Batches received under another relay revision than this node's for the target's group (the sender's
   * view of the group lagging or ahead): dropped, never written to the agent.
   */
  batchesGroupChanged: number;
}

class RemoteSide implements RelayLink {
  attached = true;
  /** Names this side's batch stream; with `seq` (0, 1, 2 …) the receiver proves it has every batch in order. */
  readonly instance = randomUUID();
  seq = 0;
  constructor(
    readonly dongle: string,
    readonly node: string,
    private readonly owner: RemoteSides,
  ) {}
  get ready(): boolean {
    return this.attached && this.owner.reachable(this);
  }
  canSend(): boolean {
    return this.ready;
  }
  sendBinary(buf: Buffer): void {
    this.owner.publish(this, buf);
  }
  notifyGroup(): void {
    // The owner node tells its agent itself (it loaded the same group).
  }
}

export class RemoteSides {
  readonly stats: RemoteSidesStats = { batchesOut: 0, batchesIn: 0, batchesUndeliverable: 0, batchesGroupChanged: 0 };
  private readonly sides = new Map<string, RemoteSide>();
  /**
   * Per dongle connected here, per sending node: the remote batch stream being forwarded and the seq
   * expected next (-1: a hole was seen; nothing more of that stream is forwarded, the sender was asked to
   * start over). An agent applies only batch numbers above the last it applied, so a batch that arrived
   * after a lost one would make the lost one's resend useless: holes are never passed on. By node: while
   * a peer moves between nodes, the old node and the new one both send to this dongle for a moment (the
   * old one its unacknowledged window); kept under one key, each stream displaced the other at every
   * batch, each displacement asked for a restart and a resend of the whole window.
   */
  private readonly streams = new Map<string, Map<string, { instance: string; next: number }>>();
  /** Dongles connected here that received DOWN batches from another node (their acks are valid). */
  private readonly fedRemotely = new Set<string>();
  /** DOWN acks of this turn, by dongle (the highest: acks are cumulative), published together at its end. */
  private readonly pendingAcks = new Map<string, number>();
  /** DOWN batches of this turn, by the node they go to, bundled into one message each at its end. */
  private readonly bundles = new Map<string, BundleWriter>();
  /**
   * Dongles connected here whose socket was over its bound when a batch came (a slow reader: a cellular
   * link): the stream is cut there like at a hole, and the sender is asked to start over once the socket
   * has drained — by the node it came from. Written on regardless, a remote sender's whole window (up to
   * 16,384 frames, ~1.4 MB of CAN FD) and every restart's resend of it piled up in this node's memory,
   * where a local side holds DOWN_BOUND_BYTES.
   */
  private readonly draining = new Map<string, string>();
  /** When each dongle's sender was last asked to start over after a drain (performance.now()). */
  private readonly drainResent = new Map<string, number>();
  private drainTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly nats: NatsLink,
    private readonly ownership: Ownership,
    private readonly relay: GroupRelay,
    private readonly localLink: (dongle: string) => AgentLink | undefined,
    private readonly log: Logger,
  ) {
    nats.subscribe(SUBJECTS.down(ownership.node), (m) => this.onBundle(m));
    nats.subscribe(SUBJECTS.ack, (m) => this.onAck(m));
    nats.subscribe(SUBJECTS.back, (m) => this.onBack(m));
    nats.subscribe(SUBJECTS.resend, (m) => this.onResend(m));
    nats.subscribe(SUBJECTS.relinked, (m) => this.onRelinked(m));
    // Core NATS drops what was in transit when a connection broke, and what is published to a node that
    // has not resubscribed yet: every remote side starts over as if its agent had reconnected
    // (unacknowledged batches resent first; the agent skips those it applied) — here when this node is
    // back, and on the others when they hear that it is.
    nats.onReconnect(() => {
      this.restart(() => true);
      try {
        nats.nc.publish(SUBJECTS.back, JSON.stringify({ node: ownership.node }));
      } catch (err) {
        nats.failed('node_back publish', err);
      }
    });
  }

  private restart(which: (s: RemoteSide) => boolean): void {
    for (const [d, s] of [...this.sides]) {
      if (!which(s)) continue;
      this.drop(d);
      this.sync(d);
    }
  }

  private onResend(m: Msg): void {
    const p = resendMessage.safeParse(safeJson(m.data));
    if (!p.success) {
      this.nats.stats.badMessages++;
      return;
    }
    if (p.data.node !== this.ownership.node) return;
    const s = this.sides.get(p.data.dongle);
    if (s === undefined) return;
    this.drop(p.data.dongle);
    this.sync(p.data.dongle);
  }

  private onBack(m: Msg): void {
    const p = backMessage.safeParse(safeJson(m.data));
    if (!p.success) {
      this.nats.stats.badMessages++;
      return;
    }
    if (p.data.node !== this.ownership.node) this.restart((s) => s.node === p.data.node);
  }

  /**
   * A dongle's agent was welcomed on this node: any node sending it batches through this one starts over
   * (unacknowledged batches first, the agent skips those it applied). Without it, a takeover of a silent
   * link here left the sender's in-flight batches unacknowledged forever: lost, and a full window stalled.
   */
  localLinked(dongle: string): void {
    // Batches of the old stream still on their way must not reach the new link: the agent would take
    // their higher numbers and skip, as duplicates, the resends of those lost with the old link. Without
    // the stream they start a hole, which asks the sender to start over too.
    this.streams.delete(dongle);
    if (!this.nats.connected) return; // the reconnect restarts every side (node_back)
    this.nats.publishSoon(SUBJECTS.relinked, JSON.stringify({ dongle, node: this.ownership.node }), 'relinked publish');
  }

  private onRelinked(m: Msg): void {
    const p = relinkedMessage.safeParse(safeJson(m.data));
    if (!p.success) {
      this.nats.stats.badMessages++;
      return;
    }
    const { dongle, node } = p.data;
    if (node !== this.ownership.node && this.sides.get(dongle)?.node === node) this.restart((s) => s.dongle === dongle);
  }

  reachable(s: RemoteSide): boolean {
    return this.nats.connected && this.ownership.ownerOf(s.dongle) === s.node;
  }

  publish(s: RemoteSide, buf: Buffer): void {
    let w = this.bundles.get(s.node);
    if (w === undefined) {
      if (this.bundles.size === 0) this.nats.atTurnEnd(() => this.sendBundles());
      w = new BundleWriter(this.ownership.node);
      this.bundles.set(s.node, w);
    }
    // Queued batches of the old revision are cleared when it changes (group-relay.ts): this is the one they were made under.
    w.add({ dongle: s.dongle, side: s.instance, rev: this.relay.groupOf(s.dongle)?.rev ?? '', seq: s.seq++, batch: buf });
    this.stats.batchesOut++;
    if (w.bytes >= BUNDLE_MAX_BYTES) {
      this.bundles.delete(s.node);
      this.sendBundle(s.node, w);
    }
  }

  private sendBundles(): void {
    for (const [node, w] of this.bundles) this.sendBundle(node, w);
    this.bundles.clear();
  }

  private sendBundle(node: string, w: BundleWriter): void {
    // A failed publish is counted there; its batches are unacknowledged, so resent later: nothing is lost.
    if (!w.empty) this.nats.publishSoon(SUBJECTS.down(node), w.finish(), 'DOWN batch publish');
  }

  /** The owner of `dongle` may have changed: (re)attach a RemoteSide to the relay, or detach it. */
  sync(dongle: string): void {
    if (this.relay.groupOf(dongle) === undefined) return this.drop(dongle);
    const owner = this.ownership.ownerOf(dongle);
    const cur = this.sides.get(dongle);
    if (owner === undefined || owner === this.ownership.node) return this.drop(dongle);
    if (cur?.node === owner) return;
    this.drop(dongle);
    const s = new RemoteSide(dongle, owner, this);
    this.sides.set(dongle, s);
    this.log.info({ dongle, node: owner }, 'group side connected to another node: relayed over NATS');
    this.relay.attach(dongle, s);
  }

  /** The dongle was deleted: its remote side (if its group still had one) and what was kept of its batches go. */
  forget(dongle: string): void {
    this.drop(dongle);
    this.draining.delete(dongle);
    this.drainResent.delete(dongle);
    this.streams.delete(dongle);
    this.fedRemotely.delete(dongle);
    this.pendingAcks.delete(dongle);
  }

  /**
   * A local agent's DOWN ack: to every node that may hold batches for it — only for a dongle that has
   * received batches from another node (the others' acks concern this node alone), and coalesced: one
   * message per ACK_EVERY_MS for all dongles, each with its highest ack (acks are cumulative).
   * True when batches came from another node.
   */
  localAck(dongle: string, batch: number): boolean {
    if (!this.fedRemotely.has(dongle)) return false;
    if (!this.nats.connected) return true;
    if (this.pendingAcks.size === 0) setTimeout(() => this.publishAcks(), ACK_EVERY_MS).unref();
    if (batch > (this.pendingAcks.get(dongle) ?? -1)) this.pendingAcks.set(dongle, batch);
    return true;
  }

  private publishAcks(): void {
    if (!this.nats.connected) return this.pendingAcks.clear(); // resent sides start over after a reconnect
    const acks = [...this.pendingAcks];
    this.pendingAcks.clear();
    for (let i = 0; i < acks.length; i += ACKS_PER_MESSAGE)
      this.nats.publishSoon(SUBJECTS.ack, JSON.stringify({ node: this.ownership.node, acks: acks.slice(i, i + ACKS_PER_MESSAGE) }), 'ack publish');
  }

  private drop(dongle: string): void {
    const s = this.sides.get(dongle);
    if (s === undefined) return;
    this.sides.delete(dongle);
    s.attached = false;
    this.relay.detach(dongle, s);
  }

  private onBundle(m: Msg): void {
    let b: ReturnType<typeof readBundle>;
    try {
      b = readBundle(m.data);
    } catch {
      this.nats.stats.badMessages++;
      return;
    }
    for (const r of b.batches) this.onDown(b.from, r);
  }

  private onDown(from: string, r: BundledBatch): void {
    const { dongle, side: instance, seq } = r;
    const link = this.localLink(dongle);
    if (link === undefined) {
      // Not connected here (any more): nothing is kept for it, so a name from a confused node costs no
      // memory. A stream it had goes on only after a resend (no hole is passed on).
      this.stats.batchesUndeliverable++;
      this.streams.delete(dongle);
      return;
    }
    let byNode = this.streams.get(dongle);
    if (byNode === undefined) {
      byNode = new Map();
      this.streams.set(dongle, byNode);
    }
    let st = byNode.get(from);
    if (st === undefined || st.instance !== instance) {
      // A new stream is taken from its first batch only; joined in the middle, it is asked to start over.
      st = { instance, next: seq === 0 ? 0 : -1 };
      byNode.delete(from);
      byNode.set(from, st);
      // Node names come from other nodes' messages: at most a cluster's worth per dongle, the oldest out.
      if (byNode.size > MAX_SENDING_NODES) byNode.delete(byNode.keys().next().value!);
      if (st.next < 0) this.askResend(dongle, from);
    }
    if (st.next >= 0 && seq === st.next && link.ready && !link.canSend()) {
      // The socket is over its bound: this batch and the rest of the stream wait at the sender.
      this.stats.batchesUndeliverable++;
      st.next = -1;
      this.awaitDrain(dongle, from);
      return;
    }
    if (st.next < 0 || seq !== st.next || !link.ready) {
      this.stats.batchesUndeliverable++;
      if (st.next >= 0) {
        st.next = -1;
        if (link.ready) this.askResend(dongle, from);
      }
      return;
    }
    st.next++;
    // Addressed under another revision of the group than the one this node told the agent (or the agent is
    // in no group here): its frames may be a former peer's, or mapped to another bus. Dropped and counted,
    // its frames too (the sender counted them relayed); the later batches' acks cover it for the sender,
    // which drops its own copies when its view catches up.
    const m = this.relay.groupOf(dongle);
    if (m === undefined || m.rev !== r.rev) {
      this.stats.batchesGroupChanged++;
      this.relay.droppedForGroupChange(dongle, batchFrameCount(r.batch));
      return;
    }
    // The batch is written as the sending node encoded it; the agent validates it like any DOWN batch.
    this.stats.batchesIn++;
    this.fedRemotely.add(dongle);
    link.sendBinary(r.batch);
  }

  private awaitDrain(dongle: string, node: string): void {
    this.draining.set(dongle, node);
    this.drainTimer ??= setInterval(() => {
      const now = performance.now();
      for (const [d, n] of this.draining) {
        const link = this.localLink(d);
        if (link === undefined || !link.ready) this.draining.delete(d);
        // Only once the socket is empty, and at most once a second: the sender starts over from its
        // oldest unacknowledged batch, and asked as soon as the socket was just under its bound, its
        // resend found the batches still in it unacknowledged and filled it again at once — a loop of
        // restarts, each republishing the window (85 in 5 s to a 200 KB/s reader, in a review).
        else if (link.drained && now - (this.drainResent.get(d) ?? -Infinity) >= DRAIN_RESEND_MIN_MS) {
          this.draining.delete(d);
          this.drainResent.set(d, now);
          this.askResend(d, n);
        }
      }
      if (this.draining.size === 0) {
        clearInterval(this.drainTimer);
        this.drainTimer = undefined;
      }
    }, DRAIN_CHECK_MS);
    this.drainTimer.unref();
  }

  private askResend(dongle: string, node: string): void {
    try {
      this.nats.nc.publish(SUBJECTS.resend, JSON.stringify({ dongle, node }));
    } catch (err) {
      this.nats.failed('resend request', err);
    }
  }

  private onAck(m: Msg): void {
    const p = ackMessage.safeParse(safeJson(m.data));
    if (!p.success) {
      this.nats.stats.badMessages++;
      return;
    }
    if (p.data.node === this.ownership.node) return;
    for (const [dongle, batch] of p.data.acks) this.relay.remoteAck(dongle, batch);
  }
}

function safeJson(data: Uint8Array): unknown {
  try {
    return JSON.parse(Buffer.from(data).toString('utf8'));
  } catch {
    return undefined;
  }
}
