/**
 * What one console client asked to see: `?ids=` (the id filter of core/can/id-filter.ts, as on the page)
 * and `?buses=` (bus names, comma-separated), so that `curl -N '…/console?ids=7E8'` shows the answers of
 * one ECU without a jq pipeline. It selects `can_frame` events only: logs, bus states and presence are
 * what happened to the frames and pass, as error frames pass the id filter. It applies to what the
 * console shows, after its sampling (a client cannot make the shared stream unsampled), and to the
 * history a resume replays; event ids stay those of the stream, so Last-Event-ID works unchanged.
 *
 * The ring holds encoded SSE blocks, shared by every client: the few fields the selection needs are read
 * from the block's JSON, in the order core/console/normalize.ts `canFrameData` writes them (`"bus":"…"`
 * before `"id":"0x…"`, both before any signal; `"is_extended":true`, `"is_error":true`), rather than each
 * block parsed again, and only for clients that asked for a selection.
 */
import { parseIdFilter } from '../can/id-filter.js';
import { BUS_RULE, BUS_RULE_TEXT, MAX_BUSES_PER_DONGLE } from '../names.js';

/** True when a client should be sent this SSE block. */
export type ChunkSelector = (chunk: string) => boolean;

const FRAME_EVENT = '\nevent: can_frame\n';

/** The selection of a console request, undefined for none (every event), or the error to answer 400 with. */
export function consoleSelection(url: URL): { select?: ChunkSelector } | { error: string } {
  const idsText = url.searchParams.get('ids');
  const busesText = url.searchParams.get('buses');
  let ids: ((id: number, ext: boolean, isError: boolean) => boolean) | undefined;
  if (idsText !== null && idsText.trim() !== '') {
    const parsed = parseIdFilter(idsText);
    if (!parsed.ok) return { error: `ids: ${parsed.error} (e.g. ids=7E8, ids=7E0-7EF,!7DF, ids=700/7F0, ids=18DAF110)` };
    ids = parsed.filter.matchesFrame;
  }
  let buses: Set<string> | undefined;
  if (busesText !== null && busesText.trim() !== '') {
    const names = busesText
      .split(',')
      .map((b) => b.trim())
      .filter((b) => b !== '');
    const bad = names.find((b) => !BUS_RULE.test(b));
    if (bad !== undefined) return { error: `buses: ${JSON.stringify(bad.slice(0, 40))} is not a bus name (${BUS_RULE_TEXT}; e.g. buses=can0,can1)` };
    if (names.length > MAX_BUSES_PER_DONGLE) return { error: `buses: at most ${MAX_BUSES_PER_DONGLE} names` };
    buses = new Set(names);
  }
  if (ids === undefined && buses === undefined) return {};
  return { select: (chunk) => passes(chunk, ids, buses) };
}

function passes(chunk: string, ids: ((id: number, ext: boolean, isError: boolean) => boolean) | undefined, buses: Set<string> | undefined): boolean {
  if (!chunk.includes(FRAME_EVENT)) return true;
  if (buses !== undefined) {
    const bus = field(chunk, '"bus":"');
    if (bus === undefined || !buses.has(bus)) return false;
  }
  if (ids !== undefined) {
    const id = field(chunk, '"id":"0x');
    if (id === undefined) return false;
    return ids(parseInt(id, 16), chunk.includes('"is_extended":true'), chunk.includes('"is_error":true'));
  }
  return true;
}

/** The string value after the first `key` (which ends with its opening quote). */
function field(chunk: string, key: string): string | undefined {
  const at = chunk.indexOf(key);
  if (at < 0) return undefined;
  const from = at + key.length;
  const end = chunk.indexOf('"', from);
  return end < 0 ? undefined : chunk.slice(from, end);
}
