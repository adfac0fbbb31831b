/**
 * The uplink endpoint: accepts agent WebSockets on UPLINK_PATH (the agent token is checked on the HTTP
 * upgrade, before any WebSocket exists: a bad one gets a plain 401), keeps one current link per dongle,
 * and applies what links receive to the rest of the bridge: mirrored events to the consoles and the
 * command center, UP frames to the relay and the consoles, acks to the relay.
 *
 * One live connection per dongle (link-arbiter.ts): a second connection with the same token is refused
 * with CLOSE.DUPLICATE_AGENT while the current one is healthy, and takes over (the old link closed with
 * CLOSE.REPLACED) only once the current one has missed its heartbeats. A replaced link's close never
 * marks the dongle offline (it is no longer current).
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { WebSocketServer } from 'ws';
import { parseEventData } from '../core/console/event-schemas.js';
import { isMirroredEvent, logData, presenceData } from '../core/console/normalize.js';
import { isoNow } from '../core/console/time.js';
import type { BatchPosition } from '../core/uplink/batch-dedupe.js';
import { MAX_BATCH_BYTES, type Batch } from '../core/uplink/frame-codec.js';
import { CLOSE, PROTOCOL_VERSION, UPLINK_PATH } from '../core/uplink/messages.js';
import type { DbcChunkMessage } from '../core/uplink/dbc-transfer.js';
import { AgentLink, DEFAULT_TIMINGS, type EventMessage, type HelloMessage, type LinkHandler, type LinkTimings, type Refusal, type Welcome } from './agent-link.js';
import { bearerToken } from '../core/http/bearer-token.js';
import { BAD_TARGET, requestUrl, unavailableHeaders } from '../core/http/replies.js';
import { RateLimitedLog } from '../core/log/rate-limited-log.js';
import { endConnection } from '../core/net/end-connection.js';
import type { Auth } from './auth.js';
import type { CommandCenter } from './commands.js';
import type { BridgeConsoles } from './consoles.js';
import type { GroupRelay } from './group-relay.js';
import type { Cluster } from './cluster/cluster.js';
import { LinkArbiter, type Verdict } from './link-arbiter.js';
import { MirrorSeqs } from './mirror-seqs.js';
import { BridgeStats } from './metrics.js';
import type { SeqTracker } from './seq-tracker.js';
import type { StateStore } from './state-store.js';

export interface AgentServerDeps {
  /** The welcomed link of each dongle: kept here, read by the command center and the fleet feed. */
  links: Map<string, AgentLink>;
  store: StateStore;
  auth: Auth;
  consoles: BridgeConsoles;
  relay: GroupRelay;
  commands: CommandCenter;
  seq: SeqTracker;
  stats: BridgeStats;
  log: Logger;
  timings?: LinkTimings;
  /** Cluster mode: the dongle's lease is taken cluster-wide before a hello is welcomed (cluster/). Set once started. */
  cluster?: Cluster;
}

export interface LinkInfo {
  connected_since: string;
  last_heard: string;
  run: string;
  version: string;
  buses: string[];
}

/** How long shutdown waits for agents to answer the close before cutting them off. */
const CLOSE_GRACE_MS = 1000;
const POSITION_FLUSH_MS = 1000;

