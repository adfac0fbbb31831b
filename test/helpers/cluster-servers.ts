/**
 * What every cluster test file starts the same way: a real nats-server and PostgreSQL for the file (before
 * its first test; stopped after its last, with every process it tracked SIGKILLed first), and the agent
 * figures the cluster tests read from /metrics.
 */
import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import type { StartedBridge } from './bridge-process.js';
import { ensureNatsServer, NatsServer } from './nats.js';
import { PostgresServer } from './postgres.js';
import type { StartedAgent } from './processes.js';
import { getJson, metricValue, type SseClient } from './sse-client.js';

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
 * A sent when none went missing uncounted — however many went missing counted: a gap is "accounted", so
 * `total` alone says nothing of how much was lost (checkNodeLoss bounds that).
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

/** A's and B's figures with the node A is on frozen, just before its SIGKILL (`freezeBeforeKill`). */
export interface AtNodeLoss {
  /** A's frames the node had acknowledged: the first `acked` of A's file. */
  acked: number;
  /** B's frames transmitted on can1 (the first `tx` of A's file: no gap nor duplicate yet, checked). */
  tx: number;
  dups: number;
}

/**
 * SIGSTOPs `node` (A's) and reads, once they have settled, how many of A's frames it acknowledged (A's
 * frames_acked: the acks it wrote before it froze are in A's socket, read by A's next turns; no more
 * come) and how many B transmitted (what it delivered, drained through NATS and node 2 to B). Settled:
 * two reads in a row equal, each a full request to both agents. The caller then SIGKILLs the node.
 */
export async function freezeBeforeKill(node: StartedBridge, a: StartedAgent, b: StartedAgent): Promise<AtNodeLoss> {
  node.proc.child.kill('SIGSTOP');
  const read = async (): Promise<AtNodeLoss & { gaps: number }> => ({
    acked: await agentUplink(a, 'frames_acked'),
    tx: await agentFrames(b, 'can1', 'tx'),
    dups: await agentUplink(b, 'relay_seq_duplicates'),
    gaps: await agentUplink(b, 'relay_seq_gaps'),
  });
  const deadline = Date.now() + 20_000;
  let prev = await read();
  for (;;) {
    await new Promise((r) => setTimeout(r, 200));
    const cur = await read();
    if (cur.acked === prev.acked && cur.tx === prev.tx) {
      assert.deepEqual({ gaps: cur.gaps, dups: cur.dups }, { gaps: 0, dups: 0 }, 'before the node loss B had every frame of A once, in order');
      return { acked: cur.acked, tx: cur.tx, dups: cur.dups };
    }
    assert.ok(Date.now() < deadline, `A's acknowledged and B's transmitted frames settle with the node frozen: ${JSON.stringify(cur)}`);
    prev = cur;
  }
}

/** The indexes (processes.ts writeCandumpLog) of the frames B's console shows transmitted on can1, in order, duplicates included. */
export const txIndexes = (bc: SseClient): number[] =>
  bc.events.filter((e) => e.event === 'can_frame' && e.json.direction === 'tx' && e.json.bus === 'can1').map((e) => Number.parseInt(String(e.json.data_hex).replace(/ /g, ''), 16));

/**
 * What losing the node A was on may cost (docs/cluster.md "Losing a node"): only the frames it had
 * acknowledged to A and not yet delivered — frames `at.tx` … `at.acked - 1` of A's file (none when B
 * already had them all: a node relays a batch before its coalesced ack, so B may be ahead of A's acks).
 * Every frame it had not acknowledged, A resends, and it reaches B: those B did not have at the kill are
 * transmitted after it (duplicates of those it had are allowed, and counted); so is the file's last frame.
 * `bc`: B's console (every transmitted frame on it, unsampled).
 */
export async function checkNodeLoss(n: number, at: AtNodeLoss, a: StartedAgent, b: StartedAgent, bc: SseClient): Promise<string> {
  for (const k of ['frames_dropped_buffer_full', 'frames_dropped_too_old', 'frames_dropped_bad_time'])
    assert.equal(await agentUplink(a, k), 0, `A dropped none of its frames (${k})`);
  const r = await framesAccountedAtB(b);
  assert.equal(r.txDropped, 0, 'B dropped none at transmit');
  await bc.waitFor(
    (ev) => ev.filter((e) => e.event === 'can_frame' && e.json.direction === 'tx' && e.json.bus === 'can1').length >= r.tx,
    20_000,
    "every frame B transmitted on B's console",
  );
  const transmitted = txIndexes(bc);
  assert.equal(transmitted.length, r.tx, "B's console shows each transmitted frame (its counter's figure)");
  const lost = r.gaps - r.reordered;
  const mayLose = Math.max(0, at.acked - at.tx);
  assert.ok(lost <= mayLose, `frames lost (${lost}) are at most those node 1 had acknowledged to A (${at.acked}) and not delivered to B (${at.tx} transmitted): ${mayLose}`);
  const freshAfter = r.tx - at.tx - (r.dups - at.dups);
  const owed = n - Math.max(at.acked, at.tx);
  assert.ok(freshAfter >= owed, `after the kill B transmitted ${freshAfter} frames (duplicates not counted): at least the ${owed} node 1 had neither acknowledged nor delivered`);
  const seen = new Set(transmitted);
  assert.ok(seen.has(n - 1), `the file's last frame (${n - 1}) reached B`);
  const missing = Array.from({ length: n }, (_, i) => i).filter((i) => !seen.has(i));
  const outside = missing.filter((i) => i < at.tx || i >= at.acked);
  assert.deepEqual(outside.slice(0, 10), [], `${outside.length} frames never transmitted on B outside those node 1 acknowledged and never delivered (${at.tx} … ${at.acked - 1})`);
  assert.equal(missing.length, lost, `the frames never transmitted on B (${missing.length}) are B's counted losses (gaps − reordered ${lost})`);
  return `acked by node 1 at the kill ${at.acked}, transmitted at B ${at.tx}; after: lost ${lost}, transmitted ${r.tx - at.tx} (${r.dups - at.dups} duplicates)`;
}
