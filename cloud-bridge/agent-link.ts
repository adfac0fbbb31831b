/**
 * One connected agent: the uplink protocol of core/uplink/messages.ts and frame-codec.ts, bridge side.
 *
 * - First message must be `hello` within HELLO_TIMEOUT_MS; the handler checks it and the link answers
 *   `welcome`. Nothing else is accepted before, and `hello` is not accepted twice.
 * - Every message is validated (size, JSON, schema, batch codec, kind, the buses a batch and a link name). Anything malformed, oversized,
 *   unknown or out of place is counted, answered with `error` and the connection closed with the CLOSE
 *   code that says why. The process never throws out of a message handler.
 * - UP batches: a batch number at or below the last one taken for this agent run is a resend after a
 *   reconnect (core/uplink/batch-dedupe.ts): acknowledged and skipped. Acks are coalesced by one clock for all links (core/uplink/ack-clock.ts: at most one per ACK_INTERVAL_MS, sooner when
 *   many are pending, always eventually).
 * - Heartbeat: a ping every PING_MS; a link that has not answered (pong or any message) for
 *   DEAD_AFTER_MS is terminated.
 * - Memory per connection is bounded: ws refuses messages over MAX_BATCH_BYTES, DOWN batches stop at
 *   DOWN_BOUND_BYTES of unsent socket data, and an agent that stops reading altogether (HARD_BOUND_BYTES)
 *   is disconnected.
 */
import type { Logger } from 'pino';
import { WebSocket, type RawData } from 'ws';
import { BatchDedupe, type BatchPosition } from '../core/uplink/batch-dedupe.js';
import { BRIDGE_CLOCK, frameTimesProblem, noLaterThanArrival } from '../core/uplink/clock.js';
import { BatchDecodeError, decodeBatch, KIND_UP, type Batch } from '../core/uplink/frame-codec.js';
import { CLOSE, MAX_TEXT_MESSAGE_BYTES, parseAgentMessage, PROTOCOL_VERSION, type AgentMessage, type BridgeMessage } from '../core/uplink/messages.js';
import { MAX_BUSES_PER_DONGLE } from '../core/names.js';
import type { DbcChunkMessage } from '../core/uplink/dbc-transfer.js';
import type { CommandLink, CommandMessage } from './commands.js';
import { PendingAcks } from '../core/uplink/ack-clock.js';
import type { RelayLink } from './group-relay.js';
import { RecordingRequests } from './recording-requests.js';
import { RELAY_CLOCK, type RelayClock } from './relay-clock.js';
import { BridgeStats, type RejectReason } from './metrics.js';

export type HelloMessage = Extract<AgentMessage, { t: 'hello' }>;
export type EventMessage = Extract<AgentMessage, { t: 'event' }>;

/**
 * Announced in every welcome: the agent sends its DBC files (dbc-transfer.ts) only to a bridge that lists
 * "dbc", and asks for the bridge's clock domain in clock replies (core/uplink/clock.ts) only from one that
 * lists "clock_domain".
 */
const BRIDGE_FEATURES = ['dbc', 'clock_domain'];

export interface Refusal {
  reason: RejectReason;
  code: number;
  message: string;
}

export interface Welcome {
  eventAck: number;
  group: string | null;
  /** The group's relay revision (group-membership.ts), with a group. */
  relayRev?: string;
  /** The relay's epoch: DOWN batch numbering belongs to it. */
  relayEpoch: string;
  /** Where the agent run's UP batches stand (stream = the run id); shared, so a reconnect dedupes resends. */
  position: BatchPosition;
}

/** What the rest of the bridge does with a link's messages (implemented by AgentServer). */
export interface LinkHandler {
  hello(link: AgentLink, hello: HelloMessage): Welcome | Refusal | Promise<Welcome | Refusal>;
  /** Called once the welcome has been written. */
  welcomed(link: AgentLink): void;
  /** A mirrored event; returns the seq to acknowledge. */
  event(link: AgentLink, msg: EventMessage): number;
  /** A new (not duplicate) UP batch. */
  frames(link: AgentLink, batch: Batch, nowMs: number): void;
  /** True while the frames of this link's UP batches pile up at a connected peer: acks wait. */
  peerBehind(link: AgentLink): boolean;
  /** Part of the agent's DBC files (core/uplink/dbc-transfer.ts). */
  dbc(link: AgentLink, msg: DbcChunkMessage): void;
  /** The agent's cumulative ack of DOWN batches; false when it names a batch never sent to it. */
  downAck(link: AgentLink, batch: number): boolean;
  /** Persist the UP position (called at most every POSITION_SAVE_MS, and on close). */
  savePosition(link: AgentLink, pos: BatchPosition): void;
  closed(link: AgentLink, code: number, reason: string): void;
}

