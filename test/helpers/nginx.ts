/**
 * Debian's real nginx for tests: a config derived from the shipped ops/nginx/canrelay-bridge.conf (loopback
 * ports, a self-signed certificate, the test's upstream port), run as a foreground child with everything
 * under a temp dir; plus an SSE client over http or https that timestamps every event on arrival.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { REPO } from './deploy.js';

export const SHIPPED_CONF = join(REPO, 'ops/nginx/canrelay-bridge.conf');

export interface Ports {
  upstream: number;
  http: number;
  https: number;
}

/** The shipped site with loopback ports and the test certificate; everything else as shipped. */
export function deriveSite(shipped: string, ports: Ports, cert: { cert: string; key: string }): string {
  const out = shipped
    .replace(/server 127\.0\.0\.1:8090;/, `server 127.0.0.1:${ports.upstream};`)
    .replace(/^\s*listen \[::\]:\d+.*;$/gm, '')
    .replace(/listen 80;/, `listen 127.0.0.1:${ports.http};`)
    .replace(/listen 443 ssl http2;/, `listen 127.0.0.1:${ports.https} ssl http2;`)
    .replace(/ssl_certificate\s+\S+;/, `ssl_certificate ${cert.cert};`)
    .replace(/ssl_certificate_key\s+\S+;/, `ssl_certificate_key ${cert.key};`);
  for (const needle of [`127.0.0.1:${ports.upstream}`, `127.0.0.1:${ports.http};`, `127.0.0.1:${ports.https} ssl`, cert.cert, cert.key])
    if (!out.includes(needle)) throw new Error(`deriving the test config: ${needle} not substituted; did the shipped config change?`);
  return out;
}

/** Edits the /api/v1/streams/ location of a site config. */
export function editStreamsLocation(site: string, edit: (block: string) => string): string {
  const start = site.indexOf('location /api/v1/streams/ {');
  if (start < 0) throw new Error('no streams location');
  const end = site.indexOf('\n    }', start);
  return site.slice(0, start) + edit(site.slice(start, end)) + site.slice(end);
}

export { freePort } from './processes.js';

export function selfSignedCert(dir: string): { cert: string; key: string } {
  const cert = join(dir, 'bridge.crt');
  const key = join(dir, 'bridge.key');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '2',
      '-subj',
      '/CN=bridge.example.com',
      '-addext',
      'subjectAltName=DNS:bridge.example.com,IP:127.0.0.1',
      '-keyout',
      key,
      '-out',
      cert,
    ],
    { stdio: 'ignore' },
  );
  return { cert, key };
}

export class Nginx {
  private proc?: ChildProcess;
  stderr = '';
  constructor(
    readonly dir: string,
    readonly site: string,
  ) {}

  private mainConf(): string {
    const t = join(this.dir, 'tmp');
    // As on a Debian host: worker processes as an unprivileged user, gzip on at the http level
    // (the streams location must switch it off), the site included in http {}.
    return `worker_processes 1;
${process.getuid?.() === 0 ? 'user nobody nogroup;' : ''}
events { worker_connections 512; }
http {
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
  access_log ${join(this.dir, 'access.log')};
  client_body_temp_path ${t}/body;
  proxy_temp_path ${t}/proxy;
  fastcgi_temp_path ${t}/fastcgi;
  uwsgi_temp_path ${t}/uwsgi;
  scgi_temp_path ${t}/scgi;
  gzip on;
  gzip_types text/event-stream application/json text/plain;
  include ${join(this.dir, 'site.conf')};
}
`;
  }

  private write(): string[] {
    mkdirSync(join(this.dir, 'tmp'), { recursive: true });
    chmodSync(this.dir, 0o755);
    chmodSync(join(this.dir, 'tmp'), 0o777);
    // The shipped access log, in the test's folder (accessLog() reads it).
    writeFileSync(
      join(this.dir, 'site.conf'),
      this.site
        .replaceAll('/var/log/nginx/canrelay-bridge.access.log', join(this.dir, 'access.log'))
        .replaceAll('/var/log/nginx/canrelay-bridge.error.log', join(this.dir, 'error.log')),
    );
    writeFileSync(join(this.dir, 'nginx.conf'), this.mainConf());
    return ['-p', this.dir, '-c', join(this.dir, 'nginx.conf'), '-g', `daemon off; pid ${join(this.dir, 'nginx.pid')}; error_log stderr notice;`];
  }

