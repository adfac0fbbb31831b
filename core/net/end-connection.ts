/**
 * Ends a connection after a last message. Node's servers keep their sockets half-open (allowHalfOpen),
 * and after an HTTP upgrade no HTTP timeout applies: a peer that never closes its side would hold the
 * socket and its descriptor for ever, one per refused attempt. So it is destroyed after a short grace.
 */
import type { Duplex } from 'node:stream';

/** Long enough for the last message to reach a client that reads it; short enough that refusals cannot pile up. */
export const END_GRACE_MS = 2000;

export function endConnection(socket: Duplex, last?: string): void {
  if (last === undefined) socket.end();
  else socket.end(last);
  setTimeout(() => socket.destroy(), END_GRACE_MS).unref();
}
