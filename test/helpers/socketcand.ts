/**
 * Test parts for the socketcand server: the agent CLI replaying frames the test writes to a FIFO (so a
 * test decides exactly which frames exist and when), a raw protocol client over real TCP, and a runner
 * for Debian's python-can (/usr/bin/python3) scripts that speak to the agent the way technicians' do.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createWriteStream, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { CLI, CliProcess, tempDir } from './processes.js';
import { getJson, metricValue } from './sse-client.js';

export const PYTHON = '/usr/bin/python3';

/** Installs python3-can from Debian when missing (as root; CI runs as root), like the other suites' tools. */
export function ensurePythonCan(): void {
  const probe = spawnSync(PYTHON, ['-c', 'import can.interfaces.socketcand'], { encoding: 'utf8' });
  if (probe.status === 0) return;
  const ci = join(process.cwd(), '.ci', 'ensure-debs.sh');
  const r = spawnSync('bash', [ci, 'python3-can'], { encoding: 'utf8', stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error('python3-can is missing and could not be installed: run sudo apt-get install -y python3-can');
}

export interface ReplayAgent {
  proc: CliProcess;
  base: string;
  socketcandPort: number;
  /** Writes candump -L lines to the replay (a FIFO the agent reads). */
  write(lines: string[]): Promise<void>;
  endInput(): void;
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  stop(): Promise<void>;
}

const agents: ChildProcess[] = [];
process.on('exit', () => {
  for (const c of agents) c.kill('SIGKILL');
});

/** `canrelay agent --replay <fifo> …` on loopback; resolves once both the console and socketcand listen. */
export async function startReplayAgent(extra: string[]): Promise<ReplayAgent> {
  const dir = tempDir('canrelay-sc-');
  const fifo = join(dir, 'frames.fifo');
  if (spawnSync('mkfifo', [fifo]).status !== 0) throw new Error('mkfifo failed');
  const args = ['agent', '--id', 'sc-gw', '--listen', '127.0.0.1:0', '--state-dir', dir, '--replay', fifo, '--socketcand-listen', '127.0.0.1:0', ...extra];
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  agents.push(child);
  const proc = new CliProcess(child);
  // The replay opens the FIFO for reading; this open completes once it has.
  const input = createWriteStream(fifo);
  input.on('error', () => undefined);
  const sc = await proc.waitForLog((l) => l.msg === 'socketcand listening');
  const con = await proc.waitForLog((l) => l.msg === 'console listening');
  const base = String(con.url).replace(/\/api\/v1\/.*$/, '');
  return {
    proc,
    base,
    socketcandPort: Number(String(sc.listen).split(':').pop()),
    write: (lines) =>
      new Promise<void>((resolve, reject) => {
        const ok = input.write(lines.join('\n') + '\n', (err) => (err ? reject(err) : undefined));
        if (ok) resolve();
        else input.once('drain', () => resolve());
      }),
    endInput: () => input.end(),
    metric: async (name, labels = {}) => {
      const r = await getJson(base + '/metrics');
      return metricValue(r.text, name, labels) ?? 0;
    },
    stop: async () => {
      input.end(); // the replay's read of the FIFO returns, so the agent can stop
      await proc.stop('SIGTERM');
    },
  };
}

/** One candump -L line at `tUs` (µs since the epoch). */
export function candumpLine(tUs: number, bus: string, id: number, data: Uint8Array | number[]): string {
  const hex = Buffer.from(data).toString('hex').toUpperCase();
  const idText = id > 0x7ff ? id.toString(16).toUpperCase().padStart(8, '0') : id.toString(16).toUpperCase().padStart(3, '0');
  return `(${Math.floor(tUs / 1e6)}.${String(tUs % 1e6).padStart(6, '0')}) ${bus} ${idText}#${hex}`;
}

/** `n` frames on can0 spaced `stepUs` apart: ids 0x100-0x10F in turn, the data the 4-byte big-endian sequence number. */
export function sequenceLines(startUs: number, n: number, stepUs: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const d = [(i >>> 24) & 255, (i >>> 16) & 255, (i >>> 8) & 255, i & 255];
    out.push(candumpLine(startUs + i * stepUs, 'can0', 0x100 + (i % 16), d));
  }
  return out;
}

/** Polls a condition (a metric, a log line) until it holds; fails with `what` after `ms`. */
export async function waitUntil(cond: () => Promise<boolean> | boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A hand-written socketcand client: raw TCP, every `< … >` message the server sends, in order. */
export class RawClient {
  readonly messages: string[] = [];
  /** Everything received, as it came (the exact bytes, latin1). */
  received = '';
  closed = false;
  private buf = '';
  private constructor(readonly socket: Socket) {
    socket.setEncoding('latin1');
    socket.on('data', (s: string) => {
      this.received += s;
      this.buf += s;
      let end: number;
      while ((end = this.buf.indexOf('>')) >= 0) {
        const start = this.buf.indexOf('<');
        if (start >= 0 && start < end) this.messages.push(this.buf.slice(start, end + 1));
        this.buf = this.buf.slice(end + 1);
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => (this.closed = true));
  }

  /** `from`: the local address (any of 127.0.0.0/8 on Linux), for clients of several hosts. */
  static connect(port: number, from?: string): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = connect({ port, host: '127.0.0.1', localAddress: from }, () => resolve(new RawClient(s)));
      s.once('error', reject);
    });
  }

  send(text: string | Buffer): void {
    this.socket.write(text);
  }

  /** Messages that are not received frames (replies: ok, echo, error …). */
  replies(): string[] {
    return this.messages.filter((m) => !/^< (frame|fdframe|rtr) /.test(m));
  }

  frames(): string[] {
    return this.messages.filter((m) => m.startsWith('< frame '));
  }

  /** Sends `cmd` and waits for the next reply (a message that is not a frame). */
  async request(cmd: string | Buffer, ms = 5000): Promise<string> {
    const before = this.replies().length;
    this.send(cmd);
    await waitUntil(() => this.replies().length > before || this.closed, ms, `a reply to ${String(cmd).slice(0, 60)}`);
    const r = this.replies()[before];
    if (r === undefined) throw new Error(`connection closed without a reply to ${String(cmd).slice(0, 60)}`);
    return r;
  }

  close(): void {
    this.socket.destroy();
  }
}

/** A python-can script run with Debian's python3; stdout lines as they come, and the exit. */
export class PythonScript {
  readonly lines: string[] = [];
  stderr = '';
  exitCode: number | null = null;
  private readonly done: Promise<number | null>;
  readonly child: ChildProcess;

  /** `wrap`: a command that runs python (e.g. `nsenter --net=…` for a network namespace of the test's). */
  constructor(source: string, args: string[], wrap: string[] = []) {
    const file = join(tempDir('canrelay-py-'), 'client.py');
    writeFileSync(file, source);
    const argv = [...wrap, PYTHON, file, ...args];
    this.child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    agents.push(this.child);
    let partial = '';
    this.child.stdout!.setEncoding('utf8');
    this.child.stdout!.on('data', (s: string) => {
      partial += s;
      let i: number;
      while ((i = partial.indexOf('\n')) >= 0) {
        this.lines.push(partial.slice(0, i));
        partial = partial.slice(i + 1);
      }
    });
    this.child.stderr!.setEncoding('utf8');
    this.child.stderr!.on('data', (s: string) => (this.stderr = (this.stderr + s).slice(-20_000)));
    this.done = new Promise((resolve) => this.child.on('exit', (code) => resolve((this.exitCode = code))));
  }

  async waitForLine(pred: (l: string) => boolean, ms: number, what: string): Promise<string> {
    await waitUntil(() => this.lines.some(pred) || this.exitCode !== null, ms, `${what} from python (stderr: ${this.stderr.slice(-2000)})`);
    const l = this.lines.find(pred);
    if (l === undefined) throw new Error(`python exited (${this.exitCode}) before ${what}; stderr: ${this.stderr.slice(-2000)}`);
    return l;
  }

  /** Tells the script to go on (it reads one line from stdin). */
  go(): void {
    this.child.stdin!.write('go\n');
  }

  wait(): Promise<number | null> {
    return this.done;
  }
}

export { getJson };
