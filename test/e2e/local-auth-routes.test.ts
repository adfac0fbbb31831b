/**
 * Every route of the agent's local API against the README's table of which token it needs ("The local
 * API: tokens and HTTPS"), through the real CLI over loopback: with --local-token-file alone and with
 * --console-auth too, each route is asked with no token, a wrong one, a read token and the admin token.
 * A write must refuse no token (401) and a read token (403); a guarded read must refuse no token (401);
 * an open route must answer without one. The table is read from the README, so a route added to the
 * table is checked and a route's guard changed without the table fails here.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { RECORDINGS_PATH } from '../../agent/recording/recording-routes.js';
import { DBC_RELOAD_PATH, SIGNALS_PATH } from '../../agent/signals/signals-routes.js';
import { startAgentProcess, tempDir, type StartedAgent } from '../helpers/processes.js';

const ADMIN = 'admin-token-0123456789abcdef';
const READ = 'read-token-0123456789abcdef';
const DONGLE = 'auth-gw';

type Need = 'open' | 'any token' | 'admin';
interface Route {
  method: string;
  path: string;
  plain: Need;
  consoleAuth: Need;
}

/** The README's table, row by row. */
function readmeRoutes(): Route[] {
  const text = readFileSync(fileURLToPath(new URL('../../../README.md', import.meta.url)), 'utf8');
  const section = text.slice(text.indexOf('### The local API: tokens and HTTPS'));
  const rows: Route[] = [];
  for (const line of section.slice(0, section.indexOf('\n### ')).split('\n')) {
    const m = /^\| `(GET|HEAD|POST|PUT|DELETE) (\/[^` ]*)`[^|]* \| (open|any token|admin) \| (open|any token|admin) \|$/.exec(line);
    if (m) rows.push({ method: m[1]!, path: m[2]!, plain: m[3] as Need, consoleAuth: m[4] as Need });
  }
  return rows;
}

const running: StartedAgent[] = [];
after(async () => {
  for (const a of running) await a.proc.stop('SIGKILL');
});
let tokenFile: string;
before(() => {
  tokenFile = join(tempDir('canrelay-auth-routes-'), 'local-tokens');
  writeFileSync(tokenFile, `admin ${ADMIN}\nread ${READ}\n`);
});

/** Status of one request; a stream is abandoned once its head has come. */
async function status(base: string, method: string, path: string, token?: string): Promise<number> {
  const ac = new AbortController();
  const res = await fetch(base + path, {
    method,
    signal: ac.signal,
    headers: { ...(token ? { Authorization: `Bearer ${token}` } : {}), ...(method === 'POST' ? { 'Content-Type': 'application/json' } : {}) },
    ...(method === 'POST' ? { body: '{}' } : {}),
  });
  const s = res.status;
  if (res.headers.get('content-type')?.startsWith('text/event-stream')) ac.abort();
  else await res.arrayBuffer();
  return s;
}

/**
 * What each route answers when it may be used (a token it accepts, or none on an open route), as the README
 * documents it: the recordings API's curl lines (201 for a start, 200 the stopped recording, 204 for a
 * delete), the reload's 200 (422 only when a --dbc file fails: these agents have none), 200 for every read.
 * Not "anything but 401/403": a 404 or 500 from a route is not an answer. A route added to the README's
 * table needs its status here.
 */
const ANSWER: Record<string, number> = {
  'GET /api/v1/streams/dongles/<id>/console': 200,
  'GET /api/v1/info': 200,
  'GET /metrics': 200,
  'GET /api/v1/signals': 200,
  'POST /api/v1/dbc/reload': 200,
  'GET /api/v1/recordings': 200,
  'POST /api/v1/recordings': 201,
  'POST /api/v1/recordings/<rid>/stop': 200,
  'POST /api/v1/recordings/<rid>/ticket': 201,
  'GET /api/v1/recordings/<rid>': 200,
  'HEAD /api/v1/recordings/<rid>': 200,
  'DELETE /api/v1/recordings/<rid>': 204,
  'GET /healthz': 200,
  'GET /': 200,
};
const answer = (r: Route): number => {
  const s = ANSWER[`${r.method} ${r.path}`];
  assert.ok(s !== undefined, `${r.method} ${r.path} is in the README's table but this test does not know its documented status: add it to ANSWER`);
  return s;
};

