/**
 * The link between the host's page checks (guest-run.test.ts, Chromium on the host) and the qemu guest
 * that runs the agent on a real controller driver (bus-health-checks.ts): the guest ports qemu forwards
 * (run.sh's SOCKETCAN_VM_HOSTFWD), and a small control server in the guest through which the host acts on
 * the guest's buses — a command of a fixed set of tools (ip, cansend), steady bursts of frames timed on the
 * guest's own clock, and the host's verdict that ends the wait. Every message is validated with zod.
 */
import { spawn } from 'node:child_process';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { z } from 'zod';

/** The guest agent's console port (listening on 0.0.0.0 in the guest) and the control server's. */
export const GUEST_AGENT_PORT = 18080;
export const GUEST_CONTROL_PORT = 18081;
/** Set (to 1) in the guest when a host drives the page checks: guest-run.test.ts passes it in. */
export const PAGE_HOST_ENV = 'CANRELAY_PAGE_FROM_HOST';

/** Tools the host may run in the guest: enough to change a bus's state, its bit timing, and inject frames. */
const TOOLS = ['ip', 'cansend'] as const;
const RunRequest = z.object({ cmd: z.enum(TOOLS), args: z.array(z.string().max(200)).max(30) });
const RunReply = z.object({ status: z.number().nullable(), stdout: z.string(), stderr: z.string() });
/** Each second, 0.25 s past it on the guest clock: `cangen <bus> -g 1 -n <frames> -I <id> -L <len> -D <data>`. */
const BurstsRequest = z.object({
  bus: z.string().regex(/^[a-z0-9]{1,15}$/),
  frames: z.number().int().min(1).max(200),
  id: z.string().regex(/^[0-9A-F]{3}$/),
  data: z.string().regex(/^([0-9A-F]{2}){1,8}$/),
  /** Upper bound: the bursts end by themselves after this many, should the host never stop them. */
  maxBursts: z.number().int().min(1).max(300),
});
const BurstsReply = z.object({ bursts: z.number(), errors: z.array(z.string()) });
const Verdict = z.object({ ok: z.boolean(), error: z.string().optional() });
export type Verdict = z.infer<typeof Verdict>;

function readBody(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => {
      body += c;
      if (body.length > 65_536) req.destroy(new Error('request body over 64 KiB'));
    });
    req.on('end', () => {
      try {
        resolve(body ? JSON.parse(body) : {});
      } catch (err) {
        reject(err);
      }
    });
    req.on('error', reject);
  });
}

function runTool(cmd: string, args: string[], timeoutMs: number): Promise<z.infer<typeof RunReply>> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout!.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    p.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const kill = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('error', (err) => {
      clearTimeout(kill);
      resolve({ status: null, stdout, stderr: stderr + err.message });
    });
    p.on('close', (status) => {
      clearTimeout(kill);
      resolve({ status, stdout, stderr });
    });
  });
}

/**
 * Guest side: serves the host until it posts its verdict (or `maxMs` pass: the host is gone). `log` gets
 * every action (the guest's progress file). The server listens on 0.0.0.0 (qemu forwards to eth0).
 */
export async function serveHostPageChecks(maxMs: number, log: (msg: string) => void): Promise<Verdict> {
  let bursts: { n: number; errors: string[]; stop: boolean; done: Promise<void> } | undefined;
  const stopBursts = async (): Promise<z.infer<typeof BurstsReply>> => {
    if (!bursts) return { bursts: 0, errors: [] };
    bursts.stop = true;
    await bursts.done;
    return { bursts: bursts.n, errors: bursts.errors };
  };
  let settle: (v: Verdict) => void = () => {};
  const verdict = new Promise<Verdict>((r) => (settle = r));
  const reply = (res: ServerResponse, status: number, body: unknown): void => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  const server: Server = createServer((req, res) => {
    void (async () => {
      try {
        if (req.method === 'GET' && req.url === '/ready') return reply(res, 200, { ok: true });
        const body = req.method === 'POST' ? await readBody(req) : undefined;
        if (req.url === '/run') {
          const r = RunRequest.parse(body);
          log(`host: ${r.cmd} ${r.args.join(' ')}`);
          return reply(res, 200, await runTool(r.cmd, r.args, 60_000));
        }
        if (req.url === '/bursts') {
          const r = BurstsRequest.parse(body);
          await stopBursts();
          log(`host: bursts of ${r.frames} frames on ${r.bus} each second (id ${r.id}, data ${r.data})`);
          const b = { n: 0, errors: [] as string[], stop: false, done: Promise.resolve() };
          b.done = (async () => {
            while (!b.stop && b.n < r.maxBursts) {
              await new Promise((w) => setTimeout(w, 1000 - ((Date.now() - 250) % 1000)));
              if (b.stop) break;
              const out = await runTool('cangen', [r.bus, '-g', '1', '-p', '1000', '-n', String(r.frames), '-I', r.id, '-L', String(r.data.length / 2), '-D', r.data], 30_000);
              if (out.status !== 0) b.errors.push(`cangen exited ${out.status}: ${out.stderr.trim()}`);
              b.n++;
            }
          })();
          bursts = b;
          return reply(res, 200, { bursts: 0, errors: [] });
        }
        if (req.url === '/bursts/stop') return reply(res, 200, await stopBursts());
        if (req.url === '/done') {
          const v = Verdict.parse(body);
          reply(res, 200, { ok: true });
          return settle(v);
        }
        reply(res, 404, { error: `no ${req.method} ${req.url}` });
      } catch (err) {
        reply(res, 400, { error: (err as Error).message });
      }
    })();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(GUEST_CONTROL_PORT, '0.0.0.0', resolve);
  });
  log(`control server on 0.0.0.0:${GUEST_CONTROL_PORT}: waiting for the host's page checks`);
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      verdict,
      new Promise<Verdict>((r) => (timer = setTimeout(() => r({ ok: false, error: `the host sent no verdict within ${maxMs / 1000} s` }), maxMs))),
    ]);
  } finally {
    clearTimeout(timer);
    await stopBursts();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
}

/** Host side: the guest's control server, reached through qemu's forward on `port`. */
export class GuestControl {
  constructor(private readonly port: number) {}

  private async post(path: string, body: unknown): Promise<unknown> {
    const r = await fetch(`http://127.0.0.1:${this.port}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const json: unknown = await r.json();
    if (r.status !== 200) throw new Error(`guest ${path}: ${r.status} ${JSON.stringify(json)}`);
    return json;
  }

  /** True once the guest serves (a forward answers before that, then drops the connection). */
  async ready(): Promise<boolean> {
    try {
      const r = await fetch(`http://127.0.0.1:${this.port}/ready`, { signal: AbortSignal.timeout(5000) });
      return r.status === 200;
    } catch {
      return false;
    }
  }

  /** Runs a tool in the guest; throws with its stderr when it fails. */
  async run(cmd: (typeof TOOLS)[number], ...args: string[]): Promise<string> {
    const r = RunReply.parse(await this.post('/run', { cmd, args }));
    if (r.status !== 0) throw new Error(`guest: ${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
    return r.stdout;
  }

  async startBursts(req: z.infer<typeof BurstsRequest>): Promise<void> {
    await this.post('/bursts', req);
  }

  async stopBursts(): Promise<z.infer<typeof BurstsReply>> {
    return BurstsReply.parse(await this.post('/bursts/stop', {}));
  }

  async done(v: Verdict): Promise<void> {
    await this.post('/done', v);
  }
}
