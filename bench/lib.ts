/** Shared bits of the benchmarks: process sampling from /proc, a synthetic bus log, result files. */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const TICKS = 100; // USER_HZ on Linux

export interface ProcSample {
  cpuSeconds: number;
  rssBytes: number;
  peakRssBytes: number;
}

export function sampleProc(pid: number): ProcSample {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const cpuSeconds = (Number(fields[11]) + Number(fields[12])) / TICKS;
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string): number => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(status)?.[1] ?? 0) * 1024;
  return { cpuSeconds, rssBytes: kb('VmRSS'), peakRssBytes: kb('VmHWM') };
}

/**
 * A candump -L log shaped like a car's bus (a few 100 Hz ids, many 10 Hz, some 1 Hz; cf. the
 * shared capture), `n` frames long, with timestamps at `rate` frames/s.
 */
export function writeVehicleLog(path: string, n: number, rate: number): void {
  const ids: number[] = [];
  for (let i = 0; i < 6; i++) ids.push(0x0c0 + i * 0x10, 0x0c0 + i * 0x10); // 100 Hz class, doubled weight
  for (let i = 0; i < 40; i++) ids.push(0x200 + i * 7);
  for (let i = 0; i < 11; i++) ids.push(0x500 + i * 3);
  const parts: string[] = [];
  let t = 1_700_000_000 * 1e6;
  const step = 1e6 / rate;
  for (let i = 0; i < n; i++) {
    const id = ids[(i * 7919) % ids.length]!;
    const us = Math.round(t);
    const data = (((i & 0xffff) * 2654435761) >>> 0).toString(16).toUpperCase().padStart(8, '0') + '00FF00FF';
    parts.push(`(${Math.floor(us / 1e6)}.${String(us % 1e6).padStart(6, '0')}) can0 ${id.toString(16).toUpperCase().padStart(3, '0')}#${data}`);
    t += step;
  }
  writeFileSync(path, parts.join('\n') + '\n');
}

export function writeResults(name: string, figures: Record<string, unknown>, markdown: string): string {
  const dir = join(process.cwd(), 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `${name}.json`), JSON.stringify({ at: new Date().toISOString(), ...figures }, null, 2) + '\n');
  writeFileSync(join(dir, `${name}.md`), markdown);
  return join(dir, `${name}.md`);
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/**
 * Runs a bench's main: exit 0 when it is done (fake agents, timers and pools would otherwise keep the
 * process alive), 1 with the error when it fails.
 */
export function runBench(main: () => Promise<void>): void {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
