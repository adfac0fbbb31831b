/**
 * Frames from real SocketCAN interfaces (`--can can0,can1`), one CAN_RAW channel per interface, through
 * the npm package `socketcan` (see socketcan-binding.ts).
 *
 * Interface state is watched through sysfs (socketcan-probe.ts) rather than the package: the addon treats ENETDOWN as
 * recoverable (ClearRecoverableSocketError in can.cc), so `ip link set can0 down` never reaches us, and
 * `onStopped` only fires on fatal errors such as the interface being removed. A poll of
 * /sys/class/net/<if> reports up/down and reopens a channel once its interface is back.
 */
import { execFile } from 'node:child_process';
import { CAN_EFF_MASK, CAN_ERR_MASK, CAN_SFF_MASK, nowUs, sendProblem, type CanFrame } from '../../core/can/frame.js';
import { loadSocketCanBinding, type RawChannel, type RawClassicMessage, type RawFdMessage, type RawMessage, type SocketCanBinding } from './socketcan-binding.js';
import type { LogLevel } from '../../core/console/events.js';
import { IFNAME_RULE } from '../../core/names.js';
import { KernelHeldFrames } from './kernel-held-frames.js';
import { canSetLinks, diagnoseOpenFailure, readLinkState, SocketCanOpenError } from './socketcan-probe.js';
import type { FrameSource, KernelTxFigures, SendResult, SourceSink } from './source.js';

export interface SocketCanSourceOptions {
  /** Interface names, e.g. ["can0", "can1"]. */
  interfaces: string[];
  /** Defaults to the real package, loaded on start(). */
  binding?: SocketCanBinding;
  /** Root of sysfs (default "/sys"); interfaces are read from <root>/class/net/<if>. */
  sysfsRoot?: string;
  /** Root of procfs (default "/proc"); AF_CAN support is read from <root>/net/protocols. */
  procRoot?: string;
  /** How often interface state is polled, in ms (default 500). */
  pollIntervalMs?: number;
  /** Frames of this agent one interface's kernel may hold at once (`--tx-kernel-frames`; 0: no limit). Default 8. */
  txKernelFrames?: number;
  /** Set an interface down and up when frames of this agent passed their deadline still in its kernel (`--tx-flush-stale`). */
  flushStale?: boolean;
  /** `ip link set dev <if> <state>`, for the flush (tests pass a fake); default the `ip` command. */
  ipLink?: (iface: string, state: 'down' | 'up') => Promise<void>;
}

/** How often the frames held by the kernel are looked at while there are any (a sysfs read per interface holding some). */
const HELD_CHECK_MS = 100;
/** A warning about stale frames held by the kernel, and a failed flush, are logged at most this often per interface. */
const HELD_LOG_EVERY_MS = 60_000;
/** After a flush, how long sends wait for the interface to read up again before the poll decides. */
const FLUSH_UP_WAIT_MS = 3000;
/** A flush's `up` is tried this many times, this far apart, before the poll takes over (every poll until it works). */
const UP_TRIES = 3;
const UP_RETRY_MS = 200;

/** MTU of an interface in CAN FD mode (sizeof(struct canfd_frame)); classic-only interfaces have 16. */
const CANFD_MTU = 72;
const SINK_ERROR_LOG_EVERY_MS = 5000;
const NO_DATA = new Uint8Array(0);

/** The kernel's timestamp of a frame (CLOCK_REALTIME); without one, the wall clock now: the same clock. */
function kernelTimeUs(msg: { ts_sec?: number; ts_usec?: number }): number {
  return msg.ts_sec !== undefined && msg.ts_usec !== undefined ? msg.ts_sec * 1e6 + msg.ts_usec : nowUs();
}

