/**
 * make bench-socketcand: what the socketcand server costs the agent. A replay of a vehicle-like bus is fed
 * through a FIFO once K raw-mode socketcand clients (Node readers on loopback) are connected, so every
 * client should receive every frame; reports frames/s, agent CPU and RSS, frames each client received,
 * and clients cut. Paced (20,000 frames/s) and flat out (--replay-speed 0).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../test/helpers/processes.js';
import { RawClient, startReplayAgent, waitUntil } from '../test/helpers/socketcand.js';
import { median, sampleProc, writeResults, writeVehicleLog, runBench } from './lib.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const PACED_RATE = 20_000;
const PACED_SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const FLAT_FRAMES = Number(process.env.BENCH_MAX_FRAMES ?? 1_000_000);

/** Counts frames by their leading newline (replies such as < ok > have none). */
function countFrames(c: RawClient): () => number {
  let n = 0;
  c.socket.removeAllListeners('data');
  c.socket.on('data', (s: string) => {
    for (let i = s.indexOf('\n'); i >= 0; i = s.indexOf('\n', i + 1)) n++;
  });
  return () => n;
}

async function once(lines: string[], speed: string, clients: number): Promise<Record<string, number>> {
  const a = await startReplayAgent(['--replay-speed', speed, '--console-max-rate', '200']);
  const pid = a.proc.child.pid!;
  const counters: (() => number)[] = [];
  const conns: RawClient[] = [];
  // The replay only knows can0 once a frame has passed: the first line goes first.
  await a.write([lines[0]!]);
  await waitUntil(async () => (await a.metric('canrelay_can_frames_total', { bus: 'can0', direction: 'rx' })) === 1, 10_000, 'the first frame');
  for (let i = 0; i < clients; i++) {
    const c = await RawClient.connect(a.socketcandPort);
    await waitUntil(() => c.messages.length > 0, 5000, '< hi >');
    await c.request('< open can0 >');
    await c.request('< rawmode >');
    counters.push(countFrames(c));
    conns.push(c);
  }
  const n = lines.length - 1;
  const cpu0 = sampleProc(pid).cpuSeconds;
  const t0 = Date.now();
  let peak = 0;
  for (let i = 1; i < lines.length; i += 50_000) await a.write(lines.slice(i, i + 50_000));
  let count = 0;
  while (count < n + 1 && Date.now() - t0 < 300_000) {
    await new Promise((r) => setTimeout(r, 100));
    peak = Math.max(peak, sampleProc(pid).rssBytes);
    count = await a.metric('canrelay_can_frames_total', { bus: 'can0', direction: 'rx' });
  }
  const secs = (Date.now() - t0) / 1000;
  const p = sampleProc(pid);
  // Let the clients drain what was written before the last frame was counted.
  await waitUntil(() => counters.every((f, i) => f() >= n || conns[i]!.closed), 60_000, 'the clients to drain').catch(() => undefined);
  const received = counters.map((f) => f());
  const cut = await a.metric('canrelay_socketcand_clients_cut_total');
  for (const c of conns) c.close();
  await a.stop();
  return {
    clients,
    frames_per_s: Math.round(n / secs),
    cpu_percent: Math.round(((p.cpuSeconds - cpu0) / secs) * 100),
    rss_mib_peak: Math.round(Math.max(peak, p.rssBytes) / 1048576),
    frames_per_client_median: clients > 0 ? median(received) : 0,
    frames_missing_per_client_max: clients > 0 ? Math.max(...received.map((r) => n - r)) : 0,
    clients_cut: cut,
    seconds: Math.round(secs * 10) / 10,
  };
}

function table(title: string, byClients: Map<number, Record<string, number>[]>): string {
  const rows = [...byClients.entries()].map(([k, runs]) => {
    const m = (key: string): string => median(runs.map((r) => r[key]!)).toLocaleString('en');
    return `| ${k} | ${m('frames_per_s')} | ${m('cpu_percent')} | ${m('rss_mib_peak')} | ${m('frames_per_client_median')} | ${m('clients_cut')} |`;
  });
  return [
    `## ${title}`,
    '',
    '| socketcand clients | frames/s | agent CPU (% of a core) | peak RSS (MiB) | frames per client | clients cut |',
    '|---|---|---|---|---|---|',
    ...rows,
    '',
  ].join('\n');
}

async function main(): Promise<void> {
  const dir = tempDir('canrelay-bench-sc-');
  const pacedFile = join(dir, 'paced.log');
  const flatFile = join(dir, 'flat.log');
  writeVehicleLog(pacedFile, PACED_RATE * PACED_SECONDS + 1, PACED_RATE);
  writeVehicleLog(flatFile, FLAT_FRAMES + 1, PACED_RATE);
  const paced = readFileSync(pacedFile, 'utf8').trimEnd().split('\n');
  const flat = readFileSync(flatFile, 'utf8').trimEnd().split('\n');
  const pacedRuns = new Map<number, Record<string, number>[]>();
  const flatRuns = new Map<number, Record<string, number>[]>();
  for (let i = 0; i < RUNS; i++) {
    for (const k of [0, 1, 4]) {
      const r = await once(paced, '1', k);
      process.stdout.write(`paced, ${k} clients, run ${i + 1}: ${JSON.stringify(r)}\n`);
      pacedRuns.set(k, [...(pacedRuns.get(k) ?? []), r]);
    }
    for (const k of [0, 1]) {
      const r = await once(flat, '0', k);
      process.stdout.write(`flat out, ${k} clients, run ${i + 1}: ${JSON.stringify(r)}\n`);
      flatRuns.set(k, [...(flatRuns.get(k) ?? []), r]);
    }
  }
  const figures = {
    paced: { rate: PACED_RATE, seconds: PACED_SECONDS, runs: Object.fromEntries(pacedRuns) },
    flat_out: { frames: FLAT_FRAMES, runs: Object.fromEntries(flatRuns) },
  };
  const md = `# socketcand server (make bench-socketcand)

Raw-mode socketcand clients (Node readers on loopback, reading as fast as they can) connected before
the frames flow, so each should get every frame; the replay reads a vehicle-like log through a FIFO.
Medians of ${RUNS} run(s) on this machine (2 cores, shared and noisy: read orders of magnitude).

${table(`Paced: ${PACED_RATE.toLocaleString('en')} frames/s for ${PACED_SECONDS} s (\`--replay-speed 1\`)`, pacedRuns)}
${table(`Flat out: ${FLAT_FRAMES.toLocaleString('en')} frames with \`--replay-speed 0\``, flatRuns)}`;
  process.stdout.write(`\nwritten ${writeResults('socketcand', figures, md)}\n`);
}

runBench(main);