  /** `nginx -t` on the config: throws with nginx's words when it is invalid. */
  check(): void {
    const r = spawnSync('nginx', [...this.write(), '-t'], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`nginx -t failed: ${r.stderr}`);
  }

  async start(httpsPort: number): Promise<void> {
    const args = this.write();
    this.proc = spawn('nginx', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    this.proc.stderr!.on('data', (c: Buffer) => (this.stderr += c.toString()));
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (this.proc.exitCode !== null) throw new Error(`nginx exited: ${this.stderr}`);
      const up = await new Promise<boolean>((resolve) => {
        const s = createServer();
        s.once('error', () => resolve(true)); // taken: nginx listens
        s.listen(httpsPort, '127.0.0.1', () => s.close(() => resolve(false)));
      });
      if (up) return;
      if (Date.now() > deadline) throw new Error(`nginx did not listen: ${this.stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  accessLog(): string {
    try {
      return readFileSync(join(this.dir, 'access.log'), 'utf8');
    } catch {
      return '';
    }
  }

  /** The site's error log (the shipped path, moved to the test's folder). */
  errorLog(): string {
    try {
      return readFileSync(join(this.dir, 'error.log'), 'utf8');
    } catch {
      return '';
    }
  }

  async stop(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      p.once('exit', () => resolve());
      p.kill('SIGTERM');
      setTimeout(() => p.kill('SIGKILL'), 3000).unref();
    });
  }
}

export interface TimedEvent {
  id?: number;
  event: string;
  data: string;
  /** Arrival, ms (performance.timeOrigin + now: comparable across clients in this process). */
  at: number;
}

/** An SSE client that records when each event arrived. http or https (with a CA to trust). */
export class TimedSse {
  readonly events: TimedEvent[] = [];
  status = 0;
  headers: IncomingMessage['headers'] = {};
  closed = false;
  private buf = '';
  private req?: ReturnType<typeof httpRequest>;

  static connect(url: string, headers: Record<string, string>, ca?: string): Promise<TimedSse> {
    const c = new TimedSse();
    const u = new URL(url);
    const req = (u.protocol === 'https:' ? httpsRequest : httpRequest)(u, {
      headers: { Accept: 'text/event-stream', 'Accept-Encoding': 'gzip', ...headers },
      ...(ca ? { ca } : {}),
    });
    c.req = req;
    return new Promise((resolve, reject) => {
      req.once('error', reject);
      req.once('response', (res) => {
        c.status = res.statusCode ?? 0;
        c.headers = res.headers;
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => c.feed(chunk));
        res.on('close', () => (c.closed = true));
        resolve(c);
      });
      req.end();
    });
  }

  private feed(chunk: string): void {
    const at = performance.timeOrigin + performance.now();
    this.buf += chunk;
    let i: number;
    while ((i = this.buf.indexOf('\n\n')) >= 0) {
      const block = this.buf.slice(0, i);
      this.buf = this.buf.slice(i + 2);
      let id: number | undefined;
      let event = 'message';
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'id') id = Number(value);
        else if (field === 'event') event = value;
        else if (field === 'data') data.push(value);
      }
      if (data.length > 0 || id !== undefined) this.events.push({ id, event, data: data.join('\n'), at });
    }
  }

  /** The first event matching `pred`; fails after `ms` (a timeout must never pass as "undefined"). */
  async waitFor(pred: (e: TimedEvent) => boolean, ms: number, what = 'a matching event'): Promise<TimedEvent> {
    const deadline = Date.now() + ms;
    for (;;) {
      const hit = this.events.find(pred);
      if (hit) return hit;
      if (Date.now() >= deadline) throw new Error(`timed out after ${ms} ms waiting for ${what} (got ${this.events.length} events)`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  close(): void {
    this.req?.destroy();
  }
}

/** A JSON request over http(s). */
export function jsonRequest(
  method: string,
  url: string,
  headers: Record<string, string>,
  body?: unknown,
  ca?: string,
): Promise<{ status: number; headers: IncomingMessage['headers']; json: unknown; text: string }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = (u.protocol === 'https:' ? httpsRequest : httpRequest)(u, {
      method,
      headers: { ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}), ...headers },
      ...(ca ? { ca } : {}),
    });
    req.once('error', reject);
    req.once('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => {
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, json, text });
      });
    });
    req.end(body !== undefined ? JSON.stringify(body) : undefined);
  });
}
