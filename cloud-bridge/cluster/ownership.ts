/**
 * Dongle ownership across the cluster: exactly one live agent connection per dongle, with the rules of
 * one node (link-arbiter.ts decides; this file only supplies what "the current connection" is when it
 * lives on another node).
 *
 * - The lease is a key in the NATS KV bucket OWNER_BUCKET (JetStream), value {node, silent_ms}. Taking it
 *   is create() (only if absent) or update() with the revision read (compare-and-set): two nodes racing
 *   for one dongle cannot both win. The bucket's max age removes the lease of a node that died.
 * - The owner rewrites its leases every refreshMs (again compare-and-set) and announces each on the core
 *   subject SUBJECTS.lease; every node keeps the time it last heard of each lease (its own monotonic clock,
 *   so node clocks need not agree, and a step of its wall clock changes nothing). A lease unheard of for the takeover time (missed heartbeats) may be taken over.
 * - A refresh that finds the lease taken by another node, or an announcement naming another node for a
 *   dongle connected here, means this node lost it: the local link is cut (onLost).
 * - Before judging another node's lease by age, the claim asks that node (SUBJECTS.holds, request-reply):
 *   NATS answers "no responders" at once when the node is gone (crashed, its connection closed), so its
 *   agents are taken over without waiting for the lease to age; a live node answers with its link's
 *   silence, which the arbiter judges as usual. No answer in time: the lease's age decides.
 * - While NATS is unreachable a claim is decided locally (counted: unchecked_claims) and written when NATS
 *   returns; if another node took the dongle meanwhile, the refresh finds out and one link is cut.
 */
import { ErrorCode, type KV, type NatsError } from 'nats';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { ArbitratedLink, Verdict } from '../link-arbiter.js';
import { SUBJECTS, type NatsLink } from './nats-connection.js';

export const OWNER_BUCKET = 'canrelay_owners';

const leaseValue = z.object({ node: z.string().min(1).max(200), silent_ms: z.number().int().min(0) }).strict();
const holdsQuestion = z.object({ dongle: z.string().min(1).max(64) }).strict();
const holdsAnswer = z.object({ held: z.boolean(), silent_ms: z.number().int().min(0) }).strict();
/** How long a claim waits for the holder's answer before judging its lease by age. */
const HOLDS_TIMEOUT_MS = 500;
const leaseMessage = z
  .object({ dongle: z.string().min(1).max(64), node: z.string().min(1).max(200), silent_ms: z.number().int().min(0), released: z.boolean().optional() })
  .strict();
type LeaseMessage = z.infer<typeof leaseMessage>;

export interface OwnedLink {
  /** How long the link has been silent (ms, monotonic), now. */
  readonly silentMs: number;
}

export interface LeaseView {
  node: string;
  /**
   * When this node last heard of the lease, minus how long the owner's link had been silent then, on this
   * node's monotonic clock (performance.now()): a step of its wall clock neither ages every lease at once
   * (stepped forward: every remote side unreachable) nor keeps a dead one (stepped back).
   */
  heardMono: number;
}

export interface OwnershipEvents {
  /** Another node holds the dongle now: cut the local link. */
  lost(dongle: string): void;
  /** The owner of a dongle changed (or its lease went stale / was released). */
  changed(dongle: string): void;
}

export class Ownership {
  private kv: KV | undefined;
  /** Leases this node holds: the link and the KV revision last written (undefined: not written yet). */
  private readonly owned = new Map<string, { link: OwnedLink; revision: number | undefined }>();
  /**
   * Leases this node's claims took for links not yet admitted (monotonic time of the write). Asked "do you
   * hold it" in that window, the node said no: a connection of the same dongle on another node, judged
   * against "nobody", was admitted too, and both agents connected (CI saw it). Until the link is held
   * (hold), given back (abandon, release) or the takeover time passes, the node answers that it holds it.
   */
  private readonly claimed = new Map<string, number>();
  /** What this node has heard of every lease (its own included). */
  private readonly heard = new Map<string, LeaseView>();
  private readonly timer: NodeJS.Timeout;
  private refreshing = false;
  private reopening = false;
  uncheckedClaims = 0;
  lostLeases = 0;

