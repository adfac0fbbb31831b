/**
 * Where every frame goes, in one place. Received frames (from the source) are:
 *   1. counted (exact, never sampled),
 *   2. handed to the data plane (the bridge uplink) when one is configured — unsampled; the uplink owns
 *      its bounded, counted buffering,
 *   3. handed to the local taps, unsampled, in the order they were added: those of received frames only
 *      (the socketcand server), then those of every frame (the DBC signal table, bus health, recordings);
 *      each tap bounds and counts its own buffering,
 *   4. offered to the local console, which may sample them (console only).
 * Transmitted frames (commands, or frames relayed from a group peer) go to the source unless the bus takes
 * none now (a listen-only or bus-off controller: refused with the reason, as a source refuses; its mode not
 * read yet since the interface came up: busy, to be asked again); once the source
 * has accepted one it is counted, handed to the taps of every frame and shown on the console as `tx`,
 * exactly once, and never sent up again.
 */
import { transmittedFrame, type CanFrame } from '../core/can/frame.js';
import type { ConsoleStream } from '../core/console/console-stream.js';
import type { LogLevel } from '../core/console/events.js';
import { logData, presenceData } from '../core/console/normalize.js';
import type { FrameCounters } from './frame-counters.js';
import type { SendRefusal } from './bus-health/bus-health-monitor.js';
import type { FrameSource, SendResult, SourceSink } from './sources/source.js';

/** The data plane as the router sees it. */
export interface FrameUplink {
  /** Takes a received frame. Never blocks; the uplink counts anything it has to drop. */
  push(frame: CanFrame): void;
  /** Frames held, not yet acknowledged by the bridge. */
  readonly buffered: number;
}

/** A local output that sees frames unsampled. Never blocks or throws; it bounds and counts its own buffering. */
export interface FrameTap {
  /** `origin`: for a transmitted frame, who asked for it (a socketcand session; see TxQueue.enqueue's owner). */
  frame(frame: CanFrame, origin?: object): void;
}

/** `received`: only what the bus carried to this agent; `all`: with this agent's own transmits too. */
export type TapScope = 'received' | 'all';

/** Above this many frames held for the bridge, a source that can wait (replay at speed 0) waits. */
const BACKLOG_PAUSE_FRAMES = 20_000;

export type RouterLog = (level: LogLevel, message: string, fields?: Record<string, unknown>) => void;

export class FrameRouter implements SourceSink {
  uplink: FrameUplink | undefined;
  /** Why a bus takes no transmit now (bus health: a listen-only controller), or null; asked before the source. */
  sendRefusal: ((bus: string) => SendRefusal | null) | undefined;
  /** Told each change of an interface's state (bus health: a controller's mode is read again once it is up). */
  onBusState: ((bus: string, state: 'up' | 'down') => void) | undefined;
  private readonly receivedTaps: FrameTap[] = [];
  private readonly allTaps: FrameTap[] = [];
  readonly busStates = new Map<string, 'up' | 'down'>();
  /**
   * Set while the agent stops: the source's interface-down notices then only update busStates, which the
   * final `offline` presence carries — a presence saying `online` while the agent goes away would be false.
   */
  stopping = false;

  constructor(
    private readonly source: FrameSource,
    private readonly counters: FrameCounters,
    private readonly console: ConsoleStream,
    private readonly procLog: RouterLog,
  ) {}

  /** Adds a local output; returns what removes it again. */
  tap(tap: FrameTap, scope: TapScope): () => void {
    const list = scope === 'received' ? this.receivedTaps : this.allTaps;
    list.push(tap);
    return () => {
      const i = list.indexOf(tap);
      if (i >= 0) list.splice(i, 1);
    };
  }

  // ---- SourceSink: the intake ----

  frame(f: CanFrame): void {
    this.counters.count(f);
    if (f.direction === 'rx') {
      this.uplink?.push(f);
      for (const t of this.receivedTaps) t.frame(f);
    }
    for (const t of this.allTaps) t.frame(f);
    this.console.offerFrame(f);
  }

  busState(bus: string, state: 'up' | 'down', reason?: string): void {
    if (this.busStates.get(bus) === state) return;
    this.busStates.set(bus, state);
    this.onBusState?.(bus, state);
    if (this.stopping) return;
    this.procLog(state === 'up' ? 'info' : 'warn', `interface ${bus} ${state}`, { bus, reason });
    this.console.publish({
      type: 'presence',
      data: presenceData('online', { bus, reason: reason ?? `interface ${state}`, buses: Object.fromEntries(this.busStates) }),
    });
  }

  log(level: LogLevel, message: string, code?: string, details?: Record<string, string | number | boolean | null>): void {
    this.procLog(level, message, { code, ...details });
    this.console.publish({ type: 'log', data: logData(level, message, code, details) });
  }

  backlogged(): boolean {
    return (this.uplink?.buffered ?? 0) > BACKLOG_PAUSE_FRAMES;
  }

  // ---- the transmit path ----

  transmit(frame: CanFrame, origin?: object, notAfter = Infinity): SendResult {
    const refused = this.sendRefusal?.(frame.bus);
    if (refused) return refused.waitMs === undefined ? { ok: false, busy: false, error: refused.error } : { ok: false, busy: true, error: refused.error, waitMs: refused.waitMs };
    const r = this.source.send(frame, notAfter);
    if (r.ok) {
      const tx = transmittedFrame(frame, r.tsUs);
      this.counters.count(tx);
      for (const t of this.allTaps) t.frame(tx, origin);
      this.console.offerFrame(tx);
    }
    return r;
  }
}