export interface LinkTimings {
  helloTimeoutMs: number;
  pingMs: number;
  deadAfterMs: number;
}

export const DEFAULT_TIMINGS: LinkTimings = { helloTimeoutMs: 5000, pingMs: 10_000, deadAfterMs: 25_000 };
/**
 * Unsent socket bytes past which DOWN batches wait in the backlog instead. Small on purpose: a fleet has
 * hundreds of links, and bytes queued here are held as one Buffer and one write request per small DOWN
 * batch (up to 4 MiB each, as it was, is 800 MB at 200 slow-reading agents), while frames waiting in the
 * backlog are bounded by count and age, go out later as fewer, larger batches, and make the peer "behind"
 * (the sender's acks are held) instead of hiding in socket memory. The kernel's socket buffer comes on top.
 */
const DOWN_BOUND_BYTES = 256 * 1024;
/** Unsent socket bytes past which the agent is considered not to read at all, and disconnected. */
const HARD_BOUND_BYTES = 4 * 1024 * 1024;
const POSITION_SAVE_MS = 1000;
const KNOWN_TYPES = new Set(['hello', 'event', 'data_ack', 'dbc', 'clock_probe', 'rec_listing', 'rec_chunk', 'rec_error']);
/** Clock probes answered before hello: enough for a good first estimate, not a free echo service. */
const MAX_PROBES_BEFORE_HELLO = 32;

/** hello_pending: the hello is being decided (cluster mode asks the cluster who holds the dongle). */
type LinkState = 'awaiting_hello' | 'hello_pending' | 'ready' | 'closing' | 'closed';

let nextLinkId = 1;

export class AgentLink implements RelayLink, CommandLink {
  readonly linkId = nextLinkId++;
  readonly connectedAt = Date.now();
  private state: LinkState = 'awaiting_hello';
  private helloMsg: HelloMessage | undefined;
  private up = new BatchDedupe();
  /** The last time anything came from the agent: wall clock (shown as last seen) and monotonic (its silence). */
  private lastHeard = Date.now();
  private lastHeardMono = performance.now();
  private readonly helloTimer: NodeJS.Timeout;
  private readonly pingTimer: NodeJS.Timeout;
  /** UP batches taken and not yet acknowledged (core/uplink/ack-clock.ts). */
  private readonly acks = new PendingAcks(this);
  private lastSavedAt = -Infinity;
  /** A save held back by the once-a-second limit, due when the second is over (see flushAck). */
  private saveTimer: NodeJS.Timeout | undefined;
  private probesBeforeHello = 0;
  /** Every bus name this link's UP batches have named: at most MAX_BUSES_PER_DONGLE (see busProblem). */
  private readonly buses = new Set<string>();
  /**
   * The domain of the bridge's wall clock (relay-clock.ts) when this agent's last clock probe was answered:
   * the clock its fix is measured against, in its UP batches and when it checks DOWN batches' ages.
   */
  private probeDomain: number | undefined;
  /**
   * An agent that asks for the domain restates its fix for the domain of the newest reply: until its next
   * probe arrives it may still have been measuring against the one before (the reply was on its way, its
   * frames were on theirs). Meanwhile both count, each against the frames (`originClockDomainMs`,
   * `clockDomainMs`). Undefined when there is no such change pending.
   */
  private priorDomain: number | undefined;
  /** The agent asks for the bridge's clock domain (its probes carry `domain`). */
  private domainAware = false;
  /** Recording list/download requests to this agent (cloud-bridge/recording-proxy.ts). */
  readonly recordings = new RecordingRequests((m) => this.ready && this.sendText(m));