export class AgentServer implements LinkHandler {
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: MAX_BATCH_BYTES, perMessageDeflate: false, clientTracking: false });
  /** The welcomed link of each dongle (deps.links). */
  private readonly current: Map<string, AgentLink>;
  /** Every open link, welcomed or not. */
  private readonly links = new Set<AgentLink>();
  /** UP position per dongle (shared with its link), so a reconnect of the same run dedupes resends. */
  private readonly positions = new Map<string, BatchPosition>();
  /** Highest mirrored-event seq stored per dongle, and whose outbox it counts. */
  private readonly mirror: MirrorSeqs;
  /** Where each link connected from (for the duplicate_agent notice). */
  private readonly remotes = new WeakMap<AgentLink, string>();
  private readonly arbiter: LinkArbiter;
  private stopped = false;
  /** Positions the links asked to save: written together, one transaction a second, not one write per link. */
  private readonly unsaved = new Map<string, BatchPosition>();
  private readonly saveTimer: NodeJS.Timeout;
  /** Refused upgrades are anyone's to send: one line a second at most, with how many were held back. */
  private readonly refusedLog: RateLimitedLog;

  constructor(private readonly d: AgentServerDeps) {
    this.refusedLog = new RateLimitedLog(d.log, 1000);
    this.current = d.links;
    this.mirror = new MirrorSeqs(d.store, d.consoles, d.log);
    this.arbiter = new LinkArbiter((d.timings ?? DEFAULT_TIMINGS).pingMs, d.consoles, d.stats, d.log);
    this.saveTimer = setInterval(() => this.savePositions(), POSITION_FLUSH_MS);
    this.saveTimer.unref();
  }

  /** HTTP `upgrade` handler: authenticates, then hands the socket to ws. Whatever a request makes throw costs its socket, never the process. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => {}); // a reset during the handshake is the client's business
    try {
      this.upgrade(req, socket, head);
    } catch (err) {
      this.d.log.error({ err, remote: req.socket.remoteAddress }, 'internal error in an uplink upgrade: its connection was closed');
      socket.destroy();
    }
  }

  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const url = requestUrl(req);
    if (url === undefined) return rejectUpgrade(socket, 400, BAD_TARGET);
    const path = url.pathname;
    if (path !== UPLINK_PATH) return rejectUpgrade(socket, 404, `no WebSocket endpoint at ${path}; agents connect to ${UPLINK_PATH}`);
    if (this.stopped) return rejectUpgrade(socket, 503, 'the bridge is shutting down; reconnect shortly');
    const caller = this.d.auth.identify(bearerToken(req));
    if (caller?.kind !== 'agent') {
      this.d.stats.reject('unauthorized');
      this.refusedLog.warn({ remote: req.socket.remoteAddress, had_token: req.headers.authorization !== undefined }, 'uplink refused: not an agent token');
      return rejectUpgrade(
        socket,
        401,
        caller === undefined
          ? 'missing or unknown agent token: send Authorization: Bearer <agent token> (PUT /api/v1/dongles/<id> issues one, POST …/token rotates it)'
          : 'this is not an agent token; agents connect with the token issued for their dongle',
      );
    }
    const dongle = caller.dongle;
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      const link = new AgentLink(ws, dongle, this, this.d.stats, this.d.log.child({ dongle }), this.d.timings ?? DEFAULT_TIMINGS);
      this.links.add(link);
      if (req.socket.remoteAddress !== undefined) this.remotes.set(link, `${req.socket.remoteAddress}:${req.socket.remotePort}`);
    });
  }

  get connectedCount(): number {
    return this.current.size;
  }

  linkOf(dongle: string): AgentLink | undefined {
    return this.current.get(dongle);
  }

  info(dongle: string): LinkInfo | undefined {
    const l = this.current.get(dongle);
    if (!l?.hello) return undefined;
    return {
      connected_since: new Date(l.connectedAt).toISOString(),
      last_heard: new Date(l.lastHeardAt).toISOString(),
      run: l.hello.run,
      version: l.hello.version,
      buses: l.hello.buses,
    };
  }

  /** Closes every connection of a dongle (token rotated, dongle removed). */
  disconnect(dongle: string, code: number, reason: string): void {
    for (const l of this.links) if (l.dongle === dongle) l.close(code, reason);
  }

  /** The dongle was deleted: forget its uplink state. */
  forget(dongle: string): void {
    this.positions.delete(dongle);
    this.d.cluster?.forget(dongle);
    this.mirror.forget(dongle);
    this.d.seq.forget(dongle);
    this.arbiter.forget(dongle);
  }

  /** Closes every link (1001), waits briefly for the close handshakes, then cuts off the rest. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const l of this.links) l.close(CLOSE.SHUTDOWN, 'bridge shutting down');
    const deadline = Date.now() + CLOSE_GRACE_MS;
    while (this.links.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const l of this.links) l.terminate();
    clearInterval(this.saveTimer);
    this.unsaved.clear();
    for (const [dongle, pos] of this.positions) if (pos.batch >= 0) this.unsaved.set(dongle, pos);
    this.savePositions();
    this.wss.close();
  }

  // ---- LinkHandler ----

  hello(link: AgentLink, h: HelloMessage): Welcome | Refusal | Promise<Welcome | Refusal> {
    if (h.protocol !== PROTOCOL_VERSION)
      return {
        reason: 'protocol_version',
        code: CLOSE.PROTOCOL,
        message: `uplink protocol ${h.protocol} is not supported; this bridge speaks ${PROTOCOL_VERSION} (upgrade the agent or the bridge)`,
      };
    if (h.dongle !== link.dongle)
      return {
        reason: 'wrong_dongle',
        code: CLOSE.UNAUTHORIZED,
        message: `this token belongs to dongle "${link.dongle}", not "${h.dongle}"; start the agent with --id ${link.dongle} or use that dongle's token`,
      };
    const row = this.d.store.dongle(link.dongle);
    if (!row) return { reason: 'unauthorized', code: CLOSE.UNAUTHORIZED, message: `dongle "${link.dongle}" is no longer registered on this bridge` };

    const old = this.current.get(link.dongle);
    // A link this bridge is closing (its token rotated, its dongle removed and registered again) is no
    // longer the dongle's: the newcomer is judged as if it were gone, not refused as a duplicate.
    const live = old?.closing ? undefined : old;
    const remote = this.remotes.get(link);
    const cluster = this.d.cluster;
    if (cluster === undefined) return this.admit(link, h, row.up_run, row.up_batch, old, this.arbiter.decide(link.dongle, live, remote));
    // Cluster mode: the same rules, applied to the connection wherever it is (cluster/ownership.ts).
    return cluster
      .claim(link.dongle, live, (cur) => this.arbiter.decide(link.dongle, cur, remote))
      .then((v) => {
        if (this.current.get(link.dongle) === old) return v;
        // Another connection of the dongle was admitted here meanwhile: it holds the lease, not this claim.
        cluster.unclaim(link.dongle);
        return 'refuse';
      })
      .then((v): Welcome | Refusal => {
        // The claim can take seconds (JetStream): the link may have closed, or the dongle been deleted,
        // meanwhile. Admitting it then would leave a dead link as the dongle's current one: its next
        // connection refused as a duplicate, the fleet showing it online.
        if (!link.helloPending) {
          this.d.log.info({ dongle: link.dongle }, 'agent link closed before its hello was decided: not admitted');
          cluster.abandon(link.dongle);
          return { reason: 'internal', code: CLOSE.PROTOCOL, message: 'the link closed before its hello was decided' };
        }
        if (!this.d.store.dongle(link.dongle)) {
          cluster.abandon(link.dongle);
          return { reason: 'unauthorized', code: CLOSE.UNAUTHORIZED, message: `dongle "${link.dongle}" is no longer registered on this bridge` };
        }
        return this.admit(link, h, row.up_run, row.up_batch, old, v);
      });
  }

  private admit(link: AgentLink, h: HelloMessage, upRun: string | null, upBatch: number | null, old: AgentLink | undefined, verdict: Verdict): Welcome | Refusal {
    if (verdict === 'refuse')
      return {
        reason: 'duplicate_agent',
        code: CLOSE.DUPLICATE_AGENT,
        message: `another agent of dongle "${link.dongle}" is connected and healthy; two gateways must not share a token: give this one its own dongle id and token (retry with backoff)`,
      };
    this.current.set(link.dongle, link);
    if (verdict === 'takeover') this.arbiter.tookOver(link.dongle, this.remotes.get(link));
    if (old !== undefined && verdict === 'takeover') {
      old.close(CLOSE.REPLACED, 'missed heartbeats: replaced by a newer connection of this dongle');
      old.terminate(); // it is silent: a close handshake would only wait
    }

    // A new agent run numbers its batches afresh. Within a run, the furthest batch any node took: this
    // node's own, the store's (saved at most once a second), what the node the agent left said (cluster).
    let pos = this.positions.get(link.dongle);
    if (pos === undefined || pos.stream !== h.run) pos = { stream: h.run, batch: -1 };
    pos.batch = Math.max(pos.batch, upRun === h.run ? (upBatch ?? -1) : -1, this.d.cluster?.upPositionOf(link.dongle, h.run) ?? -1);
    this.positions.set(link.dongle, pos);
    this.d.seq.startRun(link.dongle, h.run);
    const m = this.d.relay.groupOf(link.dongle);
    return { eventAck: this.mirror.start(link.dongle, h.outbox), group: m?.group ?? null, relayRev: m?.rev, relayEpoch: this.d.relay.epoch, position: pos };
  }

  welcomed(link: AgentLink): void {
    const d = link.dongle;
    const h = link.hello!;
    this.d.store.setLastSeen(d, isoNow());
    this.d.log.info({ dongle: d, run: h.run, version: h.version, buses: h.buses }, 'agent connected');
    this.d.consoles.dongleEvent(d, {
      type: 'presence',
      data: presenceData('online', { reason: `uplink connected (agent ${h.version}, buses: ${h.buses.join(', ') || 'none yet'})`, version: h.version }),
    });
    this.d.relay.attach(d, link);
    this.d.cluster?.held(d, link);
    this.d.commands.connected(d);
  }

  isDongle(dongle: string): boolean {
    return this.d.store.dongle(dongle) !== undefined;
  }

  /** Cluster mode: another node holds this dongle now; its link here is closed. */
  cut(dongle: string): void {
    const l = this.current.get(dongle);
    if (l === undefined) return;
    l.close(CLOSE.REPLACED, 'another bridge node holds this dongle now');
    l.terminate();
  }

  dbc(link: AgentLink, msg: DbcChunkMessage): void {
    const error = this.d.consoles.dbcs.accept(link, link.dongle, msg);
    if (error === undefined) return;
    // Not fatal: frames still relay and show, undecoded.
    this.d.log.warn({ dongle: link.dongle, error }, 'DBC files from the agent refused');
    this.d.consoles.dongleEvent(link.dongle, { type: 'log', data: logData('warn', error, 'dbc_error') });
  }

  event(link: AgentLink, msg: EventMessage): number {
    const d = link.dongle;
    if (!this.mirror.accept(d, msg.seq)) {
      // Redelivery after a reconnect (or out of order): acknowledged, never published twice.
      BridgeStats.inc(this.d.stats.duplicateEvents, d);
      return this.mirror.stored(d);
    }
    const parsed = parseEventData(msg.event, msg.data);
    if (!parsed.ok) {
      // Skipped, not fatal: closing would make the agent resend the same entry forever.
      this.d.stats.reject('bad_event');
      this.d.log.warn({ dongle: d, seq: msg.seq, error: parsed.error }, 'mirrored event refused');
      this.d.consoles.dongleEvent(d, {
        type: 'log',
        data: logData('warn', `the bridge refused a ${msg.event} event from the agent: ${parsed.error}`, 'bad_event', { seq: msg.seq }),
      });
      return msg.seq;
    }
    const ev = parsed.event;
    if (isMirroredEvent(ev)) {
      // A status for a command this dongle was never given is not shown either (the fleet's "last command"
      // and the console would name a command that does not exist).
      if (ev.type === 'command_status' && !this.d.commands.agentStatus(d, ev.data)) return msg.seq;
      this.d.consoles.dongleEvent(d, ev);
    }
    return msg.seq;
  }

  frames(link: AgentLink, batch: Batch, _nowMs: number): void {
    const d = link.dongle;
    BridgeStats.inc(this.d.stats.framesReceived, d, batch.frames.length);
    this.d.seq.track(d, batch.frames);
    // Relay first: it is the latency-sensitive path; the consoles only sample.
    this.d.relay.relay(d, batch.frames, batch.clock, link.originClockDomainMs);
    this.d.consoles.upFrames(d, batch.frames);
  }

  peerBehind(link: AgentLink): boolean {
    return this.d.relay.peerBehind(link.dongle);
  }

  downAck(link: AgentLink, batch: number): boolean {
    const local = this.d.relay.downAck(link.dongle, batch);
    // Batches from another node are acknowledged to it too (cluster/remote-sides.ts).
    const remote = this.d.cluster?.downAck(link.dongle, batch) ?? false;
    return local || remote;
  }

  savePosition(link: AgentLink, pos: BatchPosition): void {
    if (this.stopped) return; // stop() saves every position itself
    // Only the dongle's current run: a replaced link of an earlier run, closing after the new run asked to
    // save its position, would overwrite it (until the new run's next save, a second later at the earliest).
    // A link of the same run shares the current run's position object (admit), so its saves still count.
    if (this.positions.get(link.dongle) !== pos) return;
    this.unsaved.set(link.dongle, pos);
  }

  private savePositions(): void {
    if (this.unsaved.size === 0) return;
    const rows = [...this.unsaved].map(([dongle, pos]) => ({ dongle, stream: pos.stream, batch: pos.batch }));
    this.unsaved.clear();
    try {
      this.d.store.setUpPositions(rows);
    } catch (err) {
      // Not fatal: a lost position only means resends after a restart are relayed again (and counted).
      this.d.log.warn({ err }, 'could not save the uplink positions');
    }
  }

  closed(link: AgentLink, code: number, reason: string): void {
    this.links.delete(link);
    const d = link.dongle;
    if (this.current.get(d) !== link) {
      if (link.hello) this.d.log.info({ dongle: d, code }, 'replaced agent link closed');
      return;
    }
    this.current.delete(d);
    this.d.relay.detach(d, link);
    this.d.cluster?.released(d, link, this.positions.get(d));
    if (this.stopped || !this.d.store.dongle(d)) return; // shutdown, or the dongle was deleted
    this.d.store.setLastSeen(d, isoNow());
    this.d.log.info({ dongle: d, code, reason }, 'agent disconnected');
    this.d.consoles.dongleEvent(d, {
      type: 'presence',
      data: presenceData('offline', { reason: `uplink closed (code ${code}${reason ? `: ${reason}` : ''})` }),
    });
  }
}

/** Answers an upgrade request with a plain HTTP error (no WebSocket is created); a 503 with Retry-After, as sendJson's. */
function rejectUpgrade(socket: Duplex, status: number, message: string): void {
  const body = JSON.stringify({ error: message });
  const text = { 400: 'Bad Request', 401: 'Unauthorized', 404: 'Not Found', 503: 'Service Unavailable' }[status] ?? 'Error';
  const extra = Object.entries(status === 503 ? unavailableHeaders() : {})
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  endConnection(
    socket,
    `HTTP/1.1 ${status} ${text}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}Connection: close\r\n\r\n${body}`,
  );
}
