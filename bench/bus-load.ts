/**
 * make bench (bus load part): what the bus-health accounting costs on the frame path — exact bit counting
 * with stuff bits and CRC (core/can/bit-count.ts) and the per-bus sums (agent/bus-health) — for every
 * frame, unsampled. Measured in-process on the same BusHealthMonitor.frame() the router calls, over a
 * vehicle-like mix (standard and extended ids, 0-8 bytes, some FD), as CPU time per frame, and reported as
 * the share of one core it takes at 50,000 frames/s. The target: under 5 %.
 */
import { cpuUsage } from 'node:process';
import { BusHealthMonitor } from '../agent/bus-health/bus-health-monitor.js';
import type { CanFrame } from '../core/can/frame.js';
import { median, writeResults } from './lib.js';

const RATE = 50_000;
const FRAMES = Number(process.env.BENCH_BUSLOAD_FRAMES ?? 2_000_000);
const RUNS = Number(process.env.BENCH_RUNS ?? 5);

function mix(n: number): CanFrame[] {
  const out: CanFrame[] = [];
  let seed = 7;
  const rnd = (m: number): number => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) % m;
  for (let i = 0; i < n; i++) {
    const ext = i % 5 === 0;
    const fd = i % 17 === 0;
    const len = fd ? [12, 16, 32, 64][rnd(4)]! : rnd(4) === 0 ? rnd(9) : 8;
    const data = Uint8Array.from({ length: len }, () => (rnd(3) === 0 ? 0 : rnd(256)));
    out.push({
      bus: i % 3 === 0 ? 'can1' : 'can0',
      id: rnd(ext ? 0x20000000 : 0x800),
      ext,
      rtr: false,
      err: false,
      fd,
      brs: fd,
      esi: false,
      dlc: len,
      data,
      tsUs: i,
      direction: 'rx',
    });
  }
  return out;
}

function once(frames: CanFrame[]): number {
  const mon = new BusHealthMonitor({ buses: () => ['can0', 'can1'], linkState: () => 'up', flagBitrates: new Map(), intervalSeconds: 5, publish: () => {}, log: () => {} });
  const c0 = cpuUsage();
  for (let done = 0; done < FRAMES; ) {
    for (let i = 0; i < frames.length && done < FRAMES; i++, done++) mon.frame(frames[i]!);
  }
  const c = cpuUsage(c0);
  return (c.user + c.system) / FRAMES; // µs of CPU per frame
}

const frames = mix(10_000);
once(frames); // warm up the JIT
const perFrameUs: number[] = [];
for (let r = 0; r < RUNS; r++) perFrameUs.push(once(frames));
const us = median(perFrameUs);
const corePct = ((us * RATE) / 1e6) * 100;
const md = [
  '# Bus load accounting (bench/bus-load.ts)',
  '',
  `Exact bit counting and per-bus sums for every frame, ${FRAMES.toLocaleString('en')} frames per run, ${RUNS} runs, in-process.`,
  '',
  '| figure | median | runs |',
  '|---|---|---|',
  `| CPU per frame (µs) | ${us.toFixed(3)} | ${perFrameUs.map((x) => x.toFixed(3)).join(', ')} |`,
  `| share of one core at ${RATE.toLocaleString('en')} frames/s | ${corePct.toFixed(2)} % | ${perFrameUs.map((x) => ((x * RATE) / 1e4).toFixed(2)).join(', ')} |`,
  '',
  `Target: under 5 % of one core at ${RATE.toLocaleString('en')} frames/s — ${corePct < 5 ? 'met' : 'NOT met'}.`,
  '',
].join('\n');
console.log(md);
writeResults('bus-load', { frames: FRAMES, runs: RUNS, cpu_us_per_frame: perFrameUs, median_us: us, core_percent_at_50k: corePct }, md);
