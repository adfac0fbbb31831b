/**
 * The bridge's outstanding recording requests to one connected agent (rec_list, rec_read): each gets a
 * number, waits for the agent's answer (rec_listing, rec_chunk, rec_error) with a timeout, and fails
 * when the link closes. Owned by AgentLink; used by cloud-bridge/recording-proxy.ts.
 */
import { MAX_RECORDING_REQUESTS, type AgentMessage, type BridgeMessage } from '../core/uplink/messages.js';

export type RecordingReply = Extract<AgentMessage, { t: 'rec_listing' | 'rec_chunk' | 'rec_error' }>;
type RecordingAsk = Extract<BridgeMessage, { t: 'rec_list' | 'rec_read' }>;
export type RecordingQuestion = RecordingAsk extends infer M ? (M extends RecordingAsk ? Omit<M, 'req'> : never) : never;

export const RECORDING_REPLY_TIMEOUT_MS = 30_000;

export class RecordingRequests {
  private next = 1;
  private readonly pending = new Map<number, { resolve: (r: RecordingReply) => void; timer: NodeJS.Timeout }>();

  /** send: writes the message to the agent; false when the link cannot take it now. */
  constructor(private readonly send: (m: RecordingAsk) => boolean) {}

  ask(q: RecordingQuestion, timeoutMs = RECORDING_REPLY_TIMEOUT_MS): Promise<RecordingReply> {
    const req = this.next++;
    if (this.pending.size >= MAX_RECORDING_REQUESTS) return Promise.resolve(failure(req, 503, 'too many recording requests to this dongle at once; try again'));
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.settle(failure(req, 504, `the dongle did not answer within ${timeoutMs / 1000} s`)), timeoutMs);
      this.pending.set(req, { resolve, timer });
      if (!this.send({ ...q, req } as RecordingAsk)) this.settle(failure(req, 502, 'the dongle is not connected (or not reading its link)'));
    });
  }

  /** An answer from the agent; false when it answers nothing we asked (late, or made up). */
  settle(reply: RecordingReply): boolean {
    const p = this.pending.get(reply.req);
    if (!p) return false;
    this.pending.delete(reply.req);
    clearTimeout(p.timer);
    p.resolve(reply);
    return true;
  }

  /** Fails one waiting request (its answer could not be read); false when none waits under that number. */
  fail(req: number, status: number, error: string): boolean {
    return this.settle(failure(req, status, error));
  }

  /** The link closed: every waiting request fails. */
  closeAll(): void {
    for (const req of [...this.pending.keys()]) this.settle(failure(req, 502, 'the dongle disconnected'));
  }
}

function failure(req: number, status: number, error: string): RecordingReply {
  return { t: 'rec_error', req, status, error };
}
