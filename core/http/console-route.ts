/**
 * Serves `GET …/console` for one stream: reads the resume request (Last-Event-ID header, or
 * ?lastEventId= for clients that cannot set headers; ?backlog=n) and the client's selection (?ids=,
 * ?buses=: core/console/console-selection.ts), and hands the response to an SseWriter.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { consoleSelection } from '../console/console-selection.js';
import type { ConsoleStream } from '../console/console-stream.js';
import type { ResumeRequest } from '../console/resume.js';
import { sendJson } from './replies.js';
import { SseWriter, type SseOptions } from './sse-writer.js';

export function resumeRequestFrom(req: IncomingMessage, url: URL): ResumeRequest | { error: string } {
  const header = req.headers['last-event-id'];
  const fromHeader = Array.isArray(header) ? header[0] : header;
  const lastEventId = fromHeader ?? url.searchParams.get('lastEventId') ?? undefined;
  const backlogRaw = url.searchParams.get('backlog');
  if (backlogRaw === null) return lastEventId === undefined ? {} : { lastEventId };
  if (!/^\d{1,9}$/.test(backlogRaw)) return { error: `backlog must be a non-negative integer, got ${JSON.stringify(backlogRaw.slice(0, 20))}` };
  return lastEventId === undefined ? { backlog: Number(backlogRaw) } : { lastEventId, backlog: Number(backlogRaw) };
}

export function serveConsole(req: IncomingMessage, res: ServerResponse, url: URL, stream: ConsoleStream, opts: SseOptions): SseWriter | undefined {
  const resume = resumeRequestFrom(req, url);
  if ('error' in resume) {
    sendJson(res, 400, { error: resume.error });
    return undefined;
  }
  const selection = consoleSelection(url);
  if ('error' in selection) {
    sendJson(res, 400, { error: selection.error });
    return undefined;
  }
  const w = new SseWriter(res, stream, opts, selection.select);
  try {
    w.start(resume);
  } catch (err) {
    // A snapshot that could not be built (the state store failing a read): this request fails (the daemon's
    // server answers for it), its subscription and places are given back (onClose), the daemon goes on.
    w.abort();
    throw err;
  }
  return w;
}
