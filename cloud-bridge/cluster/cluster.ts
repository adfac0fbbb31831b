/**
 * Cluster mode (`--cluster nats://… --node-id <name>`), wired: the NATS connection, dongle ownership
 * leases and the cross-node group relay, behind the few calls AgentServer and bridge.ts make. Without
 * --cluster none of this exists and the bridge is the single process it always was.
 */
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { scrapedCounter as counter, scrapedGauge as gauge } from '../../core/metrics/scraped.js';
import type { BatchPosition } from '../../core/uplink/batch-dedupe.js';
import type { AgentLink } from '../agent-link.js';
import type { GroupRelay } from '../group-relay.js';
import type { RecordingQuestion, RecordingReply } from '../recording-requests.js';
import type { ArbitratedLink, Verdict } from '../link-arbiter.js';
import type { ConsoleStream } from '../../core/console/console-stream.js';
import type { StreamManager } from '../../core/console/stream-manager.js';
import { ConsoleSync, type ConsoleSyncDeps } from './console-sync.js';
import { NatsLink } from './nats-connection.js';
import { Ownership } from './ownership.js';
import { RemoteRecordings } from './remote-recordings.js';
import { RemoteSides } from './remote-sides.js';
import { UpPositions } from './up-positions.js';

export interface ClusterSettings {
  servers: string[];
  /** NATS user/password (cluster-options.ts). */
  auth?: { user: string; pass: string };
  node: string;
  /** The arbiter's takeover time (missed heartbeats). */
  takeoverAfterMs: number;
  /** Agent ping interval: leases are rewritten twice per interval. */
  pingMs: number;
}

/** What the cluster needs from the agent server. */
export interface LocalAgents {
  linkOf(dongle: string): AgentLink | undefined;
  /** Another node holds the dongle now: close its link here. */
  cut(dongle: string): void;
  /** A registered dongle (what other nodes say of unknown ones is not kept). */
  isDongle(dongle: string): boolean;
}

const SYNC_MS = 250;

export class Cluster {
  private ownership!: Ownership;
  /** Created once the lease bucket is open; lease news that arrives before is caught up by the sync timer. */
  private sides: RemoteSides | undefined;
  private syncTimer: NodeJS.Timeout | undefined;
  private consoles: ConsoleSync | undefined;
  private positions!: UpPositions;
  private recordings!: RemoteRecordings;

  private constructor(
    readonly node: string,
    private readonly nats: NatsLink,
  ) {}

  static async start(s: ClusterSettings, relay: GroupRelay, agents: LocalAgents, log: Logger): Promise<Cluster> {
    const clog = log.child({ node: s.node });
    const nats = await NatsLink.open(s.servers, s.node, clog, s.auth);
    const c = new Cluster(s.node, nats);
    c.ownership = new Ownership(
      nats,
      s.node,
      s.takeoverAfterMs,
      Math.max(250, Math.round(s.pingMs / 2)),
      { lost: (d) => agents.cut(d), changed: (d) => (c.sides?.sync(d), c.consoles?.leaseChanged(d)) },
      clog,
    );
    try {
      await c.ownership.open();
    } catch (err) {
      c.ownership.stop();
      await nats.close();
      throw new Error(`NATS at ${s.servers.join(', ')} has no usable JetStream for the ownership leases (${(err as Error).message}); run nats-server with -js`);
    }
    const sides = (c.sides = new RemoteSides(nats, c.ownership, relay, (d) => agents.linkOf(d), clog));
    c.positions = new UpPositions(nats, s.node, (d) => agents.isDongle(d), clog);
    c.recordings = new RemoteRecordings(
      nats,
      s.node,
      (d) => agents.linkOf(d),
      async (d) => c.ownership.ownerOf(d) ?? (await c.ownership.holderInStore(d)),
      clog,
    );
    // Groups change through the admin API of any node: every group side is checked regularly too.
    c.syncTimer = setInterval(() => {
      for (const d of relay.memberDongles()) nats.guarded('the group sides check', () => sides.sync(d));
    }, SYNC_MS);
    c.syncTimer.unref();
    clog.info({ servers: s.servers }, 'cluster mode: connected to NATS');
    return c;
  }

