/**
 * Runs the real CLI (`node dist/cli.js …`) as a child process, the way a user or systemd does, and
 * reads its pino JSON log to learn the console URL.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The program as it ships (make build compiles it to dist/; this file runs as build/test/helpers/processes.js). */
export const CLI = fileURLToPath(new URL('../../../dist/cli.js', import.meta.url));

export interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

export class CliProcess {
  readonly logs: LogLine[] = [];
  stderr = '';
  stdout = '';
  exitCode: number | null = null;
  private exited: Promise<number | null>;

  constructor(readonly child: ChildProcess) {
    let partial = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => {
      this.stdout += chunk.length + this.stdout.length < 2_000_000 ? chunk : '';
      partial += chunk;
      let i: number;
      while ((i = partial.indexOf('\n')) >= 0) {
        const line = partial.slice(0, i);
        partial = partial.slice(i + 1);
        try {
          this.logs.push(JSON.parse(line) as LogLine);
        } catch {
          /* not a log line */
        }
      }
    });
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (c: string) => (this.stderr += c));
    this.exited = new Promise((resolve) => child.on('exit', (code) => resolve((this.exitCode = code))));
  }

  async waitForLog(pred: (l: LogLine) => boolean, ms = START_TIMEOUT_MS): Promise<LogLine> {
    const deadline = Date.now() + ms;
    for (;;) {
      const hit = this.logs.find(pred);
      if (hit) return hit;
      if (this.exitCode !== null) throw new Error(`process exited (${this.exitCode}) before the expected log line; stderr: ${this.stderr}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for a log line; stderr: ${this.stderr}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  wait(): Promise<number | null> {
    return this.exited;
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (this.exitCode === null) this.child.kill(signal);
    return this.exited;
  }
}

/** How long a started process may take to announce itself: generous, since a busy 2-core CI machine can take
 * seconds to start Node (raised further under emulation, e.g. in the qemu guest). Only a failure waits this long. */
export const START_TIMEOUT_MS = Number(process.env.TEST_START_TIMEOUT_MS ?? 30_000);

const live = new Set<ChildProcess>();
// A failing test must not leave daemons behind (or keep the runner alive): kill what is still running.
process.on('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

/**
 * `as.cli`: another build of the CLI; `as.wrap`: a command that runs node (e.g. `setpriv …` to drop
 * capabilities); `as.uid`/`gid`: run as another user; `as.nodeArgs`: node flags NODE_OPTIONS refuses (--cpu-prof).
 */
export function runCli(args: string[], env: NodeJS.ProcessEnv = {}, as: { uid?: number; gid?: number; cli?: string; wrap?: string[]; nodeArgs?: string[] } = {}): CliProcess {
  const argv = [...(as.wrap ?? []), process.execPath, ...(as.nodeArgs ?? []), as.cli ?? CLI, ...args];
  const child = spawn(argv[0]!, argv.slice(1), {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(as.uid !== undefined ? { uid: as.uid, gid: as.gid ?? as.uid } : {}),
  });
  live.add(child);
  child.on('exit', () => live.delete(child));
  return new CliProcess(child);
}

export interface StartedAgent {
  proc: CliProcess;
  url: string;
  base: string;
  stateDir: string;
}

/** Starts `canrelay agent` on a free loopback port and waits for its console URL. */
export async function startAgentProcess(args: string[], opts: { stateDir?: string; id?: string; env?: NodeJS.ProcessEnv; nodeArgs?: string[] } = {}): Promise<StartedAgent> {
  const stateDir = opts.stateDir ?? tempDir('canrelay-agent-');
  const proc = runCli(['agent', '--id', opts.id ?? 'test-gw', '--listen', '127.0.0.1:0', '--state-dir', stateDir, ...args], opts.env, { nodeArgs: opts.nodeArgs });
  const line = await proc.waitForLog((l) => l.msg === 'console listening');
  const url = String(line.url);
  return { proc, url, base: url.replace(/\/api\/v1\/.*$/, ''), stateDir };
}

/**
 * A fresh directory under the system's temporary directory, removed when this process (a test file, a
 * bench) exits — its daemons are stopped by then. Left in place: CANRELAY_KEEP_TEMP=1 (to look at a
 * failed run's state and logs), and a directory with a file system still mounted in it (a fault test's
 * tmpfs). Before, every `make test` left ~700 directories and gigabytes behind in /tmp.
 */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  if (made.length === 0 && process.env.CANRELAY_KEEP_TEMP !== '1') process.on('exit', removeTempDirs);
  made.push(dir);
  return dir;
}

const made: string[] = [];

function removeTempDirs(): void {
  let mounts: string[] = [];
  try {
    mounts = readFileSync('/proc/self/mounts', 'utf8')
      .split('\n')
      .map((l) => (l.split(' ')[1] ?? '').replace(/\\040/g, ' '));
  } catch {
    /* no /proc: nothing can be mounted by the tests either */
  }
  for (const dir of made) {
    if (mounts.some((m) => m === dir || m.startsWith(dir + '/'))) continue;
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      /* a read-only or vanished file: left for the system's own /tmp cleaning */
    }
  }
}

/** Writes a candump -L log with `n` frames: ids cycle through `ids`, payload carries the frame index. */
export function writeCandumpLog(path: string, n: number, opts: { ids?: number[]; bus?: string; startSec?: number; stepUs?: number } = {}): void {
  const ids = opts.ids ?? [0x100];
  const bus = opts.bus ?? 'can0';
  let t = (opts.startSec ?? 1_700_000_000) * 1e6;
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    const id = ids[i % ids.length]!;
    const sec = Math.floor(t / 1e6);
    const us = String(t % 1e6).padStart(6, '0');
    const data = (i >>> 0).toString(16).toUpperCase().padStart(8, '0');
    lines.push(`(${sec}.${us}) ${bus} ${id.toString(16).toUpperCase().padStart(3, '0')}#${data}`);
    t += opts.stepUs ?? 100;
  }
  writeFileSync(path, lines.join('\n') + '\n');
}

/** A loopback port free right now (for a process that must come back on the same port). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}