  constructor(
    private readonly ws: WebSocket,
    /** The dongle the agent token belongs to. */
    readonly dongle: string,
    private readonly handler: LinkHandler,
    private readonly stats: BridgeStats,
    private readonly log: Logger,
    private readonly timings: LinkTimings = DEFAULT_TIMINGS,
    private readonly clock: RelayClock = RELAY_CLOCK,
  ) {
    this.helloTimer = setTimeout(
      () => this.refuse('hello_timeout', CLOSE.PROTOCOL, `no hello within ${timings.helloTimeoutMs / 1000} s of connecting; send hello first`),
      timings.helloTimeoutMs,
    );
    this.pingTimer = setInterval(() => {
      if (this.endedBySilence()) return;
      if (this.ws.readyState === WebSocket.OPEN) this.ws.ping();
    }, timings.pingMs);
    ws.on('pong', () => {
      if (!this.endedBySilence()) this.heard();
    });
    ws.on('message', (data, isBinary) => {
      try {
        this.onMessage(data, isBinary);
      } catch (err) {
        // A bug must cost one connection, never the process.
        this.log.error({ err }, 'internal error while handling an agent message');
        this.refuse('internal', CLOSE.PROTOCOL, 'internal error on the bridge; reconnect');
      }
    });
    ws.on('error', (err: Error & { code?: string }) => {
      const tooLarge = err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH';
      this.stats.reject(tooLarge ? 'too_large' : 'malformed');
      this.log.warn({ err: err.message, code: err.code }, tooLarge ? 'agent sent a message over the size limit: closed' : 'agent link error');
    });
    ws.on('close', (code, reason) => this.onClose(code, reason.toString('utf8')));
  }

  /** Welcomed and the socket is open: DOWN batches and commands may go out. */
  /** Its hello is being decided (asynchronously, in cluster mode) and it is still open. */
  get helloPending(): boolean {
    return this.state === 'hello_pending' && this.ws.readyState === WebSocket.OPEN;
  }

  get ready(): boolean {
    return this.state === 'ready' && this.ws.readyState === WebSocket.OPEN;
  }

  /**
   * Closed from our side, or closed: no longer the dongle's link whatever its peer does (a revoked agent
   * that never answers the close frame must not hold the dongle against its replacement).
   */
  get closing(): boolean {
    return this.state === 'closing' || this.state === 'closed';
  }

  /** The accepted hello (undefined before it). */
  get hello(): HelloMessage | undefined {
    return this.helloMsg;
  }

  /** When the agent was last heard (wall clock): for display. */
  get lastHeardAt(): number {
    return this.lastHeard;
  }

  /** How long the agent has been silent (ms, monotonic): what heartbeats and takeovers judge. */
  get silentMs(): number {
    return performance.now() - this.lastHeardMono;
  }

  /**
   * The dead-link rule, applied wherever the link could be heard again: a link silent past deadAfterMs is
   * terminated, and what is read on it afterwards is not taken. The ping timer alone was not enough: a
   * node frozen past the bound (SIGSTOP, a paused VM) may read the socket's buffered batches before the
   * timer runs when it resumes, and relayed frames of an agent another node had taken over meanwhile —
   * sent again there, and seconds old (found by review). Monotonic: a bridge clock stepped forward cut
   * every link at once, one stepped back kept dead ones.
   */
  private endedBySilence(): boolean {
    if (this.silentMs <= this.timings.deadAfterMs) return false;
    this.log.warn({ silent_ms: Math.round(this.silentMs) }, 'agent link silent (no pong): terminated');
    this.ws.terminate();
    return true;
  }

  private heard(): void {
    this.lastHeard = Date.now();
    this.lastHeardMono = performance.now();
  }

  /**
   * The domain the agent's fix is measured in, as the receiver of relayed frames (see probeDomain): of two
   * that may be (priorDomain), the one that makes frames older to it. Undefined before its first probe.
   */
  get clockDomainMs(): number | undefined {
    return this.priorDomain === undefined || this.probeDomain === undefined ? this.probeDomain : Math.min(this.priorDomain, this.probeDomain);
  }

  /** The same as the origin of frames: of two that may be, the one that makes its frames older. */
  get originClockDomainMs(): number | undefined {
    return this.priorDomain === undefined || this.probeDomain === undefined ? this.probeDomain : Math.max(this.priorDomain, this.probeDomain);
  }

  canSend(): boolean {
    return this.ready && this.ws.bufferedAmount < DOWN_BOUND_BYTES;
  }

  /** Everything written to the socket has left for the agent (nothing unsent in it). */
  get drained(): boolean {
    return this.ready && this.ws.bufferedAmount === 0;
  }

  sendBinary(buf: Buffer): void {
    if (this.checkBound()) this.ws.send(buf, { binary: true });
  }

