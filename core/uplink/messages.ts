/**
 * The uplink's JSON control messages (WebSocket text messages), validated on arrival by both sides.
 * Frames never travel here: they use the binary batches of frame-codec.ts.
 *
 * Agent → bridge
 *   hello          first message: who I am, which run, which buses
 *   event          one mirrored console event from the agent's outbox (presence, log, command_status, bus_state),
 *                  with the outbox sequence number; acknowledged with event_ack; redelivery is deduplicated
 *   data_ack       the last DOWN batch the agent has transmitted (or dropped and counted)
 *   dbc            part of the agent's DBC files (dbc-transfer.ts), only to a bridge with the `dbc` feature
 *   clock_probe    the agent's clock reading, before hello and then with every heartbeat; also allowed
 *                  before hello, so an agent knows its clock offset before any frame moves
 *   rec_listing    answer to rec_list: the agent's recordings (newest first, as many as fit)
 *   rec_chunk      answer to rec_read: one chunk of a recording file (base64), with the byte range
 *                  available when it was read
 *   rec_error      a rec_list/rec_read that failed, with an HTTP status and the reason
 * Bridge → agent
 *   welcome        accepted: the last outbox seq the bridge has stored (the agent resends after it), the
 *                  group and its relay revision
 *   event_ack      outbox entries up to seq are stored
 *   data_ack       the last UP batch the bridge has taken (relayed or queued)
 *   command        a command to carry out (send_frame)
 *   group          the dongle's group or its relay revision changed (joined, left, ended, sides or bus map)
 *   clock_reply    the probe's reading echoed with the bridge's clock (core/uplink/clock.ts)
 *   rec_list       list the recordings (for GET /api/v1/dongles/<id>/recordings)
 *   rec_read       read one chunk of a recording. Flow control: the bridge asks for the next chunk only
 *                  once the previous one is written to its HTTP client, so the agent sends one at a time
 *   error          what went wrong, before the bridge closes the connection
 */
import { z } from 'zod';
import { MIRRORED_EVENT_TYPES } from '../console/normalize.js';
import { BUS_RULE, ID_RULE, MAX_BUSES_PER_DONGLE, RECORDING_ID_RULE } from '../names.js';
import { DbcChunkMessage } from './dbc-transfer.js';
import { RECORDING_CHUNK_BYTES, RecordingInfo } from '../recording/recording-info.js';

const name = z.string().regex(ID_RULE);
const bus = z.string().regex(BUS_RULE);
const seq = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
/** A wall-clock reading in ms; any value a real (even badly set) clock can show. */
const clockMs = z.number().finite().min(-1e13).max(1e13);
const req = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER);
const recordingId = z.string().regex(RECORDING_ID_RULE);
const RELAY_REV = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/);

/**
 * The uplink protocol version; a bridge refuses agents of another major version.
 * 2: batches carry a clock fix in their header, agents probe the clock before hello (core/uplink/clock.ts).
 */
export const PROTOCOL_VERSION = 2;
/** Largest text message either side accepts. */
export const MAX_TEXT_MESSAGE_BYTES = 64 * 1024;

export const SendFrameCommand = z.strictObject({
  type: z.literal('send_frame'),
  bus,
  /** Hex, "0x123" or "123". */
  id: z.string().regex(/^(0[xX])?[0-9a-fA-F]{1,8}$/),
  data_hex: z
    .string()
    .max(64 * 3)
    .regex(/^[0-9a-fA-F\s:]*$/)
    .default(''),
  is_extended: z.boolean().optional(),
  is_remote: z.boolean().optional(),
  is_fd: z.boolean().optional(),
  brs: z.boolean().optional(),
  /** RTR only: the requested length. */
  dlc: z.number().int().min(0).max(15).optional(),
});
export type SendFrameCommand = z.infer<typeof SendFrameCommand>;

/** Every command type the system knows; the admin API rejects anything else with 400. */
export const CommandBody = z.discriminatedUnion('type', [SendFrameCommand]);
export type CommandBody = z.infer<typeof CommandBody>;

/** Bytes that base64 text (checked by its regex) decodes to. */
function base64Bytes(b64: string): number {
  return Math.floor((b64.length * 3) / 4) - (b64.endsWith('==') ? 2 : b64.endsWith('=') ? 1 : 0);
}

