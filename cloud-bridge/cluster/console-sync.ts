/**
 * Consoles across nodes (docs/cluster.md, "Consoles across nodes"): a dongle's or group's console can be
 * read on any node, with one id sequence per stream across the cluster.
 *
 *  - One node numbers a stream: for `dongles/<id>` the node holding the dongle's lease, for `groups/<gid>`
 *    the node holding side A's (else side B's). Events made on other nodes (a group's other side, DOWN
 *    frames relayed from another node, a command's `queued` status posted elsewhere) are sampled where they
 *    are made and forwarded to it; it numbers them with its own and publishes each numbered event.
 *  - Other nodes keep a mirror only of streams someone reads there (lazy): on the first reader the node
 *    subscribes to the stream's events, then asks the numbering node for its history (so a Last-Event-ID
 *    obtained on another node resumes here), then applies live events; a Last-Event-ID above the mirror
 *    (an event still in transit) catches up the same way first. A mirror nobody has read for LINGER_MS is
 *    dropped. Mirrors live in the same history budget (--history-memory-mb) as every other ring.
 *  - Ids in a mirror are the numbering node's; a hole (an event lost by NATS or a full outbox) or a new run
 *    (another node numbers now) starts the mirror again there, and readers that would miss events are
 *    disconnected: their resume gets a stream_reset. A node that starts numbering starts a new run above
 *    every id it has seen and the clock floor, so ids never repeat and an older id is never taken as complete.
 *  - A stream nobody owns (dongle offline, group with neither side connected) is numbered by each node on
 *    its own and not mirrored.
 */
import type { Subscription } from 'nats';
import type { Logger } from 'pino';
import type { ConsoleStream, StreamNumbering } from '../../core/console/console-stream.js';
import type { ConsoleEventType } from '../../core/console/events.js';
import type { StreamManager } from '../../core/console/stream-manager.js';
import { ConsoleOutbox } from './console-outbox.js';
import {
  decodeForwarded,
  decodeHistoryReply,
  decodeNumbered,
  encodeWithJson,
  HISTORY_REPLY_BYTES,
  NO_HISTORY,
  interestMessage,
  parseHistoryRequest,
  parseJson,
  WATCHED_MAX,
  watchedMessage,
  type NumberedMeta,
} from './console-wire.js';
import { SUBJECTS, type NatsLink } from './nats-connection.js';

/** A mirror nobody reads is kept this long (a reader that reconnects finds it warm), then dropped. */
export const LINGER_MS = 60_000;
/**
 * Live events a mirror holds while its history request is answered: at most HELD_MAX per mirror and
 * HELD_BYTES_MAX (event JSON + HELD_ENTRY_BYTES each) for all mirrors of the node together, so a node
 * with many mirrors catching up at once (after a NATS outage, say) stays bounded. An event not held is
 * asked for again: the catch-up takes another round from the numbering node's history.
 */
const HELD_MAX = 10_000;
const HELD_BYTES_MAX = 16 * 1024 * 1024;
const HELD_ENTRY_BYTES = 64;
/** History rounds of one catch-up at most (a round follows one that could not hold every live event). */
const CATCH_UP_ROUNDS_MAX = 4;
const HISTORY_TIMEOUT_MS = 1000;
/** History pages asked for one catch-up at most (× HISTORY_REPLY_BYTES). */
const HISTORY_PAGES_MAX = 64;
const SYNC_MS = 250;
/** A forwarded event is passed on at most this many times while nodes disagree on who numbers. */
const MAX_HOPS = 2;
/** A mirror tells its numbering node it is still read this often; the numbering node forgets it after INTEREST_MS. */
const INTEREST_EVERY_MS = 1000;
const INTEREST_MS = 5000;
/** The numbering node says which of its streams are read this often (and at once when one is new); others forget after WATCHED_MS. */
const WATCHED_EVERY_MS = 1000;
const WATCHED_MS = 3000;