  constructor(
    private readonly nats: NatsLink,
    readonly node: string,
    /** Silence after which a lease may be taken over (the arbiter's takeover time). */
    private readonly takeoverAfterMs: number,
    refreshMs: number,
    private readonly events: OwnershipEvents,
    private readonly log: Logger,
  ) {
    nats.subscribe(SUBJECTS.lease, (msg) => this.onAnnouncement(msg.data));
    nats.subscribe(SUBJECTS.holds(node), (msg) => {
      const q = holdsQuestion.safeParse(safeJson(msg.data));
      if (!q.success) {
        this.nats.stats.badMessages++;
        return;
      }
      const o = this.owned.get(q.data.dongle);
      const claimedAt = this.claimed.get(q.data.dongle);
      const claiming = o === undefined && claimedAt !== undefined && performance.now() - claimedAt < this.takeoverAfterMs;
      msg.respond(JSON.stringify({ held: o !== undefined || claiming, silent_ms: o ? Math.max(0, Math.round(o.link.silentMs)) : 0 }));
    });
    this.timer = setInterval(() => void this.refresh(), refreshMs);
    this.timer.unref();
  }

  /** Opens (or creates) the lease bucket; its max age outlives a takeover so that a live lease never expires. */
  async open(): Promise<void> {
    this.kv = await this.nats.nc.jetstream().views.kv(OWNER_BUCKET, { history: 1, ttl: Math.max(10_000, this.takeoverAfterMs * 4) });
  }

  /** The node that holds the dongle now, as far as this node has heard (undefined: nobody, or stale). */
  ownerOf(dongle: string, now = performance.now()): string | undefined {
    if (this.owned.has(dongle)) return this.node;
    const h = this.heard.get(dongle);
    return h !== undefined && now - h.heardMono < this.takeoverAfterMs ? h.node : undefined;
  }

  /**
   * The node the dongle's lease key names now (read from NATS KV), undefined when none or unreadable:
   * for a node that has not heard the holder's announcement yet (consoles, cluster/console-sync.ts).
   */
  async holderInStore(dongle: string): Promise<string | undefined> {
    const kv = this.kv;
    if (kv === undefined || !this.nats.connected) return undefined;
    try {
      const e = await kv.get(dongle);
      if (e === null || e.operation !== 'PUT') return undefined;
      const v = leaseValue.safeParse(e.json());
      return v.success ? v.data.node : undefined;
    } catch (err) {
      this.nats.failed('lease read', err);
      return undefined;
    }
  }

  /**
   * A new connection of `dongle` said hello here. `decide` is the arbiter applied to the current
   * connection (the local one, else the lease of another node); accept/takeover then takes the lease.
   */
  async claim(dongle: string, local: ArbitratedLink | undefined, decide: (current: ArbitratedLink | undefined) => Verdict): Promise<Verdict> {
    const kv = this.kv;
    if (kv === undefined || !this.nats.connected) {
      this.uncheckedClaims++;
      this.log.warn({ dongle }, 'NATS unreachable: the dongle is admitted on this node without the cluster lease; it is written when NATS returns');
      return decide(local);
    }
    try {
      const e = await kv.get(dongle);
      const held = e !== null && e.operation === 'PUT' ? leaseValue.safeParse(e.json()) : undefined;
      if (held === undefined || !held.success) {
        const v = decide(local);
        if (v !== 'refuse') {
          await kv.create(dongle, this.value(0));
          if (!this.owned.has(dongle)) this.claimed.set(dongle, performance.now());
        }
        return v;
      }
      let current: ArbitratedLink | undefined = local;
      // A lease in this node's name that no link of this process holds was left by its previous run (a
      // restart within the takeover time): nothing to judge. Judged by its age, it refused the node's own
      // agents as duplicates until it aged (bench-cluster met it: same node ids, new processes).
      if (current === undefined && held.data.node !== this.node) {
        // Another node's lease: ask it first; it may be gone (no responders), which ends the wait at once.
        const asked = await this.askHolder(held.data.node, dongle);
        if (asked !== undefined) current = asked ?? undefined;
        else {
          const h = this.heard.get(dongle);
          // Never heard of it here (this node just started): the lease's own write time stands in.
          current = {
            silentMs: h?.node === held.data.node ? performance.now() - h.heardMono : Date.now() - (e!.created.getTime() - held.data.silent_ms),
          };
        }
      }
      const v = decide(current);
      if (v !== 'refuse') {
        await kv.update(dongle, this.value(0), e!.revision);
        if (!this.owned.has(dongle)) this.claimed.set(dongle, performance.now());
      }
      return v;
    } catch (err) {
      // Lost a compare-and-set race (another node took it between our read and write), or NATS failed.
      this.nats.failed('lease claim', err);
      if (isLeaseRace(err)) return 'refuse';
      // Not a race: NATS is away, or its lease bucket is (a new server, a lost store, JetStream not
      // answering yet). Refusing would refuse every agent until a restart: admit as without NATS, and
      // open the bucket again (created if missing) so that the refresh writes the lease there.
      if (this.nats.connected) this.reopen();
      this.uncheckedClaims++;
      return decide(local);
    }
  }

