/**
 * The one way console events are made. Builders turn internal facts (a CanFrame, a presence change…)
 * into the wire shapes of events.ts. Events that arrive from the network (an agent mirroring its console
 * to the bridge) are validated by event-schemas.ts, kept apart so the agent never loads zod for them.
 */
import type { CanFrame } from '../can/frame.js';
import type { MessageDecoder } from '../can/dbc-decode.js';
import { decodeErrorFrame } from '../can/error-frame.js';
import { bytesToSpacedHex, canIdToString } from '../can/hex.js';
import { isoFromUs, isoNow } from './time.js';
import {
  EVENT_TEXT_MAX,
  type BusStateData,
  type CanFrameData,
  type CommandState,
  type CommandStatusData,
  type ConsoleEvent,
  type GroupStateData,
  type LogData,
  type LogLevel,
  type PresenceData,
  type PresenceState,
} from './events.js';

/** `decoded`: the frame's message decoder right after it decoded this frame's data (core/can/dbc-decode.ts). */
export function canFrameData(f: CanFrame, represents?: number, decoded?: MessageDecoder): CanFrameData {
  const d: CanFrameData = {
    ts: isoFromUs(f.tsUs),
    direction: f.direction,
    bus: f.bus,
    id: canIdToString(f.id, f.ext || f.err),
    is_extended: f.ext,
    dlc: f.dlc,
    data_hex: bytesToSpacedHex(f.data),
  };
  if (f.rtr) d.is_remote = true;
  if (f.fd) d.is_fd = true;
  if (f.brs) d.brs = true;
  if (f.esi) d.esi = true;
  if (f.err) {
    d.is_error = true;
    const e = decodeErrorFrame(f.id, f.data);
    d.error_classes = e.classes;
    d.error_text = e.text;
  }
  if (represents !== undefined) d.represents = represents;
  if (decoded !== undefined) addSignals(d, decoded);
  return d;
}

function addSignals(d: CanFrameData, dec: MessageDecoder): void {
  // Without a prototype: a signal named "__proto__" is a key like any other, not a prototype to set.
  const signals: Record<string, number | string> = Object.create(null);
  let units: Record<string, string> | undefined;
  for (let i = 0; i < dec.signals.length; i++) {
    if (dec.present[i] === 0) continue;
    const def = dec.signals[i]!.def;
    const label = dec.label(i);
    signals[def.name] = label !== undefined ? clip(label, EVENT_TEXT_MAX.label) : dec.shown(i);
    if (def.unit !== '') (units ??= Object.create(null) as Record<string, string>)[def.name] = clip(def.unit, EVENT_TEXT_MAX.unit);
  }
  d.msg = dec.msg.name;
  d.signals = signals;
  if (units !== undefined) d.units = units;
}

export function presenceData(state: PresenceState, opts: Omit<PresenceData, 'ts' | 'state'> = {}): PresenceData {
  const d: PresenceData = { ts: isoNow(), state, ...opts };
  if (d.reason !== undefined) d.reason = clip(d.reason, EVENT_TEXT_MAX.reason);
  return d;
}

export function logData(level: LogLevel, message: string, code?: string, details?: Record<string, string | number | boolean | null>): LogData {
  const d: LogData = { ts: isoNow(), level, message: clip(message, EVENT_TEXT_MAX.message) };
  if (code !== undefined) d.code = code;
  if (details !== undefined) d.details = details;
  return d;
}

export function commandStatusData(commandId: string, type: string, status: CommandState, error?: string): CommandStatusData {
  const d: CommandStatusData = { ts: isoNow(), command_id: commandId, type, status };
  if (error !== undefined) d.error = clip(error, EVENT_TEXT_MAX.error);
  return d;
}

export function groupStateData(s: Omit<GroupStateData, 'ts'>): GroupStateData {
  return { ts: isoNow(), ...s };
}

export function busStateData(s: Omit<BusStateData, 'ts'>): BusStateData {
  return { ts: isoNow(), ...s };
}

function clip(s: string, max: number): string {
  return s.length > max ? s.slice(0, max - 1) + '…' : s;
}

/** Event types an agent may mirror upstream. Frames travel on the binary data plane, never here. */
export const MIRRORED_EVENT_TYPES = ['presence', 'log', 'command_status', 'bus_state'] as const;
export type MirroredEventType = (typeof MIRRORED_EVENT_TYPES)[number];

export function isMirroredEvent(ev: ConsoleEvent): ev is Extract<ConsoleEvent, { type: MirroredEventType }> {
  return (MIRRORED_EVENT_TYPES as readonly string[]).includes(ev.type);
}