export interface ConsoleSyncDeps {
  nats: NatsLink;
  node: string;
  streams: StreamManager;
  /** The node holding the dongle's lease now, as far as this node knows (undefined: nobody). */
  ownerOf(dongle: string): string | undefined;
  /** The node the dongle's lease key names in NATS KV (asked when no announcement was heard yet). */
  holderInStore(dongle: string): Promise<string | undefined>;
  /** A group's two sides (A, B), undefined for an unknown group. */
  sidesOf(gid: string): readonly [string, string] | undefined;
  /** The stream by name, created if needed, or undefined when it names no registered dongle or group. */
  streamOf(name: string): ConsoleStream | undefined;
  /** A registered dongle: lease announcements (from NATS) of others are not remembered. */
  isDongle(dongle: string): boolean;
  log: Logger;
  /** How long a history request waits for its answer (default HISTORY_TIMEOUT_MS; tests that hold the answer back give more). */
  historyTimeoutMs?: number;
  /**
   * An event another node forwarded for a stream numbered here (its JSON checked against its type's
   * schema): false leaves it out (a command's `queued` that arrives after this node sent the command).
   */
  admitForwarded?: (type: ConsoleEventType, json: string) => boolean;
}

interface Mirror {
  stream: ConsoleStream;
  sub: Subscription;
  /** Highest run seen (events of older runs are stale). */
  run: number;
  lastReadAt: number;
  /** While history is asked: live events held here, applied after. */
  held: { meta: NumberedMeta; json: string }[] | undefined;
  /** What `held` counts against HELD_BYTES_MAX. */
  heldBytes: number;
  /** A live event of this round was not held: another round asks the history for it. */
  heldOverflow: boolean;
  catchingUp: Promise<void> | undefined;
}

export interface ConsoleSyncStats {
  numberedOut: number;
  forwardedOut: number;
  forwardedIn: number;
  adopted: number;
  duplicates: number;
  /** Mirrors started again at a hole or a new run (their readers got, or will get, a stream_reset). */
  restarts: number;
  /** Forwarded events dropped: nobody numbers the stream here any more and the hop limit was reached, or an unknown stream. */
  forwardUndeliverable: number;
  /** Forwarded events left out here (admitForwarded: a command's `queued` after its `sent`). */
  forwardedLeftOut: number;
  /** Live events a catching-up mirror did not hold (over HELD_MAX or HELD_BYTES_MAX); asked for again from history. */
  heldDropped: number;
  historyRequests: number;
  historyFailures: number;
}

export class ConsoleSync {
  private readonly mirrors = new Map<string, Mirror>();
  private readonly roles = new Map<string, Role>();
  private readonly sides = new Map<string, readonly [string, string] | undefined>();
  /** The last node heard holding each dongle's lease (a stream nobody owns now is numbered there, see numbererOf). */
  private readonly lastOwner = new Map<string, string>();
  private readonly outbox: ConsoleOutbox;
  private readonly timer: NodeJS.Timeout;
  /** Streams numbered here that another node mirrors: until when (numbered events are published only for these). */
  private readonly remoteInterest = new Map<string, number>();
  /** Streams numbered elsewhere that someone reads: until when (frames made here are forwarded only for these). */
  private readonly watchedUntil = new Map<string, number>();
  private announced = new Set<string>();
  private lastAnnounceAt = 0;
  private lastInterestAt = 0;
  /** Bytes held by every mirror's `held` (HELD_BYTES_MAX). */
  private heldBytes = 0;
  readonly stats: ConsoleSyncStats = {
    numberedOut: 0,
    forwardedOut: 0,
    forwardedIn: 0,
    adopted: 0,
    duplicates: 0,
    restarts: 0,
    forwardUndeliverable: 0,
    forwardedLeftOut: 0,
    heldDropped: 0,
    historyRequests: 0,
    historyFailures: 0,
  };

