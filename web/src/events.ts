/**
 * Console events as the page receives them. The payload shapes are the server's own
 * (core/console/events.ts, compiled into the page too): one definition, never copied.
 */
import { CONSOLE_EVENT_TYPES, type ConsoleEventMap, type ConsoleEventType } from '../../core/console/events.js';

export type {
  BusStateData,
  CanFrameData,
  CommandState,
  CommandStatusData,
  ConsoleEventMap,
  ConsoleEventType,
  GroupSideState,
  GroupStateData,
  LogData,
  PresenceData,
  StreamResetData,
} from '../../core/console/events.js';

/** One received event: its type, payload and SSE id (a number; 0 when the server sent none). */
export type ConsoleEvent = { [K in ConsoleEventType]: { type: K; id: number; data: ConsoleEventMap[K] } }[ConsoleEventType];

const TYPES = new Set<string>(CONSOLE_EVENT_TYPES);

/**
 * One SSE message as a ConsoleEvent, its id its own: a message without an `id:` field (a snapshot, a
 * stream_reset before one) gets 0, not the stream's last event id, which SSE keeps across such messages —
 * shown in the trace as the previous event's number.
 */
export function messageEvent(m: { type: string; data: string; lastEventId: string; hasId: boolean }): ConsoleEvent | null {
  return toConsoleEvent(m.type, m.hasId ? m.lastEventId : '', m.data);
}

/** Parses one SSE message into a ConsoleEvent; null for unknown types or data that is not a JSON object. */
export function toConsoleEvent(type: string, id: string, data: string): ConsoleEvent | null {
  if (!TYPES.has(type)) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(data);
  } catch {
    return null;
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return null;
  const n = /^\d{1,15}$/.test(id) ? Number(id) : 0;
  return { type, id: n, data: parsed } as ConsoleEvent;
}

/** Milliseconds since the epoch, with the microseconds as a fraction, from "2026-11-27T13:47:02.123456Z". */
export function tsToMs(ts: string): number {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z$/.exec(ts);
  if (!m) {
    const t = Date.parse(ts);
    return Number.isFinite(t) ? t : NaN;
  }
  const whole = Date.parse(m[1] + 'Z');
  const frac = m[2] ? Number('0.' + m[2]) * 1000 : 0;
  return whole + frac;
}
