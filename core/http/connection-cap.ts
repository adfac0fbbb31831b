/**
 * The HTTP server's connection cap (--max-connections). Only console streams and downloads had caps of
 * their own, and a connection holding unfinished request headers costs ~22 KB for the 66 s headersTimeout
 * (Node keeps up to 16 KiB of them): 6,000 from one LAN host took the agent from 69 to 198 MB, past its
 * unit's MemoryMax, and the relay stopped until systemd restarted it. At the cap Node closes a new
 * connection at once; the open ones, and the data plane, go on.
 */
import type { Server } from 'node:http';
import type { Logger } from 'pino';
import { RateLimitedLog } from '../log/rate-limited-log.js';

/** Connections closed at the cap since start (metrics). */
export interface ConnectionCap {
  readonly refused: number;
}

export function capConnections(server: Server, max: number, log: Logger): ConnectionCap {
  server.maxConnections = max;
  const said = new RateLimitedLog(log, 60_000);
  const cap = { refused: 0 };
  server.on('drop', (d?: { remoteAddress?: string }) => {
    cap.refused++;
    said.warn(
      { code: 'http_connections_full', max_connections: max, remote: d?.remoteAddress },
      `HTTP connection closed at once: --max-connections ${max} are open (held by clients that do not finish their requests?); raise it if they are real`,
    );
  });
  return cap;
}
