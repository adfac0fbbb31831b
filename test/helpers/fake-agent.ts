/**
 * A fake agent for bridge tests: a real `ws` client that speaks the uplink protocol (hello, mirrored
 * events, UP batches with per-bus sequence numbers, DOWN acks) through the shared codec and messages, and
 * records everything the bridge sends. It applies DOWN batches like an agent must: batch numbers at or
 * below the last applied one are ignored (but acknowledged).
 */
import { randomUUID } from 'node:crypto';
import WebSocket from 'ws';
import type { CanFrame } from '../../core/can/frame.js';
import type { MirroredEventType } from '../../core/console/normalize.js';
import { DownAcks } from '../../agent/uplink/down-acks.js';
import { testFrame } from './can-frames.js';
import { BatchDecodeError, decodeBatch, encodeBatch, KIND_DOWN, KIND_UP, type Batch } from '../../core/uplink/frame-codec.js';
import { parseBridgeMessage, PROTOCOL_VERSION, UPLINK_PATH, type BridgeMessage } from '../../core/uplink/messages.js';

export interface ReceivedFrame {
  frame: CanFrame;
  seq: number;
  origin: string;
  batch: number;
}

export interface FakeAgentOptions {
  dongle: string;
  token: string;
  /** Agent run id; the same run across reconnects keeps batch numbering. */
  run?: string;
  buses?: string[];
  /** Send hello and wait for welcome (default true). */
  hello?: boolean;
  /** Acknowledge DOWN batches as they arrive, coalesced as the real agent does (agent/uplink/down-acks.ts; default true). */
  autoAck?: boolean;
  protocol?: number;
  /** Answer the bridge's pings (default true); false plays a dead peer whose TCP stays open. */
  autoPong?: boolean;
  /**
   * Keep every message and DOWN frame (default true). False (a load generator holding thousands of
   * agents for minutes): only the welcome is kept, DOWN frames go to `onDown` and are acknowledged.
   */
  record?: boolean;
  onDown?: (b: Batch) => void;
}

/** A classic 4-byte frame carrying `n` (big-endian) so order and identity can be checked at the far end. */
export function numberedFrame(bus: string, id: number, n: number, direction: 'rx' | 'tx' = 'rx'): CanFrame {
  const data = new Uint8Array(4);
  new DataView(data.buffer).setUint32(0, n >>> 0);
  return testFrame({ bus, id, data, direction });
}

export function frameNumber(f: CanFrame): number {
  return new DataView(f.data.buffer, f.data.byteOffset, f.data.byteLength).getUint32(0);
}

export class FakeAgent {
  readonly messages: BridgeMessage[] = [];
  readonly rawTexts: string[] = [];
  readonly downBatches: Batch[] = [];
  /** DOWN frames applied, in order, each once. */
  readonly applied: ReceivedFrame[] = [];
  appliedBatch = -1;
  closeCode: number | undefined;
  closeReason = '';
  /** DOWN batches that did not decode (refused like a real agent does: close 4400), with the reason. */
  readonly badDown: string[] = [];
  welcome: Extract<BridgeMessage, { t: 'welcome' }> | undefined;
  autoAck: boolean;
  /** The real agent's coalesced DOWN acks; nothing is sent while autoAck is off. */
  private readonly downAcks = new DownAcks((batch) => {
    if (this.autoAck) this.ackDown(batch);
  });
  private waiters: (() => void)[] = [];
  private readonly closedP: Promise<number>;

  private constructor(
    readonly ws: WebSocket,
    readonly opts: FakeAgentOptions,
    readonly run: string,
    /** Shared across reconnects of the same run (like a real agent process). */
    readonly state: { nextBatch: number; seqs: Map<string, number> },
  ) {
    this.autoAck = opts.autoAck ?? true;
    ws.on('message', (data: Buffer, isBinary) => {
      if (isBinary) this.onDown(data);
      else if (opts.record === false && this.welcome !== undefined) return;
      else {
        const text = data.toString('utf8');
        this.rawTexts.push(text);
        const p = parseBridgeMessage(text);
        if (p.ok) {
          this.messages.push(p.msg);
          if (p.msg.t === 'welcome') this.welcome = p.msg;
        }
      }
      this.wake();
    });
    this.closedP = new Promise((resolve) =>
      ws.on('close', (code, reason) => {
        this.downAcks.close();
        this.closeCode = code;
        this.closeReason = reason.toString('utf8');
        this.wake();
        resolve(code);
      }),
    );
    ws.on('error', () => {});
  }