  notifyGroup(group: string | null, rev?: string): void {
    if (this.ready) this.sendText(rev === undefined ? { t: 'group', group } : { t: 'group', group, relay_rev: rev });
  }

  sendCommand(msg: CommandMessage): boolean {
    return this.ready && this.sendText(msg);
  }

  /** Closes from our side (replaced, token rotated, dongle removed, shutdown). */
  close(code: number, reason: string): void {
    if (this.state === 'closing' || this.state === 'closed') return;
    this.flushAck();
    this.state = 'closing';
    this.ws.close(code, reason.slice(0, 120));
  }

  /** Cuts the connection without a close handshake (shutdown grace over). */
  terminate(): void {
    this.ws.terminate();
  }

  // ---- incoming ----

  private onMessage(data: RawData, isBinary: boolean): void {
    if (this.state === 'closing' || this.state === 'closed') return;
    if (this.endedBySilence()) return;
    this.heard();
    const buf = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
    if (isBinary) return this.onBatch(buf);
    if (buf.length > MAX_TEXT_MESSAGE_BYTES)
      return this.refuse('too_large', CLOSE.TOO_LARGE, `text message of ${buf.length} bytes exceeds ${MAX_TEXT_MESSAGE_BYTES}; events must be smaller`);
    const text = buf.toString('utf8');
    const parsed = parseAgentMessage(text);
    if (!parsed.ok) {
      const head = headOf(text);
      const t = head?.t;
      // A recording answer the bridge cannot read fails that one request (502), not the link: closing cut
      // the relay, and the page asking for the list every 5 s cut it again each time.
      // One that comes after its request timed out (a stalled SD card) is ignored as a readable late one is.
      if (this.ready && t !== undefined && RECORDING_ANSWERS.has(t) && head?.req !== undefined) {
        const waiting = this.recordings.fail(head.req, 502, `the dongle's answer could not be read: ${parsed.error}`);
        this.stats.reject('malformed');
        this.log.warn({ dongle: this.dongle, type: t, error: parsed.error, waiting }, 'malformed recording answer from the agent: that request failed (502), the link goes on');
        return;
      }
      if (t !== undefined && !KNOWN_TYPES.has(t))
        return this.refuse(
          'unknown_type',
          CLOSE.PROTOCOL,
          `unknown message type ${JSON.stringify(t.slice(0, 40))}; an agent sends hello, event, data_ack, dbc, clock_probe or rec_*`,
        );
      return this.refuse('malformed', CLOSE.PROTOCOL, `malformed message: ${parsed.error}`);
    }
    const m = parsed.msg;
    if (m.t === 'clock_probe') {
      // Answered before hello too: the agent learns its clock offset before any frame moves.
      if (this.state !== 'ready' && ++this.probesBeforeHello > MAX_PROBES_BEFORE_HELLO)
        return this.refuse('out_of_place', CLOSE.PROTOCOL, `more than ${MAX_PROBES_BEFORE_HELLO} clock probes before hello; send hello`);
      const t = this.clock.now();
      this.domainAware ||= m.domain === true;
      this.priorDomain = this.domainAware && this.probeDomain !== undefined && this.probeDomain !== t.wallMinusMonoMs ? this.probeDomain : undefined;
      this.probeDomain = t.wallMinusMonoMs;
      this.sendText(m.domain ? { t: 'clock_reply', t0: m.t0, bridge_ms: t.wallMs, bridge_wm: t.wallMinusMonoMs } : { t: 'clock_reply', t0: m.t0, bridge_ms: t.wallMs });
      return;
    }
    if (m.t === 'hello') {
      if (this.state !== 'awaiting_hello') return this.refuse('out_of_place', CLOSE.PROTOCOL, 'hello sent twice on one connection');
      return this.onHello(m);
    }
    if (this.state !== 'ready') return this.refuse('out_of_place', CLOSE.PROTOCOL, `${m.t} before hello; the first message must be hello`);
    if (m.t === 'event') {
      const ack = this.handler.event(this, m);
      this.sendText({ t: 'event_ack', seq: ack });
      return;
    }
    if (m.t === 'dbc') return this.handler.dbc(this, m);
    if (m.t === 'rec_listing' || m.t === 'rec_chunk' || m.t === 'rec_error') {
      // An answer to nothing we asked (late after a timeout): harmless, ignored.
      if (!this.recordings.settle(m)) this.log.debug({ req: m.req }, 'recording answer for no waiting request; ignored');
      return;
    }
    if (!this.handler.downAck(this, m.batch)) {
      // Not fatal: the agent's ack is advisory for what we may forget; count it and go on.
      this.stats.reject('bad_ack');
      this.log.warn({ batch: m.batch }, 'agent acknowledged a DOWN batch that was never sent to it; ignored');
    }
  }