/**
 * Maps a message from the addon to a CanFrame.
 * - FD is inferred from the length: the addon reads FD and classic frames through the same listener and
 *   drops the canfd_frame flags, so an FD frame of 8 bytes or fewer is indistinguishable from a classic
 *   one and is shown as classic; BRS/ESI are never known. For the same reason a classic DLC 9..15 shows as 8.
 * - RTR: the addon hands over `len` zero bytes, `len` being the requested DLC.
 * - Error frames: the kernel sets CAN_ERR_FLAG without CAN_EFF_FLAG, so can.cc masks the id with
 *   CAN_SFF_MASK; every error class defined so far (up to CAN_ERR_CNT = 0x200) fits in those 11 bits.
 */
export function rawMessageToFrame(bus: string, msg: RawMessage): CanFrame {
  const tsUs = kernelTimeUs(msg);
  const raw = msg.data;
  // A plain Uint8Array view (no copy): Buffer#slice shares memory where Uint8Array#slice copies.
  const data = new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength);
  if (msg.err === true) {
    const payload = data.length > 8 ? data.subarray(0, 8) : data;
    return {
      bus,
      id: msg.id & CAN_ERR_MASK,
      ext: false,
      rtr: false,
      err: true,
      fd: false,
      brs: false,
      esi: false,
      dlc: payload.length,
      data: payload,
      tsUs,
      direction: 'rx',
    };
  }
  const ext = msg.ext === true;
  const id = msg.id & (ext ? CAN_EFF_MASK : CAN_SFF_MASK);
  if (msg.rtr === true) {
    return {
      bus,
      id,
      ext,
      rtr: true,
      err: false,
      fd: false,
      brs: false,
      esi: false,
      dlc: data.length,
      data: NO_DATA,
      tsUs,
      direction: 'rx',
    };
  }
  return {
    bus,
    id,
    ext,
    rtr: false,
    err: false,
    fd: data.length > 8,
    brs: false,
    esi: false,
    dlc: data.length,
    data,
    tsUs,
    direction: 'rx',
  };
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Per-interface state. `channel` is null while the interface is gone or could not be reopened. */
interface Bus {
  name: string;
  channel: RawChannel | null;
  /**
   * Which opening of the bus `channel` is: the listeners compare it, not the channel object. The addon
   * holds each listener as a persistent reference (a GC root) for as long as its channel exists, and the
   * channel's socket is closed only when the channel is collected: a listener holding its channel kept
   * every closed channel, and its file descriptor, for the life of the process (one per reopen of a
   * re-plugged USB adapter).
   */
  generation: number;
  /** Last state reported to the sink; null before the first report. */
  up: boolean | null;
  ifindex: number | null;
  mtu: number | null;
  /** Last reopen failure logged, so a missing interface is logged once, not every poll. */
  lastOpenError: string | null;
  sinkErrorLoggedAt: number;
  sinkErrorsSuppressed: number;
  /** When a failed send last read the link (performance.now() ms). */
  sendCheckedAt: number;
  /** This agent's frames the kernel holds for the interface (kernel-held-frames.ts). */
  held: KernelHeldFrames;
  /** A flush (down, up) is running: sends wait. */
  flushing: boolean;
  /** performance.now() of the last `tx_stale_in_kernel` warning, of the last failed flush, of the last flush logged (-Infinity: none). */
  staleWarnedAt: number;
  flushFailedAt: number;
  flushLoggedAt: number;
  /** Flushes since the last one logged (a bus that stays dead is flushed every few seconds: logged once a minute). */
  flushesUnlogged: number;
  /** The flush in progress (stop() waits for it: the interface must not be left down). */
  flushDone: Promise<void> | null;
  /** A flush set the interface down and could not set it up: every poll tries until it is up. */
  upOwed: boolean;
  upTrying: boolean;
}

export class SocketCanSource implements FrameSource {
  readonly kind = 'socketcan' as const;
  private readonly names: string[];
  private readonly sysfsRoot: string;
  private readonly procRoot: string;
  private readonly pollIntervalMs: number;
  private binding: SocketCanBinding | null;
  private bus = new Map<string, Bus>();
  private sink: SourceSink | null = null;
  private timer: NodeJS.Timeout | null = null;
  private heldTimer: NodeJS.Timeout | null = null;
  private running = false;
  private readonly txKernelFrames: number;
  private readonly flushStale: boolean;
  private readonly ipLink: (iface: string, state: 'down' | 'up') => Promise<void>;
  /** Frames dropped from the kernel's queues by flushes. */
  private flushed = 0;

