/**
 * The one way console events are made. Builders turn internal facts (a CanFrame, a presence change…)
 * into the wire shapes of events.ts; `parseEventData` validates events that arrive from the network
 * (an agent mirroring its console to the bridge) so nothing unchecked reaches a stream.
 */
import { z } from 'zod';
import { BUS_RULE, ID_RULE } from '../names.js';
import type { CanFrame } from '../can/frame.js';
import type { MessageDecoder } from '../can/dbc-decode.js';
import { decodeErrorFrame, ERROR_CLASSES } from '../can/error-frame.js';
import { bytesToSpacedHex, canIdToString } from '../can/hex.js';
import { isoFromUs, isoNow } from './time.js';
import {
  BUS_COUNTER_NAMES,
  COMMAND_STATES,
  CONTROLLER_STATES,
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
  const signals: Record<string, number | string> = {};
  let units: Record<string, string> | undefined;
  for (let i = 0; i < dec.signals.length; i++) {
    if (dec.present[i] === 0) continue;
    const def = dec.signals[i]!.def;
    signals[def.name] = dec.label(i) ?? tidyValue(dec.value[i]!);
    if (def.unit !== '') (units ??= {})[def.name] = def.unit;
  }
  d.msg = dec.msg.name;
  d.signals = signals;
  if (units !== undefined) d.units = units;
}

/**
 * A physical value as shown: raw * factor lands on binary fractions (0.1 * 3 = 0.30000000000000004);
 * 15 significant digits drop that noise and keep every digit the scale can carry. NaN and ±Infinity
 * (float signals) are not JSON numbers: they become the strings "NaN", "Infinity", "-Infinity".
 */
export function tidyValue(v: number): number | string {
  if (!Number.isFinite(v)) return String(v);
  if (Number.isInteger(v)) return v;
  return Number(v.toPrecision(15));
}

export function presenceData(state: PresenceState, opts: Omit<PresenceData, 'ts' | 'state'> = {}): PresenceData {
  return { ts: isoNow(), state, ...opts };
}

export function logData(
  level: LogLevel,
  message: string,
  code?: string,
  details?: Record<string, string | number | boolean | null>,
): LogData {
  const d: LogData = { ts: isoNow(), level, message: clip(message, 2000) };
  if (code !== undefined) d.code = code;
  if (details !== undefined) d.details = details;
  return d;
}

export function commandStatusData(commandId: string, type: string, status: CommandState, error?: string): CommandStatusData {
  const d: CommandStatusData = { ts: isoNow(), command_id: commandId, type, status };
  if (error !== undefined) d.error = clip(error, 500);
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

// ---- validation of events received from the network ----

const ts = z.string().max(40);
const name = z.string().regex(ID_RULE);
const bus = z.string().regex(BUS_RULE);
const dongle = { dongle: name.optional() };
/** DBC identifiers (message and signal names). */
const SIGNAL_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
/** Loads above 1 happen (frames timed faster than the bitrate allows, e.g. a replay at speed 0); 1000 bounds nonsense. */
const ratio = z.number().min(0).max(1000);
const scalar = z.union([z.string().max(500), z.number(), z.boolean(), z.null()]);

const schemas = {
  presence: z.strictObject({
    ts,
    state: z.enum(['online', 'offline', 'seen']),
    bus: bus.optional(),
    reason: z.string().max(500).optional(),
    buses: z.record(bus, z.enum(['up', 'down'])).optional(),
    since: ts.optional(),
    version: z.string().max(64).optional(),
    ...dongle,
  }),
  can_frame: z.strictObject({
    ts,
    direction: z.enum(['rx', 'tx']),
    bus,
    id: z.string().regex(/^0x[0-9A-F]{3,8}$/),
    is_extended: z.boolean(),
    dlc: z.number().int().min(0).max(64),
    data_hex: z.string().regex(/^(?:[0-9A-F]{2}(?: [0-9A-F]{2}){0,63})?$/),
    is_remote: z.literal(true).optional(),
    is_fd: z.literal(true).optional(),
    brs: z.literal(true).optional(),
    esi: z.literal(true).optional(),
    is_error: z.literal(true).optional(),
    error_classes: z.array(z.enum(ERROR_CLASSES)).max(ERROR_CLASSES.length).optional(),
    error_text: z.string().max(1000).optional(),
    represents: z.number().int().min(1).optional(),
    msg: z.string().regex(SIGNAL_NAME).optional(),
    signals: z.record(z.string().regex(SIGNAL_NAME), z.union([z.number(), z.string().max(200)])).refine((r) => Object.keys(r).length <= 512).optional(),
    units: z.record(z.string().regex(SIGNAL_NAME), z.string().max(64)).refine((r) => Object.keys(r).length <= 512).optional(),
    ...dongle,
  }),
  log: z.strictObject({
    ts,
    level: z.enum(['debug', 'info', 'warn', 'error']),
    message: z.string().max(2000),
    code: z.string().max(64).optional(),
    details: z.record(z.string().max(64), scalar).optional(),
    ...dongle,
  }),
  command_status: z.strictObject({
    ts,
    command_id: z.string().min(1).max(64),
    type: z.string().min(1).max(64),
    status: z.enum(COMMAND_STATES),
    error: z.string().max(500).optional(),
    ...dongle,
  }),
  bus_state: z.strictObject({
    ts,
    bus,
    link: z.enum(['up', 'down']),
    state: z.enum(CONTROLLER_STATES).nullable(),
    tec: count.nullable(),
    rec: count.nullable(),
    bitrate: count.nullable(),
    bitrate_source: z.enum(['kernel', 'flag']).nullable(),
    sample_point: z.number().min(0).max(1).nullable(),
    data_bitrate: count.nullable(),
    data_sample_point: z.number().min(0).max(1).nullable(),
    restart_ms: count.nullable(),
    counters: z.partialRecord(z.enum(BUS_COUNTER_NAMES), count),
    load: ratio.nullable(),
    load_peak_1m: ratio.nullable(),
    load_history: z.array(ratio).max(60),
    frame_rate: count,
    error_frames: z.partialRecord(z.enum(ERROR_CLASSES), count),
    ...dongle,
  }),
} as const;

/** Event types an agent may mirror upstream. Frames travel on the binary data plane, never here. */
export const MIRRORED_EVENT_TYPES = ['presence', 'log', 'command_status', 'bus_state'] as const;
export type MirroredEventType = (typeof MIRRORED_EVENT_TYPES)[number];

export function isMirroredEvent(ev: ConsoleEvent): ev is Extract<ConsoleEvent, { type: MirroredEventType }> {
  return (MIRRORED_EVENT_TYPES as readonly string[]).includes(ev.type);
}

export function parseEventData(type: string, data: unknown): { ok: true; event: ConsoleEvent } | { ok: false; error: string } {
  if (!(type in schemas)) return { ok: false, error: `unknown event type ${JSON.stringify(type).slice(0, 40)}` };
  const t = type as keyof typeof schemas;
  const r = schemas[t].safeParse(data);
  if (!r.success) return { ok: false, error: `bad ${t} event: ${z.prettifyError(r.error).slice(0, 300)}` };
  return { ok: true, event: { type: t, data: r.data } as ConsoleEvent };
}

