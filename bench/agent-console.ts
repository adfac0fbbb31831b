/**
 * make bench (agent part): console intake from `--replay-speed 0` with 100 SSE clients and sampling on.
 * Reports frames/s sustained, CPU, RSS, and whether the unsampled frame count lost anything.
 */
import { join } from 'node:path';
import { getJson, metricValue, SseClient } from '../test/helpers/sse-client.js';
import { startAgentProcess, tempDir } from '../test/helpers/processes.js';
import { median, sampleProc, writeResults, writeVehicleLog, runBench } from './lib.js';

const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 100);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
/** Paced: a log recorded at 50,000 frames/s replayed at its own timing (--replay-speed 1). */
const PACED_RATE = 50_000;
const PACED_SECONDS = Number(process.env.BENCH_SECONDS ?? 15);
/** Flat out: --replay-speed 0, long enough to measure. */
const MAX_FRAMES = Number(process.env.BENCH_MAX_FRAMES ?? 4_000_000);

async function once(file: string, frames: number, speed: string): Promise<Record<string, number>> {
  const FRAMES = frames;
  const a = await startAgentProcess(['--replay', file, '--replay-speed', speed, '--console-max-rate', '200'], {});
  const pid = a.proc.child.pid!;
  const clients = await Promise.all(Array.from({ length: CLIENTS }, () => SseClient.connect(a.url + '?backlog=0')));
  const cpu0 = sampleProc(pid).cpuSeconds;
  const t0 = Date.now();
  let peak = 0;
  // The replay started before we connected: measure from here to the end, by the unsampled counter.
  const first = metricValue((await getJson(a.base + '/metrics')).text, 'canrelay_can_frames_total', { bus: 'can0', direction: 'rx' }) ?? 0;
  let count = first;
  while (count < FRAMES) {
    await new Promise((r) => setTimeout(r, 100));
    peak = Math.max(peak, sampleProc(pid).rssBytes);
    count = metricValue((await getJson(a.base + '/metrics')).text, 'canrelay_can_frames_total', { bus: 'can0', direction: 'rx' }) ?? 0;
    if (Date.now() - t0 > 300_000) break;
  }
  const secs = (Date.now() - t0) / 1000;
  const p = sampleProc(pid);
  const m = (await getJson(a.base + '/metrics')).text;
  const received = clients.map((c) => c.ofType('can_frame').length);
  for (const c of clients) c.close();
  await a.proc.stop();
  return {
    frames_per_s: Math.round((count - first) / secs),
    frames_counted: count,
    frames_lost: FRAMES - count,
    cpu_percent: Math.round(((p.cpuSeconds - cpu0) / secs) * 100),
    rss_mib_peak: Math.round(Math.max(peak, p.rssBytes) / 1048576),
    console_events_per_client_median: median(received),
    sampled_out: metricValue(m, 'canrelay_console_frames_sampled_out_total') ?? -1,
    seconds: Math.round(secs * 10) / 10,
  };
}

function table(title: string, runs: Record<string, number>[]): string {
  const row = (label: string, k: string): string => `| ${label} | ${median(runs.map((r) => r[k]!)).toLocaleString('en')} | ${runs.map((r) => r[k]).join(', ')} |`;
  return [
    `## ${title}`,
    '',
    '| figure | median | runs |',
    '|---|---|---|',
    row('frames/s sustained (unsampled counter)', 'frames_per_s'),
    row('agent CPU (% of one core)', 'cpu_percent'),
    row('agent peak RSS (MiB)', 'rss_mib_peak'),
    row('console events received per client', 'console_events_per_client_median'),
    row('frames lost (counted vs in the file)', 'frames_lost'),
    '',
  ].join('\n');
}

async function main(): Promise<void> {
  const dir = tempDir('canrelay-bench-');
  const paced = join(dir, 'paced.log');
  const flat = join(dir, 'flat.log');
  writeVehicleLog(paced, PACED_RATE * PACED_SECONDS, PACED_RATE);
  writeVehicleLog(flat, MAX_FRAMES, PACED_RATE);
  const pacedRuns: Record<string, number>[] = [];
  const maxRuns: Record<string, number>[] = [];
  for (let i = 0; i < RUNS; i++) {
    const p = await once(paced, PACED_RATE * PACED_SECONDS, '1');
    process.stdout.write(`paced run ${i + 1}: ${JSON.stringify(p)}\n`);
    pacedRuns.push(p);
    const m = await once(flat, MAX_FRAMES, '0');
    process.stdout.write(`flat-out run ${i + 1}: ${JSON.stringify(m)}\n`);
    maxRuns.push(m);
  }
  const figures = {
    clients: CLIENTS,
    paced: { rate: PACED_RATE, seconds: PACED_SECONDS, runs: pacedRuns },
    flat_out: { frames: MAX_FRAMES, runs: maxRuns },
    any_frame_lost: [...pacedRuns, ...maxRuns].some((r) => r.frames_lost !== 0),
  };
  const md = `# Agent console intake (make bench)

${CLIENTS} SSE clients connected to the agent's console, \`--console-max-rate 200\` (sampling on), a
57-id vehicle-like bus. Medians of ${RUNS} runs measured in one go on this machine (2 cores, shared and noisy).

${table(`Paced: ${PACED_RATE.toLocaleString('en')} frames/s for ${PACED_SECONDS} s (\`--replay-speed 1\`)`, pacedRuns)}
${table(`Flat out: ${MAX_FRAMES.toLocaleString('en')} frames with \`--replay-speed 0\``, maxRuns)}
Any frame lost: ${figures.any_frame_lost ? 'YES' : 'no'}.
`;
  process.stdout.write(`\nwritten ${writeResults('agent-console', figures, md)}\n`);
}

runBench(main);
