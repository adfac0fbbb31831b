/** A NatsLink without a server, for unit tests of the cluster parts: subscriptions by subject, messages delivered by hand, publishes recorded. */
import type { Msg } from 'nats';
import type { NatsLink } from '../../cloud-bridge/cluster/nats-connection.js';

export function fakeNats(): { link: NatsLink; deliver(subject: string, data: Uint8Array): void; published: string[]; responses: string[] } {
  const handlers = new Map<string, (m: Msg) => void>();
  const published: string[] = [];
  /** What handlers answered to requests delivered (msg.respond), as text. */
  const responses: string[] = [];
  const sub = { unsubscribe: () => undefined };
  const link = {
    nc: {
      subscribe: (subject: string, opts: { callback: (err: unknown, m: Msg) => void }) => (handlers.set(subject, (m) => opts.callback(null, m)), sub),
      publish: (subject: string) => void published.push(subject),
    },
    subscribe: (subject: string, handle: (m: Msg) => void) => (handlers.set(subject, handle), sub),
    connected: true,
    stats: { connected: true, disconnects: 0, reconnects: 0, badMessages: 0, failedOps: 0, callbackErrors: 0 },
    onReconnect: () => undefined,
    publishSoon: (subject: string) => void published.push(subject),
    atTurnEnd: (f: () => void) => void setImmediate(f),
    failed: () => undefined,
  };
  return {
    link: link as unknown as NatsLink,
    deliver: (subject, data) =>
      handlers.get(subject)!({
        subject,
        data,
        respond: (d: string | Uint8Array) => (responses.push(typeof d === 'string' ? d : Buffer.from(d).toString('utf8')), true),
      } as unknown as Msg),
    published,
    responses,
  };
}