  /**
   * The holder's own word: null when it is gone or no longer holds the dongle (nothing to judge), its
   * link's last-heard time when it does, undefined when it did not answer in time (judge the lease's age).
   */
  private async askHolder(node: string, dongle: string): Promise<ArbitratedLink | null | undefined> {
    try {
      const r = await this.nats.nc.request(SUBJECTS.holds(node), JSON.stringify({ dongle }), { timeout: HOLDS_TIMEOUT_MS });
      const a = holdsAnswer.safeParse(safeJson(r.data));
      if (!a.success) {
        this.nats.stats.badMessages++;
        return undefined;
      }
      return a.data.held ? { silentMs: a.data.silent_ms } : null;
    } catch (err) {
      if ((err as NatsError).code === ErrorCode.NoResponders) {
        this.log.info({ dongle, node }, 'the node holding this dongle is gone (no responders on NATS): its lease is not waited for');
        return null;
      }
      return undefined;
    }
  }

  /** A claim's link was refused after all: this node no longer answers for it (the link it holds, if any, does). */
  unclaim(dongle: string): void {
    this.claimed.delete(dongle);
  }

  /** The dongle's link was welcomed here: hold and refresh its lease. */
  hold(dongle: string, link: OwnedLink): void {
    this.claimed.delete(dongle);
    this.owned.set(dongle, { link, revision: undefined });
    void this.write(dongle);
  }

  /** The dongle's link here ended: the lease is given back (only if still ours). */
  release(dongle: string, link: OwnedLink): void {
    const o = this.owned.get(dongle);
    if (o?.link !== link) return;
    this.owned.delete(dongle);
    this.announce({ dongle, node: this.node, silent_ms: 0, released: true });
    if (this.kv !== undefined && o.revision !== undefined) this.kv.delete(dongle, { previousSeq: o.revision }).catch((err) => this.nats.failed('lease release', err));
    this.events.changed(dongle);
  }

