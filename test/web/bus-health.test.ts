/**
 * Bus health on the console page in headless Chromium: the header's state badge, load gauge and
 * one-minute sparkline from a real agent (a looping replay with --bitrate), decoded error frames in the
 * trace, and — through the bridge, from an agent mirroring bus_state — an error-passive, a bus-off and a
 * stopped controller that raise the alert bar, which goes away when the bus is error-active again. Screenshots in test/artifacts/.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { ADMIN_TOKEN, startBridgeProcess, type StartedBridge } from '../helpers/bridge-process.js';
import { screenshot, browserSuite } from '../helpers/browser.js';
import { untilValue } from '../helpers/until.js';
import { FakeAgent } from '../helpers/fake-agent.js';
import { startAgentProcess, tempDir } from '../helpers/processes.js';

const { browser, procs } = browserSuite();
let bridge: StartedBridge;

test('header: state badge, load gauge and sparkline per bus; error frames in words in the trace', async () => {
  const dir = tempDir('canrelay-web-bh-');
  // 1,000 frames/s of id 123 with 8 bytes, and an error frame (controller: TX passive) every second.
  const lines: string[] = [];
  for (let i = 0; i < 2000; i++) {
    const t = 1_700_000_000 + i / 1000;
    lines.push(`(${t.toFixed(6)}) can0 123#${(i & 0xff).toString(16).padStart(2, '0').toUpperCase()}00000000000000`);
    if (i % 1000 === 500) lines.push(`(${t.toFixed(6)}) can0 20000004#0020000000000000`);
  }
  const log = join(dir, 'bus.log');
  writeFileSync(log, lines.join('\n') + '\n');
  const a = await startAgentProcess(['--replay', log, '--replay-loop', '--bitrate', 'can0=250000', '--bus-state-interval', '1'], { stateDir: dir });
  procs.push(a.proc);
  const page = await browser.page();
  await page.goto(a.base + '/');
  const item = page.locator('#bus-health .bus-health-item[data-bus="can0"]');
  await item.waitFor();
  assert.equal(await item.locator('.bus-state').textContent(), 'no controller', 'a replay has no controller state');
  // ~1,000 frames/s × ~110 bits at 250 kbit/s: about 44 %.
  const load = await untilValue(
    async () => {
      const v = Number(await item.locator('.gauge').getAttribute('aria-valuenow'));
      return v >= 30 && v <= 60 ? v : null;
    },
    'a load gauge of 30-60 %',
    20_000,
  );
  assert.match((await item.locator('.bus-load').textContent()) ?? '', /^\d+ %$/);
  assert.match((await item.getAttribute('title')) ?? '', /250 kbit\/s \(--bitrate\)/);
  await untilValue(async () => ((await item.locator('.spark polyline').getAttribute('points')) ?? '').split(' ').length >= 3, 'a sparkline of three seconds', 20_000);
  assert.equal(await page.locator('#bus-alert').isHidden(), true);
  await page.click('#tab-trace');
  // One error frame a second among 1,000 frames: its row is on screen for a moment each time (the trace
  // follows the newest rows); a loaded run once missed every moment of 20 s.
  const err = page.locator('#trace .trace-row.err').first();
  await err.waitFor({ timeout: 60_000 });
  assert.equal(await err.locator('.x').textContent(), '00 20 00 00 00 00 00 00', 'the raw bytes');
  assert.equal(await err.locator('.o').textContent(), 'ERR controller: TX errors reached error-passive', 'and the words next to them');
  await screenshot(page, 'bus-health-load');
  console.log(`load gauge ${load} %`);
  await page.close();
});

test('bridge page: error-passive and bus-off mirrored from an agent are impossible to miss, and clear again', async () => {
  bridge = await startBridgeProcess();
  procs.push(bridge.proc);
  const token = await bridge.admin.register('bh1');
  const agent = await FakeAgent.connect(bridge.base, { dongle: 'bh1', token });
  const state = (seq: number, s: string, tec: number, load: number): void =>
    agent.sendEvent(seq, 'bus_state', {
      ts: new Date().toISOString(),
      bus: 'can0',
      link: s === 'stopped' ? 'down' : 'up',
      state: s,
      tec,
      rec: 0,
      bitrate: 500000,
      bitrate_source: 'kernel',
      sample_point: 0.875,
      data_bitrate: null,
      data_sample_point: null,
      restart_ms: 100,
      counters: { bus_errors: seq * 10, bus_off: s === 'bus-off' ? 1 : 0 },
      load,
      load_peak_1m: 0.9,
      load_history: [0.2, 0.5, 0.9, load],
      frame_rate: 4000,
      error_frames: { bus_error: seq * 10 },
    });
  const page = await browser.page();
  await page.goto(`${bridge.base}/console/dongles/bh1`);
  await page.locator('#token-panel').waitFor();
  await page.fill('#token-input', ADMIN_TOKEN);
  await page.press('#token-input', 'Enter');
  await page.locator('#stream-state[data-state="live"]').waitFor();
  // On the bridge, events carry their dongle: the bus is shown as "bh1 can0" (as in the bus filter).
  const badge = page.locator('#bus-health .bus-health-item[data-bus="bh1 can0"] .bus-state');
  state(1, 'error-active', 0, 0.35);
  await untilValue(async () => (await badge.textContent()) === 'error-active', 'error-active badge');
  assert.equal(await page.locator('#bus-alert').isHidden(), true);
  state(2, 'error-passive', 136, 0.9);
  await untilValue(async () => (await badge.textContent()) === 'error-passive', 'error-passive badge');
  const alert = page.locator('#bus-alert');
  await alert.waitFor();
  assert.match((await alert.textContent()) ?? '', /bh1 can0 is ERROR-PASSIVE \(TX errors 136, RX errors 0\)/);
  assert.equal(await alert.getAttribute('role'), 'alert');
  const colors = await badge.evaluate((el) => getComputedStyle(el).backgroundColor);
  assert.notEqual(colors, 'rgba(0, 0, 0, 0)', 'the badge is filled');
  await screenshot(page, 'bus-health-error-passive');
  state(3, 'bus-off', 0, 0);
  await untilValue(async () => /bh1 can0 is BUS-OFF/.test((await alert.textContent()) ?? ''), 'bus-off alert');
  await screenshot(page, 'bus-health-bus-off');
  // The interface down (the kernel's STOPPED): nothing is read from the bus, as hard to miss.
  state(4, 'stopped', 0, 0);
  await untilValue(async () => /bh1 can0 is STOPPED — its interface is down, nothing is read \(ip link set can0 up\)/.test((await alert.textContent()) ?? ''), 'stopped alert');
  assert.equal(await badge.textContent(), 'stopped');
  state(5, 'error-active', 0, 0.3);
  await untilValue(async () => (await badge.textContent()) === 'error-active', 'healthy again');
  assert.equal(await alert.isHidden(), true, 'the alert goes when the bus is healthy');
  await agent.close();
  await page.close();
});
