/**
 * The console messages nodes exchange over NATS (console-sync.ts), encoded and validated in one place:
 *  - a numbered event (`canrelay.console.ev.<stream>`): `{n: node, r: run start, i: id, t: type}` + "\n" + the event's JSON;
 *  - a forwarded event (`canrelay.console.in.<node>`): `{s: stream, t: type, h: hops}` + "\n" + the event's JSON;
 *  - a history request `{stream, after}` and its reply `{run, latest, events: [[id, type, json] …], more}`;
 *  - interest `{stream}` (a mirror is still read) and `watched` `{node, streams}` (streams someone reads).
 * The event JSON is written verbatim into SSE responses: it must be one JSON object on one line and a
 * valid event of its type (core/console/event-schemas.ts), checked here as from any other network peer.
 */
import { z } from 'zod';
import { isEventJson } from '../../core/console/event-schemas.js';
import { CONSOLE_EVENT_TYPES, type ConsoleEventType } from '../../core/console/events.js';

/** Streams named in one `watched` announcement at most (more are split over several). */
export const WATCHED_MAX = 2000;

const eventType = z.enum(CONSOLE_EVENT_TYPES as [ConsoleEventType, ...ConsoleEventType[]]);
const id = z.number().int().min(0).max(1e15);
const streamName = z.string().regex(/^(dongles|groups)\/[^\s]{1,64}$/);

const numberedMeta = z.object({ n: z.string().min(1).max(200), r: id, i: id, t: eventType }).strict();
const forwardedMeta = z.object({ s: streamName, t: eventType, h: z.number().int().min(0).max(8) }).strict();
export const historyRequest = z.object({ stream: streamName, after: id.nullable() }).strict();
export const historyReply = z
  .object({
    run: id,
    latest: id,
    events: z.array(z.tuple([id, eventType, z.string().max(1_000_000)])).max(100_000),
    more: z.boolean(),
  })
  .strict();
const noHistory = z.object({ none: z.literal(true) }).strict();
export const interestMessage = z.object({ stream: streamName }).strict();
export const watchedMessage = z.object({ node: z.string().min(1).max(200), streams: z.array(streamName).max(WATCHED_MAX) }).strict();

export type NumberedMeta = z.infer<typeof numberedMeta>;
export type ForwardedMeta = z.infer<typeof forwardedMeta>;
export type HistoryRequest = z.infer<typeof historyRequest>;
export type HistoryReply = z.infer<typeof historyReply>;

/** Replies to a history request carry about this much event JSON at most (NATS' default max payload is 1 MB). */
export const HISTORY_REPLY_BYTES = 256 * 1024;

export function encodeWithJson(meta: NumberedMeta | ForwardedMeta, json: string): string {
  return `${JSON.stringify(meta)}\n${json}`;
}

function decodeWithJson<T extends { t: ConsoleEventType }>(data: Uint8Array, schema: z.ZodType<T>): { meta: T; json: string } | undefined {
  const text = Buffer.from(data).toString('utf8');
  const nl = text.indexOf('\n');
  if (nl < 0) return undefined;
  let metaValue: unknown;
  try {
    metaValue = JSON.parse(text.slice(0, nl));
  } catch {
    return undefined;
  }
  const meta = schema.safeParse(metaValue);
  const json = text.slice(nl + 1);
  if (!meta.success || !isEventJson(meta.data.t, json)) return undefined;
  return { meta: meta.data, json };
}

export const decodeNumbered = (data: Uint8Array) => decodeWithJson(data, numberedMeta);
export const decodeForwarded = (data: Uint8Array) => decodeWithJson(data, forwardedMeta);

/** Parses a history reply: the reply, `null` when the asked node does not number the stream, undefined when malformed. */
export function decodeHistoryReply(data: Uint8Array): HistoryReply | null | undefined {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(data).toString('utf8'));
  } catch {
    return undefined;
  }
  if (noHistory.safeParse(v).success) return null;
  const r = historyReply.safeParse(v);
  if (!r.success || !r.data.events.every((e) => isEventJson(e[1], e[2]))) return undefined;
  return r.data;
}

/** Parses a small JSON message with its schema; undefined when malformed. */
export function parseJson<T>(data: Uint8Array, schema: z.ZodType<T>): T | undefined {
  try {
    const r = schema.safeParse(JSON.parse(Buffer.from(data).toString('utf8')));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}

export function parseHistoryRequest(data: Uint8Array): HistoryRequest | undefined {
  try {
    const r = historyRequest.safeParse(JSON.parse(Buffer.from(data).toString('utf8')));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}

export const NO_HISTORY = JSON.stringify({ none: true });
