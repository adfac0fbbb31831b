/**
 * What a test file started, stopped when the file ends (even when a test failed half-way): processes are
 * SIGKILLed, SSE clients closed. `track(x)` returns x, so it wraps a start: `track(await startAgentProcess(…))`.
 */
import { after } from 'node:test';
import type { SseClient } from './sse-client.js';

interface Stoppable {
  proc: { stop(signal?: NodeJS.Signals): Promise<unknown> };
}

export function cleanupAfter(): { track<T extends Stoppable>(p: T): T; client(c: SseClient): SseClient } {
  const procs: Stoppable[] = [];
  const clients: SseClient[] = [];
  after(async () => {
    for (const c of clients) c.close();
    for (const p of procs) await p.proc.stop('SIGKILL');
  });
  return {
    track: (p) => (procs.push(p), p),
    client: (c) => (clients.push(c), c),
  };
}
