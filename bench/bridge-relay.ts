/**
 * make bench (bridge part): frames relayed end to end, agent A (replay) → bridge → agent B, all real
 * processes on loopback. Paced runs at fixed rates give the added latency (A's receive time to B's
 * transmit time, one clock: same host) and whether anything was lost; a flat-out run gives the highest
 * sustained rate with zero loss (the replay waits while A's uplink is backed up).
 */
import { join } from 'node:path';
import { startBridgeProcess } from '../test/helpers/bridge-process.js';
import { startAgentProcess, tempDir } from '../test/helpers/processes.js';
import { getJson, metricValue } from '../test/helpers/sse-client.js';
import { median, sampleProc, writeResults, writeVehicleLog, runBench } from './lib.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const PACED = (process.env.BENCH_RATES ?? '8000,50000,100000').split(',').map(Number);
// 10 s: B keeps the last 65,536 latency samples, so at 8,000 frames/s the warm-up second falls out.
const PACED_SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const FLAT_FRAMES = Number(process.env.BENCH_FLAT_FRAMES ?? 1_500_000);

interface RunResult {
  rate: number | 'flat';
  frames: number;
  delivered: number;
  lost: number;
  /** Of the lost: dropped for the age rule (--relay-max-age-ms at B, --backlog-max-age-ms at the bridge). */
  too_old: number;
  frames_per_s: number;
  p50_ms: number;
  p99_ms: number;
  bridge_cpu_percent: number;
}

async function once(log: string, frames: number, speed: string, rate: number | 'flat'): Promise<RunResult> {
  const bridge = await startBridgeProcess(['--backlog-max-frames', '200000']);
  const [ta, tb] = [await bridge.admin.register('bench-a'), await bridge.admin.register('bench-b')];
  await bridge.admin.group('bench', 'bench-a', 'bench-b');
  const b = await startAgentProcess(['--sim', '--sim-rate', '1', '--bridge', bridge.base, '--token', tb, '--history-seconds', '5'], { id: 'bench-b' });
  await b.proc.waitForLog((l) => l.msg === 'uplink connected');
  const a = await startAgentProcess(['--replay', log, '--replay-speed', speed, '--bridge', bridge.base, '--token', ta, '--history-seconds', '5'], { id: 'bench-a' });
  const bridgePid = bridge.proc.child.pid!;
  const txAtB = async (): Promise<number> => metricValue((await getJson(b.base + '/metrics')).text, 'canrelay_can_frames_total', { bus: 'can0', direction: 'tx' }) ?? 0;
  let first = 0;
  let firstAt = 0;
  let cpu0 = 0;
  let n = 0;
  let lastChange = Date.now();
  // Until everything arrived, or nothing moved for 5 s (then the rest is lost).
  while (n < frames && Date.now() - lastChange < 5000) {
    // Poll gently: a scrape costs B a sort of its latency samples, which would show up as latency.
    await new Promise((r) => setTimeout(r, 250));
    const now = await txAtB();
    if (now !== n) lastChange = Date.now();
    if (firstAt === 0 && now > 0) {
      firstAt = Date.now();
      first = now;
      cpu0 = sampleProc(bridgePid).cpuSeconds;
    }
    n = now;
  }
  const secs = (Date.now() - firstAt) / 1000;
  const cpu = sampleProc(bridgePid).cpuSeconds - cpu0;
  const m = (await getJson(b.base + '/metrics')).text;
  const bm = (await getJson(bridge.base + '/metrics')).text;
  const tooOld =
    (metricValue(m, 'canrelay_uplink', { kind: 'tx_dropped_too_old' }) ?? 0) +
    (metricValue(bm, 'canrelay_bridge_frames_dropped_total', { group: 'bench', side: 'b', reason: 'too_old' }) ?? 0);
  const result: RunResult = {
    rate,
    frames,
    delivered: n,
    lost: frames - n,
    too_old: tooOld,
    frames_per_s: Math.round((n - first) / secs),
    p50_ms: metricValue(m, 'canrelay_uplink', { kind: 'relay_latency_p50_ms' }) ?? NaN,
    p99_ms: metricValue(m, 'canrelay_uplink', { kind: 'relay_latency_p99_ms' }) ?? NaN,
    bridge_cpu_percent: Math.round((cpu / secs) * 100),
  };
  await a.proc.stop();
  await b.proc.stop();
  await bridge.proc.stop();
  return result;
}

async function main(): Promise<void> {
  const dir = tempDir('canrelay-relay-bench-');
  const all: RunResult[] = [];
  for (let run = 0; run < RUNS; run++) {
    for (const rate of PACED) {
      const log = join(dir, `paced-${rate}.log`);
      if (run === 0) writeVehicleLog(log, rate * PACED_SECONDS, rate);
      const r = await once(log, rate * PACED_SECONDS, '1', rate);
      process.stdout.write(`${JSON.stringify(r)}\n`);
      all.push(r);
    }
    const flat = join(dir, 'flat.log');
    if (run === 0) writeVehicleLog(flat, FLAT_FRAMES, 100_000);
    const r = await once(flat, FLAT_FRAMES, '0', 'flat');
    process.stdout.write(`${JSON.stringify(r)}\n`);
    all.push(r);
  }
  const rows = [...PACED, 'flat' as const].map((rate) => {
    const rs = all.filter((r) => r.rate === rate);
    const med = (k: keyof RunResult): number => median(rs.map((r) => Number(r[k])));
    return { rate, runs: rs, med };
  });
  const md = [
    '# End-to-end relay A → bridge → B (make bench)',
    '',
    `Real processes on loopback: agent A replays a 57-id log, the bridge relays, agent B transmits (its source accepts tx). Latency is A's receive time to B's transmit time (one host, one clock), over the last 65,536 frames of each run (at 8,000 frames/s the last 8 of 10 s, so the warm-up is left out). Medians of ${RUNS} runs measured in one go on this machine (2 cores, shared and noisy).`,
    '',
    '| offered | frames/s delivered | lost (all runs) | of which too old | p50 ms | p99 ms | bridge CPU % |',
    '|---|---|---|---|---|---|---|',
    ...rows.map(
      ({ rate, runs, med }) =>
        `| ${rate === 'flat' ? `flat out (${FLAT_FRAMES.toLocaleString('en')} frames, --replay-speed 0)` : `${rate.toLocaleString('en')} frames/s for ${PACED_SECONDS} s`} | ${med('frames_per_s').toLocaleString('en')} | ${runs.map((r) => r.lost).join(', ')} | ${runs.map((r) => r.too_old).join(', ')} | ${med('p50_ms').toFixed(1)} | ${med('p99_ms').toFixed(1)} | ${med('bridge_cpu_percent')} |`,
    ),
    '',
  ].join('\n');
  process.stdout.write(`\nwritten ${writeResults('bridge-relay', { runs: all }, md)}\n`);
}

runBench(main);
