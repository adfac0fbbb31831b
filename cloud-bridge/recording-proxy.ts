/**
 * A connected dongle's recordings, through the bridge (viewer or admin token, as a console):
 *   GET /api/v1/dongles/<id>/recordings        the agent's list
 *   GET /api/v1/dongles/<id>/recordings/<rid>  the file, streamed from the agent over the uplink; `?ticket=`
 *                                              from the route below stands for the token that asked for it
 *                                              while that token is valid; a viewer's download ends when its
 *                                              token is revoked or expires
 *   HEAD on both                               the same status and headers, no body (a download's HEAD
 *                                              asks the agent for its first bytes only: size and type)
 *   POST /api/v1/dongles/<id>/recordings/<rid>/ticket  a download ticket (core/http/download-tickets.ts)
 * A download asks the agent for one chunk (rec_read) at a time and asks for the next only when the HTTP
 * client has taken the last one (write() true, or 'drain'): a slow client slows the download, never the
 * data plane, and holds at most one chunk here. In a cluster a dongle whose link another node holds is
 * asked through that node (cluster/remote-recordings.ts), one chunk per request as well.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { writeWithBackpressure } from '../core/http/backpressure.js';
import { bearerToken } from '../core/http/bearer-token.js';
import type { DownloadTickets } from '../core/http/download-tickets.js';
import { sendJson, sendUnavailable } from '../core/http/replies.js';
import { ID_RULE, RECORDING_ID_RULE } from '../core/names.js';
import { RECORDING_CHUNK_BYTES, recordingFileName } from '../core/recording/recording-info.js';
import type { AgentServer } from './agent-server.js';
import { ticketHolder, type Auth } from './auth.js';
import type { RecordingQuestion, RecordingReply } from './recording-requests.js';
import type { BridgeStats } from './metrics.js';
import type { StateStore } from './state-store.js';
import type { ViewerSessions } from './viewer-sessions.js';

const PATH = /^\/api\/v1\/dongles\/([^/]+)\/recordings(?:\/([^/]+)(\/ticket)?)?$/;

export interface RecordingProxyDeps {
  auth: Auth;
  agents: AgentServer;
  store: StateStore;
  stats: BridgeStats;
  tickets: DownloadTickets;
  /** Open streams of viewer tokens: a viewer's download is closed with its token. */
  viewers: ViewerSessions;
  /** Cluster mode: asks the node holding the dongle's link; undefined when no other node holds it. */
  elsewhere?: (dongle: string, q: RecordingQuestion) => Promise<RecordingReply | undefined>;
}

/** Where a dongle's recordings are asked: its link here, or the node that holds it. */
type Ask = (q: RecordingQuestion) => Promise<RecordingReply>;

