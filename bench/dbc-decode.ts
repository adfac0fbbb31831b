/**
 * make bench-dbc: the cost of DBC decoding at the intake.
 *  1. In process: decode cost per frame (ns) through the agent's SignalTable, a 50-message DBC over the
 *     57-id vehicle-like log (50 ids described, 7 not), every frame.
 *  2. The real agent: a log recorded at 50,000 frames/s replayed at its timing (`--replay-speed 1`) with
 *     that DBC (`--dbc`) and without, CPU % of one core and the unsampled frame count.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { CandumpReader } from '../core/can/candump.js';
import { SignalDecoder } from '../core/can/dbc-decode.js';
import { parseDbc } from '../core/can/dbc-parse.js';
import type { CanFrame } from '../core/can/frame.js';
import { SignalTable } from '../agent/signals/signal-table.js';
import { getJson, metricValue } from '../test/helpers/sse-client.js';
import { startAgentProcess, tempDir } from '../test/helpers/processes.js';
import { median, sampleProc, writeResults, writeVehicleLog, runBench } from './lib.js';

const RATE = 50_000;
const SECONDS = Number(process.env.BENCH_SECONDS ?? 15);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const MICRO_FRAMES = 2_000_000;

/** 50 messages on the log's ids, 8 signals each: Intel and Motorola, signed, scaled, a value table, a multiplexed pair. */
function writeDbc(path: string, ids: number[]): void {
  const out = ['VERSION ""', '', 'NS_ :', '', 'BS_:', '', 'BU_: ECU', ''];
  const vals: string[] = [];
  ids.forEach((id, k) => {
    out.push(`BO_ ${id} MSG_${k}: 8 ECU`);
    out.push(` SG_ SPEED_${k} : 0|16@1+ (0.01,0) [0|655.35] "km/h" ECU`);
    out.push(` SG_ RPM_${k} : 23|16@0+ (0.25,0) [0|16383.75] "rpm" ECU`);
    out.push(` SG_ TORQUE_${k} : 32|12@1- (0.5,-10) [-1034|1013.5] "Nm" ECU`);
    out.push(` SG_ ANGLE_${k} : 47|10@0- (0.1,0) [-51.2|51.1] "deg" ECU`);
    out.push(` SG_ GEAR_${k} : 48|3@1+ (1,0) [0|7] "" ECU`);
    out.push(` SG_ MODE_${k} M : 51|1@1+ (1,0) [0|1] "" ECU`);
    out.push(` SG_ TEMP_${k} m0 : 52|8@1+ (1,-40) [-40|215] "degC" ECU`);
    out.push(` SG_ PRESS_${k} m1 : 52|8@1+ (2,0) [0|510] "kPa" ECU`);
    out.push('');
    vals.push(`VAL_ ${id} GEAR_${k} 0 "P" 1 "R" 2 "N" 3 "D" 4 "S" ;`);
  });
  writeFileSync(path, [...out, ...vals, ''].join('\n'));
}

function logIds(file: string): { frames: CanFrame[]; ids: number[] } {
  const r = new CandumpReader();
  const frames: CanFrame[] = [];
  for (const rec of [...r.push(readFileSync(file)), ...r.end()]) if (rec.ok) frames.push(rec.frame);
  const ids = [...new Set(frames.map((f) => f.id))].sort((a, b) => a - b);
  return { frames, ids };
}

function micro(dbcFile: string, frames: CanFrame[]): Record<string, number> {
  const table = new SignalTable();
  table.use(new SignalDecoder([{ bus: undefined, db: parseDbc(readFileSync(dbcFile, 'utf8'), dbcFile) }]));
  for (let i = 0; i < 200_000; i++) table.frame(frames[i % frames.length]!); // warm-up (JIT)
  const before = { ...table.stats };
  const t0 = performance.now();
  for (let i = 0; i < MICRO_FRAMES; i++) table.frame(frames[i % frames.length]!);
  const ms = performance.now() - t0;
  const decoded = table.stats.frames - before.frames;
  return {
    ns_per_frame: Math.round((ms * 1e6) / MICRO_FRAMES),
    ns_per_described_frame: Math.round((ms * 1e6) / decoded),
    described_share_percent: Math.round((decoded / MICRO_FRAMES) * 100),
    values_per_described_frame: Math.round(((table.stats.values - before.values) / decoded) * 10) / 10,
  };
}