  constructor(opts: SocketCanSourceOptions) {
    const names = [...new Set(opts.interfaces.map((s) => s.trim()))];
    if (names.length === 0) throw new Error('no CAN interface given: pass --can can0 (comma-separated for several)');
    for (const n of names) {
      // Also keeps sysfs paths inside <root>/class/net.
      if (!IFNAME_RULE.test(n) || n === '.' || n === '..') {
        throw new Error(`${JSON.stringify(n)} is not an interface name (1-15 of A-Z a-z 0-9 _ . : -); fix --can`);
      }
    }
    this.names = names;
    this.binding = opts.binding ?? null;
    this.sysfsRoot = opts.sysfsRoot ?? '/sys';
    this.procRoot = opts.procRoot ?? '/proc';
    this.pollIntervalMs = opts.pollIntervalMs ?? 500;
    this.txKernelFrames = opts.txKernelFrames ?? 8;
    this.flushStale = opts.flushStale ?? false;
    this.ipLink = opts.ipLink ?? ipLinkSet;
  }

  buses(): string[] {
    return [...this.names];
  }

  async start(sink: SourceSink): Promise<void> {
    if (this.running) throw new Error('the SocketCAN source is already started');
    // Loaded here, not at import: a broken addon only matters when --can is used.
    const binding = (this.binding ??= loadSocketCanBinding());
    const buses = this.names.map(
      (name): Bus => ({
        name,
        channel: null,
        generation: 0,
        up: null,
        ifindex: null,
        mtu: null,
        lastOpenError: null,
        sinkErrorLoggedAt: 0,
        sinkErrorsSuppressed: 0,
        sendCheckedAt: -Infinity,
        held: new KernelHeldFrames(this.sysfsRoot, name, this.txKernelFrames),
        flushing: false,
        staleWarnedAt: -Infinity,
        flushFailedAt: -Infinity,
        flushLoggedAt: -Infinity,
        flushesUnlogged: 0,
        flushDone: null,
        upOwed: false,
        upTrying: false,
      }),
    );
    const errors: Error[] = [];
    for (const b of buses) {
      const err = this.open(binding, b);
      if (err) errors.push(err);
    }
    if (errors.length > 0) {
      for (const b of buses) this.close(b);
      const kernel = errors.find((e) => e instanceof SocketCanOpenError && e.scope === 'kernel');
      if (kernel || errors.length === 1) throw kernel ?? errors[0]!;
      throw new Error(errors.map((e) => e.message).join('; '), { cause: errors });
    }
    this.sink = sink;
    this.bus = new Map(buses.map((b) => [b.name, b]));
    this.running = true;
    for (const b of buses) {
      const link = readLinkState(this.sysfsRoot, b.name);
      b.mtu = link.mtu;
      this.report(b, link.up, link.up ? `opened ${b.name}` : link.reason);
    }
    // Said at the start, not at the first stale frame (maybe weeks later, when it matters).
    if (this.flushStale && canSetLinks(this.procRoot) === false) {
      this.log(
        'warn',
        '--tx-flush-stale needs CAP_NET_ADMIN, which this process lacks: stale frames in the kernel will be warned of, not dropped. Under systemd add CapabilityBoundingSet=CAP_NET_ADMIN and AmbientCapabilities=CAP_NET_ADMIN in a drop-in (docs/bus-health.md)',
        'tx_flush_unavailable',
      );
    }
    this.timer = setInterval(() => this.poll(), this.pollIntervalMs);
    this.heldTimer = setInterval(() => this.watchHeld(), HELD_CHECK_MS);
  }

