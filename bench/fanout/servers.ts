/**
 * The four servers make bench-fanout compares, each started the same way: nchan (Debian's nginx +
 * libnginx-mod-nchan, one worker) and a minimal better-sse server, both fed by the bench's publisher; the
 * canrelay agent console on --sim; the canrelay bridge's dongle console fed by an agent on --sim.
 * Every server hands back the pid whose CPU and memory are measured, the SSE URL and how to stop it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync, mkdirSync, chmodSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { join } from 'node:path';
import { startBridgeProcess, ADMIN_TOKEN } from '../../test/helpers/bridge-process.js';
import { freePort, startAgentProcess, tempDir } from '../../test/helpers/processes.js';

export interface RunningServer {
  name: string;
  /** The process whose CPU and RSS are the server's. */
  pid: number;
  sseUrl: string;
  headers: Record<string, string>;
  /** Set for servers fed by the bench's publisher: POSTs one event's text. */
  publishUrl?: string;
  /** Extra figures read after the run (e.g. the console's sampled-out counter). */
  after?: () => Promise<Record<string, number>>;
  stop(): Promise<void>;
}

export type ServerName = 'nchan' | 'better-sse' | 'agent' | 'bridge';

function waitExit(p: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (p.exitCode !== null || p.signalCode !== null) return resolve();
    p.once('exit', () => resolve());
    p.kill('SIGTERM');
    setTimeout(() => p.kill('SIGKILL'), 5000).unref();
  });
}