  constructor(private readonly d: ConsoleSyncDeps) {
    this.outbox = new ConsoleOutbox(d.nats);
    const nats = d.nats;
    nats.subscribe(SUBJECTS.consoleIn(d.node), (m) => this.onForwarded(m.data));
    nats.subscribe(SUBJECTS.consoleHistory(d.node), (m) => m.respond(this.answerHistory(m.data)));
    nats.subscribe(SUBJECTS.consoleInterest(d.node), (m) => this.onInterest(m.data));
    nats.subscribe(SUBJECTS.consoleWatched, (m) => this.onWatched(m.data));
    // What was in transit while NATS was away is lost: every mirror catches up from its numbering node.
    d.nats.onReconnect(() => {
      for (const m of this.mirrors.values()) void this.catchUp(m, undefined);
    });
    this.timer = setInterval(() => d.nats.guarded('the console mirrors check', () => this.syncAll()), SYNC_MS);
    this.timer.unref();
  }

  get node(): string {
    return this.d.node;
  }

  get outboxDrops(): Readonly<Record<string, number>> {
    return this.outbox.dropped;
  }

  get mirrorCount(): number {
    return this.mirrors.size;
  }

  /**
   * Before a reader is served on this node: a mirror exists, has the numbering node's history, and has
   * caught up to the reader's Last-Event-ID when that is above it. Undefined when nothing needs waiting for.
   */
  beforeRead(stream: ConsoleStream, lastEventId: string | undefined): Promise<void> | undefined {
    const role = this.sync(stream);
    if (role === undefined) return undefined;
    // Numbered here only because no lease was heard of (yet: the holder's announcement may be on its way)?
    // The lease store says; a reader served from a local numbering would be cut as soon as it is heard.
    if (role.isHere && role.assumed) {
      return this.lookUpHolder(stream.name).then((holder) => {
        if (holder !== undefined && holder !== this.d.node && role.assumed && this.roles.get(stream.name) === role) this.switchTo(role, holder);
        return role.isHere ? undefined : this.readMirror(role, stream, lastEventId);
      });
    }
    return role.isHere ? undefined : this.readMirror(role, stream, lastEventId);
  }

  private async lookUpHolder(name: string): Promise<string | undefined> {
    const dongles = name.startsWith('dongles/') ? [name.slice(8)] : (this.sidesOf(name.slice(7)) ?? []);
    for (const d of dongles) {
      const h = await this.d.holderInStore(d);
      if (h !== undefined) return h;
    }
    return undefined;
  }

  private readMirror(role: Role, stream: ConsoleStream, lastEventId: string | undefined): Promise<void> | undefined {
    let m = this.mirrors.get(stream.name);
    const wanted = lastEventId !== undefined && /^\d{1,15}$/.test(lastEventId.trim()) ? Number(lastEventId.trim()) : undefined;
    if (m === undefined) m = this.startMirror(stream, role.numberer);
    m.lastReadAt = Date.now();
    if (m.catchingUp) return m.catchingUp;
    if (wanted !== undefined && wanted > stream.latest) return this.catchUp(m, role.numberer);
    return undefined;
  }

  stop(): void {
    clearInterval(this.timer);
    for (const m of this.mirrors.values()) m.sub.unsubscribe();
    this.mirrors.clear();
  }

  // ---- roles ----

  /**
   * Who numbers the stream now: the lease holder (dongle; side A's, else side B's, for a group); while
   * nobody holds it, whoever numbered it last (so an `offline` presence still reaches the readers on other
   * nodes), else the last node heard holding the lease; this node when it never heard of one. Undefined: the stream is not shared (the fleet stream).
   */
  private numbererOf(name: string, previous: string | undefined): string | undefined {
    let owner: string | undefined;
    let last: string | undefined;
    if (name.startsWith('dongles/')) {
      const d = name.slice(8);
      owner = this.d.ownerOf(d);
      last = this.lastOwner.get(d);
    } else if (name.startsWith('groups/')) {
      const sides = this.sidesOf(name.slice(7));
      owner = sides && (this.d.ownerOf(sides[0]) ?? this.d.ownerOf(sides[1]));
      last = sides && (this.lastOwner.get(sides[0]) ?? this.lastOwner.get(sides[1]));
    } else return undefined;
    return owner ?? previous ?? last ?? this.d.node;
  }

  /** A lease changed hands as this node heard it: remembered, so a stream first read while its lease looks stale (a loaded holder) still follows it. */
  leaseChanged(dongle: string): void {
    const o = this.d.ownerOf(dongle);
    // Registered dongles only: announcements come from NATS, and an entry per name ever announced (or one
    // for a dongle deleted before its last announcement arrived) would stay for good.
    if (o !== undefined && this.d.isDongle(dongle)) this.lastOwner.set(dongle, o);
  }

