/**
 * A CAN source is where frames enter the agent: the built-in simulator, a candump-log replay, or real
 * SocketCAN interfaces. Every source pushes into one SourceSink; the sink fans frames out to the
 * counters, the data plane (uplink) and the console, in that order.
 */
import type { CanFrame } from '../../core/can/frame.js';
import type { LogLevel } from '../../core/console/events.js';

export interface SourceSink {
  /** Hot path: called once per received frame, synchronously. Must never throw. */
  frame(frame: CanFrame): void;
  /** An interface went up or down (SocketCAN), or the simulated bus started/stopped. */
  busState(bus: string, state: 'up' | 'down', reason?: string): void;
  /** Something worth a console `log` event (also written to the process log). */
  log(level: LogLevel, message: string, code?: string, details?: Record<string, string | number | boolean | null>): void;
  /**
   * True while the data plane holds many frames not yet taken by the bridge. A source that can wait (a
   * replay at speed 0: "as fast as the agent can take them") pauses; a live bus cannot and never asks.
   */
  backlogged?(): boolean;
}

/**
 * Result of a transmit. `busy`: the interface's transmit queue is full (ENOBUFS/EAGAIN); the caller may
 * retry shortly — for up to `waitMs` when given (the bus's controller mode not read yet), else its own
 * retry limit; `kernelHeld`: busy because the kernel already holds as many of this agent's frames for the
 * bus as it may (--tx-kernel-frames), or is being flushed, not because its queue refused the frame. `error`: the frame cannot be sent on this source (unknown bus, interface down, bad frame).
 */
export type SendResult = { ok: true; tsUs: number } | { ok: false; busy: boolean; error: string; waitMs?: number; kernelHeld?: boolean };

/**
 * The frames a source handed to the kernel that are not on the bus yet (SocketCAN: kernel-held-frames.ts):
 * `held` now, `stale` of those past their deadline now, `flushed` dropped from the kernel by flushes so far.
 */
export interface KernelTxFigures {
  held: number;
  stale: number;
  flushed: number;
}

/**
 * A source's buses in words, for a request naming another one (socketcand's `open`, a recording's
 * `buses`): "can0, can1", or "no bus yet" (a replay before the first frame of any bus).
 */
export function busesInWords(buses: readonly string[]): string {
  return buses.length > 0 ? buses.join(', ') : 'no bus yet';
}

export interface FrameSource {
  readonly kind: 'sim' | 'replay' | 'socketcan';
  /** The interfaces this source reads (known after start() for replay: the buses seen so far). */
  buses(): string[];
  /** Opens the source. Rejects with an Error whose message a user can act on (missing interface, no AF_CAN, unreadable file). */
  start(sink: SourceSink): Promise<void>;
  /**
   * Transmits a frame on `frame.bus`. Synchronous so that ordering is kept. The caller shows a successful
   * transmit on the console as `tx`; sources never echo their own transmits back through the sink.
   * `notAfter`: the frame's deadline on the monotonic clock (performance.now() ms; Infinity or absent:
   * none), for a source that can tell when the kernel still holds a frame past it.
   */
  send(frame: CanFrame, notAfter?: number): SendResult;
  /** SocketCAN only: this agent's frames in the kernel's transmit queues. */
  kernelTx?(): KernelTxFigures;
  /** SocketCAN only, from bus health: the kernel said the link of `bus` changed (ip monitor). */
  linkNotice?(bus: string): void;
  /** SocketCAN only, from bus health: the controller's one-shot mode, at each reading. */
  controllerOneShot?(bus: string, oneShot: boolean): void;
  stop(): Promise<void>;
}