async function waitFor<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function httpStatus(url: string, method = 'GET'): Promise<number | undefined> {
  return new Promise((resolve) => {
    const r = request(url, { method, timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    r.on('error', () => resolve(undefined));
    r.on('timeout', () => r.destroy());
    r.end();
  });
}

export async function startNchan(rate: number): Promise<RunningServer> {
  const dir = tempDir('canrelay-bench-nchan-');
  chmodSync(dir, 0o755);
  mkdirSync(join(dir, 'tmp'), { recursive: true, mode: 0o777 });
  const port = await freePort();
  // One worker, as the issue measured; the message buffer holds a few seconds, like the console ring.
  writeFileSync(
    join(dir, 'nginx.conf'),
    `load_module /usr/lib/nginx/modules/ngx_nchan_module.so;
worker_processes 1;
worker_rlimit_nofile 16384;
${process.getuid?.() === 0 ? 'user nobody nogroup;' : ''}
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path ${dir}/tmp/body;
  proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fastcgi;
  uwsgi_temp_path ${dir}/tmp/uwsgi;
  scgi_temp_path ${dir}/tmp/scgi;
  server {
    listen 127.0.0.1:${port} backlog=4096;
    location = /sub {
      nchan_subscriber eventsource;
      nchan_channel_id bench;
      nchan_eventsource_event can_frame;
      # Like a canrelay console without Last-Event-ID: a new subscriber starts with new messages (the default,
      # oldest, would first send every buffered message to each of hundreds of connecting clients).
      nchan_subscriber_first_message newest;
    }
    location = /pub {
      nchan_publisher;
      nchan_channel_id bench;
      nchan_message_buffer_length ${Math.max(100, rate * 5)};
      nchan_message_timeout 60s;
    }
  }
}
`,
  );
  const p = spawn('nginx', ['-p', dir, '-c', join(dir, 'nginx.conf'), '-g', `daemon off; pid ${dir}/nginx.pid; error_log ${dir}/error.log warn;`], { stdio: 'ignore' });
  const base = `http://127.0.0.1:${port}`;
  await waitFor('nchan to listen', async () =>
    p.exitCode !== null
      ? (() => {
          throw new Error(`nginx exited: ${safeRead(join(dir, 'error.log'))}`);
        })()
      : (await httpStatus(base + '/nothing')) !== undefined
        ? true
        : undefined,
  );
  // The worker is the master's only child: its CPU and memory are nchan's.
  const worker = await waitFor('the nginx worker', () => {
    const kids = safeRead(`/proc/${p.pid}/task/${p.pid}/children`).trim().split(/\s+/).filter(Boolean).map(Number);
    return kids.length === 1 ? kids[0] : undefined;
  });
  return { name: 'nchan', pid: worker, sseUrl: base + '/sub', headers: {}, publishUrl: base + '/pub', stop: () => waitExit(p) };
}

function safeRead(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

export async function startBetterSse(prefix: string, script: string): Promise<RunningServer> {
  const p = spawn(process.execPath, [script], { env: { ...process.env, BETTER_SSE_PREFIX: prefix }, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  p.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
  const port = await waitFor('better-sse to listen', () => {
    if (p.exitCode !== null) throw new Error('the better-sse server exited; is better-sse installed (make bench-fanout installs it)?');
    const m = /"port":(\d+)/.exec(out);
    return m ? Number(m[1]) : undefined;
  });
  const base = `http://127.0.0.1:${port}`;
  return { name: 'better-sse', pid: p.pid!, sseUrl: base + '/sub', headers: {}, publishUrl: base + '/pub', stop: () => waitExit(p) };
}

async function scrape(base: string, metric: string): Promise<number> {
  const text = await fetch(base + '/metrics').then((r) => r.text());
  let sum = 0;
  for (const line of text.split('\n')) if (line.startsWith(metric + ' ') || line.startsWith(metric + '{')) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  return sum;
}

/** canrelay agents are started with this rate on the console before sampling: far above R, so nothing is sampled out. */
const consoleMaxRate = (rate: number): string => String(Math.max(1000, rate * 4));

export async function startAgentConsole(rate: number, nodeArgs: string[]): Promise<RunningServer> {
  const a = await startAgentProcess(['--sim', '--sim-rate', String(rate), '--console-max-rate', consoleMaxRate(rate)], { env: nodeEnv('canrelay-agent'), nodeArgs });
  return {
    name: 'agent',
    pid: a.proc.child.pid!,
    sseUrl: a.url,
    headers: {},
    after: async () => ({ sampled_out: await scrape(a.base, 'canrelay_console_frames_sampled_out_total') }),
    stop: async () => void (await a.proc.stop()),
  };
}

export async function startBridgeConsole(rate: number, nodeArgs: string[]): Promise<RunningServer> {
  const b = await startBridgeProcess(['--console-max-rate', consoleMaxRate(rate)], { env: nodeEnv('canrelay-bridge'), nodeArgs });
  const token = await b.admin.register('bench-gw');
  const a = await startAgentProcess(['--sim', '--sim-rate', String(rate), '--console-max-rate', consoleMaxRate(rate), '--bridge', b.base, '--token', token], {
    id: 'bench-gw',
    env: nodeEnv('canrelay-agent'),
  });
  await a.proc.waitForLog((l) => l.msg === 'uplink connected');
  return {
    name: 'bridge',
    pid: b.proc.child.pid!,
    sseUrl: `${b.base}/api/v1/streams/dongles/bench-gw/console`,
    headers: { Authorization: `Bearer ${ADMIN_TOKEN}` },
    after: async () => ({ sampled_out: await scrape(b.base, 'canrelay_console_frames_sampled_out_total') }),
    stop: async () => {
      await a.proc.stop();
      await b.proc.stop();
    },
  };
}

/**
 * The canrelay processes run as deployed: with their systemd unit's NODE_OPTIONS (V8 heap flags);
 * BENCH_FANOUT_NODE_ARGS go on node's command line (NODE_OPTIONS refuses --cpu-prof).
 */
function nodeEnv(unit: 'canrelay-agent' | 'canrelay-bridge'): NodeJS.ProcessEnv {
  const text = readFileSync(join(process.cwd(), 'systemd', `${unit}.service`), 'utf8');
  const fromUnit = /^Environment="?NODE_OPTIONS=(.*?)"?$/m.exec(text)?.[1]?.trim() ?? '';
  return fromUnit === '' ? {} : { NODE_OPTIONS: fromUnit };
}

/**
 * The bench's publisher for nchan and better-sse: like the simulator, a 5 ms tick emits every event that
 * has come due, each stamped with its scheduled time (so every server's delay includes the same tick),
 * one HTTP POST per event on keep-alive connections. The text has the shape of canrelay's can_frame.
 */
export class Publisher {
  private timer: NodeJS.Timeout | undefined;
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 32, noDelay: true });
  private nextUs = 0;
  private n = 0;
  readonly sent: number[] = [];
  failures = 0;

  constructor(
    private readonly url: string,
    private readonly rate: number,
  ) {}

  start(): void {
    this.nextUs = Date.now() * 1000;
    const stepUs = 1e6 / this.rate;
    this.timer = setInterval(() => {
      const nowUs = Date.now() * 1000;
      // After a stall, skip ahead rather than burst (as the simulator does).
      if (nowUs - this.nextUs > 100_000) this.nextUs = nowUs;
      while (this.nextUs <= nowUs) {
        this.publish(this.nextUs);
        this.nextUs += stepUs;
      }
    }, 5);
  }

  stop(): void {
    clearInterval(this.timer);
    this.agent.destroy();
  }

  /** Events published with a timestamp in [t0, t1) (ms). */
  publishedIn(t0: number, t1: number): number {
    let k = 0;
    for (const t of this.sent) if (t >= t0 && t < t1) k++;
    return k;
  }

  private publish(tsUs: number): void {
    const i = this.n++;
    const ms = Math.floor(tsUs / 1000);
    const iso = new Date(ms).toISOString().slice(0, 19) + '.' + String(Math.floor(tsUs % 1e6)).padStart(6, '0') + 'Z';
    const id = 0x100 + (i % 57);
    const body = `{"ts":"${iso}","direction":"rx","bus":"can0","id":"0x${id.toString(16).toUpperCase()}","is_extended":false,"dlc":8,"data_hex":"${((i * 2654435761) >>> 0).toString(16).toUpperCase().padStart(8, '0').replace(/(..)/g, '$1 ')}00 FF 00 FF"}`;
    this.sent.push(tsUs / 1000);
    const r = request(this.url, { method: 'POST', agent: this.agent, headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } }, (res) => {
      if (res.statusCode! >= 300) this.failures++;
      res.resume();
    });
    r.on('error', () => this.failures++);
    r.end(body);
  }
}
