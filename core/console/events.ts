/**
 * Console event shapes: one union keyed by event name. These are the JSON payloads of the SSE `data:`
 * field, identical on the agent and the bridge. Build them only through normalize.ts.
 */

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
  stream_reset: StreamResetData;
}

export type ConsoleEventType = keyof ConsoleEventMap;
export const CONSOLE_EVENT_TYPES: readonly ConsoleEventType[] = [
  'presence',
  'can_frame',
  'log',
  'command_status',
  'group_state',
  'stream_reset',
];

export type ConsoleEvent = { [K in ConsoleEventType]: { type: K; data: ConsoleEventMap[K] } }[ConsoleEventType];
