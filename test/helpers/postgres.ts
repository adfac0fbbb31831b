/**
 * A real PostgreSQL server for tests: `initdb` in a temp dir, `postgres` run as an unprivileged user (it
 * refuses root; the tests run as root) on a free loopback port, one database per test, and a SIGKILL of
 * the whole server (postmaster and backends, as a crash would) with a restart on the same port and data,
 * and a SIGSTOP/SIGCONT of it (a server that stops answering without closing its sockets).
 * Every server is killed when the test process exits, so a failing test leaves no daemon behind.
 *
 * Needs Debian's postgresql (CI: `.ci/ensure-debs.sh postgresql`); `postgresBin()` says where it is.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { freePort, tempDir } from './processes.js';

/** The newest installed server binaries (Debian: /usr/lib/postgresql/<major>/bin), or undefined. */
export function postgresBin(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const majors = readdirSync(root)
    .filter((d) => existsSync(join(root, d, 'bin', 'postgres')))
    .sort((a, b) => Number(b) - Number(a));
  return majors[0] === undefined ? undefined : join(root, majors[0], 'bin');
}

/** uid/gid of the user the server runs as: Debian's `postgres` when present, else `nobody`. */
function serverUser(): { name: string; uid: number; gid: number } {
  const passwd = readFileSync('/etc/passwd', 'utf8').split('\n');
  for (const name of ['postgres', 'nobody']) {
    const f = passwd.find((l) => l.startsWith(name + ':'))?.split(':');
    if (f) return { name, uid: Number(f[2]), gid: Number(f[3]) };
  }
  throw new Error('neither a "postgres" nor a "nobody" user exists to run PostgreSQL as');
}

/** Pids whose parent is `pid` (from /proc). */
export function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      // Field 4 of /proc/<pid>/stat, after the command in parentheses.
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) out.push(Number(d));
    } catch {
      /* exited */
    }
  }
  return out;
}

const servers = new Set<PostgresServer>();
process.on('exit', () => {
  for (const s of servers) s.killNow();
});
// A test process ended by a signal (a runner's timeout) runs no 'exit' handler: a server would outlive it.
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
  process.once(sig, () => {
    for (const s of servers) s.killNow();
    process.exit(128 + (sig === 'SIGTERM' ? 15 : sig === 'SIGINT' ? 2 : 1));
  });
}

/** The role the tests (and the bridge under test) connect as; trust auth on loopback only. */
export const PG_ROLE = 'canrelay';
const START_MS = 60_000;

export class PostgresServer {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private dbCount = 0;
  log = '';

  private constructor(
    readonly bin: string,
    readonly dir: string,
    readonly port: number,
    private readonly user: { uid: number; gid: number },
  ) {}

  /** initdb + start; resolves once the server accepts connections. */
  static async start(): Promise<PostgresServer> {
    const bin = postgresBin();
    if (bin === undefined) throw new Error('PostgreSQL is not installed: run `bash .ci/ensure-debs.sh postgresql`');
    const user = serverUser();
    const root = tempDir('canrelay-pg-');
    const dir = join(root, 'data');
    chownSync(root, user.uid, user.gid);
    const init = spawnSync(join(bin, 'initdb'), ['-D', dir, '-U', PG_ROLE, '--auth=trust', '-E', 'UTF8', '--no-sync', '--locale=C'], {
      uid: user.uid,
      gid: user.gid,
      encoding: 'utf8',
      cwd: root,
    });
    if (init.status !== 0) throw new Error(`initdb failed (${init.status}): ${init.stderr}`);
    const s = new PostgresServer(bin, dir, await freePort(), user);
    servers.add(s);
    await s.restart();
    return s;
  }

  /** Starts the server (again) on the same port and data; waits until it accepts connections. */
  async restart(): Promise<void> {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) throw new Error('postgres is already running');
    // Detached: a signal to the test's process group (Ctrl-C) does not reach it; kill() and pause() name its processes.
    const child = spawn(
      join(this.bin, 'postgres'),
      // fsync off: a test crashes the server process, never the machine, so the page cache survives.
      ['-D', this.dir, '-p', String(this.port), '-k', this.dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off', '-c', 'max_connections=50'],
      { uid: this.user.uid, gid: this.user.gid, cwd: this.dir, detached: true, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.child = child;
    const keep = (c: Buffer): void => {
      this.log = (this.log + c.toString()).slice(-20_000);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    const deadline = Date.now() + START_MS;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`postgres exited at start: ${this.log}`);
      const c = new pg.Client({ connectionString: this.url('postgres'), connectionTimeoutMillis: 2000 });
      try {
        await c.connect();
        await c.query('SELECT 1');
        await c.end();
        return;
      } catch {
        await c.end().catch(() => undefined);
      }
      if (Date.now() > deadline) throw new Error(`postgres did not accept connections within ${START_MS} ms: ${this.log}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  url(db: string): string {
    return `postgres://${PG_ROLE}@127.0.0.1:${this.port}/${db}`;
  }

  /** A fresh, empty database; returns its connection string. */
  async createDatabase(prefix = 'canrelay_test'): Promise<string> {
    const name = `${prefix}_${process.pid}_${++this.dbCount}`;
    await this.sql('postgres', `CREATE DATABASE ${name}`);
    return this.url(name);
  }

  /** Runs one statement as the test role and returns the rows. */
  async sql(db: string, text: string, params: unknown[] = []): Promise<Record<string, unknown>[]> {
    const c = new pg.Client({ connectionString: db.includes('://') ? db : this.url(db) });
    await c.connect();
    try {
      return (await c.query(text, params)).rows as Record<string, unknown>[];
    } finally {
      await c.end();
    }
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The postmaster and its backends now (benchmarks read their CPU from /proc). */
  pids(): number[] {
    const pid = this.child?.pid;
    return pid === undefined || !this.running ? [] : [pid, ...childrenOf(pid)];
  }

  /** SIGKILL of the postmaster and every backend; resolves once the postmaster is gone. */
  async kill(): Promise<void> {
    this.killNow();
    await this.exited;
  }

  /**
   * SIGSTOP/SIGCONT of the whole server — the postmaster and every backend (each backend is its own
   * process group, so they are found by parent pid): it keeps its sockets open and answers nothing.
   */
  pause(on: boolean): void {
    const pid = this.child?.pid;
    if (pid === undefined || !this.running) return;
    for (const p of [pid, ...childrenOf(pid)]) {
      try {
        process.kill(p, on ? 'SIGSTOP' : 'SIGCONT');
      } catch {
        /* gone meanwhile */
      }
    }
  }

  killNow(): void {
    const pid = this.child?.pid;
    if (pid === undefined || !this.running) return;
    // Backends too (each is its own process group), as a crash of the machine's server would take them.
    for (const p of [pid, ...childrenOf(pid)]) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  }

  /** Fast shutdown and removal of the data. */
  async stop(): Promise<void> {
    if (this.running) {
      this.pause(false);
      this.child!.kill('SIGINT');
      await this.exited;
    }
    servers.delete(this);
    rmSync(join(this.dir, '..'), { recursive: true, force: true });
  }
}