  /**
   * Shares this node's dongle and group consoles with the other nodes (console-sync.ts). Returns what
   * the console route awaits before serving a reader (the mirror's history, when another node numbers).
   */
  shareConsoles(
    streams: StreamManager,
    sidesOf: (gid: string) => readonly [string, string] | undefined,
    streamOf: (name: string) => ConsoleStream | undefined,
    isDongle: (dongle: string) => boolean,
    log: Logger,
    admitForwarded?: ConsoleSyncDeps['admitForwarded'],
  ): (s: ConsoleStream, lastEventId: string | undefined) => Promise<void> | undefined {
    const sync = (this.consoles = new ConsoleSync({
      nats: this.nats,
      node: this.node,
      streams,
      ownerOf: (d) => this.ownership.ownerOf(d),
      holderInStore: (d) => this.ownership.holderInStore(d),
      sidesOf,
      streamOf,
      isDongle,
      log: log.child({ node: this.node }),
      ...(admitForwarded ? { admitForwarded } : {}),
    }));
    return (s, id) => sync.beforeRead(s, id);
  }

  /** A recording list or chunk of a dongle whose link another node holds; undefined when none does. */
  askRecording(dongle: string, q: RecordingQuestion): Promise<RecordingReply | undefined> {
    return this.recordings.ask(dongle, q);
  }

  get natsReachable(): boolean {
    return this.nats.connected;
  }

  claim(dongle: string, local: ArbitratedLink | undefined, decide: (current: ArbitratedLink | undefined) => Verdict): Promise<Verdict> {
    return this.ownership.claim(dongle, local, decide);
  }

  /** A claim's link was refused after all (another connection admitted meanwhile): it no longer answers for the lease. */
  unclaim(dongle: string): void {
    this.ownership.unclaim(dongle);
  }

  /** A claim's link closed before it was admitted: the lease it took is given back (ownership.ts abandon). */
  abandon(dongle: string): void {
    void this.ownership.abandon(dongle);
  }

  held(dongle: string, link: AgentLink): void {
    this.ownership.hold(dongle, link);
    this.sides?.sync(dongle);
    this.sides?.localLinked(dongle);
  }

  /** The dongle's link here ended at UP position `pos` (told to every node before the lease is given back). */
  released(dongle: string, link: AgentLink, pos: BatchPosition | undefined): void {
    if (pos !== undefined) this.positions.linkEnded(dongle, pos);
    this.ownership.release(dongle, link);
  }

  /** The dongle was deleted: what other nodes said of it, and what this node kept for it, is forgotten. */
  forget(dongle: string): void {
    this.positions?.forget(dongle);
    this.sides?.forget(dongle);
    this.consoles?.forget(dongle);
  }

  /** The last UP batch of `run` another node took for the dongle, or -1. */
  upPositionOf(dongle: string, run: string): number {
    return this.positions.of(dongle, run);
  }

  /** A local agent's DOWN ack; true when another node sent it batches (so the ack is not "never sent"). */
  downAck(dongle: string, batch: number): boolean {
    return this.sides?.localAck(dongle, batch) ?? false;
  }

  health(): Record<string, unknown> {
    return { node: this.node, nats: this.nats.connected ? 'reachable' : 'unreachable' };
  }

