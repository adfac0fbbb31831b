/**
 * DBC decoding in the real agent process: --dbc (bare and bound to a bus), decoded fields on the
 * console's can_frame events, GET /api/v1/signals, and reloads (SIGHUP, POST /api/v1/dbc/reload with
 * local auth) where a broken file is an error naming file and line and never stops the agent.
 */
import assert from 'node:assert/strict';
import { appendFileSync, copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { getJson, SseClient } from '../helpers/sse-client.js';
import { startAgentProcess, tempDir, type StartedAgent } from '../helpers/processes.js';
import { until } from '../helpers/until.js';

const FEATURES = fileURLToPath(new URL('../../../test/fixtures/dbc/features.dbc', import.meta.url));
const running: StartedAgent[] = [];
after(async () => {
  for (const a of running) await a.proc.stop('SIGKILL');
});

/** A short candump log: one frame each of BIG_ENDIAN_MIX, LITTLE_ENDIAN_MIX and an id no DBC knows. */
function writeLog(dir: string): string {
  const path = join(dir, 'drive.log');
  writeFileSync(
    path,
    [
      '(1700000000.000100) can0 100#05ABFF3800000000',
      '(1700000000.000200) can0 101#0000000000000030',
      '(1700000000.000300) can0 555#0102',
      '(1700000000.000400) can0 100#05ABFF3800000000',
    ].join('\n') + '\n',
  );
  return path;
}

interface Reading {
  bus: string;
  message: string;
  signal: string;
  value: number | string;
  unit: string;
  ts: string;
  numeric?: number;
}

async function signals(
  a: StartedAgent,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: { signals: Reading[]; dbc: { files: Array<{ file: string; messages: number; error?: string }>; errors: string[] } } }> {
  const r = await getJson(a.base + '/api/v1/signals', headers);
  return { status: r.status, body: r.body as never };
}

test('--dbc: signals decoded on the console and in GET /api/v1/signals', async () => {
  const dir = tempDir('canrelay-dbc-');
  const a = await startAgentProcess(['--replay', writeLog(dir), '--replay-speed', '0', '--dbc', FEATURES]);
  running.push(a);
  await until(async () => (await signals(a)).body.signals.length >= 9, 10_000, 'decoded signals');
  const { body } = await signals(a);
  const get = (name: string): Reading => body.signals.find((s) => s.signal === name)!;
  assert.equal(get('BE_ACROSS_3').value, 0x5ab * 0.5 - 10);
  assert.equal(get('BE_ACROSS_3').unit, 'deg');
  assert.equal(get('BE_ACROSS_3').message, 'BIG_ENDIAN_MIX');
  assert.equal(get('BE_SIGNED_16').value, -20);
  assert.equal(get('GEAR').value, 'D');
  assert.equal(get('GEAR').numeric, 3);
  assert.match(get('GEAR').ts, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
  assert.ok(get('BE_ACROSS_3').ts > get('GEAR').ts, "the time of the latest frame of the message (the 4th, after GEAR's 2nd)");
  assert.deepEqual(body.dbc.errors, []);
  assert.equal(body.dbc.files[0]!.messages, 8);

  const c = await SseClient.connect(a.url + '?backlog=100');
  await c.waitFor((ev) => ev.filter((e) => e.event === 'can_frame').length >= 4, 5000, 'the 4 frames');
  const frames = c.ofType('can_frame').map((e) => e.json);
  assert.equal(frames[0]!.msg, 'BIG_ENDIAN_MIX');
  assert.deepEqual(frames[0]!.signals, { BE_ACROSS_3: 715.5, BE_SIGNED_16: -20, BE_ODD_5: 0, BE_SIGNED_11: 0 });
  assert.deepEqual(frames[0]!.units, { BE_ACROSS_3: 'deg', BE_SIGNED_16: 'Nm' });
  assert.equal((frames[1]!.signals as Record<string, unknown>).GEAR, 'D');
  assert.equal(frames[2]!.msg, undefined, 'an id no DBC describes stays plain');
  assert.equal(frames[2]!.signals, undefined);
  assert.ok(
    c.ofType('log').some((e) => e.json.code === 'dbc_loaded'),
    'the load is announced on the console',
  );
  c.close();
});

test('--dbc bus=file applies to that bus only', async () => {
  const dir = tempDir('canrelay-dbc-');
  const log = writeLog(dir);
  // The same frames on can7 too: decoded there, and only there.
  appendFileSync(log, readFileSync(log, 'utf8').replaceAll(' can0 ', ' can7 ').replaceAll('1700000000.', '1700000001.'));
  const a = await startAgentProcess(['--replay', log, '--replay-speed', '0', '--dbc', `can7=${FEATURES}`]);
  running.push(a);
  const c = await SseClient.connect(a.url + '?backlog=100');
  await c.waitFor((ev) => ev.filter((e) => e.event === 'can_frame').length >= 8, 5000, 'the 8 frames');
  const frames = c.ofType('can_frame').map((e) => e.json);
  assert.ok(
    frames.filter((f) => f.bus === 'can0').length === 4 && frames.filter((f) => f.bus === 'can0').every((f) => f.msg === undefined),
    'frames on can0 are not decoded with a can7 DBC',
  );
  const on7 = frames.filter((f) => f.bus === 'can7');
  assert.deepEqual(
    on7.map((f) => f.msg),
    ['BIG_ENDIAN_MIX', 'LITTLE_ENDIAN_MIX', undefined, 'BIG_ENDIAN_MIX'],
    'the same frames on can7 are',
  );
  c.close();
  const r = await signals(a);
  assert.equal(r.body.dbc.files[0]!.messages, 8);
  assert.ok(r.body.signals.length > 0 && r.body.signals.every((s) => s.bus === 'can7'), JSON.stringify(r.body.signals));
});

test('a broken DBC: clear error with file and line, the agent runs; SIGHUP and POST reload pick up the fix', async () => {
  const dir = tempDir('canrelay-dbc-');
  const dbc = join(dir, 'edit.dbc');
  const good = readFileSync(FEATURES, 'utf8');
  writeFileSync(dbc, 'VERSION ""\n\nBO_ 256 BROKEN: 8 X\n SG_ A : 0|8@1+ (1,0 [0|1] "" Y\n');
  const tokens = join(dir, 'tokens');
  writeFileSync(tokens, 'admin admin-token-0123456789\nread read-token-0123456789\n');
  const a = await startAgentProcess(['--sim', '--sim-rate', '200', '--dbc', dbc, '--local-token-file', tokens]);
  running.push(a);
  let r = await signals(a);
  assert.equal(r.status, 200);
  assert.match(r.body.dbc.errors[0]!, /edit\.dbc:4: cannot read signal definition/);
  assert.match(r.body.dbc.files[0]!.error!, /edit\.dbc:4/);
  assert.ok(
    a.proc.logs.some((l) => l.code === 'dbc_error' && /edit\.dbc:4/.test(l.msg)),
    'the error is in the log',
  );

  // Fixed on disk, then SIGHUP.
  writeFileSync(dbc, good);
  a.proc.child.kill('SIGHUP');
  await until(async () => (await signals(a)).body.dbc.files[0]!.messages === 8, 10_000, 'the reload after SIGHUP');
  r = await signals(a);
  assert.deepEqual(r.body.dbc.errors, []);
  assert.equal(a.proc.exitCode, null, 'SIGHUP does not stop the agent');

  // Broken again: POST reload answers 422 with the line, and the previous good version stays in use.
  writeFileSync(dbc, good.replace('BO_ 1025 FLOATS: 16 ECU', 'BO_ 1025 FLOATS 16 ECU'));
  const post = (token?: string): Promise<Response> => fetch(a.base + '/api/v1/dbc/reload', { method: 'POST', headers: token ? { Authorization: `Bearer ${token}` } : {} });
  assert.equal((await post()).status, 401);
  assert.equal((await post('read-token-0123456789')).status, 403);
  const bad = await post('admin-token-0123456789');
  assert.equal(bad.status, 422);
  const badBody = (await bad.json()) as { error: string; messages: number };
  assert.match(badBody.error, /edit\.dbc:\d+: cannot read message definition/);
  assert.match(badBody.error, /previous version stays in use/);
  assert.equal(badBody.messages, 8);

  copyFileSync(FEATURES, dbc);
  const ok = await post('admin-token-0123456789');
  assert.equal(ok.status, 200);
  assert.deepEqual(((await ok.json()) as { errors: string[] }).errors, []);
  assert.equal((await fetch(a.base + '/api/v1/dbc/reload')).status, 405);
});

test('a missing DBC file is named; the agent still starts', async () => {
  const a = await startAgentProcess(['--sim', '--sim-rate', '100', '--dbc', '/nonexistent/powertrain.dbc']);
  running.push(a);
  const r = await signals(a);
  assert.match(r.body.dbc.errors[0]!, /\/nonexistent\/powertrain\.dbc: ENOENT/);
});