  /**
   * Our own transmits do not come back through onMessage: CAN_RAW_RECV_OWN_MSGS is off by default.
   * `notAfter`: the frame's deadline (performance.now() ms), for telling when the kernel holds it past that.
   */
  send(frame: CanFrame, notAfter = Infinity): SendResult {
    const b = this.bus.get(frame.bus);
    if (!b || !this.running) {
      return fail(`bus ${frame.bus} is not opened by this agent (opened: ${this.names.join(', ')}); pick one of those or add it to --can`);
    }
    if (!b.channel) return fail(`interface ${b.name} is gone; waiting for it to come back (ip link show ${b.name})`);
    // Before the link's state: the flush sets it down for a moment.
    if (b.flushing) return { ok: false, busy: true, kernelHeld: true, error: `${b.name} is being set down and up to drop stale frames from its kernel queue; retry shortly` };
    if (b.up !== true) return fail(`interface ${b.name} is down; bring it up (ip link set ${b.name} up) and retry`);
    const problem = sendProblem(frame);
    if (problem) return fail(`cannot send on ${b.name}: ${problem}`);
    const now = performance.now();
    if (b.held.full()) {
      return {
        ok: false,
        busy: true,
        kernelHeld: true,
        error: `the kernel still holds ${b.held.count} frames of this agent for ${b.name}, the oldest for ${Math.round(b.held.oldestMs(now))} ms (--tx-kernel-frames ${b.held.max}${b.held.limit < b.held.max ? '; one at a time since a flush, until the bus takes frames again' : ''}): the bus is not taking them; is any node acknowledging?`,
      };
    }
    try {
      let n: number;
      let msg: RawClassicMessage | RawFdMessage;
      if (frame.fd) {
        // A send() of an FD frame on a classic interface fails with EINVAL, which the addon reports as a bare -1.
        if (b.mtu !== null && b.mtu < CANFD_MTU) {
          return fail(`interface ${b.name} is not in CAN FD mode (mtu ${b.mtu}); enable FD (ip link set ${b.name} type can … fd on) or send classic frames`);
        }
        // ESI is not settable: the addon has no field for it (it reflects the sender's error state anyway).
        const fdMsg: RawFdMessage = { id: frame.id, ext: frame.ext, fd_brs: frame.brs, data: toBuffer(frame.data) };
        msg = fdMsg;
        n = b.channel.sendFD(fdMsg);
      } else {
        // The addon writes can_dlc = data length and has no len8_dlc, so DLC 9..15 cannot be expressed.
        if (frame.dlc > 8) return fail(`cannot send DLC ${frame.dlc} on ${b.name}: the socketcan addon only sends DLC 0-8; use dlc 8`);
        const data = frame.rtr ? Buffer.alloc(frame.dlc) : toBuffer(frame.data);
        const classic: RawClassicMessage = { id: frame.id, ext: frame.ext, rtr: frame.rtr, data };
        msg = classic;
        n = b.channel.send(classic);
      }
      if (n < 0) {
        // The addon returns send()'s -1 without errno: ENOBUFS/EAGAIN (a full queue) in practice, but also an
        // interface removed or set down since the last poll, or an FD frame it no longer takes — those are
        // not worth retrying for --tx-retry-ms, nor are they "queue full". So the link is read again (sysfs,
        // at most every 50 ms: a busy bus retries every millisecond) before the answer is "busy".
        if (now - b.sendCheckedAt >= 50) {
          b.sendCheckedAt = now;
          const link = readLinkState(this.sysfsRoot, b.name);
          if (!link.up) return fail(`cannot send on ${b.name}: ${link.reason}`);
          if (frame.fd && link.mtu !== null && link.mtu < CANFD_MTU) return fail(`interface ${b.name} is not in CAN FD mode (mtu ${link.mtu}) any more; send classic frames`);
        }
        return { ok: false, busy: true, error: `transmit queue of ${b.name} is full; retry shortly` };
      }
      b.held.wrote(now, notAfter);
      const tsUs = kernelTimeUs(msg);
      return { ok: true, tsUs };
    } catch (e) {
      return fail(`socketcan refused the frame on ${b.name}: ${errorText(e)}`);
    }
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    if (this.timer) clearInterval(this.timer);
    if (this.heldTimer) clearInterval(this.heldTimer);
    this.timer = null;
    this.heldTimer = null;
    // A flush between its `down` and its `up` must end first: the agent never leaves an interface down.
    await Promise.all([...this.bus.values()].map((b) => b.flushDone));
    for (const b of this.bus.values()) {
      this.close(b);
      this.report(b, false, 'SocketCAN source stopped');
    }
  }