export const AgentMessage = z.discriminatedUnion('t', [
  z.strictObject({
    t: z.literal('hello'),
    protocol: z.number().int(),
    dongle: name,
    /** Random per agent process: frame sequence numbers restart with it. */
    run: z.string().regex(/^[A-Za-z0-9-]{8,64}$/),
    version: z.string().max(40),
    buses: z.array(bus).max(MAX_BUSES_PER_DONGLE),
    /**
     * Identity of the agent's event outbox (its state): event seqs count within it. A new identity (state
     * wiped, new gateway) makes the bridge number this dongle's mirrored events afresh. Optional for
     * agents older than it.
     */
    outbox: z
      .string()
      .regex(/^[A-Za-z0-9-]{8,64}$/)
      .optional(),
  }),
  z.strictObject({
    t: z.literal('event'),
    seq,
    event: z.enum(MIRRORED_EVENT_TYPES),
    data: z.record(z.string(), z.unknown()),
  }),
  z.strictObject({ t: z.literal('data_ack'), batch: seq }),
  DbcChunkMessage,
  /**
   * `domain`: answer with the bridge's clock domain too (bridge_wm). Sent only to a bridge whose welcome
   * listed the feature "clock_domain" (an older bridge refuses the field); an agent that does not ask
   * never gets it (an older agent refuses the field).
   */
  z.strictObject({ t: z.literal('clock_probe'), t0: clockMs, domain: z.literal(true).optional() }),
  z.strictObject({ t: z.literal('rec_listing'), req, recordings: z.array(RecordingInfo).max(200) }),
  z
    .strictObject({
      t: z.literal('rec_chunk'),
      req,
      id: recordingId,
      /** Where the data starts, and the range [start, end) readable when it was read (offsets stay valid across rotation). */
      offset: seq,
      start: seq,
      end: seq,
      data: z
        .string()
        .max(Math.ceil(RECORDING_CHUNK_BYTES / 3) * 4)
        .regex(/^[A-Za-z0-9+/]*={0,2}$/),
    })
    // The bridge sizes a download by it (Content-Length: end - offset): a range no file can have is refused.
    .refine((m) => m.start <= m.offset && m.offset <= m.end && base64Bytes(m.data) <= m.end - m.offset, {
      message: 'a rec_chunk needs start <= offset <= end and no more data than end - offset',
    }),
  z.strictObject({ t: z.literal('rec_error'), req, status: z.number().int().min(400).max(599), error: z.string().max(500) }),
]);
export type AgentMessage = z.infer<typeof AgentMessage>;

export const BridgeMessage = z.discriminatedUnion('t', [
  z.strictObject({
    t: z.literal('welcome'),
    protocol: z.number().int(),
    dongle: name,
    /** Highest outbox seq stored for this dongle: the agent resends everything after it. */
    event_ack: seq,
    /** Group membership, when the dongle is in one: frames relay only then. */
    group: name.nullable(),
    /**
     * With a group: the revision of what it relays under (its creation, sides and bus map). An agent that
     * holds relayed frames from another revision of the same group drops them (they were addressed under
     * the old map or came from the old peer). Absent from bridges older than it: the group alone decides.
     */
    relay_rev: RELAY_REV.optional(),
    /**
     * Random per bridge process. DOWN batch numbers restart with it, so the agent forgets the last batch
     * it applied when it changes (and only then: a reconnect to the same bridge keeps deduplicating).
     */
    relay_epoch: z.string().max(64).optional(),
    /** What this bridge understands beyond protocol 1's basics ("dbc": it decodes with the agent's DBC files). */
    features: z.array(z.string().max(32)).max(32).optional(),
  }),
  z.strictObject({ t: z.literal('event_ack'), seq }),
  z.strictObject({ t: z.literal('data_ack'), batch: seq }),
  z.strictObject({
    t: z.literal('command'),
    command_id: name,
    /** Past this time the agent refuses to carry it out (a stale command is worse than none). */
    expires_at: z.iso.datetime({ offset: true }),
    command: CommandBody,
  }),
  z.strictObject({ t: z.literal('group'), group: name.nullable(), relay_rev: RELAY_REV.optional() }),
  /** `bridge_wm`: the bridge's wall clock minus its monotonic clock (ms), to a probe that asked (core/uplink/clock.ts). */
  z.strictObject({ t: z.literal('clock_reply'), t0: clockMs, bridge_ms: clockMs, bridge_wm: clockMs.optional() }),
  z.strictObject({ t: z.literal('error'), code: z.string().max(64), message: z.string().max(1000) }),
  z.strictObject({ t: z.literal('rec_list'), req }),
  /** offset absent: from the start of what is still on disk. */
  z.strictObject({ t: z.literal('rec_read'), req, id: recordingId, offset: seq.optional(), length: z.number().int().min(1).max(RECORDING_CHUNK_BYTES) }),
]);
export type BridgeMessage = z.infer<typeof BridgeMessage>;