  /** The dongle was deleted: the node last heard holding it is forgotten (its streams' roles go with the streams). */
  forget(dongle: string): void {
    this.lastOwner.delete(dongle);
  }

  /** A group's sides, read from the store at most once per sync tick (this is asked for every event). */
  private sidesOf(gid: string): readonly [string, string] | undefined {
    if (!this.sides.has(gid)) this.sides.set(gid, this.d.sidesOf(gid));
    return this.sides.get(gid);
  }

  private syncAll(): void {
    const now = Date.now();
    this.sides.clear(); // groups change through the admin API of any node
    for (const s of this.d.streams.all()) this.sync(s);
    this.announceWatched(now);
    if (now - this.lastInterestAt >= INTEREST_EVERY_MS) {
      this.lastInterestAt = now;
      for (const [name, m] of this.mirrors) {
        const numberer = this.roles.get(name)?.numberer;
        if (numberer !== undefined && numberer !== this.d.node) this.outbox.push(SUBJECTS.consoleInterest(numberer), JSON.stringify({ stream: m.stream.name }));
      }
    }
    for (const [name, until] of this.remoteInterest) if (until < now) this.remoteInterest.delete(name);
    for (const [name, until] of this.watchedUntil) if (until < now) this.watchedUntil.delete(name);
    for (const [name, r] of this.roles) if (this.d.streams.find(name) !== r.stream) this.roles.delete(name);
    for (const [name, m] of this.mirrors) {
      if (this.d.streams.find(name) !== m.stream) {
        this.dropMirror(name, m);
        continue;
      }
      if (m.stream.subscriberCount > 0) m.lastReadAt = now;
      else if (now - m.lastReadAt > LINGER_MS) {
        this.dropMirror(name, m);
        m.stream.restartAt(m.stream.runStart, m.stream.latest); // its ring's memory goes back to the budget
      }
    }
  }

  /** The stream's role, made on first use (undefined for streams that are not shared), brought up to date. */
  private sync(s: ConsoleStream): Role | undefined {
    let role = this.roles.get(s.name);
    if (role === undefined || s.numbering !== role) {
      const numberer = this.numbererOf(s.name, undefined);
      if (numberer === undefined) return undefined;
      // A stream made before the cluster took it over was numbered here already: nothing to restart.
      role = new Role(this, s, numberer);
      role.assumed = numberer === this.d.node && !this.knowsOwner(s.name);
      this.roles.set(s.name, role);
      const old = this.mirrors.get(s.name);
      if (old !== undefined && old.stream !== s) this.dropMirror(s.name, old); // the stream was removed and made again
      s.numbering = role;
      if (numberer !== this.d.node) this.becameFollower(s, numberer);
      return role;
    }
    this.refresh(role);
    return role;
  }

  /** Called for every event the stream makes (Role.here): follows the leases, switching the stream's role when they moved. */
  refresh(role: Role): boolean {
    const numberer = this.numbererOf(role.stream.name, role.assumed ? undefined : role.numberer)!;
    if (numberer !== role.numberer) this.switchTo(role, numberer);
    else if (role.assumed && this.knowsOwner(role.stream.name)) role.assumed = false;
    return role.isHere;
  }

  /** Whether a lease (now or last heard) names the stream's numbering node. */
  private knowsOwner(name: string): boolean {
    const ids = name.startsWith('dongles/') ? [name.slice(8)] : (this.sidesOf(name.slice(7)) ?? []);
    return ids.some((d) => this.d.ownerOf(d) !== undefined || this.lastOwner.has(d));
  }

  private switchTo(role: Role, numberer: string): void {
    const s = role.stream;
    role.assumed = false;
    const wasHere = role.isHere;
    role.numberer = numberer;
    role.isHere = numberer === this.d.node;
    const m = this.mirrors.get(s.name);
    if (role.isHere) {
      if (m) this.dropMirror(s.name, m);
      s.startRun(); // readers here are disconnected: their resume gets a stream_reset
    } else if (wasHere) this.becameFollower(s, numberer);
    else if (m) void this.catchUp(m, numberer); // another node numbers now: a new run, its history
  }