  /** Opens and starts the channel of `b`; returns the Error to show instead of throwing. */
  private open(binding: SocketCanBinding, b: Bus): Error | null {
    let ch: RawChannel;
    try {
      ch = binding.createRawChannelWithOptions(b.name, { timestamps: true, non_block_send: true });
    } catch (e) {
      return diagnoseOpenFailure(b.name, e, this.sysfsRoot, this.procRoot);
    }
    try {
      const gen = ++b.generation;
      ch.addListener('onMessage', (msg) => this.deliver(b, gen, msg));
      ch.addListener('onStopped', () => this.stopped(b, gen));
      ch.start();
    } catch (e) {
      return new Error(`cannot start the SocketCAN channel on ${b.name}: ${errorText(e)}`, { cause: e });
    }
    b.channel = ch;
    b.ifindex = readLinkState(this.sysfsRoot, b.name).ifindex;
    return null;
  }

  private close(b: Bus): void {
    const ch = b.channel;
    if (!ch) return;
    // Detach first: stop() fires onStopped synchronously, and stopped() must see it as ours.
    b.channel = null;
    try {
      ch.stop();
    } catch {
      // "Channel not started": the addon already stopped it after a fatal error; nothing left to release.
    }
  }

  /** onMessage listener. Runs inside a native callback, where a throw would kill the process. */
  private deliver(b: Bus, gen: number, msg: RawMessage): void {
    if (b.channel === null || b.generation !== gen || !this.sink) return;
    try {
      this.sink.frame(rawMessageToFrame(b.name, msg));
    } catch (e) {
      const now = Date.now();
      if (now - b.sinkErrorLoggedAt < SINK_ERROR_LOG_EVERY_MS) {
        b.sinkErrorsSuppressed++;
        return;
      }
      const suppressed = b.sinkErrorsSuppressed;
      b.sinkErrorLoggedAt = now;
      b.sinkErrorsSuppressed = 0;
      this.log('error', `dropped a frame from ${b.name}: ${errorText(e)}`, 'socketcan_sink_error', { bus: b.name, suppressed });
    }
  }

  /** onStopped listener: the socket hit a fatal error (typically the interface was removed). */
  private stopped(b: Bus, gen: number): void {
    if (b.channel === null || b.generation !== gen) return; // our own close(), or an older channel
    b.channel = null;
    this.log('warn', `SocketCAN channel on ${b.name} stopped (interface removed or socket error); reopening when it is back`, 'socketcan_stopped', { bus: b.name });
    this.report(b, false, `SocketCAN channel on ${b.name} stopped`);
  }

  private poll(): void {
    if (!this.running || !this.binding) return;
    for (const b of this.bus.values()) {
      if (b.flushing) continue; // down and up on purpose: not reported
      if (b.upOwed) this.bringUp(b);
      try {
        this.check(this.binding, b);
      } catch (e) {
        this.log('error', `checking interface ${b.name} failed: ${errorText(e)}`, 'socketcan_poll_error', { bus: b.name });
      }
    }
  }

  private check(binding: SocketCanBinding, b: Bus): void {
    const link = readLinkState(this.sysfsRoot, b.name);
    if (!link.exists) {
      this.close(b);
      this.report(b, false, link.reason);
      return;
    }
    if (b.channel && link.ifindex !== null && b.ifindex !== null && link.ifindex !== b.ifindex) {
      // Removed and re-created between two polls: the old socket is unbound for good.
      this.close(b);
      this.report(b, false, `interface ${b.name} was re-created`);
    }
    if (!b.channel) {
      const err = this.open(binding, b);
      if (err) {
        if (err.message !== b.lastOpenError) {
          b.lastOpenError = err.message;
          this.log('warn', `cannot reopen ${b.name}: ${err.message}; retrying`, 'socketcan_reopen_failed', { bus: b.name });
        }
        this.report(b, false, err.message);
        return;
      }
      b.lastOpenError = null;
      this.log('info', `reopened SocketCAN channel on ${b.name}`, 'socketcan_reopened', { bus: b.name });
    }
    b.mtu = link.mtu;
    this.report(b, link.up, link.reason);
  }