  /** Connects (and by default says hello and waits for the welcome). */
  static async connect(base: string, opts: FakeAgentOptions, state?: FakeAgent['state'], run?: string): Promise<FakeAgent> {
    const url = base.replace(/^http/, 'ws') + UPLINK_PATH;
    const ws = new WebSocket(url, { headers: { Authorization: `Bearer ${opts.token}` }, perMessageDeflate: false, autoPong: opts.autoPong ?? true });
    ws.on('error', () => {});
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused with HTTP ${res.statusCode}`)));
      ws.once('error', reject);
    });
    const a = new FakeAgent(ws, opts, run ?? opts.run ?? randomUUID(), state ?? { nextBatch: 1, seqs: new Map() });
    if (opts.hello ?? true) await a.sayHello();
    return a;
  }

  /**
   * Reconnects as the same agent process: same run, batch and sequence counters continue. With a new
   * `run` it is a restarted agent: numbering starts over.
   */
  reconnect(overrides: Partial<FakeAgentOptions> = {}): Promise<FakeAgent> {
    const newRun = overrides.run !== undefined && overrides.run !== this.run;
    return FakeAgent.connect(this.base(), { ...this.opts, ...overrides }, newRun ? undefined : this.state, newRun ? overrides.run : this.run);
  }

  private base(): string {
    return this.ws.url.replace(/^ws/, 'http').replace(UPLINK_PATH, '');
  }

  /** `ms`: how long the welcome may take (a cluster node may first wait for a JetStream request to time out). */
  async sayHello(ms = 5000): Promise<void> {
    this.sendJson({ t: 'hello', protocol: this.opts.protocol ?? PROTOCOL_VERSION, dongle: this.opts.dongle, run: this.run, version: 'fake-1', buses: this.opts.buses ?? ['can0'] });
    await this.waitFor(() => this.welcome !== undefined || this.closeCode !== undefined, ms, 'welcome');
    if (!this.welcome) throw new Error(`no welcome: closed ${this.closeCode} ${this.closeReason}; ${this.rawTexts.join(' ')}`);
  }

  sendJson(msg: unknown): void {
    this.ws.send(JSON.stringify(msg));
  }

  sendRaw(data: string | Buffer): void {
    this.ws.send(data, { binary: typeof data !== 'string' });
  }

  sendEvent(seq: number, event: MirroredEventType, data: Record<string, unknown>): void {
    this.sendJson({ t: 'event', seq, event, data });
  }

  /** Sends frames as one UP batch with the next batch number and per-bus sequence numbers; returns the batch number. */
  sendFrames(frames: CanFrame[]): number {
    const batch = this.state.nextBatch++;
    const seqd = frames.map((frame) => {
      const seq = this.state.seqs.get(frame.bus) ?? 0;
      this.state.seqs.set(frame.bus, seq + 1);
      return { frame, seq };
    });
    this.ws.send(encodeBatch({ kind: KIND_UP, batch, frames: seqd }));
    return batch;
  }

  /** Resends a batch with a given number (what an agent does after a reconnect). */
  resendBatch(batch: number, frames: { frame: CanFrame; seq: number }[]): void {
    this.ws.send(encodeBatch({ kind: KIND_UP, batch, frames }));
  }

  ackDown(batch: number): void {
    this.sendJson({ t: 'data_ack', batch });
  }

  ofType<T extends BridgeMessage['t']>(t: T): Extract<BridgeMessage, { t: T }>[] {
    return this.messages.filter((m): m is Extract<BridgeMessage, { t: T }> => m.t === t);
  }

  /** Highest UP batch the bridge has acknowledged. */
  get ackedUp(): number {
    return Math.max(-1, ...this.ofType('data_ack').map((m) => m.batch));
  }

  get ackedEvents(): number {
    return Math.max(-1, ...this.ofType('event_ack').map((m) => m.seq));
  }

  async waitFor(pred: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
    const deadline = Date.now() + ms;
    while (!pred()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`fake agent ${this.opts.dongle}: timed out waiting for ${what} (applied ${this.applied.length} frames, close ${this.closeCode ?? '-'})`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 100));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  closed(): Promise<number> {
    return this.closedP;
  }

  async close(): Promise<void> {
    if (this.closeCode !== undefined) return;
    this.downAcks.flushAck();
    this.ws.close(1000, 'test done');
    await Promise.race([this.closedP, new Promise((r) => setTimeout(r, 1000))]);
    this.ws.terminate();
  }

  /** Drops the connection without a close handshake (a gateway losing its network). */
  kill(): void {
    this.ws.terminate();
  }

  private onDown(buf: Buffer): void {
    let b: Batch;
    try {
      b = decodeBatch(buf);
    } catch (err) {
      if (!(err instanceof BatchDecodeError)) throw err;
      this.badDown.push(err.message);
      this.ws.close(4400, 'bad_batch');
      return;
    }
    if (b.kind !== KIND_DOWN) throw new Error('bridge sent a non-DOWN batch');
    if (this.opts.record !== false) this.downBatches.push(b);
    if (b.batch > this.appliedBatch) {
      if (this.opts.record !== false) for (const f of b.frames) this.applied.push({ frame: f.frame, seq: f.seq, origin: b.origin ?? '', batch: b.batch });
      this.opts.onDown?.(b);
      this.appliedBatch = b.batch;
    }
    if (this.autoAck) this.downAcks.ack(this.appliedBatch);
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}

/** Tries an upgrade and reports the HTTP status when it is refused (undefined when it opened). */
export async function upgradeStatus(base: string, headers: Record<string, string>): Promise<number | undefined> {
  const ws = new WebSocket(base.replace(/^http/, 'ws') + UPLINK_PATH, { headers, perMessageDeflate: false });
  ws.on('error', () => {});
  return new Promise((resolve) => {
    ws.once('open', () => {
      ws.terminate();
      resolve(undefined);
    });
    ws.once('unexpected-response', (_req, res) => {
      resolve(res.statusCode);
      res.resume();
      ws.terminate();
    });
    ws.once('error', () => resolve(-1));
  });
}
