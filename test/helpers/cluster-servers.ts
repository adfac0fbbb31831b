/**
 * What every cluster test file starts the same way: a real nats-server and PostgreSQL for the file (before
 * its first test; stopped after its last, with every process it tracked SIGKILLed first), and the agent
 * figures the cluster tests read from /metrics.
 */
import { after, before } from 'node:test';
import { ensureNatsServer, NatsServer } from './nats.js';
import { PostgresServer } from './postgres.js';
import type { StartedAgent } from './processes.js';
import { getJson, metricValue } from './sse-client.js';

type Stoppable = { proc: { stop(s?: NodeJS.Signals): Promise<unknown> } };

export interface ClusterServers {
  /** Set before the file's first test. */
  nats: NatsServer;
  pg: PostgresServer;
  /** Registers a started bridge or agent to be killed after the file. */
  track<T extends Stoppable>(p: T): T;
  /** Runs after the file, before the tracked processes are killed (e.g. closing SSE clients). */
  onStop(f: () => void): void;
}

export function clusterServers(natsArgs: string[] = []): ClusterServers {
  const procs: Stoppable[] = [];
  const stops: Array<() => void> = [];
  const s = {
    track: <T extends Stoppable>(p: T): T => (procs.push(p), p),
    onStop: (f: () => void) => void stops.push(f),
  } as ClusterServers;
  before(async () => {
    ensureNatsServer();
    s.nats = await NatsServer.start(natsArgs);
    s.pg = await PostgresServer.start();
  });
  after(async () => {
    for (const f of stops) f();
    for (const p of procs) await p.proc.stop('SIGKILL');
    await s.nats?.stop();
    await s.pg?.stop();
  });
  return s;
}

export const metricsText = async (base: string): Promise<string> => (await getJson(base + '/metrics')).text;

/** canrelay_can_frames_total of one bus and direction on an agent. */
export const agentFrames = async (a: StartedAgent, bus: string, dir: 'rx' | 'tx'): Promise<number> =>
  metricValue(await metricsText(a.base), 'canrelay_can_frames_total', { bus, direction: dir }) ?? 0;

/** canrelay_uplink{kind} on an agent (NaN while it has none). */
export const agentUplink = async (a: StartedAgent, kind: string): Promise<number> => metricValue(await metricsText(a.base), 'canrelay_uplink', { kind }) ?? NaN;

/**
 * Every frame A sent, as B's figures account for it: transmitted on can1, dropped at B (counted), or
 * lost on the way (a sequence gap); duplicates and late arrivals are taken out. `total` equals the frames
 * A sent when none went missing uncounted.
 */
export async function framesAccountedAtB(b: StartedAgent): Promise<{ tx: number; txDropped: number; gaps: number; dups: number; reordered: number; total: number }> {
  const tx = await agentFrames(b, 'can1', 'tx');
  const gaps = await agentUplink(b, 'relay_seq_gaps');
  const dups = await agentUplink(b, 'relay_seq_duplicates');
  const reordered = await agentUplink(b, 'relay_seq_reordered');
  let txDropped = 0;
  for (const k of ['tx_failed', 'tx_dropped_busy', 'tx_dropped_too_old', 'tx_dropped_queue_full']) txDropped += await agentUplink(b, k);
  return { tx, txDropped, gaps, dups, reordered, total: tx + txDropped - dups + gaps - reordered };
}
