/**
 * The agent's recording API (every write through LocalAuth):
 *   GET    /api/v1/recordings             list (newest first), with the disk figures
 *   POST   /api/v1/recordings             start; JSON body, all optional: {"buses":["can0"],"ids":"7E0-7EF","max_duration_s":600}
 *   POST   /api/v1/recordings/<id>/stop   stop
 *   POST   /api/v1/recordings/<id>/ticket a download ticket (a read: core/http/download-tickets.ts): {url, expires_in_s}
 *   GET    /api/v1/recordings/<id>        download: the candump -L file (.log, or .log.gz with --record-gzip);
 *                                         `?ticket=` from the route above stands for a token
 *   HEAD   /api/v1/recordings/<id>        the download's status and headers, no body
 *   DELETE /api/v1/recordings/<id>        delete (409 while it runs)
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { DownloadTickets } from '../../core/http/download-tickets.js';
import { sendJson, sendUnavailable } from '../../core/http/replies.js';
import { HttpError } from '../../core/http/http-error.js';
import { clientGroup, type ClientGroupCounts } from '../../core/net/client-address.js';
import type { LocalAuth } from '../local-auth.js';
import type { Recorder } from './recorder.js';
import { streamRecording } from './recording-reader.js';

export const RECORDINGS_PATH = '/api/v1/recordings';
/**
 * Downloads served at once, and from one address (an IPv6 one by its /64: core/net/client-address.ts): each holds every file of its recording open (their
 * space is not freed while it does, even when the disk bound deletes them) and ~128 KiB of buffers, and a
 * client reading slowly keeps that for as long as it trickles. Reads are open by default on the LAN.
 */
export const MAX_DOWNLOADS = 8;
export const MAX_DOWNLOADS_PER_ADDRESS = 4;
const ONE = /^\/api\/v1\/recordings\/([^/]+)(\/stop|\/ticket)?$/;

export interface RecordingRouteDeps {
  recorder: Recorder;
  auth: LocalAuth;
  dongle: string;
  maxBytes: number;
  tickets: DownloadTickets;
  /** Downloads running, in all and by client group (MAX_DOWNLOADS): owned by the server, shared by requests. */
  downloads: { all: number; byAddress: ClientGroupCounts };
}

/** Runs a download within the caps; false (503 sent) when a cap is reached. */
async function withinDownloadCaps(d: RecordingRouteDeps, req: IncomingMessage, res: ServerResponse, run: () => Promise<void>): Promise<boolean> {
  const address = clientGroup(req.socket.remoteAddress);
  const mine = d.downloads.byAddress.count(address);
  if (d.downloads.all >= MAX_DOWNLOADS || mine >= MAX_DOWNLOADS_PER_ADDRESS) {
    const error =
      mine >= MAX_DOWNLOADS_PER_ADDRESS
        ? `${mine} downloads from ${address} are running; let one finish and try again`
        : `${MAX_DOWNLOADS} downloads are running on this gateway; try again when one has finished`;
    sendUnavailable(res, error);
    return false;
  }
  d.downloads.all++;
  d.downloads.byAddress.add(address);
  try {
    await run();
  } finally {
    d.downloads.all--;
    d.downloads.byAddress.release(address);
  }
  return true;
}

/** Handles the request when the path is the recordings API; false when it is not. */
export async function handleRecordings(d: RecordingRouteDeps, req: IncomingMessage, res: ServerResponse, path: string): Promise<boolean> {
  const one = ONE.exec(path);
  if (path !== RECORDINGS_PATH && !one) return false;
  const method = req.method ?? 'GET';
  const allow = path === RECORDINGS_PATH ? 'GET, POST' : one![2] ? 'POST' : 'GET, HEAD, DELETE';
  if (!allow.split(', ').includes(method)) {
    sendJson(res, 405, { error: `${method} is not supported on ${path}; use ${allow}` }, { Allow: allow });
    return true;
  }
  const read = method === 'GET' || method === 'HEAD' || one?.[2] === '/ticket';
  // A download with a live ticket for this file needs no token (the ticket was issued to one).
  const ticketed = one !== null && one[2] === undefined && method !== 'DELETE' && d.tickets.holderOf(new URL(req.url ?? '/', 'http://localhost')) !== undefined;
  if (!ticketed && !d.auth.guard(req, res, read ? 'read' : 'write')) return true;
  try {
    if (path === RECORDINGS_PATH) {
      if (method === 'GET') {
        sendJson(res, 200, { recordings: await d.recorder.list(), running: d.recorder.running, bytes: d.recorder.bytesOnDisk, max_bytes: d.maxBytes });
      } else {
        // Loaded here, not at start: zod and its schemas are megabytes a gateway that never records does not pay.
        const [{ parseWith, readJson }, { RecordingRequest }] = await Promise.all([import('../../core/http/json-body.js'), import('../../core/recording/recording-info.js')]);
        const body = parseWith(RecordingRequest, (await readJson(req)) ?? {}, 'recording request');
        sendJson(res, 201, await d.recorder.start(body));
      }
      return true;
    }
    const id = one![1]!;
    if (one![2] === '/ticket') {
      d.recorder.mustExist(id);
      // One holder: the token file is read once per run and the signing key drawn per run, so no token
      // outlives the tickets it asked for.
      sendJson(res, 201, d.tickets.issue(`${RECORDINGS_PATH}/${id}`, 'local'));
    } else if (one![2]) sendJson(res, 200, await d.recorder.stop(id));
    else if (method === 'DELETE') {
      await d.recorder.delete(id);
      res.writeHead(204).end();
    } else await withinDownloadCaps(d, req, res, () => streamRecording(d.recorder, d.dongle, id, req, res));
  } catch (err) {
    if (!(err instanceof HttpError)) throw err;
    sendJson(res, err.status, { error: err.message }, err.headers);
  }
  return true;
}