/** Handles the request when the path is a dongle's recordings; false when it is not. */
export async function handleDongleRecordings(d: RecordingProxyDeps, req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean> {
  const m = PATH.exec(url.pathname);
  if (!m) return false;
  const [, dongle, rid, ticket] = m as unknown as [string, string, string | undefined, string | undefined];
  const allow = ticket ? 'POST' : 'GET, HEAD';
  if (!allow.split(', ').includes(req.method ?? '')) {
    sendJson(res, 405, { error: `${req.method} is not supported on ${url.pathname}; use ${allow} (recordings are started and deleted on the gateway)` }, { Allow: allow });
    return true;
  }
  const fail = (status: number, error: string, headers: Record<string, string> = {}): true => {
    sendJson(res, status, { error }, headers);
    return true;
  };
  // A download with a live ticket for this file stands for the token that asked for it, while that token is valid.
  const holder = rid !== undefined && !ticket ? d.tickets.holderOf(url) : undefined;
  const caller = holder !== undefined ? d.auth.holderCaller(holder) : d.auth.identify(bearerToken(req, url));
  if (caller === undefined && holder !== undefined)
    return fail(401, 'the token this download ticket was issued to is revoked or expired: ask for a new ticket with a valid token', { 'WWW-Authenticate': 'Bearer' });
  if (caller === undefined) return fail(401, 'missing or wrong token: send Authorization: Bearer <viewer or admin token>, or ?access_token=', { 'WWW-Authenticate': 'Bearer' });
  if (caller.kind === 'agent') return fail(403, 'agent tokens cannot read recordings; use a viewer or the admin token');
  if (!ID_RULE.test(dongle) || (rid !== undefined && !RECORDING_ID_RULE.test(rid))) return fail(400, 'bad dongle or recording id');
  if (!d.store.dongle(dongle)) return fail(404, `dongle "${dongle}" is not registered on this bridge`);
  const notConnected = `dongle "${dongle}" is not connected: its recordings are on the gateway`;
  const link = d.agents.linkOf(dongle);
  const elsewhere = d.elsewhere;
  // The link here, else (cluster) the node that holds it; no node holding it is the same 503 as here.
  const ask: Ask = link?.ready ? (q) => link.recordings.ask(q) : async (q) => (await elsewhere?.(dongle, q)) ?? failureOf(503, notConnected);
  if (!link?.ready && elsewhere === undefined) {
    sendUnavailable(res, notConnected);
    return true;
  }

  if (rid === undefined) {
    const r = await ask({ t: 'rec_list' });
    if (r.t === 'rec_error') return fail(r.status, r.error);
    if (r.t !== 'rec_listing') return fail(502, 'the dongle answered something else than a list');
    sendJson(res, 200, { dongle, recordings: r.recordings });
    return true;
  }
  if (ticket) {
    if (!link?.ready) {
      // Another node's link (or none): issued only when the dongle answers there.
      const r = await ask({ t: 'rec_list' });
      if (r.t === 'rec_error') return fail(r.status, r.error);
    }
    sendJson(res, 201, d.tickets.issue(url.pathname.slice(0, -ticket.length), ticketHolder(caller)));
    return true;
  }
  // A viewer's download lasts only as long as its token, as a console stream does.
  const session = { close: () => res.destroy() };
  if (caller.kind === 'viewer') {
    d.viewers.add(session, caller.tokenId, caller.expiresAt);
    res.on('close', () => d.viewers.remove(session));
  }
  await download(ask, dongle, rid, res, d.stats, req.method === 'HEAD');
  return true;
}

function failureOf(status: number, error: string): RecordingReply {
  return { t: 'rec_error', req: 1, status, error };
}

/** Bytes a HEAD asks the agent for: the gzip magic's, which sets Content-Type (the range's end gives Content-Length). */
const HEAD_PROBE_BYTES = 4;

/** The download, or with `headOnly` its status and headers only: the same as a GET's, from one small rec_read. */
async function download(ask: Ask, dongle: string, rid: string, res: ServerResponse, stats: BridgeStats, headOnly: boolean): Promise<void> {
  let gone = false;
  res.on('close', () => (gone = true));
  const first = await ask({ t: 'rec_read', id: rid, length: headOnly ? HEAD_PROBE_BYTES : RECORDING_CHUNK_BYTES });
  if (first.t === 'rec_error') return sendJson(res, first.status, { error: first.error });
  if (first.t !== 'rec_chunk') return sendJson(res, 502, { error: 'the dongle answered something else than a chunk' });
  if (first.id !== rid) return sendJson(res, 502, { error: `the dongle answered with a chunk of ${first.id}, not of ${rid}` });
  // The download is what was on the gateway's disk at the first chunk; a running recording's later frames are not in it.
  const end = first.end;
  const head = Buffer.from(first.data.slice(0, 4), 'base64');
  const gzip = head[0] === 0x1f && head[1] === 0x8b; // the gzip magic: files of an agent with --record-gzip
  res.writeHead(200, {
    'Content-Type': gzip ? 'application/gzip' : 'text/plain; charset=us-ascii',
    'Content-Length': end - first.offset,
    'Content-Disposition': `attachment; filename="${recordingFileName(dongle, { id: rid, gzip })}"`,
    'Cache-Control': 'no-store',
  });
  if (headOnly) return void res.end();
  let chunk: RecordingReply = first;
  let expected = first.offset;
  for (;;) {
    // An error, or an answer that is not the bytes asked for (a file deleted meanwhile, a confused agent).
    if (chunk.t !== 'rec_chunk' || chunk.id !== rid || chunk.offset !== expected) {
      // Mid-stream there is no status to send: cutting the response tells the client it is short.
      res.destroy();
      return;
    }
    const data = Buffer.from(chunk.data, 'base64');
    const next = chunk.offset + data.length;
    if (data.length === 0 && next < end) return void res.destroy();
    if (next > end) return void res.destroy();
    stats.recordingBytes += data.length;
    await writeWithBackpressure(res, data);
    if (gone) return;
    if (next >= end) return void res.end();
    expected = next;
    chunk = await ask({ t: 'rec_read', id: rid, offset: next, length: Math.min(RECORDING_CHUNK_BYTES, end - next) });
  }
}