  /** This agent's frames in the kernels' queues now, those past their deadline there, and those dropped by flushes. */
  kernelTx(): KernelTxFigures {
    const now = performance.now();
    let held = 0;
    let stale = 0;
    for (const b of this.bus.values()) {
      held += b.held.count;
      stale += b.held.stale(now);
    }
    return { held, stale, flushed: this.flushed };
  }

  /**
   * Every HELD_CHECK_MS: the counters of each interface holding frames of ours are read again; frames past
   * their deadline still there are stale — on a bus nobody acknowledges they would go out whenever a node
   * returns. With --tx-flush-stale the interface is set down and up (the kernel then drops its queue and the
   * controller's pending frame); without, a warning says so.
   */
  private watchHeld(): void {
    if (!this.running) return;
    const now = performance.now();
    for (const b of this.bus.values()) {
      if (b.flushing) continue;
      try {
        if (b.held.count === 0) {
          b.held.rebaseline();
          continue;
        }
        b.held.refresh();
        const stale = b.held.stale(now);
        if (stale === 0) continue;
        if (this.flushStale) {
          if (now - b.flushFailedAt >= HELD_LOG_EVERY_MS && !b.upOwed) b.flushDone = this.flush(b, stale);
        } else if (now - b.staleWarnedAt >= HELD_LOG_EVERY_MS) {
          b.staleWarnedAt = now;
          this.log(
            'warn',
            `the kernel holds ${stale} frames of this agent for ${b.name} past their deadline (${b.held.count} held; is any node acknowledging?): they go on the bus whenever one does, however old. --tx-flush-stale drops them (needs CAP_NET_ADMIN), or set the controller one-shot: ip link set ${b.name} type can one-shot on (docs/bus-health.md)`,
            'tx_stale_in_kernel',
            { bus: b.name, stale, held: b.held.count },
          );
        }
      } catch (e) {
        this.log('error', `checking the frames the kernel holds for ${b.name} failed: ${errorText(e)}`, 'socketcan_poll_error', { bus: b.name });
      }
    }
  }

  /**
   * Sets `b` down and up: the kernel drops every frame it holds for it, and the controller its pending one.
   * Sends wait meanwhile. Afterwards one frame at a time goes to the kernel until the bus takes frames again
   * (a bus that stays dead is flushed again at the next stale frame: one frame, not eight). Never throws.
   */
  private async flush(b: Bus, stale: number): Promise<void> {
    b.flushing = true;
    const held = b.held.count;
    try {
      try {
        await this.ipLink(b.name, 'down');
      } catch (e) {
        // Timed out after it worked, or refused: `up` is owed only if it is down now.
        if (readLinkState(this.sysfsRoot, b.name).up) return this.flushFailed(b, stale, e);
      }
      for (let attempt = 1; ; attempt++) {
        try {
          await this.ipLink(b.name, 'up');
          break;
        } catch (e) {
          if (attempt < UP_TRIES) {
            await new Promise((r) => setTimeout(r, UP_RETRY_MS));
            continue;
          }
          b.upOwed = true;
          return this.flushFailed(b, stale, e, `${b.name} is DOWN: the agent tries to set it up at every look (every ${this.pollIntervalMs} ms); or: ip link set ${b.name} up`);
        }
      }
      // Sends wait until the interface reads up again (the carrier comes back a moment after `up`).
      for (let i = 0; i < FLUSH_UP_WAIT_MS / 50 && !readLinkState(this.sysfsRoot, b.name).up; i++) await new Promise((r) => setTimeout(r, 50));
      b.held.reset();
      b.held.probe();
      this.flushed += held;
      b.flushesUnlogged++;
      const now = performance.now();
      if (now - b.flushLoggedAt >= HELD_LOG_EVERY_MS) {
        b.flushLoggedAt = now;
        const flushes = b.flushesUnlogged;
        b.flushesUnlogged = 0;
        this.log(
          'warn',
          `set ${b.name} down and up: dropped ${held} frames of this agent from its kernel queue, ${stale} of them past their deadline (no node acknowledging?)${flushes > 1 ? `; ${flushes} flushes since the last line` : ''}; one frame at a time until the bus takes frames again`,
          'tx_flushed_stale',
          { bus: b.name, stale, dropped: held, flushes },
        );
      }
    } finally {
      b.flushing = false;
    }
  }

