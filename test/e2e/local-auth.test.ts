/**
 * The agent's local API: tokens (--local-token-file, --console-auth) and HTTPS (--tls-cert/--tls-key),
 * through the real CLI over loopback, with a certificate openssl makes for the test.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer, request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { hostname } from 'node:os';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { LocalAuth, parseLocalTokens } from '../../agent/local-auth.js';
import { runCli, startAgentProcess, tempDir, type StartedAgent } from '../helpers/processes.js';

const ADMIN = 'admin-token-0123456789abcdef';
const READ = 'read-token-0123456789abcdef';
const running: StartedAgent[] = [];
after(async () => {
  for (const a of running) await a.proc.stop('SIGKILL');
});
async function agent(args: string[]): Promise<StartedAgent> {
  const a = await startAgentProcess(args);
  running.push(a);
  return a;
}

let dir: string;
let tokenFile: string;
before(() => {
  dir = tempDir('canrelay-auth-');
  tokenFile = join(dir, 'local-tokens');
  writeFileSync(tokenFile, `# role token\nadmin ${ADMIN}\n\nread   ${READ}\n`);
});

function get(url: string, headers: Record<string, string> = {}, ca?: string): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = (url.startsWith('https:') ? httpsRequest : httpRequest)(url, { headers, ...(ca ? { ca } : {}) }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
        if (res.headers['content-type']?.startsWith('text/event-stream')) res.destroy(); // a stream: the head is enough
      });
      res.on('close', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('--console-auth: reads need a token from the file (header or ?access_token=); /healthz and the page stay open', async () => {
  const a = await agent(['--sim', '--sim-rate', '50', '--local-token-file', tokenFile, '--console-auth']);
  assert.equal((await get(a.url)).status, 401, 'console without a token');
  assert.equal((await get(a.url, { Authorization: 'Bearer wrong-token-0123456789' })).status, 401, 'console with a wrong token');
  assert.equal((await get(a.url, { Authorization: `Bearer ${READ}` })).status, 200, 'console with a read token');
  assert.equal((await get(`${a.url}?access_token=${ADMIN}`)).status, 200, 'console with ?access_token=');
  const info = await get(a.base + '/api/v1/info');
  assert.equal(info.status, 401);
  assert.match(String(info.headers['www-authenticate']), /^Bearer/);
  assert.match(JSON.parse(info.body).error, /local-token-file/);
  assert.equal((await get(a.base + '/metrics')).status, 401);
  assert.equal((await get(a.base + '/metrics', { Authorization: `Bearer ${READ}` })).status, 200);
  const open = await get(a.base + '/healthz');
  assert.equal(open.status, 200);
  const brief = JSON.parse(open.body) as Record<string, unknown>;
  assert.equal(brief.status, 'ok');
  assert.equal(brief.buses, undefined, 'without a token: no buses, bus health or counts');
  assert.equal(brief.frames_rx, undefined);
  const full = JSON.parse((await get(a.base + '/healthz', { Authorization: `Bearer ${READ}` })).body) as Record<string, unknown>;
  assert.ok(full.buses !== undefined && typeof full.frames_rx === 'number', 'with a read token: the full document');
  // Nor do a 404's words name the dongle without a token; with one they point to the console.
  const id = new URL(a.url).pathname.split('/')[5]!;
  for (const path of ['/nope', '/api/v1/streams/dongles/other/console']) {
    const r = await get(a.base + path);
    assert.equal(r.status, 404);
    assert.ok(!r.body.includes(id), `${path} without a token: ${r.body}`);
    assert.ok((await get(a.base + path, { Authorization: `Bearer ${READ}` })).body.includes(id), `${path} with a read token names the console`);
  }
});

test('without --console-auth reads stay open, but a token presented must be right (401 invalid_token); /api/v1/info says what is guarded', async () => {
  const a = await agent(['--sim', '--sim-rate', '50', '--local-token-file', tokenFile]);
  assert.equal((await get(a.url)).status, 200);
  const info = await get(a.base + '/api/v1/info');
  assert.deepEqual(JSON.parse(info.body).local_auth, { writes: true, reads: false });
  // Open reads still check a token that is presented: the page's check of an entered token is a read.
  for (const [what, headers, url] of [
    ['a wrong token in the header', { Authorization: 'Bearer wrong-token-0123456789' }, a.base + '/api/v1/info'],
    ['a wrong ?access_token=', {}, `${a.url}?access_token=wrong-token-0123456789`],
  ] as const) {
    const r = await get(url, headers);
    assert.equal(r.status, 401, what);
    assert.match(String(r.headers['www-authenticate']), /invalid_token/, what);
    assert.match(JSON.parse(r.body).error, /not one of the agent's --local-token-file/, what);
  }
  for (const token of [READ, ADMIN]) assert.equal((await get(a.base + '/api/v1/info', { Authorization: `Bearer ${token}` })).status, 200, 'a right token reads');
  // Without a token file there is nothing to check a token against: open for any.
  const open = await agent(['--sim', '--sim-rate', '50']);
  assert.equal((await get(open.base + '/api/v1/info', { Authorization: 'Bearer anything-0123456789' })).status, 200);
});

test('a write: 401 without a token, 403 with a read token or from another site, allowed with the admin token', async (t) => {
  // The guard itself behind a real HTTP server: every agent write route calls exactly this.
  const auth = new LocalAuth(parseLocalTokens(`admin ${ADMIN}\nread ${READ}\n`, 'test'));
  const server = createServer((req, res) => {
    if (!auth.guard(req, res, req.method === 'GET' ? 'read' : 'write')) return;
    res.end('done');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());
  const base = `http://127.0.0.1:${(server.address() as { port: number }).port}/`;
  const post = (headers: Record<string, string>): Promise<number> =>
    new Promise((resolve, reject) => {
      const req = httpRequest(base, { method: 'POST', headers }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.end();
    });
  assert.equal(await post({}), 401);
  assert.equal(await post({ Authorization: `Bearer ${READ}` }), 403);
  assert.equal(await post({ Authorization: `Bearer ${ADMIN}x` }), 401);
  assert.equal(await post({ Authorization: `Bearer ${ADMIN}` }), 200);
  assert.equal(await post({ Authorization: `Bearer ${ADMIN}`, Origin: 'http://evil.example' }), 403, 'cross-site write');
  // DNS rebinding: a page of evil.example whose name now resolves here; Origin and Host agree.
  const port = new URL(base).port;
  assert.equal(await post({ Authorization: `Bearer ${ADMIN}`, Origin: `http://evil.example:${port}`, Host: `evil.example:${port}` }), 403, 'a rebound name');
  for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, `${hostname()}:${port}`])
    assert.equal(await post({ Authorization: `Bearer ${ADMIN}`, Origin: `http://${host}`, Host: host }), 200, `the agent's own page opened as ${host}`);
  assert.equal((await get(base)).status, 200, 'reads open without --console-auth');
  // Without a token file writes are open, but still not from another site.
  const open = new LocalAuth(undefined);
  assert.equal(open.enabled, false);
  assert.equal(open.role(ADMIN), undefined);
});

test('DNS rebinding: a request that names the agent by a name any site can point at it is refused (403), reads too; its own names, a listed origin and the probes are not', async () => {
  const a = await agent(['--sim', '--sim-rate', '50', '--cors-origin', 'http://gw-17.example:1']);
  const port = new URL(a.base).port;
  const at = (host: string, path: string) => get(`${a.base}${path}`, { Host: host });
  const evil = `rebind.attacker.example:${port}`;
  for (const path of ['/api/v1/recordings', '/api/v1/info', '/api/v1/signals', '/', new URL(a.url).pathname]) {
    const r = await at(evil, path);
    assert.equal(r.status, 403, `${path} under a rebound name`);
    assert.match(r.body, /DNS rebinding/);
  }
  for (const path of ['/healthz', '/metrics']) assert.equal((await at(evil, path)).status, 200, `${path}: probes address gateways by any name`);
  for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `${hostname()}:${port}`, `${hostname()}.local:${port}`, 'gw-17.example:1'])
    assert.equal((await at(host, '/api/v1/info')).status, 200, `addressed as ${host}`);
  assert.equal((await at(`gw-17.example:${port}`, '/api/v1/info')).status, 403, 'a listed name on another port is another site');
});

test('token file format: bad lines and empty files are refused with the line named (exit 2)', async () => {
  assert.throws(() => parseLocalTokens('admin short\n', 'f'), /f line 1/);
  assert.throws(() => parseLocalTokens('writer 0123456789abcdef0123\n', 'f'), /line 1: expected "admin <token>"/);
  assert.throws(() => parseLocalTokens('# nothing\n\n', 'f'), /holds no token/);
  const bad = join(dir, 'bad-tokens');
  writeFileSync(bad, `admin ${ADMIN}\nroot ${READ}\n`);
  const p = runCli(['agent', '--sim', '--local-token-file', bad]);
  assert.equal(await p.wait(), 2);
  assert.match(p.stderr, /--local-token-file: .*bad-tokens line 2/);
  const q = runCli(['agent', '--sim', '--console-auth']);
  assert.equal(await q.wait(), 2);
  assert.match(q.stderr, /--console-auth needs --local-token-file/);
  const r = runCli(['agent', '--sim', '--tls-cert', tokenFile]);
  assert.equal(await r.wait(), 2);
  assert.match(r.stderr, /both --tls-cert and --tls-key/);
});

test('--tls-cert/--tls-key: the console is served over HTTPS with a self-signed certificate', async () => {
  execFileSync('bash', [fileURLToPath(new URL('../../../.ci/ensure-debs.sh', import.meta.url)), 'openssl'], { stdio: 'inherit' });
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'],
    { stdio: 'ignore' },
  );
  const a = await agent(['--sim', '--sim-rate', '50', '--tls-cert', cert, '--tls-key', key, '--local-token-file', tokenFile, '--console-auth']);
  assert.match(a.url, /^https:\/\/127\.0\.0\.1:\d+\//, 'the logged console URL is https');
  const ca = (await import('node:fs')).readFileSync(cert, 'utf8');
  const ok = await get(a.url, { Authorization: `Bearer ${READ}` }, ca);
  assert.equal(ok.status, 200);
  assert.match(ok.body, /canrelay console/);
  assert.equal((await get(a.base + '/api/v1/info', {}, ca)).status, 401, 'auth holds over TLS too');
  await assert.rejects(get(a.base + '/healthz'), /self-signed|certificate/, 'an unknown certificate is refused by the client');
  // Plain HTTP on the TLS port: Node's TLS server takes the request for a failed handshake and closes the
  // connection without a byte (a FIN, no 400 page), so the client sees ECONNRESET "socket hang up" (Node 20
  // and 24 alike). Not ECONNREFUSED: the agent is listening, and still serves HTTPS right after.
  await assert.rejects(
    get(a.base.replace('https:', 'http:') + '/healthz'),
    { code: 'ECONNRESET', message: 'socket hang up' },
    'plain HTTP is not served: the connection is closed unanswered',
  );
  assert.equal((await get(a.base + '/healthz', {}, ca)).status, 200, 'the agent, alive, still answers HTTPS on that port');
  // A key that does not belong to the certificate: a clear error, not a crash.
  const otherKey = join(dir, 'other-key.pem');
  execFileSync('openssl', ['genrsa', '-out', otherKey, '2048'], { stdio: 'ignore' });
  const bad = runCli(['agent', '--sim', '--listen', '127.0.0.1:0', '--state-dir', tempDir('canrelay-auth-'), '--tls-cert', cert, '--tls-key', otherKey]);
  assert.notEqual(await bad.wait(), 0);
  assert.match(bad.stderr + bad.stdout, /--tls-cert\/--tls-key/);
});
