/**
 * Console event shapes: one union keyed by event name. These are the JSON payloads of the SSE `data:`
 * field, identical on the agent and the bridge. Build them only through normalize.ts.
 */

/**
 * The longest texts an event carries: what normalize.ts cuts to when it builds an event and what
 * event-schemas.ts accepts from the network, one definition (an event a bridge made that its cluster
 * peers refused was lost to every reader there).
 */
export const EVENT_TEXT_MAX = {
  /** A presence event's reason (the bridge's names every bus of the agent). */
  reason: 500,
  /** A log event's message. */
  message: 2000,
  /** A command status's error. */
  error: 500,
  /** A DBC signal's unit, and a value-table label shown for a signal. */
  unit: 64,
  label: 200,
} as const;

/** Present on events that a group console re-publishes from one of its sides. */
interface FromDongle {
  dongle?: string;
}

export interface CanFrameData extends FromDongle {
  /** ISO 8601 UTC with microseconds, e.g. "2026-11-27T13:47:02.123456Z". */
  ts: string;
  direction: 'rx' | 'tx';
  bus: string;
  /** "0x7E8" (standard, 3 hex digits) or "0x18DAF110" (extended, 8 hex digits), upper case. */
  id: string;
  is_extended: boolean;
  dlc: number;
  /** Upper-case hex bytes separated by single spaces; "" for none. */
  data_hex: string;
  /** Only when true. */
  is_remote?: true;
  is_fd?: true;
  brs?: true;
  esi?: true;
  is_error?: true;
  /** Error frames only: the decoded classes (core/can/error-frame.ts) and the same in words. */
  error_classes?: string[];
  error_text?: string;
  /** Only while the console samples: how many frames of this bus+id (of this dongle, on a group console) this event stands for (>= 1). */
  represents?: number;
  /** Only when a DBC describes the frame: the message name… */
  msg?: string;
  /** …its signals present in this frame (multiplexing), each the value-table label where there is one, else the physical value… */
  signals?: Record<string, number | string>;
  /** …and the units of those that have one. */
  units?: Record<string, string>;
}

export type PresenceState = 'online' | 'offline' | 'seen';

export interface PresenceData extends FromDongle {
  ts: string;
  state: PresenceState;
  /** Set when the event is about one interface rather than the whole dongle. */
  bus?: string;
  reason?: string;
  /** State of each interface at the time of the event, when known. */
  buses?: Record<string, 'up' | 'down'>;
  /** Fleet stream only (cloud-bridge/fleet-feed.ts): when the dongle's current online/offline state began. */
  since?: string;
  /** Set by the bridge on `online` (and carried by the fleet stream): the agent version of the connection. */
  version?: string;
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface LogData extends FromDongle {
  ts: string;
  level: LogLevel;
  message: string;
  /** Machine-readable kind, e.g. "sampling_on", "sampling_off", "replay_rejected_line". */
  code?: string;
  details?: Record<string, string | number | boolean | null>;
}

export const COMMAND_STATES = ['queued', 'sent', 'delivered', 'succeeded', 'failed', 'timed_out'] as const;
export type CommandState = (typeof COMMAND_STATES)[number];

export interface CommandStatusData extends FromDongle {
  ts: string;
  command_id: string;
  type: string;
  status: CommandState;
  error?: string;
}

export interface GroupSideState {
  dongle: string;
  online: boolean;
  /** Frames waiting for this side while it is offline. */
  backlog: number;
}

export interface GroupStateData {
  ts: string;
  group: string;
  /** "relaying": both sides up; "degraded": one side down, frames for it are queued; "down": neither is up. */
  mode: 'relaying' | 'degraded' | 'down';
  sides: { a: GroupSideState; b: GroupSideState };
  offline_side: 'a' | 'b' | 'both' | null;
  /** Frames dropped (backlog full or too old) since the group was created. */
  dropped: number;
  /** Frames relayed per second, both directions, over the last interval. */
  relay_rate: number;
  relayed_total: number;
}

/** Controller states as the kernel names them (iproute2 prints them upper-case). */
export const CONTROLLER_STATES = ['error-active', 'error-warning', 'error-passive', 'bus-off', 'stopped', 'sleeping'] as const;
export type ControllerState = (typeof CONTROLLER_STATES)[number];

/** Kernel counters of a CAN interface (names: docs/bus-health.md); only those the interface has. */
export const BUS_COUNTER_NAMES = [
  'bus_errors',
  'arbitration_lost',
  'error_warning',
  'error_passive',
  'bus_off',
  'restarts',
  'rx_errors',
  'tx_errors',
  'rx_dropped',
  'tx_dropped',
  'rx_overruns',
  'rx_missed',
] as const;
export type BusCounterName = (typeof BUS_COUNTER_NAMES)[number];

/** Health of one bus: on every change and every --bus-state-interval seconds. null = not known for this interface. */
export interface BusStateData extends FromDongle {
  ts: string;
  bus: string;
  link: 'up' | 'down';
  /** Controller state; null where there is no controller (vcan, replay, sim). */
  state: ControllerState | null;
  /** Transmit / receive error counters. */
  tec: number | null;
  rec: number | null;
  /** Nominal bitrate in bit/s, from the kernel or --bitrate. */
  bitrate: number | null;
  bitrate_source: 'kernel' | 'flag' | null;
  sample_point: number | null;
  data_bitrate: number | null;
  data_sample_point: number | null;
  restart_ms: number | null;
  counters: Partial<Record<BusCounterName, number>>;
  /**
   * Share of the bitrate used in the second [ts - 1 s, ts) of the frames' own (kernel) timestamps (0..1, may
   * exceed 1 when frames arrive faster than the bitrate allows).
   */
  load: number | null;
  /** Highest per-second load over the last minute. */
  load_peak_1m: number | null;
  /** The last 60 per-second loads, oldest first (for the sparkline). */
  load_history: number[];
  /** Frames in that second (rx and tx). */
  frame_rate: number;
  /** Error frames received since the agent started, per class. */
  error_frames: Record<string, number>;
}

export type StreamResetReason = 'too_old' | 'previous_run' | 'future' | 'invalid' | 'slow_client';

export interface StreamResetData {
  reason: StreamResetReason;
  /** The id the client asked to resume after, as sent (string when it was not a number). */
  requested: number | string | null;
  /** Oldest id still buffered, or null when the buffer is empty. */
  oldest_available: number | null;
  latest: number;
}

export interface ConsoleEventMap {
  presence: PresenceData;
  can_frame: CanFrameData;
  log: LogData;
  command_status: CommandStatusData;
  group_state: GroupStateData;
  bus_state: BusStateData;
  stream_reset: StreamResetData;
}

export type ConsoleEventType = keyof ConsoleEventMap;
export const CONSOLE_EVENT_TYPES: readonly ConsoleEventType[] = ['presence', 'can_frame', 'log', 'command_status', 'group_state', 'bus_state', 'stream_reset'];

export type ConsoleEvent = { [K in ConsoleEventType]: { type: K; data: ConsoleEventMap[K] } }[ConsoleEventType];
