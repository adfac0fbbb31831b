/**
 * Recordings through any node (cluster mode). A dongle's recordings are on its gateway and reach the
 * bridge over the agent's link, which one node holds; a list, ticket or download that the balancer sends
 * to another node is forwarded to the holder (SUBJECTS.recordings, request-reply), which asks its link and
 * answers with the agent's reply as it came. One chunk per request: a download through a second node
 * holds at most one chunk there too, and flow control stays the client's (recording-proxy.ts).
 */
import { ErrorCode, type NatsError } from 'nats';
import type { Logger } from 'pino';
import { z } from 'zod';
import { ID_RULE } from '../../core/names.js';
import { AgentMessage, BridgeMessage } from '../../core/uplink/messages.js';
import type { AgentLink } from '../agent-link.js';
import { RECORDING_REPLY_TIMEOUT_MS, type RecordingQuestion, type RecordingReply } from '../recording-requests.js';
import { parseJson } from './console-wire.js';
import { SUBJECTS, type NatsLink } from './nats-connection.js';

/** The asking node waits a little longer than the holder waits for its agent, so the holder's 504 arrives. */
const FORWARD_TIMEOUT_MS = RECORDING_REPLY_TIMEOUT_MS + 2000;

const forwarded = z.strictObject({ dongle: z.string().regex(ID_RULE), ask: z.unknown() });

export class RemoteRecordings {
  constructor(
    private readonly nats: NatsLink,
    private readonly node: string,
    private readonly linkOf: (dongle: string) => AgentLink | undefined,
    private readonly holderOf: (dongle: string) => Promise<string | undefined>,
    private readonly log: Logger,
  ) {
    nats.subscribe(SUBJECTS.recordings(node), (m) => {
      void this.answer(m.data)
        .then((reply) => m.respond(JSON.stringify(reply)))
        .catch((err: unknown) => this.nats.failed('recording request', err)); // respond() too: a connection closing
    });
  }

  /**
   * Asks the node that holds the dongle's link; undefined when no other node holds it (the caller says
   * the dongle is not connected).
   */
  async ask(dongle: string, q: RecordingQuestion): Promise<RecordingReply | undefined> {
    const holder = await this.holderOf(dongle);
    if (holder === undefined || holder === this.node || !this.nats.connected) return undefined;
    let data: Uint8Array;
    try {
      data = (await this.nats.nc.request(SUBJECTS.recordings(holder), JSON.stringify({ dongle, ask: q }), { timeout: FORWARD_TIMEOUT_MS })).data;
    } catch (err) {
      const code = (err as NatsError).code;
      if (code === ErrorCode.NoResponders) return failure(503, `node ${holder}, which held the dongle's link, is gone; try again once the dongle has reconnected`);
      this.log.warn({ dongle, holder, error: (err as Error).message }, 'recording request to the node holding the dongle failed');
      return failure(504, `node ${holder}, which holds the dongle's link, did not answer in time`);
    }
    const p = parseJson(data, AgentMessage);
    if (p !== undefined && (p.t === 'rec_listing' || p.t === 'rec_chunk' || p.t === 'rec_error')) return p;
    this.nats.stats.badMessages++;
    return failure(502, `node ${holder}, which holds the dongle's link, answered something unreadable`);
  }

  /** A request from another node: asked of the link here, answered as the agent answered. */
  private async answer(data: Uint8Array): Promise<RecordingReply> {
    const m = parseJson(data, forwarded);
    // Validated as the message the link will send (its req number stands in for the link's own).
    const q = m === undefined ? undefined : BridgeMessage.safeParse({ ...(m.ask as object), req: 1 });
    if (m === undefined || q === undefined || !q.success || (q.data.t !== 'rec_list' && q.data.t !== 'rec_read')) {
      this.nats.stats.badMessages++;
      return failure(400, 'a malformed recording request from another node');
    }
    const link = this.linkOf(m.dongle);
    if (!link?.ready) return failure(503, `dongle "${m.dongle}" is not connected to node ${this.node} any more: try again`);
    const { req: _req, ...ask } = q.data;
    return link.recordings.ask(ask as RecordingQuestion);
  }
}

/** A reply made here, not by the agent (its req is not looked at: one request per NATS request). */
function failure(status: number, error: string): RecordingReply {
  return { t: 'rec_error', req: 1, status, error };
}