  private onHello(h: HelloMessage): void {
    clearTimeout(this.helloTimer);
    const r = this.handler.hello(this, h);
    if (!(r instanceof Promise)) return this.afterHello(h, r);
    this.state = 'hello_pending';
    r.then(
      (v) => {
        if (this.state === 'hello_pending') this.afterHello(h, v);
      },
      (err: unknown) => {
        this.log.error({ err }, 'internal error while deciding an agent hello');
        if (this.state === 'hello_pending') this.refuse('internal', CLOSE.PROTOCOL, 'internal error on the bridge; reconnect');
      },
    );
  }

  private afterHello(h: HelloMessage, r: Welcome | Refusal): void {
    if ('reason' in r) return this.refuse(r.reason, r.code, r.message);
    this.helloMsg = h;
    this.up = new BatchDedupe(r.position);
    this.state = 'ready';
    // What of this agent run we already have, before the welcome: the agent frees those batches as
    // delivered before it ages out or trims the rest, so frames that arrived over a lost link are never
    // counted as dropped (agent/uplink/frame-uploader.ts).
    if (this.up.position.batch >= 0) this.sendText({ t: 'data_ack', batch: this.up.position.batch });
    this.sendText({
      t: 'welcome',
      protocol: PROTOCOL_VERSION,
      dongle: this.dongle,
      event_ack: r.eventAck,
      group: r.group,
      ...(r.relayRev !== undefined && { relay_rev: r.relayRev }),
      relay_epoch: r.relayEpoch,
      features: BRIDGE_FEATURES,
    });
    this.handler.welcomed(this);
  }

  private onBatch(buf: Buffer): void {
    if (this.state !== 'ready') return this.refuse('out_of_place', CLOSE.PROTOCOL, 'binary frame batch before hello; the first message must be hello');
    let batch: Batch;
    try {
      batch = decodeBatch(buf);
    } catch (err) {
      if (!(err instanceof BatchDecodeError)) throw err;
      return this.refuse('bad_batch', CLOSE.PROTOCOL, `bad frame batch: ${err.message}`);
    }
    if (batch.kind !== KIND_UP) return this.refuse('out_of_place', CLOSE.PROTOCOL, 'DOWN batches go from the bridge to agents; an agent sends UP batches');
    const tooManyBuses = this.busProblem(batch.buses ?? []);
    if (tooManyBuses) return this.refuse('bad_batch', CLOSE.PROTOCOL, `bad frame batch: ${tooManyBuses}`);
    // Before anything is taken: a frame time outside a sane window of now is a broken clock or a forged
    // batch, and none of the batch's frames may reach a bus (or a console, which would fail to format it).
    const t = this.clock.now();
    const now = t.wallMs;
    const badTime = frameTimesProblem(batch.frames, batch.clock ?? BRIDGE_CLOCK, now, BRIDGE_CLOCK);
    if (badTime) return this.refuse('bad_batch', CLOSE.PROTOCOL, `bad frame batch: ${badTime}`);
    if (!this.up.accept(batch.batch)) {
      // A resend of a batch already taken (its ack was lost with the old connection): ack, never relay twice.
      BridgeStats.inc(this.stats.duplicateBatches, this.dongle);
      this.queueAck();
      return;
    }
    // No frame was received after it arrived here: one stamped later ages from its arrival (clock.ts). The
    // arrival on the wall clock the agent's fix converts to: as it was when the agent last probed it.
    batch.clock = noLaterThanArrival(batch.frames, batch.clock ?? BRIDGE_CLOCK, t.monoMs + (this.originClockDomainMs ?? t.wallMinusMonoMs));
    this.handler.frames(this, batch, now);
    this.queueAck();
  }