export type Parsed<T> = { ok: true; msg: T } | { ok: false; error: string };

function parseWith<T>(schema: z.ZodType<T>, text: string): Parsed<T> {
  if (text.length > MAX_TEXT_MESSAGE_BYTES) return { ok: false, error: `message of ${text.length} bytes exceeds ${MAX_TEXT_MESSAGE_BYTES}` };
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { ok: false, error: 'message is not JSON' };
  }
  const r = schema.safeParse(json);
  if (!r.success) return { ok: false, error: z.prettifyError(r.error).slice(0, 300) };
  return { ok: true, msg: r.data };
}

/**
 * `data_ack` is the one control message that comes at frame rates (every DOWN batch is acknowledged), so
 * its exact text as JSON.stringify writes it is recognised here without JSON.parse and zod (~2 % of a
 * busy bridge's CPU at fleet shape). It accepts only text the schema accepts too: the batch a canonical
 * integer (no sign, no leading zero, no fraction or exponent) that is safe; anything else, including the
 * same message spaced or ordered differently, takes the full path.
 */
const DATA_ACK_TEXT = /^\{"t":"data_ack","batch":(0|[1-9][0-9]{0,15})\}$/;

function dataAck(text: string): { t: 'data_ack'; batch: number } | undefined {
  if (text.length > 48 || text.charCodeAt(6) !== 100 /* d */) return undefined;
  const m = DATA_ACK_TEXT.exec(text);
  if (m === null) return undefined;
  const batch = Number(m[1]);
  return Number.isSafeInteger(batch) ? { t: 'data_ack', batch } : undefined;
}

export const parseAgentMessage = (text: string): Parsed<AgentMessage> => {
  const ack = dataAck(text);
  return ack !== undefined ? { ok: true, msg: ack } : parseWith(AgentMessage, text);
};
export const parseBridgeMessage = (text: string): Parsed<BridgeMessage> => {
  const ack = dataAck(text);
  return ack !== undefined ? { ok: true, msg: ack } : parseWith(BridgeMessage, text);
};

/** WebSocket path the agent connects to on the bridge. */
export const UPLINK_PATH = '/api/v1/agents/connect';
/** Close codes (4000-4999 are the application's). */
/**
 * A WebSocket close reason that fits the protocol's 123 bytes of UTF-8 (RFC 6455 5.5), cut at a character:
 * `ws` throws on a longer one, and reasons quote network input (a bad bus name, a message's keys).
 */
export function closeReason(text: string): string {
  if (Buffer.byteLength(text) <= 123) return text;
  let out = '';
  let bytes = 0;
  for (const ch of text) {
    const n = Buffer.byteLength(ch);
    if (bytes + n > 120) break;
    out += ch;
    bytes += n;
  }
  return `${out}…`;
}

/**
 * Recording requests (rec_list, rec_read) outstanding on one link at most: the bridge asks no more
 * (cloud-bridge/recording-requests.ts) and the agent answers no more (a download has one at a time).
 */
export const MAX_RECORDING_REQUESTS = 64;

export const CLOSE = {
  PROTOCOL: 4400,
  UNAUTHORIZED: 4401,
  /** Refused: another connection of this dongle is live and healthy (two agents share a token). */
  DUPLICATE_AGENT: 4409,
  /** This link had missed its heartbeats and a new connection of the dongle took over. */
  REPLACED: 4410,
  TOO_LARGE: 4413,
  SHUTDOWN: 1001,
} as const;
