/**
 * make bench-commands: a dongle's full command queue delivered on connect. N commands are queued for an
 * offline dongle (N = --max-queued-commands), then its agent (real process, simulated bus) connects and
 * the bridge delivers them paced. Measured: how long until every command has its final status, the rate,
 * and how long /healthz takes to answer meanwhile (the bridge's event loop staying free).
 */
import { startBridgeProcess } from '../test/helpers/bridge-process.js';
import { startAgentProcess } from '../test/helpers/processes.js';
import { getJson, metricValue } from '../test/helpers/sse-client.js';
import { median, writeResults, runBench } from './lib.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const SIZES = (process.env.BENCH_COMMANDS ?? '1000,10000').split(',').map(Number);

interface RunResult {
  commands: number;
  seconds: number;
  commands_per_s: number;
  succeeded: number;
  timed_out: number;
  healthz_p50_ms: number;
  healthz_max_ms: number;
}

const quantile = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
};

async function once(n: number): Promise<RunResult> {
  const bridge = await startBridgeProcess(['--max-queued-commands', String(n)]);
  try {
    const token = await bridge.admin.register('bench-cmd');
    let next = 0;
    const post = async (): Promise<void> => {
      while (next < n) {
        next++;
        const r = await bridge.admin.post('/api/v1/dongles/bench-cmd/commands', { type: 'send_frame', bus: 'can0', id: '0x123', data_hex: '01 02', timeout_s: 3600 });
        if (r.status !== 202) throw new Error(`command refused: ${r.status} ${JSON.stringify(r.body)}`);
      }
    };
    await Promise.all(Array.from({ length: 16 }, post));
    const agent = await startAgentProcess(['--sim', '--sim-rate', '50', '--bridge', bridge.base, '--token', token], { id: 'bench-cmd' });
    try {
      await agent.proc.waitForLog((l) => l.msg === 'uplink connected');
      const t0 = Date.now();
      const final = async (): Promise<{ ok: number; timedOut: number; all: number }> => {
        const m = (await getJson(bridge.base + '/metrics')).text;
        const v = (status: string): number => metricValue(m, 'canrelay_bridge_command_status_total', { status }) ?? 0;
        return { ok: v('succeeded'), timedOut: v('timed_out'), all: v('succeeded') + v('failed') + v('timed_out') };
      };
      const health: number[] = [];
      let f = await final();
      for (let i = 0; f.all < n && Date.now() - t0 < 600_000; i++) {
        const h0 = performance.now();
        await getJson(bridge.base + '/healthz');
        health.push(performance.now() - h0);
        await new Promise((r) => setTimeout(r, 20));
        if (i % 10 === 0) f = await final();
      }
      f = await final();
      const seconds = (Date.now() - t0) / 1000;
      return {
        commands: n,
        seconds: Math.round(seconds * 10) / 10,
        commands_per_s: Math.round(n / seconds),
        succeeded: f.ok,
        timed_out: f.timedOut,
        healthz_p50_ms: Math.round(quantile(health, 0.5) * 10) / 10,
        healthz_max_ms: Math.round(Math.max(...health) * 10) / 10,
      };
    } finally {
      await agent.proc.stop('SIGKILL');
    }
  } finally {
    await bridge.proc.stop('SIGKILL');
  }
}

async function main(): Promise<void> {
  const all: RunResult[] = [];
  for (let run = 0; run < RUNS; run++) {
    for (const n of SIZES) {
      const r = await once(n);
      process.stdout.write(`${JSON.stringify(r)}\n`);
      all.push(r);
    }
  }
  const md = [
    '# Queued commands delivered on connect (make bench-commands)',
    '',
    `Real processes on loopback: N commands queued for an offline dongle, then its agent (simulated bus) connects; the bridge delivers them paced (at most 32 in flight). Time from the agent's "uplink connected" to every command's final status, and /healthz answer times sampled every ~20 ms meanwhile. Medians of ${RUNS} runs on this machine (2 cores, shared and noisy).`,
    '',
    '| commands | seconds | commands/s | succeeded | timed_out | /healthz p50 ms | /healthz max ms |',
    '|---|---|---|---|---|---|---|',
    ...SIZES.map((n) => {
      const rs = all.filter((r) => r.commands === n);
      const med = (k: keyof RunResult): number => median(rs.map((r) => Number(r[k])));
      return `| ${n.toLocaleString('en')} | ${med('seconds')} | ${med('commands_per_s').toLocaleString('en')} | ${rs.map((r) => r.succeeded).join(', ')} | ${rs.map((r) => r.timed_out).join(', ')} | ${med('healthz_p50_ms')} | ${med('healthz_max_ms')} |`;
    }),
    '',
  ].join('\n');
  process.stdout.write(`\nwritten ${writeResults('command-flood', { runs: all }, md)}\n`);
}

runBench(main);