  private becameFollower(s: ConsoleStream, numberer: string): void {
    if (s.subscriberCount > 0) {
      if (!this.mirrors.has(s.name)) this.startMirror(s, numberer);
    } else s.restartAt(s.runStart, s.latest); // nobody reads it here: what it held is forgotten
  }

  // ---- numbering node ----

  /** Streams numbered here that someone reads (here or in a mirror elsewhere), told to every node: at once when the set grows, else every second. */
  private announceWatched(now: number): void {
    const watched = new Set<string>();
    for (const [name, role] of this.roles) if (role.isHere && (role.stream.subscriberCount > 0 || (this.remoteInterest.get(name) ?? 0) >= now)) watched.add(name);
    const grew = [...watched].some((n) => !this.announced.has(n));
    this.announced = watched;
    if (watched.size === 0 || (!grew && now - this.lastAnnounceAt < WATCHED_EVERY_MS)) return;
    this.lastAnnounceAt = now;
    const names = [...watched];
    for (let i = 0; i < names.length; i += WATCHED_MAX) this.outbox.push(SUBJECTS.consoleWatched, JSON.stringify({ node: this.d.node, streams: names.slice(i, i + WATCHED_MAX) }));
  }

  private onInterest(data: Uint8Array): void {
    const m = parseJson(data, interestMessage);
    if (m === undefined) {
      this.d.nats.stats.badMessages++;
      return;
    }
    this.remoteInterest.set(m.stream, Date.now() + INTEREST_MS);
  }

  private onWatched(data: Uint8Array): void {
    const m = parseJson(data, watchedMessage);
    if (m === undefined) {
      this.d.nats.stats.badMessages++;
      return;
    }
    if (m.node === this.d.node) return;
    const until = Date.now() + WATCHED_MS;
    for (const name of m.streams) this.watchedUntil.set(name, until);
  }

  /** Frames made here for a stream another node numbers are forwarded only while someone reads it. */
  wantsFrames(s: ConsoleStream): boolean {
    return (this.watchedUntil.get(s.name) ?? 0) >= Date.now();
  }

  numbered(s: ConsoleStream, id: number, runStart: number, type: ConsoleEventType, json: () => string): void {
    // Nobody mirrors it: nothing to publish (a new mirror gets the history first, then live events).
    if ((this.remoteInterest.get(s.name) ?? 0) < Date.now()) return;
    this.stats.numberedOut++;
    this.outbox.push(SUBJECTS.consoleEvents(s.name), encodeWithJson({ n: this.d.node, r: runStart, i: id, t: type }, json()));
  }

  forward(s: ConsoleStream, numberer: string, type: ConsoleEventType, json: string, hops = 0): void {
    // A group's state is told by the node that numbers its console (each node has its own view of the counters).
    if (type === 'group_state') return;
    this.stats.forwardedOut++;
    this.outbox.push(SUBJECTS.consoleIn(numberer), encodeWithJson({ s: s.name, t: type, h: hops }, json));
  }

  private onForwarded(data: Uint8Array): void {
    const f = decodeForwarded(data);
    if (f === undefined) {
      this.d.nats.stats.badMessages++;
      return;
    }
    this.stats.forwardedIn++;
    const s = this.d.streamOf(f.meta.s);
    if (s === undefined) {
      this.stats.forwardUndeliverable++;
      return;
    }
    const role = this.sync(s);
    if (role === undefined || role.isHere) {
      if (this.d.admitForwarded?.(f.meta.t, f.json) === false) {
        this.stats.forwardedLeftOut++;
        return;
      }
      s.publishText(f.meta.t, f.json);
      return;
    }
    // This node no longer numbers the stream (the lease moved while the event was on its way): pass it on.
    if (f.meta.h >= MAX_HOPS) this.stats.forwardUndeliverable++;
    else this.forward(s, role.numberer, f.meta.t, f.json, f.meta.h + 1);
  }

