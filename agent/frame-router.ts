/**
 * Where every frame goes, in one place. Received frames (from the source) are:
 *   1. counted (exact, never sampled),
 *   2. handed to the data plane (the bridge uplink) when one is configured — unsampled; the uplink owns
 *      its bounded, counted buffering,
 *   3. decoded with the DBC files, when there are any, into the latest value of every signal (unsampled),
 *   4. handed to the local taps (the socketcand server), unsampled; each tap bounds and counts its own buffering,
 *   5. recorded, unsampled, by the running recordings (agent/recording/),
 *   6. offered to the local console, which may sample them (console only).
 * Transmitted frames (commands, or frames relayed from a group peer) go to the source; once the source
 * has accepted one it is counted, recorded and shown on the console as `tx`, exactly once, and never sent up again.
 */
import { transmittedFrame, type CanFrame } from '../core/can/frame.js';
import type { ConsoleStream } from '../core/console/console-stream.js';
import type { LogLevel } from '../core/console/events.js';
import { logData, presenceData } from '../core/console/normalize.js';
import type { FrameCounters } from './frame-counters.js';
import type { FrameSource, SendResult, SourceSink } from './sources/source.js';

/** The data plane as the router sees it. */
export interface FrameUplink {
  /** Takes a received frame. Never blocks; the uplink counts anything it has to drop. */
  push(frame: CanFrame): void;
  /** Frames held, not yet acknowledged by the bridge. */
  readonly buffered: number;
}

/** A local output that takes every received frame, unsampled (the socketcand server). Never blocks or throws. */
export interface FrameTap {
  push(frame: CanFrame): void;
}

/** Full-rate recording (agent/recording/recorder.ts): takes every frame, rx and tx; never blocks. */
export interface FrameRecording {
  record(frame: CanFrame): void;
}

/** Above this many frames held for the bridge, a source that can wait (replay at speed 0) waits. */
const BACKLOG_PAUSE_FRAMES = 20_000;

export interface RouterLog {
  (level: LogLevel, message: string, fields?: Record<string, unknown>): void;
}

/** Decodes frames into the latest signal values (agent/signals/signal-table.ts). Never blocks. */
export interface FrameDecoderSink {
  frame(f: CanFrame): void;
}

export class FrameRouter implements SourceSink {
  uplink: FrameUplink | undefined;
  /** Every frame, rx and tx, unsampled: the latest value of every signal stays exact. */
  signals: FrameDecoderSink | undefined;
  readonly taps: FrameTap[] = [];
  recorder: FrameRecording | undefined;
  readonly busStates = new Map<string, 'up' | 'down'>();
  /** Watches every frame for bus load and error frames (agent/bus-health); never samples or drops. */
  health: { frame(f: CanFrame): void } | undefined;
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

  // ---- SourceSink: the intake ----

  frame(f: CanFrame): void {
    this.counters.count(f);
    this.health?.frame(f);
    if (f.direction === 'rx') {
      this.uplink?.push(f);
      for (const t of this.taps) t.push(f);
    }
    this.signals?.frame(f);
    this.recorder?.record(f);
    this.console.offerFrame(f);
  }

  busState(bus: string, state: 'up' | 'down', reason?: string): void {
    if (this.busStates.get(bus) === state) return;
    this.busStates.set(bus, state);
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

  ended(frames: number): void {
    this.log('info', `replay finished: all ${frames} frames of the file were delivered`, 'replay_ended', { frames });
  }

  // ---- the transmit path ----

  transmit(frame: CanFrame): SendResult {
    const r = this.source.send(frame);
    if (r.ok) {
      const tx = transmittedFrame(frame, r.tsUs);
      this.counters.count(tx);
      this.signals?.frame(tx);
      this.health?.frame(tx);
      this.recorder?.record(tx);
      this.console.offerFrame(tx);
    }
    return r;
  }
}