  /**
   * A claim took the lease for a link that closed before it was admitted: nothing here holds or refreshes
   * it. Given back (deleted if it still names this node and no link here holds the dongle), so the agent's
   * next connection on another node is not judged against a lease nobody keeps — refused as a duplicate
   * until it aged, whenever this node's answer to "do you hold it" came late.
   */
  async abandon(dongle: string): Promise<void> {
    this.claimed.delete(dongle);
    const kv = this.kv;
    if (this.owned.has(dongle) || kv === undefined || !this.nats.connected) return;
    try {
      const e = await kv.get(dongle);
      if (e === null || e.operation !== 'PUT' || this.owned.has(dongle)) return;
      const v = leaseValue.safeParse(e.json());
      if (!v.success || v.data.node !== this.node) return;
      await kv.delete(dongle, { previousSeq: e.revision });
      this.announce({ dongle, node: this.node, silent_ms: 0, released: true });
    } catch (err) {
      // A newer claim of it took the key meanwhile (the revision moved): theirs stands.
      if (!isLeaseRace(err)) this.nats.failed('lease abandon', err);
    }
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private value(silentMs: number): string {
    return JSON.stringify({ node: this.node, silent_ms: silentMs });
  }

  private async refresh(): Promise<void> {
    if (this.refreshing || !this.nats.connected) {
      this.expireHeard();
      return;
    }
    this.refreshing = true;
    try {
      await Promise.all([...this.owned.keys()].map((d) => this.write(d)));
    } finally {
      this.refreshing = false;
      this.expireHeard();
    }
  }

  /** Rewrites one lease (compare-and-set on our last revision) and announces it. */
  private async write(dongle: string): Promise<void> {
    const o = this.owned.get(dongle);
    const kv = this.kv;
    if (o === undefined || kv === undefined || !this.nats.connected) return;
    const silent = Math.max(0, Math.round(o.link.silentMs));
    try {
      let revision: number;
      if (o.revision !== undefined) {
        try {
          revision = await kv.update(dongle, this.value(silent), o.revision);
        } catch {
          revision = await this.retake(dongle, kv, silent);
        }
      } else revision = await this.retake(dongle, kv, silent);
      if (this.owned.get(dongle) !== o) {
        // Released while the write was on its way: the key now names this node for a link that is gone,
        // and release() could not delete it (its revision was the old one). Deleted with this one, nothing
        // announced — an announcement now told every node this one holds the dongle (its DOWN batches sent
        // here as undeliverable, a link just admitted elsewhere cut) for a takeover time. A link admitted
        // here again meanwhile has its own write.
        if (!this.owned.has(dongle)) await kv.delete(dongle, { previousSeq: revision }).catch((err: unknown) => isLeaseRace(err) || this.nats.failed('lease release', err));
        return;
      }
      o.revision = revision;
      this.announce({ dongle, node: this.node, silent_ms: silent });
    } catch (err) {
      // A lease lost for a link already released here, or replaced by a newer one, is not this write's to lose.
      if (err instanceof LeaseLost) return this.owned.get(dongle) === o ? this.lose(dongle, err.holder) : undefined;
      this.nats.failed('lease refresh', err);
      if (!isLeaseRace(err) && this.nats.connected) this.reopen();
    }
  }

  /** Opens the lease bucket again (once at a time): it may be gone with the NATS server's store. */
  private reopen(): void {
    if (this.reopening) return;
    this.reopening = true;
    void this.open()
      .catch((err: unknown) => this.nats.failed('lease bucket', err))
      .finally(() => (this.reopening = false));
  }

  /** Our revision is unknown or stale: the lease is ours again only if nobody else holds it. */
  private async retake(dongle: string, kv: KV, silent: number): Promise<number> {
    const e = await kv.get(dongle);
    if (e === null || e.operation !== 'PUT') return kv.create(dongle, this.value(silent));
    const held = leaseValue.safeParse(e.json());
    if (held.success && held.data.node !== this.node) {
      // Another node's lease — often one written before a NATS outage, during which this node admitted the
      // dongle unchecked (its agent moved here). The holder's own word decides, as at a claim: gone or no
      // longer holding it, or its link silent for a takeover time while ours is not, and the lease is ours
      // (its own refresh then finds it so and cuts its link). Before, the live link here was cut for it.
      const asked = await this.askHolder(held.data.node, dongle);
      const theirSilence = asked === null ? Infinity : asked === undefined ? held.data.silent_ms + Math.max(0, Date.now() - e.created.getTime()) : asked.silentMs;
      if (!(theirSilence >= this.takeoverAfterMs && silent < this.takeoverAfterMs)) throw new LeaseLost(held.data.node);
    }
    return kv.update(dongle, this.value(silent), e.revision);
  }

  private lose(dongle: string, holder: string): void {
    if (!this.owned.delete(dongle)) return;
    this.lostLeases++;
    this.log.warn({ dongle, holder }, 'another node holds this dongle now: the link here is cut');
    this.events.lost(dongle);
    this.events.changed(dongle);
  }

  private announce(m: LeaseMessage): void {
    if (!this.nats.connected) return;
    try {
      this.nats.nc.publish(SUBJECTS.lease, JSON.stringify(m));
    } catch (err) {
      this.nats.failed('lease announcement', err);
    }
  }

  private onAnnouncement(data: Uint8Array): void {
    let m: LeaseMessage;
    try {
      const p = leaseMessage.safeParse(JSON.parse(Buffer.from(data).toString('utf8')));
      if (!p.success) throw new Error(p.error.message);
      m = p.data;
    } catch {
      this.nats.stats.badMessages++;
      return;
    }
    if (m.node === this.node) return;
    const before = this.ownerOf(m.dongle);
    if (m.released) {
      if (this.heard.get(m.dongle)?.node === m.node) this.heard.delete(m.dongle);
    } else {
      this.heard.set(m.dongle, { node: m.node, heardMono: performance.now() - m.silent_ms });
      const mine = this.owned.get(m.dongle);
      if (mine !== undefined) {
        // Both hold it (a NATS outage let both admit it): the link heard from more recently keeps it. Ours
        // alive and theirs silent for a takeover time: our lease is written again (retake asks the holder).
        if (m.silent_ms >= this.takeoverAfterMs && mine.link.silentMs < this.takeoverAfterMs) void this.write(m.dongle);
        else this.lose(m.dongle, m.node);
      }
    }
    if (this.ownerOf(m.dongle) !== before) this.events.changed(m.dongle);
  }

  /** Leases unheard of for the takeover time are stale: their dongles have no live owner. */
  private expireHeard(): void {
    const now = performance.now();
    for (const [d, at] of this.claimed) if (now - at >= this.takeoverAfterMs) this.claimed.delete(d);
    for (const [d, h] of this.heard) {
      if (now - h.heardMono >= this.takeoverAfterMs) {
        this.heard.delete(d);
        this.events.changed(d);
      }
    }
  }
}

class LeaseLost extends Error {
  constructor(readonly holder: string) {
    super(`lease held by ${holder}`);
  }
}

function safeJson(data: Uint8Array): unknown {
  try {
    return JSON.parse(Buffer.from(data).toString('utf8'));
  } catch {
    return undefined;
  }
}

/** A compare-and-set lost to another writer (JetStream's "wrong last sequence", 10071): a real race, not a failure. */
function isLeaseRace(err: unknown): boolean {
  return (err as { api_error?: { err_code?: number } } | null)?.api_error?.err_code === 10071;
}
