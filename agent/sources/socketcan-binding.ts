/**
 * The slice of the npm package `socketcan` (4.3.1) that the agent uses, typed by hand from its native
 * code (native/can.cc) because the package's bundled .d.ts does not type-check under --strict.
 * The package is loaded lazily: its native addon may be missing or broken on a machine that only runs
 * --sim or --replay, and that must not stop the agent from starting.
 */
import { createRequire } from 'node:module';
import { EXIT_BROKEN_INSTALL, StartupError } from '../../core/cli/exit-codes.js';
import { addonLoadError } from '../../core/native-addon.js';

/**
 * A frame as the addon hands it to `onMessage` listeners. Flags are present only when true.
 * `id` is already masked (11 or 29 bits, by `ext`), also for error frames. `ts_sec`/`ts_usec` are the
 * kernel receive time (SIOCGSTAMP), present when the channel was created with `timestamps: true`.
 * There is no FD/BRS/ESI flag: FD frames arrive here too, with up to 64 data bytes.
 */
export interface RawMessage {
  id: number;
  data: Buffer;
  ext?: boolean;
  rtr?: boolean;
  err?: boolean;
  ts_sec?: number;
  ts_usec?: number;
}

/** Argument of `send` (classic CAN, at most 8 data bytes; for RTR the data length is the DLC). */
export interface RawClassicMessage {
  id: number;
  ext: boolean;
  rtr: boolean;
  data: Buffer;
  /** Written by the addon: wall-clock time just before the write. */
  ts_sec?: number;
  ts_usec?: number;
}

/** Argument of `sendFD` (at most 64 bytes; the addon rounds the length up to a valid FD length). */
export interface RawFdMessage {
  id: number;
  ext: boolean;
  fd_brs: boolean;
  data: Buffer;
  /** Written by the addon: wall-clock time just before the write. */
  ts_sec?: number;
  ts_usec?: number;
}

export interface RawChannel {
  /** Listeners must never throw: an exception in one is passed to napi_fatal_exception. */
  addListener(event: 'onMessage', listener: (msg: RawMessage) => void): unknown;
  /** Fires on a fatal socket error (e.g. the interface was removed) and also from our own `stop()`. */
  addListener(event: 'onStopped', listener: () => void): unknown;
  start(): unknown;
  /** Throws "Channel not started" when not started or already stopped. */
  stop(): unknown;
  /** Bytes written, or a negative number when the kernel refused (full queue, interface down…). Throws on bad arguments. */
  send(msg: RawClassicMessage): number;
  sendFD(msg: RawFdMessage): number;
}

export interface RawChannelOptions {
  timestamps?: boolean;
  /** MSG_DONTWAIT on send: a full transmit queue gives a negative result instead of blocking the event loop. */
  non_block_send?: boolean;
  protocol?: number;
}

export interface SocketCanBinding {
  /** Opens a CAN_RAW socket bound to `iface` with FD frames and all error classes enabled. Throws a bare `Error('Error while creating channel')` on any failure. */
  createRawChannelWithOptions(iface: string, options: RawChannelOptions): RawChannel;
}

let loaded: SocketCanBinding | null = null;

/** Loads the real package once. Throws an Error a user can act on when the addon cannot be loaded. */
export function loadSocketCanBinding(): SocketCanBinding {
  if (loaded) return loaded;
  let mod: unknown;
  try {
    mod = createRequire(import.meta.url)('socketcan');
  } catch (e) {
    // A broken installation: a restart cannot cure it (exit 4, not retried by systemd).
    throw addonLoadError(e, 'socketcan');
  }
  if (!isBinding(mod)) {
    throw new StartupError('the installed socketcan package has no createRawChannelWithOptions(); reinstall socketcan 4.3.1 (npm ci)', EXIT_BROKEN_INSTALL);
  }
  loaded = mod;
  return mod;
}

function isBinding(mod: unknown): mod is SocketCanBinding {
  return typeof mod === 'object' && mod !== null && typeof (mod as { createRawChannelWithOptions?: unknown }).createRawChannelWithOptions === 'function';
}