  private flushFailed(b: Bus, stale: number, e: unknown, then?: string): void {
    b.flushFailedAt = performance.now();
    const why = errorText(e);
    const permission = /not permitted|permission denied/i.test(why) ? ' (--tx-flush-stale needs CAP_NET_ADMIN: docs/bus-health.md)' : '';
    this.log(
      'error',
      `could not set ${b.name} down and up to drop ${stale} stale frames from its kernel queue: ${why}${permission}; ${then ?? 'tried again in a minute'}`,
      'tx_flush_failed',
      { bus: b.name, stale },
    );
  }

  /** A flush left `b` down: one `ip link set up` at a time, from the poll, until it is up. */
  private bringUp(b: Bus): void {
    if (b.upTrying) return;
    if (readLinkState(this.sysfsRoot, b.name).up) {
      b.upOwed = false; // someone else did
      return;
    }
    b.upTrying = true;
    this.ipLink(b.name, 'up').then(
      () => {
        b.upOwed = false;
        b.upTrying = false;
        this.log('info', `set ${b.name} up again after the flush`, 'tx_flush_link_up', { bus: b.name });
      },
      () => {
        b.upTrying = false;
      },
    );
  }

  /** The kernel said `bus`'s link changed (ip monitor): a down and up may have emptied its queue between two looks. */
  linkNotice(bus: string): void {
    const b = this.bus.get(bus);
    if (b && !b.flushing) b.held.reset();
  }

  /** The controller's one-shot mode, from each reading of it: such a controller holds no frame nobody acknowledges. */
  controllerOneShot(bus: string, oneShot: boolean): void {
    const b = this.bus.get(bus);
    if (b) b.held.oneShot = oneShot;
  }

  /** Reports a state change only (polls repeat the same state). */
  private report(b: Bus, up: boolean, reason: string): void {
    if (b.up === up) return;
    b.up = up;
    // Down (or gone): the kernel emptied the interface's queue.
    if (!up) b.held.reset();
    try {
      this.sink?.busState(b.name, up ? 'up' : 'down', reason);
    } catch (e) {
      this.log('error', `bus state handler failed for ${b.name}: ${errorText(e)}`, 'socketcan_sink_error', { bus: b.name });
    }
  }

  /** Never throws: callers run in native callbacks and timers. */
  private log(level: LogLevel, message: string, code: string, details?: Record<string, string | number | boolean | null>): void {
    try {
      this.sink?.log(level, message, code, details);
    } catch {
      // Nowhere left to report to; dropping the line is better than crashing the agent.
    }
  }
}

/** `ip link set dev <if> <state>` (5 s at most). */
function ipLinkSet(iface: string, state: 'down' | 'up'): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    execFile('ip', ['link', 'set', 'dev', iface, state], { timeout: 5000 }, (err, _out, stderr) => {
      if (err) reject(new Error(`ip link set dev ${iface} ${state}: ${stderr.trim() || err.message}`));
      else resolve();
    });
  });
}

function fail(error: string): SendResult {
  return { ok: false, busy: false, error };
}

/** The addon requires a Buffer; wrap without copying (it copies into the kernel frame itself). */
function toBuffer(data: Uint8Array): Buffer {
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}
