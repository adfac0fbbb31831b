/**
 * One socketcand client: its mode (NO_BUS → BCM after `open` → RAW after `rawmode`, back with
 * `bcmmode`), its BCM subscriptions, and its bounded output. Everything the agent writes to the client
 * (frames, replies) goes through one queue in order; a client whose unsent output passes the limit is
 * cut (and counted) instead of holding frames for it: it can never slow the intake or other clients.
 */
import type { Socket } from 'node:net';
import type { CanFrame } from '../../core/can/frame.js';
import { endConnection } from '../../core/net/end-connection.js';
import { busesInWords, type SendResult } from '../sources/source.js';
import { MessageReader } from './message-reader.js';
import { bcmFrameMessage, ECHO, errorMessage, HI, OK, parseCommand, type Command } from './messages.js';

/**
 * After the `< ok >` that enters raw mode, frames are held this long (and kept, not lost) before the first
 * is written. python-can (4.1 and later) reads that `< ok >` with one recv() and fails the connection if a
 * frame arrives in the same read.
 */
export const RAW_SETTLE_MS = 250;
/**
 * Before each frame (and each error reply once a bus is open): python-can up to 4.2 drops one character
 * at the end of every read — after the read's last complete message, or the first of the buffer when the
 * read completed none. A frame split across two reads loses its '<' without a separator; across three,
 * one newline loses it about ten times as often as two (docs/socketcand.md, measured). Every parser skips
 * text between messages.
 */
export const FRAME_SEPARATOR = '\n\n';
/** Subscriptions one client may hold in BCM mode. */
const MAX_SUBSCRIPTIONS = 2048;
/**
 * Sends one client may have waiting in the agent's transmit queue. The queue is shared with the bridge's
 * relay and commands: one client flooding sends must not fill it for them.
 */
export const MAX_SENDS_IN_FLIGHT = 256;
/**
 * Sends of all clients together waiting in the transmit queue (a tenth of it): 64 clients × 256 would
 * be more than the whole queue, and relayed frames and commands would find it full.
 */
export const MAX_SENDS_IN_FLIGHT_ALL = 1024;
/**
 * A client's send not handed to the kernel within this long is dropped, never transmitted (the client is
 * told): socketcand writes a send to the kernel at once, so a client means "now", and a frame held behind
 * a busy bus (no node acknowledging: about one frame per --tx-retry-ms) went out tens of seconds later.
 */
export const SEND_MAX_WAIT_MS = 1000;
/** A connection that has not opened a bus by then is closed: an idle one must not hold one of the few client slots. */
export const OPEN_TIMEOUT_MS = 30_000;
/** TCP keep-alive probes find a peer that vanished (cable pulled) on a quiet bus, where no output would ever pile up. */
const KEEPALIVE_MS = 30_000;

export interface SocketcandStats {
  clients: number;
  framesSent: number;
  clientsCut: number;
  connectionsRefused: number;
  framesTransmitted: number;
  sendsRefused: number;
  errorsSent: number;
}

/** The transmit path a session sends through (the agent's TxQueue). */
export interface SocketcandTransmit {
  /** Queues `frame` for the bus on behalf of `sender`; `done` tells how it went. */
  send(frame: CanFrame, sender: object, done: (r: SendResult) => void): void;
  /** `sender` disconnected: its frames still waiting are dropped, not transmitted (their `done` told). */
  withdraw(sender: object): void;
}

export interface SessionHost {
  /** Buses a client may open. */
  buses(): string[];
  /** The transmit path, or undefined when sending is off (listen-only). */
  transmit: SocketcandTransmit | undefined;
  maxPendingBytes: number;
  stats: SocketcandStats;
  /** Sends of every session waiting in the transmit queue (MAX_SENDS_IN_FLIGHT_ALL). */
  sending: { inFlight: number };
  /** Starts (bus) or stops (undefined) handing this session the frames of a bus. */
  attach(session: Session, bus: string | undefined): void;
  /** Asks for flush() on the next turn of the event loop. */
  requestFlush(session: Session): void;
  log(level: 'info' | 'warn', msg: string, fields: Record<string, unknown>): void;
}

interface Subscription {
  intervalMs: number;
  lastSentMs: number;
  pending: CanFrame | undefined;
  timer: NodeJS.Timeout | undefined;
}

type Mode = 'no_bus' | 'bcm' | 'raw';

/** How long a connection being ended may take to read its last words before it is destroyed. */
export class Session {
  private mode: Mode = 'no_bus';
  private bus: string | undefined;
  private readonly reader = new MessageReader();
  private readonly subs = new Map<number, Subscription>();
  /** Output not yet handed to the socket, and how many frames it holds. */
  private out = '';
  private outFrames = 0;
  private holdUntil = 0;
  private holdTimer: NodeJS.Timeout | undefined;
  private openTimer: NodeJS.Timeout | undefined;
  private sendsInFlight = 0;
  private closed = false;
  readonly peer: string;

