/**
 * The agent's socketcand server (--socketcand-listen): a TCP listener that speaks the socketcand protocol
 * to technicians' tools (python-can, SavvyCAN, Kayak …) for the agent's buses. The FrameRouter hands it
 * every frame of the buses, unsampled (push): received, and transmitted with who sent it; it fans each
 * frame out to the sessions that opened its bus (never back to its sender) and
 * writes their output once per turn of the event loop. The protocol has no authentication: the optional
 * allow-list (--socketcand-allow) is the only gate, and transmitting needs --socketcand-allow-send.
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { CanFrame } from '../../core/can/frame.js';
import { splitHostPort } from '../../core/cli/options.js';
import type { AllowList } from '../../core/net/allow-list.js';
import { clientGroup, ClientGroupCounts } from '../../core/net/client-address.js';
import { errorMessage, rawFrameMessage } from './messages.js';
import { endConnection } from '../../core/net/end-connection.js';
import { Session, type SessionHost, type SocketcandStats, type SocketcandTransmit } from './session.js';

/** Connections served at once; more are refused with an error (each costs a socket and a buffer). */
export const MAX_CLIENTS = 64;
/**
 * Connections of one address at once (an IPv6 one from outside the gateway's networks by its /64: core/net/client-address.ts): a client that
 * opens a bus may stay silent for as long as its bus is (the protocol has no idle end), so one host must
 * not be able to take every place from the others.
 */
export const MAX_CLIENTS_PER_ADDRESS = 16;

export interface SocketcandServerOptions {
  listen: string;
  allow: AllowList | undefined;
  maxPendingBytes: number;
  buses: () => string[];
  /** The transmit path; undefined: listen-only. */
  transmit: SocketcandTransmit | undefined;
  log: (level: 'info' | 'warn', msg: string, fields: Record<string, unknown>) => void;
}

export class SocketcandServer {
  readonly stats: SocketcandStats = { clients: 0, framesSent: 0, clientsCut: 0, connectionsRefused: 0, framesTransmitted: 0, sendsRefused: 0, errorsSent: 0 };
  private readonly server: Server;
  private readonly sessions = new Set<Session>();
  /** Sessions per client group (MAX_CLIENTS_PER_ADDRESS). */
  private readonly perAddress = new ClientGroupCounts();
  private readonly byBus = new Map<string, Set<Session>>();
  private readonly toFlush = new Set<Session>();
  private flushScheduled = false;
  private readonly host: SessionHost;

  constructor(private readonly opts: SocketcandServerOptions) {
    this.host = {
      buses: opts.buses,
      transmit: opts.transmit,
      maxPendingBytes: opts.maxPendingBytes,
      stats: this.stats,
      sending: { inFlight: 0 },
      attach: (s, bus) => this.attach(s, bus),
      requestFlush: (s) => this.requestFlush(s),
      log: opts.log,
    };
    this.server = createServer((socket) => this.accept(socket));
    this.server.on('error', (err) => opts.log('warn', `socketcand listener error: ${err.message}`, {}));
  }

  /** Listens; resolves with the address really bound (port 0 picks one). */
  async start(): Promise<{ host: string; port: number }> {
    const { host, port } = splitHostPort(this.opts.listen);
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void =>
        reject(
          new Error(
            err.code === 'EADDRINUSE'
              ? `cannot listen on ${this.opts.listen} for socketcand: the port is in use (pick another with --socketcand-listen)`
              : `cannot listen on ${this.opts.listen} for socketcand: ${err.message}`,
          ),
        );
      this.server.once('error', onError);
      this.server.listen(port, host, () => {
        this.server.off('error', onError);
        resolve();
      });
    });
    const a = this.server.address();
    if (a === null || typeof a === 'string') throw new Error('socketcand listener has no TCP address');
    return { host: a.address, port: a.port };
  }

  /**
   * Hot path, every frame: formats it at most once and queues it for each session of its bus. Received
   * frames, and those this gateway transmits (relayed, a command, a client's send), as a socketcand client
   * sees the frames its host transmits (CAN_RAW loopback) — all but its own (`origin`: the session that
   * sent it; socketcand's sockets do not receive their own messages).
   */
  push(f: CanFrame, origin?: object): void {
    const set = this.byBus.get(f.bus);
    if (set === undefined || set.size === 0) return;
    let raw: string | undefined;
    const format = (): string => (raw ??= rawFrameMessage(f));
    for (const s of set) if (s !== origin) s.offer(f, format);
  }

  async close(): Promise<void> {
    for (const s of this.sessions) s.close();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(socket: Socket): void {
    const remote = socket.remoteAddress;
    if (this.opts.allow && !this.opts.allow.allows(remote)) {
      this.stats.connectionsRefused++;
      this.opts.log('warn', 'socketcand connection refused: the address is not in --socketcand-allow', { peer: remote });
      socket.on('error', () => undefined);
      endConnection(socket, errorMessage(`address ${remote ?? 'unknown'} is not allowed on this gateway (--socketcand-allow)`));
      return;
    }
    if (this.sessions.size >= MAX_CLIENTS) {
      this.stats.connectionsRefused++;
      this.opts.log('warn', `socketcand connection refused: ${MAX_CLIENTS} clients are connected already`, { peer: remote });
      socket.on('error', () => undefined);
      endConnection(socket, errorMessage(`too many clients (${MAX_CLIENTS}); try again later`));
      return;
    }
    const from = clientGroup(remote);
    if (this.perAddress.count(from) >= MAX_CLIENTS_PER_ADDRESS) {
      this.stats.connectionsRefused++;
      this.opts.log('warn', `socketcand connection refused: ${MAX_CLIENTS_PER_ADDRESS} clients of this address are connected already`, { peer: remote });
      socket.on('error', () => undefined);
      endConnection(socket, errorMessage(`too many clients from ${from} (${MAX_CLIENTS_PER_ADDRESS}); close one first`));
      return;
    }
    this.perAddress.add(from);
    this.stats.clients++;
    const s = new Session(socket, this.host);
    this.sessions.add(s);
    socket.on('close', () => {
      this.sessions.delete(s);
      this.toFlush.delete(s);
      this.perAddress.release(from);
    });
    this.opts.log('info', 'socketcand client connected', { peer: s.peer });
  }

  private attach(s: Session, bus: string | undefined): void {
    for (const set of this.byBus.values()) set.delete(s);
    if (bus === undefined) return;
    let set = this.byBus.get(bus);
    if (set === undefined) this.byBus.set(bus, (set = new Set()));
    set.add(s);
  }

  private requestFlush(s: Session): void {
    this.toFlush.add(s);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      const list = [...this.toFlush];
      this.toFlush.clear();
      for (const x of list) x.flush();
    });
  }
}