  registerMetrics(r: Registry): void {
    // Every series of this node's /metrics carries its id.
    r.setDefaultLabels({ node: this.node });
    const st = this.nats.stats;
    gauge(r, 'canrelay_bridge_cluster_nats_connected', '1 while this node reaches NATS', [], (g) => g.set(this.nats.connected ? 1 : 0));
    counter(r, 'canrelay_bridge_cluster_nats_disconnects_total', 'Times this node lost its NATS connection', [], (c) => c.inc(st.disconnects));
    counter(r, 'canrelay_bridge_cluster_failed_ops_total', 'Cluster operations (lease, publish, a message handler that threw) that failed, e.g. while NATS was away', [], (c) =>
      c.inc(st.failedOps),
    );
    counter(r, 'canrelay_bridge_cluster_bad_messages_total', 'Cluster messages that failed validation and were ignored', [], (c) => c.inc(st.badMessages));
    counter(r, 'canrelay_bridge_cluster_unchecked_claims_total', 'Agent connections admitted while NATS was unreachable (lease written later)', [], (c) =>
      c.inc(this.ownership.uncheckedClaims),
    );
    counter(r, 'canrelay_bridge_cluster_leases_lost_total', 'Dongle leases this node found held by another node (its link here cut)', [], (c) => c.inc(this.ownership.lostLeases));
    counter(r, 'canrelay_bridge_cluster_down_batches_total', 'DOWN batches carried over NATS, by direction', ['direction'], (c) => {
      const st = this.sides?.stats;
      if (!st) return;
      c.inc({ direction: 'out' }, st.batchesOut);
      c.inc({ direction: 'in' }, st.batchesIn);
      c.inc({ direction: 'undeliverable' }, st.batchesUndeliverable);
      c.inc({ direction: 'group_changed' }, st.batchesGroupChanged);
    });
    const cs = () => this.consoles?.stats;
    counter(
      r,
      'canrelay_bridge_cluster_console_events_total',
      'Console events between nodes: numbered here and published, forwarded to the numbering node, received forwarded, adopted into a mirror, duplicates ignored',
      ['direction'],
      (c) => {
        const st = cs();
        if (!st) return;
        c.inc({ direction: 'numbered_out' }, st.numberedOut);
        c.inc({ direction: 'forwarded_out' }, st.forwardedOut);
        c.inc({ direction: 'forwarded_in' }, st.forwardedIn);
        c.inc({ direction: 'adopted' }, st.adopted);
        c.inc({ direction: 'duplicate' }, st.duplicates);
      },
    );
    counter(
      r,
      'canrelay_bridge_cluster_console_events_dropped_total',
      'Console events not carried between nodes, by reason (readers of a mirror that misses one get a stream_reset; held_overflow: not held during a catch-up, asked for again from history)',
      ['reason'],
      (c) => {
        const st = cs();
        const o = this.consoles?.outboxDrops;
        if (!st || !o) return;
        c.inc({ reason: 'queue_full' }, o.queue_full ?? 0);
        c.inc({ reason: 'nats_down' }, o.nats_down ?? 0);
        c.inc({ reason: 'held_overflow' }, st.heldDropped);
        c.inc({ reason: 'undeliverable' }, st.forwardUndeliverable);
        c.inc({ reason: 'queued_after_sent' }, st.forwardedLeftOut);
      },
    );
    counter(
      r,
      'canrelay_bridge_cluster_console_mirror_restarts_total',
      'Console mirrors started again at a hole in the ids or a new run (their readers resume with a stream_reset)',
      [],
      (c) => c.inc(cs()?.restarts ?? 0),
    );
    counter(r, 'canrelay_bridge_cluster_console_history_requests_total', 'History asked of the numbering node for a console mirror, by result', ['result'], (c) => {
      const st = cs();
      if (!st) return;
      c.inc({ result: 'asked' }, st.historyRequests);
      c.inc({ result: 'failed' }, st.historyFailures);
    });
    gauge(r, 'canrelay_bridge_cluster_console_mirrors', 'Console streams mirrored on this node from the node that numbers them', [], (g) => g.set(this.consoles?.mirrorCount ?? 0));
  }

  async stop(): Promise<void> {
    if (this.syncTimer) clearInterval(this.syncTimer);
    this.consoles?.stop();
    this.ownership.stop();
    await this.nats.close();
  }
}