  private answerHistory(data: Uint8Array): string {
    const q = parseHistoryRequest(data);
    if (q === undefined) {
      this.d.nats.stats.badMessages++;
      return NO_HISTORY;
    }
    const s = this.d.streams.find(q.stream);
    if (s === undefined || this.roles.get(s.name)?.isHere === false) return NO_HISTORY;
    // From now on its numbered events are published (before the reply goes: none is missed in between).
    this.remoteInterest.set(q.stream, Date.now() + INTEREST_MS);
    const events = s.textAfter(q.after ?? -1, HISTORY_REPLY_BYTES);
    const last = events.at(-1)?.id ?? q.after ?? -1;
    return JSON.stringify({ run: s.runStart, latest: s.latest, events: events.map((e) => [e.id, e.type, e.json]), more: events.length > 0 && last < s.latest });
  }

  // ---- mirrors ----

  private startMirror(s: ConsoleStream, numberer: string): Mirror {
    const m: Mirror = {
      stream: s,
      run: 0,
      lastReadAt: Date.now(),
      held: undefined,
      heldBytes: 0,
      heldOverflow: false,
      catchingUp: undefined,
      sub: this.d.nats.subscribe(SUBJECTS.consoleEvents(s.name), (msg) => this.onNumbered(m, msg.data)),
    };
    this.mirrors.set(s.name, m);
    void this.catchUp(m, numberer, true);
    return m;
  }

  private dropMirror(name: string, m: Mirror): void {
    m.sub.unsubscribe();
    this.mirrors.delete(name);
    this.takeHeld(m);
  }

  /** Holds a live event while the mirror catches up, or notes that this round could not. */
  private hold(m: Mirror, held: NonNullable<Mirror['held']>, e: { meta: NumberedMeta; json: string }): void {
    const bytes = e.json.length + HELD_ENTRY_BYTES;
    // Once one event is not held, none after it is: they would only be applied after a hole.
    if (m.heldOverflow || held.length >= HELD_MAX || this.heldBytes + bytes > HELD_BYTES_MAX) {
      m.heldOverflow = true;
      this.stats.heldDropped++;
      return;
    }
    held.push(e);
    m.heldBytes += bytes;
    this.heldBytes += bytes;
  }

  /** Ends holding: returns what was held and gives its bytes back. */
  private takeHeld(m: Mirror): NonNullable<Mirror['held']> {
    const held = m.held ?? [];
    m.held = undefined;
    this.heldBytes -= m.heldBytes;
    m.heldBytes = 0;
    return held;
  }

  private onNumbered(m: Mirror, data: Uint8Array): void {
    const e = decodeNumbered(data);
    if (e === undefined) {
      this.d.nats.stats.badMessages++;
      return;
    }
    if (e.meta.n === this.d.node) return;
    if (m.held !== undefined) return this.hold(m, m.held, e);
    // A hole or a new run: first ask the node that numbered it for what the mirror lacks (events lost in
    // transit, or numbered before this node heard of the new run); only what it no longer has is a reset.
    const st = m.stream;
    if (e.meta.r >= m.run && (e.meta.r !== st.runStart || e.meta.i > st.latest + 1)) {
      void this.catchUp(m, e.meta.n);
      const held = heldOf(m); // set by catchUp when it asks
      if (held !== undefined) return this.hold(m, held, e);
    }
    this.apply(m, e.meta.r, e.meta.i, e.meta.t, e.json);
  }

  private apply(m: Mirror, run: number, id: number, type: ConsoleEventType, json: string): void {
    if (run < m.run || this.roles.get(m.stream.name)?.isHere !== false) return; // an older run's late event, or numbered here now
    m.run = run;
    const r = m.stream.adopt(run, id, type, json);
    if (r === 'duplicate') this.stats.duplicates++;
    else {
      this.stats.adopted++;
      if (r === 'restarted') this.stats.restarts++;
    }
  }

