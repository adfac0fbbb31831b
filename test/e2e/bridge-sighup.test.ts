/**
 * SIGHUP to the bridge (`kill -HUP`, a logrotate habit): it has nothing to reload, says so and goes on.
 * Without a handler, SIGHUP's default killed the process by signal, and no stop path ran (systemd
 * restarted it). core/cli/daemon.ts registers it for both daemons; the agent's DBC reload acts on it there
 * (test/e2e/agent-signals.test.ts).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startBridgeProcess } from '../helpers/bridge-process.js';
import { getJson } from '../helpers/sse-client.js';

test('SIGHUP to the bridge: one line says there is nothing to reload, /healthz still answers, SIGTERM still stops it cleanly', async () => {
  const bridge = await startBridgeProcess();
  try {
    bridge.proc.child.kill('SIGHUP');
    const line = await bridge.proc.waitForLog((l) => l.signal === 'SIGHUP', 10_000);
    assert.match(String(line.msg), /nothing to reload/);
    assert.equal(line.level, 30, 'info: nothing is wrong');
    const h = await getJson(bridge.base + '/healthz');
    assert.equal(h.status, 200, 'the bridge still answers after SIGHUP');
    assert.equal(bridge.proc.exitCode, null);
  } finally {
    assert.equal(await bridge.proc.stop('SIGTERM'), 0, 'and stops cleanly on SIGTERM');
  }
  assert.ok(bridge.proc.logs.some((l) => l.msg === 'bridge stopped'));
});
