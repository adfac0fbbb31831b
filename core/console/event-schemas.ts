/**
 * Validation of console events that arrive from the network (an agent mirroring its console to the
 * bridge, another bridge node of a cluster forwarding or numbering one), so nothing unchecked reaches a
 * stream: one zod schema per stored event type, the shapes of events.ts. `stream_reset` has none: it is
 * made per subscriber, never stored, mirrored or sent between nodes.
 * Apart from normalize.ts (which builds events) so the agent, which only builds them, never loads zod
 * for them (the gateway's memory: docs/benchmarks.md, fan-out).
 */
import { z } from 'zod';
import { ERROR_CLASSES } from '../can/error-frame.js';
import { BUS_RULE, ID_RULE } from '../names.js';
import { DBC_NAME_MAX } from '../can/dbc-parse.js';
import { BUS_COUNTER_NAMES, COMMAND_STATES, CONTROLLER_STATES, EVENT_TEXT_MAX, type ConsoleEvent } from './events.js';

const ts = z.string().max(40);
const name = z.string().regex(ID_RULE);
const bus = z.string().regex(BUS_RULE);
const dongle = { dongle: name.optional() };
/** DBC identifiers (message and signal names). */
const SIGNAL_NAME = new RegExp(`^[A-Za-z_][A-Za-z0-9_]{0,${DBC_NAME_MAX - 1}}$`);
const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
/** Loads above 1 happen (frames timed faster than the bitrate allows, e.g. a replay at speed 0); 1000 bounds nonsense. */
const ratio = z.number().min(0).max(1000);
const scalar = z.union([z.string().max(500), z.number(), z.boolean(), z.null()]);
const groupSide = z.strictObject({ dongle: name, online: z.boolean(), backlog: count });

const schemas = {
  presence: z.strictObject({
    ts,
    state: z.enum(['online', 'offline', 'seen']),
    bus: bus.optional(),
    reason: z.string().max(EVENT_TEXT_MAX.reason).optional(),
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
    signals: z
      .record(z.string().regex(SIGNAL_NAME), z.union([z.number(), z.string().max(EVENT_TEXT_MAX.label)]))
      .refine((r) => Object.keys(r).length <= 512)
      .optional(),
    units: z
      .record(z.string().regex(SIGNAL_NAME), z.string().max(EVENT_TEXT_MAX.unit))
      .refine((r) => Object.keys(r).length <= 512)
      .optional(),
    ...dongle,
  }),
  log: z.strictObject({
    ts,
    level: z.enum(['debug', 'info', 'warn', 'error']),
    message: z.string().max(EVENT_TEXT_MAX.message),
    code: z.string().max(64).optional(),
    details: z.record(z.string().max(64), scalar).optional(),
    ...dongle,
  }),
  command_status: z.strictObject({
    ts,
    command_id: z.string().min(1).max(64),
    type: z.string().min(1).max(64),
    status: z.enum(COMMAND_STATES),
    error: z.string().max(EVENT_TEXT_MAX.error).optional(),
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
  // Made only by a bridge (cloud-bridge/group-relay.ts); checked when another cluster node sends one.
  group_state: z.strictObject({
    ts,
    group: name,
    mode: z.enum(['relaying', 'degraded', 'down']),
    sides: z.strictObject({ a: groupSide, b: groupSide }),
    offline_side: z.enum(['a', 'b', 'both']).nullable(),
    dropped: count,
    relay_rate: z.number().min(0),
    relayed_total: count,
  }),
} as const;

export function parseEventData(type: string, data: unknown): { ok: true; event: ConsoleEvent } | { ok: false; error: string } {
  if (!(type in schemas)) return { ok: false, error: `unknown event type ${JSON.stringify(type).slice(0, 40)}` };
  const t = type as keyof typeof schemas;
  const r = schemas[t].safeParse(data);
  if (!r.success) return { ok: false, error: `bad ${t} event: ${z.prettifyError(r.error).slice(0, 300)}` };
  return { ok: true, event: { type: t, data: r.data } as ConsoleEvent };
}

/**
 * Whether `json` is a valid event of `type` as text: one JSON object on one line (it is written verbatim
 * as an SSE `data:` line) matching the type's schema. For events that cross the network as text (cluster).
 */
export function isEventJson(type: string, json: string): boolean {
  if (json.includes('\n') || json.includes('\r')) return false;
  let data: unknown;
  try {
    data = JSON.parse(json);
  } catch {
    return false;
  }
  return parseEventData(type, data).ok;
}