  /**
   * Asks the numbering node for what follows the mirror's latest id (everything it keeps, for a new
   * mirror), holding live events meanwhile, then applies the held ones. One at a time per mirror. When a
   * round could not hold every live event (HELD_MAX, HELD_BYTES_MAX), the next round asks for what
   * follows the events applied, up to CATCH_UP_ROUNDS_MAX rounds; only what the numbering node no longer
   * keeps then becomes a restart (a stream_reset for readers), never a silent gap.
   */
  private catchUp(m: Mirror, numberer: string | undefined, fresh = false): Promise<void> {
    if (m.catchingUp) return m.catchingUp;
    const target = numberer ?? this.roles.get(m.stream.name)?.numberer;
    if (target === undefined || target === this.d.node) return Promise.resolve();
    m.held = [];
    m.heldOverflow = false;
    const p = (async () => {
      let after: number | null = fresh ? null : m.stream.latest;
      try {
        for (let round = 1; ; round++) {
          const ok = await this.historyRound(m, target, after);
          for (const e of this.takeHeld(m)) this.apply(m, e.meta.r, e.meta.i, e.meta.t, e.json);
          if (!ok || !m.heldOverflow || round >= CATCH_UP_ROUNDS_MAX || this.mirrors.get(m.stream.name) !== m) break;
          m.held = [];
          m.heldOverflow = false;
          after = m.stream.latest;
        }
      } catch (err) {
        // A bug must cost this catch-up (the next hole starts another), never the process.
        this.d.log.error({ err, stream: m.stream.name }, 'internal error while a console mirror caught up');
      } finally {
        // Whatever happened, the mirror holds nothing more and may catch up again.
        this.takeHeld(m);
        m.catchingUp = undefined;
      }
    })();
    m.catchingUp = p;
    return p;
  }

  /** One round of history pages after `after` (null: all it keeps); false when the request failed. */
  private async historyRound(m: Mirror, target: string, after: number | null): Promise<boolean> {
    try {
      for (let page = 0; page < HISTORY_PAGES_MAX; page++) {
        this.stats.historyRequests++;
        const r = decodeHistoryReply(
          (
            await this.d.nats.nc.request(SUBJECTS.consoleHistory(target), JSON.stringify({ stream: m.stream.name, after }), {
              timeout: this.d.historyTimeoutMs ?? HISTORY_TIMEOUT_MS,
            })
          ).data,
        );
        if (r === undefined) {
          this.d.nats.stats.badMessages++;
          return true;
        }
        if (r === null) return true; // it does not number the stream (any more): live events decide
        if (r.run < m.run) return true;
        for (const [id, type, json] of r.events) this.apply(m, r.run, id, type, json);
        // Nothing kept after our position, or another run with nothing kept yet: the position alone.
        if (r.events.length === 0 && (r.run !== m.stream.runStart || r.latest > m.stream.latest)) {
          m.run = r.run;
          m.stream.restartAt(r.run, r.latest);
          this.stats.restarts++;
        }
        if (!r.more) return true;
        after = m.stream.latest;
      }
      return true;
    } catch (err) {
      this.stats.historyFailures++;
      this.d.log.debug({ stream: m.stream.name, numberer: target, err: (err as Error).message }, 'console history request failed; the mirror follows live events only');
      return false;
    }
  }
}

function heldOf(m: Mirror): Mirror['held'] {
  return m.held;
}

/** A stream's numbering in the cluster (ConsoleStream calls it for every event made or numbered here). */
class Role implements StreamNumbering {
  isHere: boolean;
  /** Numbered here only because no lease was known: the first lease heard decides (no stickiness). */
  assumed = false;

  constructor(
    private readonly sync: ConsoleSync,
    readonly stream: ConsoleStream,
    public numberer: string,
  ) {
    this.isHere = numberer === sync.node;
  }

  /** Asked for every event: the leases may have moved since the last one. */
  get here(): boolean {
    return this.sync.refresh(this);
  }

  numbered(id: number, runStart: number, type: ConsoleEventType, json: () => string): void {
    this.sync.numbered(this.stream, id, runStart, type, json);
  }

  forward(type: ConsoleEventType, json: string): void {
    this.sync.forward(this.stream, this.numberer, type, json);
  }

  wantsFrames(): boolean {
    return this.sync.wantsFrames(this.stream);
  }
}
