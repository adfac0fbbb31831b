/**
 * The agent's link to the cloud bridge: one WebSocket (TLS for https:// bridges), authenticated with the
 * agent token, kept up with heartbeats and reconnected with jittered exponential backoff — to the next of
 * the --bridge URLs when there are several (the nodes of a cluster; bridge-urls.ts).
 * It carries three things: mirrored console events (from the outbox, exactly once), UP frame batches
 * (from the FrameUploader) and, down, commands and relayed frame batches. Before hello it measures its
 * clock's offset to the bridge (ClockSync), so every frame's age is known on both sides.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import WebSocket from 'ws';
import { BatchDecodeError, decodeBatch, KIND_DOWN, MAX_BATCH_BYTES } from '../../core/uplink/frame-codec.js';
import { dbcChunks, type DbcUpload } from '../../core/uplink/dbc-transfer.js';
import { CLOSE, closeReason, parseBridgeMessage, PROTOCOL_VERSION, UPLINK_PATH, type AgentMessage, type BridgeMessage } from '../../core/uplink/messages.js';
import { MAX_BUSES_PER_DONGLE } from '../../core/names.js';
import type { ClockFix } from '../../core/uplink/clock.js';
import type { CommandRunner } from '../command-runner.js';
import { ClockSync } from './clock-sync.js';
import { answerRecordingAsk, RecordingAnswers } from '../recording/recording-uplink.js';
import { DownAcks } from './down-acks.js';
import type { Downlink } from './downlink.js';
import type { FrameUploader } from './frame-uploader.js';
import type { Outbox } from './outbox.js';
import { BridgeRotation } from './bridge-urls.js';
import { reconnectDelayMs } from './reconnect-delay.js';

export interface UplinkOptions {
  /** One bridge, or the nodes of a bridge cluster: tried in order, the next after a failed or lost connection. */
  bridgeUrls: readonly string[];
  token: string;
  dongle: string;
  version: string;
  buses: () => string[];
  /** The DBC files in use, sent to a bridge that decodes with them (core/uplink/dbc-transfer.ts). */
  dbcFiles?: () => DbcUpload[];
  heartbeatMs?: number;
  maxBackoffMs?: number;
  /** How long a hello may wait for its welcome (default WELCOME_TIMEOUT_MS; tests give less). */
  welcomeTimeoutMs?: number;
}

export type UplinkState = 'connecting' | 'connected' | 'waiting';

const EVENT_WINDOW = 500;
/** A bridge that answers no clock probe this long after connecting is not usable: reconnect. */
const CLOCK_TIMEOUT_MS = 5000;
/**
 * A hello not welcomed this long after it was sent: reconnect (and the next --bridge is tried). A bridge
 * (or cluster node) whose decision hangs — its database or NATS stalled — answered pings and held the agent
 * for ever. Longer than a cluster claim can take (it asks the holder, up to seconds).
 */
const WELCOME_TIMEOUT_MS = 30_000;

/** Unsent bytes on the link past which the bridge is taken not to read it (the uploader stops frames at 8 MiB). */
const NOT_READING_BYTES = 16 * 1024 * 1024;

export class UplinkClient {
  readonly run = randomUUID();
  private ws: WebSocket | undefined;
  /** Acks of the current connection's DOWN batches. */
  private downAcks: DownAcks | undefined;
  private state: UplinkState = 'waiting';
  private welcomed = false;
  private attempt = 0;
  private duplicates = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private flushTimer: NodeJS.Timeout | undefined;
  /** performance.now() of the bridge's last pong: silence is measured on the monotonic clock (a wall clock stepped back hid a dead link). */
  private lastPong = 0;
  private clockTimer: NodeJS.Timeout | undefined;
  private readonly clock = new ClockSync();
  /** Highest outbox seq written to the current connection, and the highest the bridge has stored. */
  private eventsSentUpTo = 0;
  private eventsAckedUpTo = 0;
  private stopped = false;
  /** The bridge's welcome listed the "dbc" feature. */
  private bridgeDecodes = false;
  private dbcGen = 0;
  /** Answers the bridge's recording requests (agent/recording/recording-uplink.ts); by default, "this agent does not record". */
  recordings = new RecordingAnswers((m) => answerRecordingAsk(undefined, m));
  readonly stats = { connects: 0, disconnects: 0, rejectedMessages: 0, eventsSent: 0 };
  private readonly bridges: BridgeRotation;
  /**
   * The group the relayed frames waiting in the TxQueue were relayed under: the last welcome's or `group`
   * message's (undefined before the first welcome).
   */
  private relayGroup: string | null | undefined;
  /** That group's relay revision (messages.ts `relay_rev`; undefined from a bridge that sends none). */
  private relayRev: string | undefined;