  /**
   * A dongle has at most MAX_BUSES_PER_DONGLE buses (core/names.ts): its hello may list no more, and
   * neither may its UP batches name more, one batch or all of one link's together. Everything the bridge
   * keeps per bus (sequence checks, the fleet's bus states, the relay's DOWN batches, the peer's transmit
   * lines) relies on it. Returns the reason, or null (and the names are then this link's).
   */
  private busProblem(names: readonly string[]): string | null {
    if (names.length > MAX_BUSES_PER_DONGLE) return `it names ${names.length} buses; a dongle has at most ${MAX_BUSES_PER_DONGLE}`;
    let added = 0;
    for (const n of names) if (!this.buses.has(n)) added++;
    if (added === 0) return null;
    if (this.buses.size + added > MAX_BUSES_PER_DONGLE)
      return `with it this connection's batches name ${this.buses.size + added} different buses; a dongle has at most ${MAX_BUSES_PER_DONGLE}`;
    for (const n of names) this.buses.add(n);
    return null;
  }

  // ---- acks ----

  private queueAck(): void {
    this.acks.add();
  }

  /** Sends the cumulative ack now (the ack clock's tick, a full batch count, or closing). */
  flushAck(): void {
    if (!this.acks.due || this.up.position.batch < 0) return;
    if (this.handler.peerBehind(this)) {
      // Backpressure: the agent keeps these batches (bounded on its side) until the peer catches up.
      this.acks.later();
      return;
    }
    this.acks.done();
    const now = performance.now();
    // The position is saved before it is acknowledged (at most once a second), so that a restarted
    // bridge still recognises resends of batches it took. A save held back by the limit follows when the
    // second is over: otherwise, once traffic stopped, the stored position trailed the acks until the link
    // closed — and a node taking over a silent link (the close not yet seen) admitted the agent from it, and
    // relayed again the batches the agent resent.
    if (now - this.lastSavedAt >= POSITION_SAVE_MS) this.savePositionNow();
    else this.saveTimer ??= setTimeout(() => this.savePositionNow(), POSITION_SAVE_MS - (now - this.lastSavedAt));
    this.sendText({ t: 'data_ack', batch: this.up.position.batch });
  }

  private savePositionNow(): void {
    clearTimeout(this.saveTimer);
    this.saveTimer = undefined;
    if (this.state === 'closed') return; // the close saved it
    this.lastSavedAt = performance.now();
    this.handler.savePosition(this, this.up.position);
  }

  // ---- outgoing ----

  private sendText(msg: BridgeMessage): boolean {
    if (!this.checkBound()) return false;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  /** False (and the link dropped) when the agent has stopped reading. */
  private checkBound(): boolean {
    if (this.ws.readyState !== WebSocket.OPEN) return false;
    if (this.ws.bufferedAmount <= HARD_BOUND_BYTES) return true;
    this.stats.reject('not_reading');
    this.log.warn({ buffered: this.ws.bufferedAmount }, 'agent is not reading its socket: disconnected');
    this.ws.terminate();
    return false;
  }

  /** Counts, logs, tells the agent why, and closes with the code that says it. */
  private refuse(reason: RejectReason, code: number, message: string): void {
    if (this.state === 'closing' || this.state === 'closed') return;
    this.stats.reject(reason);
    this.log.warn({ reason, close_code: code }, `agent message refused: ${message}`);
    this.sendText({ t: 'error', code: reason, message: message.slice(0, 1000) });
    this.close(code, reason);
  }

  private onClose(code: number, reason: string): void {
    if (this.state === 'closed') return;
    const wasReady = this.state === 'ready' || (this.state === 'closing' && this.helloMsg !== undefined);
    this.state = 'closed';
    clearTimeout(this.helloTimer);
    clearInterval(this.pingTimer);
    clearTimeout(this.saveTimer);
    this.acks.done();
    if (wasReady && this.up.position.batch >= 0) this.handler.savePosition(this, this.up.position);
    this.recordings.closeAll();
    this.handler.closed(this, code, reason);
  }
}

const RECORDING_ANSWERS = new Set(['rec_listing', 'rec_chunk', 'rec_error']);

/**
 * The `t` (and a recording answer's `req`) of a message that failed validation, when it has them: tells
 * "unknown type" from "malformed", and which recording request a malformed answer was for.
 */
function headOf(text: string): { t: string | undefined; req: number | undefined } | undefined {
  try {
    const v: unknown = JSON.parse(text);
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      const { t, req } = v as Record<string, unknown>;
      return { t: typeof t === 'string' ? t : undefined, req: Number.isSafeInteger(req) ? (req as number) : undefined };
    }
  } catch {
    /* not JSON */
  }
  return undefined;
}
