/**
 * The agent's side of recording list/download through the bridge: answers rec_list and rec_read from
 * the uplink (core/uplink/messages.ts). One chunk per request: the bridge asks for the next only when
 * it has passed the last one on, so a download never floods the link the frames share.
 */
import { HttpError } from '../../core/http/http-error.js';
import { MAX_RECORDING_REQUESTS, MAX_TEXT_MESSAGE_BYTES, type AgentMessage, type BridgeMessage } from '../../core/uplink/messages.js';
import type { Recorder } from './recorder.js';
import { readRecordingChunk } from './recording-reader.js';

export type RecordingAsk = Extract<BridgeMessage, { t: 'rec_list' | 'rec_read' }>;
export type RecordingAnswer = Extract<AgentMessage, { t: 'rec_listing' | 'rec_chunk' | 'rec_error' }>;

export async function answerRecordingAsk(recorder: Recorder | undefined, m: RecordingAsk): Promise<RecordingAnswer> {
  try {
    if (!recorder) throw new HttpError(503, 'this agent does not record');
    if (m.t === 'rec_list') {
      // Newest first, as many as fit one message.
      const all = (await recorder.list()).slice(0, 200);
      let n = all.length;
      while (n > 0 && JSON.stringify({ t: 'rec_listing', req: m.req, recordings: all.slice(0, n) }).length > MAX_TEXT_MESSAGE_BYTES - 64) n = Math.floor(n * 0.8);
      return { t: 'rec_listing', req: m.req, recordings: all.slice(0, n) };
    }
    const c = await readRecordingChunk(recorder, m.id, m.offset, m.length);
    return { t: 'rec_chunk', req: m.req, id: m.id, offset: c.offset, start: c.start, end: c.end, data: c.data.toString('base64') };
  } catch (err) {
    const status = err instanceof HttpError ? err.status : 500;
    return { t: 'rec_error', req: m.req, status, error: (err as Error).message.slice(0, 500) };
  }
}

/**
 * Answers recording requests, at most MAX_RECORDING_REQUESTS at a time: a bridge asks no more (one chunk
 * at a time per download); one that does is answered 503 at once instead of making this agent open and
 * read file after file for it.
 */
export class RecordingAnswers {
  private busy = 0;

  constructor(private readonly answer: (m: RecordingAsk) => Promise<RecordingAnswer>) {}

  handle(m: RecordingAsk, reply: (a: RecordingAnswer) => void): void {
    if (this.busy >= MAX_RECORDING_REQUESTS) {
      reply({ t: 'rec_error', req: m.req, status: 503, error: `more than ${MAX_RECORDING_REQUESTS} recording requests at once; ask again` });
      return;
    }
    this.busy++;
    void this.answer(m)
      .then(reply)
      .finally(() => this.busy--);
  }
}
