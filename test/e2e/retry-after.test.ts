/**
 * Every 503 of both daemons carries Retry-After (core/http/replies.ts RETRY_AFTER_S), over loopback to the
 * real processes: the agent whose --record-dir cannot be used (its recordings API: list, start, download),
 * the bridge asked for the recordings of a registered dongle that is not connected, and the bridge passing
 * on that agent's 503 once it is connected. Before, only the client caps and the admin API's store refusals
 * said when to come back; these said nothing.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { startBridgeProcess } from '../helpers/bridge-process.js';
import { cleanupAfter } from '../helpers/cleanup.js';
import { startAgentProcess, tempDir } from '../helpers/processes.js';
import { waitForValue as until } from '../helpers/until.js';

const { track } = cleanupAfter();

/** The header a 503 must carry: a whole number of seconds, above zero. */
function assertRetryAfter(r: { status: number; headers: Headers }, what: string): void {
  assert.equal(r.status, 503, `${what}: status`);
  const v = r.headers.get('retry-after');
  assert.ok(v !== null, `${what}: no Retry-After`);
  assert.match(v, /^[1-9][0-9]*$/, `${what}: Retry-After ${v} is not a positive number of seconds`);
}

/** An agent whose --record-dir is a file: it runs on, and its recordings API answers 503. */
async function agentWithoutRecordings(extra: string[] = [], id = 'ra-gw') {
  const dir = tempDir('canrelay-retry-after-');
  const notADir = join(dir, 'recs');
  writeFileSync(notADir, 'a file where the folder should be\n');
  return track(await startAgentProcess(['--sim', '--record-dir', notADir, ...extra], { id }));
}

test('the agent: recordings unavailable (--record-dir unusable) answer 503 with Retry-After', async () => {
  const a = await agentWithoutRecordings();
  const list = await fetch(`${a.base}/api/v1/recordings`);
  assertRetryAfter(list, 'GET /api/v1/recordings');
  assert.match(String(((await list.json()) as { error: string }).error), /recordings are unavailable/);
  assertRetryAfter(await fetch(`${a.base}/api/v1/recordings`, { method: 'POST', body: '{}', headers: { 'Content-Type': 'application/json' } }), 'POST /api/v1/recordings');
  assertRetryAfter(await fetch(`${a.base}/api/v1/recordings/20000101T000000Z-000000`), 'a download');
});

test('the bridge: recordings of a dongle not connected, and an agent 503 passed on, carry Retry-After', async () => {
  const b = track(await startBridgeProcess());
  const token = await b.admin.register('ra-gw');
  assertRetryAfter(await b.admin.get('/api/v1/dongles/ra-gw/recordings'), 'the list, dongle not connected');
  assertRetryAfter(await b.admin.get('/api/v1/dongles/ra-gw/recordings/20000101T000000Z-000000'), 'a download, dongle not connected');
  assertRetryAfter(await b.admin.post('/api/v1/dongles/ra-gw/recordings/20000101T000000Z-000000/ticket'), 'a ticket, dongle not connected');

  const a = await agentWithoutRecordings(['--bridge', b.base, '--token', token]);
  await a.proc.waitForLog((l) => l.msg === 'uplink connected');
  // The agent's own 503 (its recordings are unavailable), through the uplink and out of the bridge.
  const passed = await until(
    () => b.admin.get('/api/v1/dongles/ra-gw/recordings'),
    (r) => /recordings are unavailable/.test(String(r.body.error)),
    10_000,
    "the agent's refusal through the bridge",
  );
  assertRetryAfter(passed, "the agent's 503 through the bridge");
});