  constructor(
    private readonly opts: UplinkOptions,
    private readonly outbox: Outbox,
    private readonly uploader: FrameUploader,
    private readonly downlink: Downlink,
    private readonly commands: CommandRunner,
    private readonly log: Logger,
  ) {
    this.bridges = new BridgeRotation(opts.bridgeUrls);
    // The cumulative DOWN ack goes to the connection current when it moves (a batch may finish after the
    // link it came on is gone); before a welcome it goes nowhere: the bridge resends, the dedupe acks.
    downlink.onAck = (upTo) => {
      if (this.welcomed) this.downAcks?.ack(upTo);
    };
  }

  /** This agent's clock offset to the bridge (undefined until measured on the current connection). */
  get clockFix(): ClockFix | undefined {
    return this.clock.fix;
  }

  get connected(): boolean {
    return this.state === 'connected' && this.welcomed;
  }

  start(): void {
    this.connect();
  }

  /** A new console event is in the outbox: send it now if the link is up. */
  eventQueued(): void {
    if (this.connected) this.pumpEvents();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    const ws = this.ws;
    if (!ws) return;
    // Give the final events (the offline presence) and the pending DOWN ack a moment to leave.
    this.pumpEvents();
    this.downAcks?.flushAck();
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        ws.terminate();
        resolve();
      }, 1000);
      ws.once('close', () => {
        clearTimeout(t);
        resolve();
      });
      ws.close(CLOSE.SHUTDOWN, 'agent stopping');
    });
  }

  private connect(): void {
    if (this.stopped) return;
    this.state = 'connecting';
    const url = new URL(UPLINK_PATH, this.bridges.current.replace(/^http/, 'ws') + '/');
    const ws = new WebSocket(url, {
      headers: { Authorization: `Bearer ${this.opts.token}` },
      maxPayload: MAX_BATCH_BYTES,
      handshakeTimeout: 10_000,
      perMessageDeflate: false,
    });
    this.ws = ws;
    this.downAcks = new DownAcks((batch) => this.send(ws, { t: 'data_ack', batch }));
    ws.on('open', () => {
      this.state = 'connected';
      this.lastPong = performance.now();
      // hello follows the first clock reply: no frame moves before this agent's clock offset is known.
      this.clock.start((m) => this.send(ws, m));
      this.clockTimer = setTimeout(() => {
        this.log.error(`the bridge answered no clock probe within ${CLOCK_TIMEOUT_MS / 1000} s; reconnecting (is it an older bridge?)`);
        ws.terminate();
      }, CLOCK_TIMEOUT_MS);
      this.heartbeat = setInterval(() => this.checkHeartbeat(ws), this.opts.heartbeatMs ?? 10_000);
    });
    ws.on('pong', () => (this.lastPong = performance.now()));
    ws.on('message', (data, isBinary) => {
      // Whatever a message makes fail (a state read, a bug) costs this connection, never the agent.
      try {
        this.onMessage(ws, data as Buffer, isBinary);
      } catch (err) {
        this.log.error({ err }, 'handling a message from the bridge failed; reconnecting');
        ws.terminate();
      }
    });
    ws.on('unexpected-response', (_req, res) => {
      const why =
        res.statusCode === 401
          ? 'the bridge refused the agent token (HTTP 401): check --token/--token-file, or register the dongle and use its token'
          : `the bridge answered HTTP ${res.statusCode} instead of a WebSocket upgrade: check --bridge`;
      this.log.error({ status: res.statusCode }, why);
      // Refused before the link opened (the token revoked, the dongle removed while the link was down):
      // as for a close with 4401, what was relayed to it must not reach the bus now.
      if (res.statusCode === 401) this.dropRefused('HTTP 401');
      this.attempt = Math.max(this.attempt, 5); // do not hammer a bridge that refuses us
      ws.terminate();
    });
    ws.on('error', (err) => this.log.warn({ err: err.message }, 'uplink error'));
    ws.on('close', (code, reason) => this.onClose(ws, code, reason.toString()));
  }

  private onMessage(ws: WebSocket, data: Buffer, isBinary: boolean): void {
    if (isBinary) {
      if (!this.welcomed) return this.reject(ws, 'frames before welcome');
      let batch;
      try {
        batch = decodeBatch(data);
      } catch (err) {
        return this.reject(ws, err instanceof BatchDecodeError ? err.message : String(err));
      }
      if (batch.kind !== KIND_DOWN) return this.reject(ws, 'the bridge sent an UP batch');
      const refused = this.downlink.apply(batch, this.clock.fixNow(), this.relayGroup !== null);
      if (refused) return this.reject(ws, `bad frame batch: ${refused}`);
      return;
    }
    const parsed = parseBridgeMessage(data.toString('utf8'));
    if (!parsed.ok) return this.reject(ws, parsed.error);
    this.handle(ws, parsed.msg);
  }

  private handle(ws: WebSocket, m: BridgeMessage): void {
    switch (m.t) {
      case 'welcome':
        if (this.welcomed) return this.reject(ws, 'a second welcome on one connection');
        if (m.dongle !== this.opts.dongle) return this.reject(ws, `welcomed as ${m.dongle}, expected ${this.opts.dongle}`);
        {
          // Before anything is changed: a welcome the outbox refuses ends the link.
          const refused = this.outbox.welcome(m.event_ack);
          if (refused) return this.reject(ws, refused);
        }
        this.welcomed = true;
        clearTimeout(this.clockTimer);
        this.attempt = 0;
        this.duplicates = 0;
        this.stats.connects++;
        this.downlink.setEpoch(m.relay_epoch);
        // The group, or what it relays under (its sides, its bus map), changed while the link was down:
        // what waits was relayed under the old one.
        if (this.relayGroup !== undefined && (m.group !== this.relayGroup || m.relay_rev !== this.relayRev)) this.groupChanged(m.group);
        this.relayGroup = m.group;
        this.relayRev = m.relay_rev;
        this.eventsSentUpTo = this.eventsAckedUpTo = m.event_ack;
        this.log.info({ bridge: this.bridges.current, group: m.group, outbox: this.outbox.size }, 'uplink connected');
        this.uploader.attach({
          send: (b) => ws.send(b),
          bufferedAmount: () => ws.bufferedAmount,
          clock: () => this.clock.fix,
          clockWallMinusMono: () => this.clock.fixWallMinusMono,
        });
        this.flushTimer = setInterval(() => this.uploader.flush(), 50);
        this.pumpEvents();
        this.bridgeDecodes = m.features?.includes('dbc') === true;
        this.sendDbc();
        if (m.features?.includes('clock_domain') === true) this.clock.useBridgeDomains();
        return;
      case 'event_ack':
        // An ack of events never sent would delete them (command statuses among them) unsent.
        if (m.seq > this.eventsSentUpTo) return this.reject(ws, `event_ack ${m.seq} for events never sent (sent up to ${this.eventsSentUpTo})`);
        this.outbox.ack(m.seq);
        this.eventsAckedUpTo = Math.max(this.eventsAckedUpTo, m.seq);
        this.pumpEvents();
        return;
      case 'data_ack':
        if (!this.uploader.ack(m.batch)) return this.reject(ws, `data_ack ${m.batch} for a batch never sent`);
        return;
      case 'command':
        this.commands.run(m.command_id, m.expires_at, m.command, this.clock.fixNow());
        return;
      case 'group':
        this.log.info({ group: m.group }, m.group ? 'now in a group: frames relay to the peer' : 'no longer in a group');
        // The bridge says so only when the group changed (joined, left, ended, sides or bus map changed):
        // relayed frames still waiting were meant for the old group's bus map, maybe for another bus.
        this.groupChanged(m.group);
        this.relayGroup = m.group;
        this.relayRev = m.relay_rev;
        return;
      case 'error':
        this.log.error({ code: m.code }, `bridge: ${m.message}`);
        return;
      case 'clock_reply':
        // True once per link: its first clock estimate.
        if (this.clock.reply(m) && !this.welcomed) {
          clearTimeout(this.clockTimer);
          this.sayHello(ws);
          const waitMs = this.opts.welcomeTimeoutMs ?? WELCOME_TIMEOUT_MS;
          // The same timer as the clock's: cleared by the welcome and when the link closes.
          this.clockTimer = setTimeout(() => {
            this.log.error(`the bridge did not welcome this agent within ${waitMs / 1000} s of its hello; reconnecting`);
            ws.terminate();
          }, waitMs);
        }
        return;
      case 'rec_list':
      case 'rec_read': {
        this.recordings.handle(m, (a) => this.send(ws, a));
        return;
      }
    }
  }

  /**
   * Relayed frames waiting for the bus were relayed under a group that has ended or changed: none of them
   * is transmitted any more (counted as `tx_dropped_group_changed`). The bridge has dropped what it held
   * for this side too (its `group_changed`).
   */
  private groupChanged(group: string | null): void {
    const from = this.relayGroup ?? null;
    const n = this.downlink.groupChanged(`the group changed (${from ?? 'none'} → ${group ?? 'none'}): relayed frame not transmitted`);
    if (n > 0) this.log.warn({ frames: n, from, to: group }, 'relayed frames waiting for the bus dropped: the group changed');
  }

  /**
   * The bridge refused this agent (close 4401, or HTTP 401 at the upgrade): the token was rotated or
   * revoked, or the dongle removed. Frames relayed to it, and commands' frames, must not reach the bus now
   * (`tx_dropped_unauthorized`).
   */
  private dropRefused(reason: string): void {
    const n = this.downlink.dropQueued('droppedUnauthorized', `the bridge refused this agent (${reason}): relayed frame not transmitted`);
    if (n > 0) this.log.warn({ frames: n, reason }, 'relayed frames waiting for the bus dropped: the bridge refused this agent');
    // Commands are the bridge's too: one whose dongle was removed (or token revoked) must not reach the bus after it.
    const c = this.commands.dropWaiting(`the bridge refused this agent (${reason}) before the frame could be transmitted: not transmitted`);
    if (c > 0) this.log.warn({ frames: c, reason }, "commands' frames waiting for the bus dropped: the bridge refused this agent");
  }

  /** The DBC files changed (a reload): the bridge gets the new set. */
  dbcChanged(): void {
    this.sendDbc();
  }

  private sendDbc(): void {
    const ws = this.ws;
    if (!ws || !this.connected || !this.bridgeDecodes || !this.opts.dbcFiles) return;
    const { messages, refused } = dbcChunks(this.opts.dbcFiles(), this.dbcGen++);
    if (refused !== undefined) this.log.warn(`DBC files not sent to the bridge: ${refused}`);
    for (const m of messages) this.send(ws, m);
  }

  private sayHello(ws: WebSocket): void {
    this.send(ws, {
      t: 'hello',
      protocol: PROTOCOL_VERSION,
      dongle: this.opts.dongle,
      run: this.run,
      version: this.opts.version,
      buses: this.opts.buses().slice(0, MAX_BUSES_PER_DONGLE),
      outbox: this.outbox.identity,
    });
  }

  /** Sends outbox entries after the last one sent, keeping at most EVENT_WINDOW unacknowledged. */
  private pumpEvents(): void {
    const ws = this.ws;
    if (!ws || !this.connected) return;
    const room = EVENT_WINDOW - (this.eventsSentUpTo - this.eventsAckedUpTo);
    if (room <= 0) return;
    for (const e of this.outbox.pending(this.eventsSentUpTo, room)) {
      this.send(ws, { t: 'event', seq: e.seq, event: e.event, data: e.data });
      this.eventsSentUpTo = e.seq;
      this.stats.eventsSent++;
    }
  }

  private send(ws: WebSocket, m: AgentMessage): void {
    if (ws.readyState !== WebSocket.OPEN) return;
    if (ws.bufferedAmount > NOT_READING_BYTES) {
      // Frames stop at the uploader's socket limit; answers (recording chunks) to a bridge that keeps
      // asking and does not read would pile up here without one.
      this.log.warn({ buffered: ws.bufferedAmount }, 'the bridge is not reading its link; reconnecting');
      ws.terminate();
      return;
    }
    ws.send(JSON.stringify(m));
  }

  private reject(ws: WebSocket, why: string): void {
    this.stats.rejectedMessages++;
    this.log.warn({ why }, 'rejected a message from the bridge; reconnecting');
    ws.close(CLOSE.PROTOCOL, closeReason(why));
  }

  private checkHeartbeat(ws: WebSocket): void {
    if (performance.now() - this.lastPong > (this.opts.heartbeatMs ?? 10_000) * 2.5) {
      this.log.warn('uplink heartbeat lost: no pong from the bridge; reconnecting');
      ws.terminate();
      return;
    }
    ws.ping();
    if (this.welcomed) this.clock.probe();
    // A read of the outbox that failed is tried again here too: on a quiet gateway no event or ack may
    // come for minutes, and what waits in the outbox (a command's status) would wait with it.
    this.pumpEvents();
  }

  private onClose(ws: WebSocket, code: number, reason: string): void {
    if (ws !== this.ws) return;
    this.downAcks?.close();
    this.downAcks = undefined;
    clearInterval(this.heartbeat);
    clearInterval(this.flushTimer);
    clearTimeout(this.clockTimer);
    this.uploader.detach();
    // Events written to the lost link may have reached the bridge: the next welcome says (outbox.ts).
    if (this.welcomed) this.outbox.linkLost(this.eventsSentUpTo);
    if (this.welcomed) {
      this.stats.disconnects++;
      this.log.warn({ code, reason }, 'uplink disconnected');
    }
    this.welcomed = false;
    this.ws = undefined;
    this.state = 'waiting';
    if (this.stopped) return;
    if (code === CLOSE.DUPLICATE_AGENT) this.duplicates++;
    const delay = reconnectDelayMs(code, { attempt: this.attempt, duplicates: this.duplicates }, this.opts.maxBackoffMs ?? 30_000);
    if (code === CLOSE.UNAUTHORIZED) {
      this.log.error({ reason }, 'the bridge refused this agent: check its token and dongle id');
      this.dropRefused(reason);
    }
    if (code === CLOSE.REPLACED) this.log.error('the bridge replaced this link (it had missed its heartbeats) with a newer connection of this dongle');
    if (code === CLOSE.DUPLICATE_AGENT)
      this.log.error(
        { dongle: this.opts.dongle, refusals: this.duplicates, retry_in_ms: delay },
        "DUPLICATE AGENT: another agent is connected to the bridge with this dongle's token, so the bridge refused this one; nothing from this agent is relayed. Stop the other agent, or give this gateway its own --id and token.",
      );
    this.attempt++;
    // Several bridges (a cluster's nodes): whatever ended this connection, the next attempt goes to the next
    // one, so a dead node costs one backoff delay, not a wait for it to come back.
    const from = this.bridges.current;
    this.bridges.next();
    if (this.bridges.current !== from) this.log.info({ from, to: this.bridges.current, retry_in_ms: delay }, 'uplink: trying the next bridge');
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }
}