/** Checks every route in `routes` for one agent; `rid` is a recording of it (for the <rid> paths). */
async function checkRoutes(a: StartedAgent, routes: Route[], need: (r: Route) => Need, rid: string): Promise<void> {
  const concrete = (r: Route): string => r.path.replace('<id>', DONGLE).replace('<rid>', rid);
  // Refusals first (they change nothing), then the admin token in table order (stop before delete).
  for (const r of routes) {
    const path = concrete(r);
    const n = need(r);
    const what = `${r.method} ${r.path} (${n})`;
    const none = await status(a.base, r.method, path);
    const wrong = await status(a.base, r.method, path, 'wrong-token-0123456789abcdef');
    const read = await status(a.base, r.method, path, READ);
    if (n === 'open') {
      assert.ok(none !== 401 && none !== 403, `${what}: answered without a token (got ${none})`);
      assert.equal(none, answer(r), `${what}: answered without a token with its documented status`);
    } else {
      assert.equal(none, 401, `${what}: no token is 401`);
      assert.equal(wrong, 401, `${what}: an unknown token is 401`);
      if (n === 'admin') assert.equal(read, 403, `${what}: a read token is 403`);
      else {
        assert.ok(read !== 401 && read !== 403, `${what}: a read token may (got ${read})`);
        assert.equal(read, answer(r), `${what}: a read token gets its documented status`);
      }
    }
  }
  for (const r of routes) {
    const s = await status(a.base, r.method, concrete(r), ADMIN);
    assert.ok(s !== 401 && s !== 403 && s < 500, `${r.method} ${r.path}: the admin token may (got ${s})`);
    assert.equal(s, answer(r), `${r.method} ${r.path}: the admin token gets its documented status`);
  }
}

/** An agent with the tokens (and --console-auth when asked) and one stopped recording. */
async function agentWithRecording(extra: string[]): Promise<{ a: StartedAgent; rid: string }> {
  const a = await startAgentProcess(['--sim', '--sim-rate', '50', '--local-token-file', tokenFile, ...extra], { id: DONGLE });
  running.push(a);
  const start = await fetch(a.base + RECORDINGS_PATH, { method: 'POST', headers: { Authorization: `Bearer ${ADMIN}` } });
  assert.equal(start.status, 201);
  const rid = String(((await start.json()) as { id: string }).id);
  return { a, rid };
}

test("the README's route table names every route the agent serves (the paths its route files declare)", () => {
  const routes = readmeRoutes();
  const paths = new Set(routes.map((r) => r.path));
  for (const p of [
    '/api/v1/streams/dongles/<id>/console',
    '/api/v1/info',
    '/metrics',
    '/healthz',
    '/',
    SIGNALS_PATH,
    DBC_RELOAD_PATH,
    RECORDINGS_PATH,
    `${RECORDINGS_PATH}/<rid>`,
    `${RECORDINGS_PATH}/<rid>/stop`,
    `${RECORDINGS_PATH}/<rid>/ticket`,
  ])
    assert.ok(paths.has(p), `${p} is in the README's table`);
  assert.ok(routes.length >= 14, `${routes.length} rows read`);
});

test('--local-token-file: every write refuses no token (401) and a read token (403); reads answer without one', async () => {
  const { a, rid } = await agentWithRecording([]);
  await checkRoutes(a, readmeRoutes(), (r) => r.plain, rid);
});

test('--local-token-file --console-auth: every route but /healthz and the page refuses no token (401); writes refuse a read token (403)', async () => {
  const { a, rid } = await agentWithRecording(['--console-auth']);
  await checkRoutes(a, readmeRoutes(), (r) => r.consoleAuth, rid);
});
