/**
 * A real `nats-server` (Debian package nats-server) for the cluster tests: JetStream on (the ownership
 * leases live in a KV bucket), a free loopback port, a temporary store folder. kill() is SIGKILL (a crash);
 * restart() brings it back on the same port and store, as an operator's systemd would. Every server started
 * here is SIGKILLed when the test process exits, so a failing test leaves nothing behind; pause() SIGSTOPs it (a frozen
 * server: sockets open, no answers) and SIGCONTs it again.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, tempDir } from './processes.js';

export const NATS_SERVER = '/usr/sbin/nats-server';
/** The checkout (this file runs as build/test/helpers/nats.js). */
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const START_TIMEOUT_MS = Number(process.env.TEST_START_TIMEOUT_MS ?? 20_000);

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

/** Installs the Debian package when missing (as root; CI runs as root). Throws with the command to run otherwise. */
export function ensureNatsServer(): void {
  const r = spawnSync('bash', [join(ROOT, '.ci/ensure-debs.sh'), 'nats-server'], { stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error('nats-server is not installed and could not be installed: apt-get install nats-server');
}

export class NatsServer {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  stderr = '';

  private constructor(
    readonly port: number,
    readonly storeDir: string,
    private readonly extraArgs: string[],
  ) {}

  /** Starts a server on a free loopback port and waits until it accepts connections; `args` add to its command line (e.g. --user/--pass). */
  static async start(args: string[] = []): Promise<NatsServer> {
    const s = new NatsServer(await freePort(), tempDir('canrelay-nats-'), args);
    await s.spawn();
    return s;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The server's pid while it runs (benchmarks read its CPU from /proc). */
  get pid(): number | undefined {
    return this.running ? this.child?.pid : undefined;
  }

  private async spawn(): Promise<void> {
    const child = spawn(NATS_SERVER, ['-a', '127.0.0.1', '-p', String(this.port), '-js', '-sd', this.storeDir, ...this.extraArgs], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    live.add(child);
    this.exited = new Promise((resolve) => child.on('exit', () => (live.delete(child), resolve())));
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (c: string) => (this.stderr = (this.stderr + c).slice(-20_000)));
    child.stdout!.resume();
    const deadline = Date.now() + START_TIMEOUT_MS;
    // Ready when it says so (JetStream is up by then) and the port answers.
    while (!/Server is ready/.test(this.stderr) || !(await accepts(this.port))) {
      if (!this.running) throw new Error(`nats-server exited at start: ${this.stderr.slice(-2000)}`);
      if (Date.now() > deadline) throw new Error(`nats-server not ready within ${START_TIMEOUT_MS} ms: ${this.stderr.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** SIGKILL: a crash, no goodbye to the clients. */
  async kill(): Promise<void> {
    this.child?.kill('SIGKILL');
    await this.exited;
  }

  /** SIGSTOP/SIGCONT: a server that keeps its sockets open and answers nothing (a frozen host). */
  pause(on: boolean): void {
    if (this.running) this.child!.kill(on ? 'SIGSTOP' : 'SIGCONT');
  }

  /** Starts again on the same port and store (after kill()). */
  async restart(): Promise<void> {
    if (this.running) await this.kill();
    this.stderr = '';
    await this.spawn();
  }

  /** Starts again on the same port with an empty store (a new server, or one whose store was lost). */
  async restartEmpty(): Promise<void> {
    if (this.running) await this.kill();
    rmSync(this.storeDir, { recursive: true, force: true });
    mkdirSync(this.storeDir);
    this.stderr = '';
    await this.spawn();
  }

  async stop(): Promise<void> {
    await this.kill();
  }
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}