  constructor(
    private readonly socket: Socket,
    private readonly host: SessionHost,
  ) {
    this.peer = `${socket.remoteAddress}:${socket.remotePort}`;
    socket.setNoDelay(true);
    socket.setKeepAlive(true, KEEPALIVE_MS);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => undefined); // 'close' follows and releases everything
    socket.on('close', () => this.release());
    this.reply(HI);
    this.openTimer = setTimeout(() => {
      this.error(`no bus was opened within ${OPEN_TIMEOUT_MS / 1000} s`);
      this.flush();
      endConnection(this.socket);
    }, OPEN_TIMEOUT_MS);
  }

  /** A frame of this session's bus (received, or another's transmit). `raw` formats it once for every raw-mode client. */
  offer(f: CanFrame, raw: () => string): void {
    if (this.closed) return;
    if (this.mode === 'raw') {
      this.queue(FRAME_SEPARATOR + raw(), 1);
      return;
    }
    // A subscription is socketcand's RX_SETUP of the kernel BCM for a plain id, and gets neither error nor
    // remote frames there: the BCM's receive mask includes the RTR and EFF flag bits (and its handler wants
    // can_id equal to the op's), and the kernel hands error frames only to receivers registered for
    // CAN_ERR_FLAG. An error frame's id is its error class, not a CAN id: `subscribe 0 0 004` is not a
    // subscription to bus errors. Nor CAN FD frames: socketcand's RX_SETUP has no CAN_FD_FRAME flag, and the
    // BCM hands an op only frames of its own type (classic or FD).
    if (f.err || f.rtr || f.fd) return;
    const sub = this.subs.get(subKey(f.id, f.ext));
    if (sub === undefined) return;
    // Monotonic: a wall clock stepped back would silence a throttled subscription for as long.
    const now = performance.now();
    if (sub.intervalMs === 0 || now - sub.lastSentMs >= sub.intervalMs) {
      sub.lastSentMs = now;
      this.queue(FRAME_SEPARATOR + bcmFrameMessage(f), 1);
      return;
    }
    // Throttled as the kernel's BCM does: the latest frame of the interval is sent when it ends.
    sub.pending = f;
    sub.timer ??= setTimeout(
      () => {
        sub.timer = undefined;
        if (sub.pending === undefined || this.closed) return;
        sub.lastSentMs = performance.now();
        this.queue(FRAME_SEPARATOR + bcmFrameMessage(sub.pending), 1);
        sub.pending = undefined;
      },
      sub.intervalMs - (now - sub.lastSentMs),
    );
  }

  /** Writes queued output unless raw mode is still settling; cuts the client when it is too far behind. */
  flush(): void {
    if (this.closed || this.out === '' || this.socket.writableEnded) return;
    const wait = this.holdUntil - performance.now();
    if (wait > 0) {
      // Raw mode still settling: come back when it ends. The settle timer can fire a millisecond early,
      // and output queued meanwhile (replies to a send-only client) then waited for the next frame.
      clearTimeout(this.holdTimer);
      this.holdTimer = setTimeout(() => this.host.requestFlush(this), wait + 1);
      return;
    }
    this.socket.write(this.out);
    this.host.stats.framesSent += this.outFrames;
    this.out = '';
    this.outFrames = 0;
    if (this.socket.writableLength > this.host.maxPendingBytes) this.cut();
  }

  close(): void {
    this.socket.destroy();
    this.release();
  }

  private queue(text: string, frames: number): void {
    this.out += text;
    this.outFrames += frames;
    if (this.out.length + this.socket.writableLength > this.host.maxPendingBytes) return this.cut();
    this.host.requestFlush(this);
  }

  private reply(text: string): void {
    this.queue(text, 0);
  }

  private error(reason: string): void {
    this.host.stats.errorsSent++;
    // Among frames an error reply is cut like one (never before < hi > or an < ok >: python-can compares those whole).
    this.reply((this.mode === 'no_bus' ? '' : FRAME_SEPARATOR) + errorMessage(reason));
  }

  private cut(): void {
    if (this.closed) return;
    this.host.stats.clientsCut++;
    this.host.log('warn', 'socketcand client cut off: it fell too far behind (raise --socketcand-client-max-pending-kib or give it a faster link)', {
      peer: this.peer,
      bus: this.bus,
      pending_bytes: this.out.length + this.socket.writableLength,
    });
    this.close();
  }

  private release(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.holdTimer);
    clearTimeout(this.openTimer);
    this.clearSubscriptions();
    // Its sends are for while it is there: what still waits for a busy bus is not transmitted after it left.
    if (this.sendsInFlight > 0) this.host.transmit?.withdraw(this);
    this.host.attach(this, undefined);
    this.host.stats.clients--;
    this.out = '';
    this.host.log('info', 'socketcand client disconnected', { peer: this.peer, bus: this.bus });
  }

  private clearSubscriptions(): void {
    for (const s of this.subs.values()) clearTimeout(s.timer);
    this.subs.clear();
  }

  private onData(chunk: Buffer): void {
    for (const ev of this.reader.feed(chunk)) {
      if (this.closed || this.socket.writableEnded) return; // ending (refused open, open timeout): nothing more is read
      if (ev.kind === 'problem' && ev.outside === true && this.mode === 'no_bus') return this.notSocketcand();
      if (ev.kind === 'problem') this.error(ev.error);
      else this.handle(parseCommand(ev.text, this.bus));
    }
  }

  /**
   * Text before any command is not a socketcand client: no real one (python-can, SavvyCAN, cangw tools)
   * sends anything before `< open … >`. A web page can: a cross-origin POST or a text/plain form to this
   * port sends its request line and headers first and `< open can0 >< send … >` in its body. Reading on
   * past the "garbage" would let any page the technician opens transmit on the bus; the connection ends.
   */
  private notSocketcand(): void {
    this.host.stats.connectionsRefused++;
    this.host.log('warn', 'socketcand connection closed: it sent text before any command (an HTTP request or another protocol, not a socketcand client)', {
      peer: this.peer,
    });
    this.error('text before any command: this port speaks socketcand (open a bus first: "open can0" in angle brackets); connection closed');
    this.flush();
    endConnection(this.socket);
  }

  private handle(cmd: Command): void {
    if (cmd.kind === 'invalid') return this.error(cmd.error);
    if (cmd.kind === 'unsupported') return this.error(cmd.what);
    if (cmd.kind === 'echo') return this.reply(ECHO);
    if (this.mode === 'no_bus') {
      if (cmd.kind !== 'open') return this.error('open a bus first ("open can0")');
      const known = this.host.buses();
      if (!known.includes(cmd.bus)) {
        // As socketcand: a refused open ends the connection.
        this.error(`could not open bus ${cmd.bus}: this gateway has ${busesInWords(known)}`);
        this.flush();
        endConnection(this.socket);
        return;
      }
      clearTimeout(this.openTimer);
      this.bus = cmd.bus;
      this.mode = 'bcm';
      this.host.attach(this, cmd.bus);
      this.host.log('info', 'socketcand client opened a bus', { peer: this.peer, bus: cmd.bus });
      return this.reply(OK);
    }
    switch (cmd.kind) {
      case 'open':
        return this.error(`bus ${this.bus} is already open; one bus per connection`);
      case 'mode':
        if (cmd.mode === 'raw' && this.mode !== 'raw') {
          this.clearSubscriptions();
          this.mode = 'raw';
          this.reply(OK);
          this.flush();
          this.holdUntil = performance.now() + RAW_SETTLE_MS;
          // One timer per session: switching back and forth must not leave one behind per switch.
          clearTimeout(this.holdTimer);
          this.holdTimer = setTimeout(() => this.host.requestFlush(this), RAW_SETTLE_MS);
          return;
        }
        if (cmd.mode === 'bcm') this.mode = 'bcm';
        return this.reply(OK);
      case 'send': {
        const transmit = this.host.transmit;
        if (transmit === undefined) {
          this.host.stats.sendsRefused++;
          return this.error('sending is off: this gateway is listen-only (the agent was started without --socketcand-allow-send)');
        }
        if (this.sendsInFlight >= MAX_SENDS_IN_FLIGHT) {
          this.host.stats.sendsRefused++;
          return this.error(`${MAX_SENDS_IN_FLIGHT} frames of this connection are already waiting to be transmitted; send slower`);
        }
        if (this.host.sending.inFlight >= MAX_SENDS_IN_FLIGHT_ALL) {
          this.host.stats.sendsRefused++;
          return this.error(`${MAX_SENDS_IN_FLIGHT_ALL} frames of socketcand clients are already waiting to be transmitted (the bus is busy); send slower`);
        }
        this.sendsInFlight++;
        this.host.sending.inFlight++;
        transmit.send(cmd.frame, this, (r) => {
          this.sendsInFlight--;
          this.host.sending.inFlight--;
          if (r.ok) this.host.stats.framesTransmitted++;
          else if (!this.closed) this.error(`could not transmit on ${cmd.frame.bus}: ${r.error}`);
        });
        return;
      }
      case 'subscribe': {
        if (this.mode !== 'bcm') return this.error('subscribe works in BCM mode; raw mode already receives every frame ("bcmmode" switches back)');
        const key = subKey(cmd.id, cmd.ext);
        const old = this.subs.get(key);
        if (old === undefined && this.subs.size >= MAX_SUBSCRIPTIONS) return this.error(`at most ${MAX_SUBSCRIPTIONS} subscriptions per connection`);
        clearTimeout(old?.timer);
        this.subs.set(key, { intervalMs: Math.ceil(cmd.intervalUs / 1000), lastSentMs: -Infinity, pending: undefined, timer: undefined });
        return;
      }
      case 'unsubscribe': {
        if (this.mode !== 'bcm') return this.error('unsubscribe works in BCM mode');
        const key = subKey(cmd.id, cmd.ext);
        clearTimeout(this.subs.get(key)?.timer);
        if (!this.subs.delete(key)) return this.error('there is no subscription for this id');
        return;
      }
    }
  }
}

function subKey(id: number, ext: boolean): number {
  return ext ? id + 0x1_0000_0000 : id;
}
