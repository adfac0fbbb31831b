/** core/service/sd-notify.ts: the sd_notify protocol through systemd-notify, against a socket read like PID 1. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createServiceNotifier, watchdogIntervalMs } from '../../core/service/sd-notify.js';
import { hasCommand, NotifyListener } from '../helpers/deploy.js';
import { skipUnlessPresent } from '../helpers/skips.js';

test('watchdog interval: half of WATCHDOG_USEC, only for the process WATCHDOG_PID names', () => {
  assert.equal(watchdogIntervalMs({ WATCHDOG_USEC: '30000000' }), 15_000);
  assert.equal(watchdogIntervalMs({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: String(process.pid) }), 15_000);
  assert.equal(watchdogIntervalMs({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '1' }), 0, 'another process is meant');
  assert.equal(watchdogIntervalMs({}), 0);
  assert.equal(watchdogIntervalMs({ WATCHDOG_USEC: 'soon' }), 0);
  assert.equal(watchdogIntervalMs({ WATCHDOG_USEC: '1000' }), 100, 'never a busy loop');
});

test('without NOTIFY_SOCKET nothing is spawned', async () => {
  const warnings: string[] = [];
  const n = createServiceNotifier({ env: { WATCHDOG_USEC: '1000000' }, command: '/nonexistent', log: { warn: (_o, m) => warnings.push(m), debug: () => {} } });
  assert.equal(n.enabled, false);
  assert.equal(n.watchdogIntervalMs, 0);
  n.ready('x');
  n.stopping();
  await n.flush();
  assert.deepEqual(warnings, []);
});

test('a missing systemd-notify is reported once, never fatal', async () => {
  const warnings: string[] = [];
  const n = createServiceNotifier({ env: { NOTIFY_SOCKET: '/run/nowhere' }, command: '/nonexistent/systemd-notify', log: { warn: (_o, m) => warnings.push(m), debug: () => {} } });
  n.ready('a');
  n.status('b');
  n.stopping();
  await n.flush();
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /cannot notify the service manager/);
});

test('READY=1, STATUS (one line), MAINPID, watchdog pings and STOPPING=1 arrive', {
  skip: skipUnlessPresent('sd_notify', hasCommand('systemd-notify') && hasCommand('python3') ? undefined : 'needs systemd-notify and python3'),
}, async () => {
  const l = new NotifyListener();
  await l.listening();
  try {
    const t0 = Date.now();
    const n = createServiceNotifier({ env: { ...process.env, NOTIFY_SOCKET: l.path, WATCHDOG_USEC: '400000' } });
    assert.equal(n.watchdogIntervalMs, 200);
    n.ready('console listening\non http://x/\r\n');
    const ready = await l.waitFor((m) => m.fields.READY === '1');
    assert.equal(ready.fields.STATUS, 'console listening on http://x/ ');
    assert.equal(ready.fields.MAINPID, String(process.pid));
    // Pings waited for (a loaded machine delays timers), and never faster than the interval.
    const pings = (): number => l.messages.filter((m) => m.fields.WATCHDOG === '1').length;
    const deadline = Date.now() + 10_000;
    while (pings() < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.ok(pings() >= 2, `watchdog pings: ${pings()}`);
    assert.ok(pings() <= Math.floor((Date.now() - t0) / 200) + 2, `${pings()} pings in ${Date.now() - t0} ms at a 200 ms interval`);
    n.stopping('bye');
    await n.flush();
    const stop = await l.waitFor((m) => m.fields.STOPPING === '1');
    assert.equal(stop.fields.STATUS, 'bye');
    const after = l.messages.length;
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(l.messages.length, after, 'no watchdog pings after STOPPING=1');
  } finally {
    l.close();
  }
});
