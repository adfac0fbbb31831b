/**
 * Wires the socketcand server into a running agent: a frame tap on the FrameRouter (every frame of the
 * buses, unsampled: received, and transmitted by this gateway with who sent it), the TxQueue as its
 * transmit path when sending is allowed, its metrics, and the beacon.
 */
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { RateLimitedLog } from '../../core/log/rate-limited-log.js';
import type { FrameRouter } from '../frame-router.js';
import type { FrameSource } from '../sources/source.js';
import type { TxQueue } from '../tx-queue.js';
import { Beacon } from './beacon.js';
import { registerSocketcandMetrics } from './metrics.js';
import type { SocketcandConfig } from './options.js';
import { SocketcandServer } from './server.js';
import { SEND_MAX_WAIT_MS, type SocketcandTransmit } from './session.js';

const SEND_TOO_LATE = `waited ${SEND_MAX_WAIT_MS} ms for the bus (busy, no node acknowledging, or its controller's mode not read yet): not transmitted`;

/** Clients' sends through the agent's transmit queue: each with its 1 s deadline, withdrawn when the client goes. */
export function socketcandTransmit(tx: TxQueue): SocketcandTransmit {
  return {
    send: (f, sender, done) => tx.enqueue(f, done, Date.now() + SEND_MAX_WAIT_MS, SEND_TOO_LATE, sender),
    withdraw: (sender) => void tx.dropOwned(sender, 'droppedSenderGone', 'the socketcand client disconnected: not transmitted'),
  };
}

export interface RunningSocketcand {
  readonly port: number;
  close(): Promise<void>;
}

export async function startSocketcand(
  cfg: SocketcandConfig,
  parts: { dongleId: string; router: FrameRouter; source: FrameSource; tx: TxQueue; metrics: Registry; log: Logger },
): Promise<RunningSocketcand> {
  const { log } = parts;
  // Per message, at most one line a second: a flood of connections or refusals cannot flood the journal.
  const limiters = new Map<string, RateLimitedLog>();
  const emit = (level: 'info' | 'warn', msg: string, fields: Record<string, unknown>): void => {
    let l = limiters.get(msg);
    if (l === undefined) limiters.set(msg, (l = new RateLimitedLog(log, 1000)));
    l.write(level, fields, msg);
  };
  const server = new SocketcandServer({
    listen: cfg.listen,
    allow: cfg.allow,
    maxPendingBytes: cfg.maxPendingBytes,
    buses: () => parts.source.buses(),
    transmit: cfg.allowSend ? socketcandTransmit(parts.tx) : undefined,
    log: emit,
  });
  const addr = await server.start();
  const untap = parts.router.tap({ frame: (f, origin) => server.push(f, origin) }, 'all');
  registerSocketcandMetrics(parts.metrics, server.stats);
  const beacon = cfg.beacon ? new Beacon({ name: parts.dongleId, host: addr.host, port: addr.port, buses: () => parts.source.buses(), log: emit }) : undefined;
  beacon?.start();
  // An IPv6 address goes in brackets (RFC 3986), or its port cannot be told from it.
  const hostPort = `${addr.host.includes(':') ? `[${addr.host}]` : addr.host}:${addr.port}`;
  log.info({ listen: hostPort, url: `can://${hostPort}`, send: cfg.allowSend, allow: cfg.allow?.text ?? 'any' }, 'socketcand listening');
  if (!cfg.allow)
    log.warn('socketcand has no authentication and no --socketcand-allow list: anyone who reaches the port sees the bus; keep it on a trusted LAN or behind an SSH tunnel');
  return {
    port: addr.port,
    close: async () => {
      beacon?.stop();
      untap();
      await server.close();
    },
  };
}
