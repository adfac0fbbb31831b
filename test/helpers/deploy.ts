/**
 * Helpers for the deployment tests (test/deploy/*.test.ts): the repository's paths, Debian packages
 * installed on demand (.ci/ensure-debs.sh), a staged `make install` tree under a DESTDIR, systemd unit
 * files read as data, and a NOTIFY_SOCKET listener that records sd_notify datagrams like PID 1 would.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (this file runs as build/test/helpers/deploy.js). */
export const REPO = fileURLToPath(new URL('../../../', import.meta.url));

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/** Installs missing Debian packages through .ci/ensure-debs.sh; returns a reason to skip, or undefined. */
export function ensureDebs(...pkgs: string[]): string | undefined {
  const r = spawnSync('bash', [join(REPO, '.ci/ensure-debs.sh'), ...pkgs], { encoding: 'utf8', timeout: 600_000 });
  if (r.status === 0) return undefined;
  return `Debian packages ${pkgs.join(' ')} unavailable: ${(r.stderr || r.error?.message || '').trim().slice(0, 300)}`;
}

export function hasCommand(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

export interface Staged {
  destdir: string;
  prefix: string;
  /** $DESTDIR$PREFIX/current */
  current: string;
  /** The launcher in the installed tree. */
  launcher: string;
  unitDir: string;
  cleanup(): void;
}

/** `make install` into a fresh DESTDIR (packaging/install.sh, as mk/deploy.mk runs it). */
export function stageInstall(env: NodeJS.ProcessEnv = {}, base = tmpdir()): Staged {
  const destdir = mkdtempSync(join(base, 'canrelay-destdir-'));
  execFileSync('chmod', ['0755', destdir]);
  const prefix = env.PREFIX ?? '/opt/canrelay';
  execFileSync('bash', [join(REPO, 'packaging/install.sh')], {
    env: { ...process.env, DESTDIR: destdir, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 300_000,
  });
  return {
    destdir,
    prefix,
    current: join(destdir, prefix, 'current'),
    launcher: join(destdir, prefix, 'current/bin/canrelay'),
    unitDir: join(destdir, env.UNITDIR ?? '/lib/systemd/system'),
    cleanup: () => rmSync(destdir, { recursive: true, force: true }),
  };
}

/** A unit file as data: section → key → every value in order (repeated keys accumulate). */
export type Unit = Record<string, Record<string, string[]>>;

export function parseUnit(text: string): Unit {
  const unit: Unit = {};
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const m = /^\[(.+)\]$/.exec(line);
    if (m) {
      section = m[1]!;
      unit[section] ??= {};
      continue;
    }
    const eq = line.indexOf('=');
    if (eq < 0) continue;
    const key = line.slice(0, eq).trim();
    const value = line.slice(eq + 1).trim();
    ((unit[section] ??= {})[key] ??= []).push(value);
  }
  return unit;
}

export function readUnit(path: string): Unit {
  return parseUnit(readFileSync(path, 'utf8'));
}

/** The last value of a key (what systemd uses for single-valued settings). */
export function unitValue(unit: Unit, section: string, key: string): string | undefined {
  const v = unit[section]?.[key];
  return v?.[v.length - 1];
}

/** Byte size of a systemd size value ("256M", "1G"). */
export function unitBytes(v: string): number {
  const m = /^(\d+(?:\.\d+)?)([KMGT]?)$/.exec(v.trim());
  if (!m) throw new Error(`not a size: ${v}`);
  return Number(m[1]) * 1024 ** ' KMGT'.indexOf(m[2] || ' ');
}

export interface NotifyMessage {
  /** Arrival time, ms since the epoch. */
  t: number;
  /** SCM_CREDENTIALS of the sender, as PID 1 sees them. */
  pid: number | null;
  uid: number | null;
  /** The datagram's assignments. */
  fields: Record<string, string>;
  raw: string;
}

const LISTENER_PY = `
import json, os, socket, struct, sys, time
path = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
os.chmod(path, 0o777)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
print(json.dumps({"listening": path}), flush=True)
while True:
    msg, anc, flags, addr = s.recvmsg(65536, socket.CMSG_SPACE(12) + socket.CMSG_SPACE(16 * 4))
    pid = uid = None
    for level, typ, data in anc:
        if level == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS:
            pid, uid, gid = struct.unpack("iII", data[:12])
        elif level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
            # BARRIER=1 carries the write end of a pipe: closing it tells systemd-notify "processed",
            # exactly as PID 1 does.
            for fd in struct.unpack("%di" % (len(data) // 4), data[: len(data) // 4 * 4]):
                os.close(fd)
    print(json.dumps({"t": time.time() * 1000, "pid": pid, "uid": uid, "raw": msg.decode("utf-8", "replace")}), flush=True)
`;

/** A unix datagram socket standing in for PID 1's notification socket (python3: Node has no AF_UNIX datagrams). */
export class NotifyListener {
  readonly messages: NotifyMessage[] = [];
  readonly dir: string;
  readonly path: string;
  private proc: ChildProcess;
  private ready: Promise<void>;

  constructor(base = tmpdir()) {
    this.dir = mkdtempSync(join(base, 'canrelay-notify-'));
    execFileSync('chmod', ['0755', this.dir]);
    this.path = join(this.dir, 'notify.sock');
    this.proc = spawn('python3', ['-u', '-c', LISTENER_PY, this.path], { stdio: ['ignore', 'pipe', 'pipe'] });
    let partial = '';
    let stderr = '';
    this.proc.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    this.ready = new Promise((resolve, reject) => {
      this.proc.once('exit', (code) => reject(new Error(`notify listener exited (${code}): ${stderr}`)));
      this.proc.stdout!.setEncoding('utf8');
      this.proc.stdout!.on('data', (chunk: string) => {
        partial += chunk;
        let i: number;
        while ((i = partial.indexOf('\n')) >= 0) {
          const line = JSON.parse(partial.slice(0, i)) as { listening?: string; t: number; pid: number | null; uid: number | null; raw: string };
          partial = partial.slice(i + 1);
          if (line.listening) {
            resolve();
            continue;
          }
          const fields: Record<string, string> = {};
          for (const kv of line.raw.split('\n')) {
            const eq = kv.indexOf('=');
            if (eq > 0) fields[kv.slice(0, eq)] = kv.slice(eq + 1);
          }
          this.messages.push({ t: line.t, pid: line.pid, uid: line.uid, fields, raw: line.raw });
        }
      });
    });
  }

  listening(): Promise<void> {
    return this.ready;
  }

  async waitFor(pred: (m: NotifyMessage) => boolean, ms = 10_000): Promise<NotifyMessage> {
    const deadline = Date.now() + ms;
    for (;;) {
      const hit = this.messages.find(pred);
      if (hit) return hit;
      if (Date.now() > deadline) throw new Error(`no matching sd_notify message within ${ms} ms; got: ${JSON.stringify(this.messages.map((m) => m.raw))}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  close(): void {
    this.proc.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** uid/gid of an existing account, or undefined. */
export function account(name: string): { uid: number; gid: number } | undefined {
  const r = spawnSync('getent', ['passwd', name], { encoding: 'utf8' });
  if (r.status !== 0) return undefined;
  const f = r.stdout.trim().split(':');
  return { uid: Number(f[2]), gid: Number(f[3]) };
}

export function fileExists(p: string): boolean {
  return existsSync(p);
}