async function agentRun(log: string, frames: number, dbc: string | undefined): Promise<Record<string, number>> {
  const a = await startAgentProcess(['--replay', log, '--replay-speed', '1', ...(dbc ? ['--dbc', dbc] : [])]);
  const pid = a.proc.child.pid!;
  const count = async (): Promise<number> => metricValue((await getJson(a.base + '/metrics')).text, 'canrelay_can_frames_total', { bus: 'can0', direction: 'rx' }) ?? 0;
  const first = await count();
  const cpu0 = sampleProc(pid).cpuSeconds;
  const t0 = Date.now();
  let n = first;
  while (n < frames && Date.now() - t0 < 120_000) {
    await new Promise((r) => setTimeout(r, 200));
    n = await count();
  }
  const secs = (Date.now() - t0) / 1000;
  const cpu = sampleProc(pid).cpuSeconds - cpu0;
  const signals = dbc ? ((await getJson(a.base + '/api/v1/signals')).body.signals as unknown[]).length : 0;
  await a.proc.stop();
  return { frames_per_s: Math.round((n - first) / secs), cpu_percent: Math.round((cpu / secs) * 100), frames_lost: frames - n, signals_reported: signals };
}

async function main(): Promise<void> {
  const dir = tempDir('canrelay-bench-dbc-');
  const log = join(dir, 'bus.log');
  const frameCount = RATE * SECONDS;
  writeVehicleLog(log, frameCount, RATE);
  const { frames, ids } = logIds(log);
  const dbc = join(dir, 'fifty.dbc');
  writeDbc(dbc, ids.slice(0, 50));
  const m = micro(dbc, frames);
  process.stdout.write(`in process: ${JSON.stringify(m)}\n`);
  const withDbc: Record<string, number>[] = [];
  const without: Record<string, number>[] = [];
  for (let i = 0; i < RUNS; i++) {
    without.push(await agentRun(log, frameCount, undefined));
    withDbc.push(await agentRun(log, frameCount, dbc));
    process.stdout.write(`run ${i + 1}: without ${JSON.stringify(without.at(-1))} with ${JSON.stringify(withDbc.at(-1))}\n`);
  }
  const row = (label: string, k: string, runs: Record<string, number>[]): string =>
    `| ${label} | ${median(runs.map((r) => r[k]!)).toLocaleString('en')} | ${runs.map((r) => r[k]).join(', ')} |`;
  const md = `# DBC decoding at the intake (make bench-dbc)

A 57-id vehicle-like bus; a generated 50-message DBC (8 signals each: Intel and Motorola, signed, scaled,
a value table, a multiplexed pair) describes 50 of the ids. Every frame is decoded (unsampled).
Measured on this machine (2 cores, shared with other work while measuring: figures are noisy).

## In process: decode cost (SignalTable.frame, ${MICRO_FRAMES.toLocaleString('en')} frames)

| figure | value |
|---|---|
| ns per frame (all frames) | ${m.ns_per_frame} |
| ns per frame a DBC describes | ${m.ns_per_described_frame} |
| frames a DBC describes | ${m.described_share_percent} % |
| signal values per described frame | ${m.values_per_described_frame} |

At 50,000 frames/s that is ${((m.ns_per_frame! * RATE) / 1e7).toFixed(1)} % of one core for decoding.

## The agent at ${RATE.toLocaleString('en')} frames/s for ${SECONDS} s (\`--replay-speed 1\`), medians of ${RUNS} runs

| figure | median | runs |
|---|---|---|
${row('agent CPU without --dbc (% of one core)', 'cpu_percent', without)}
${row('agent CPU with the 50-message --dbc (% of one core)', 'cpu_percent', withDbc)}
${row('frames/s sustained with --dbc (unsampled counter)', 'frames_per_s', withDbc)}
${row('frames lost with --dbc (counted vs in the file)', 'frames_lost', withDbc)}
${row('signals in GET /api/v1/signals', 'signals_reported', withDbc)}
`;
  process.stdout.write(`\nwritten ${writeResults('dbc-decode', { micro: m, rate: RATE, seconds: SECONDS, without, with_dbc: withDbc }, md)}\n`);
}

runBench(main);
