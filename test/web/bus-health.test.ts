/**
 * Bus health on the console page in headless Chromium: the header's state badge, load gauge and
 * one-minute sparkline from a real agent (a looping replay with --bitrate), decoded error frames in the
 * trace, and — through the bridge, from an agent mirroring bus_state — an error-passive, a bus-off and a
 * stopped controller that raise the alert bar, which goes away when the bus is error-active again; the
 * agent's page shows the bus health of /api/v1/info at load, before any bus_state reaches it, and an
 * older report from the backlog does not take it back in time. Screenshots in test/artifacts/.
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
import { getJson, SseClient } from '../helpers/sse-client.js';

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

test('agent page at load: the bus health of /api/v1/info, not only after the first bus_state (up to --bus-state-interval away)', async () => {
  // bus_state once at start, then every 60 s: nothing else publishes one (the sim has no controller, its
  // link and the --bitrate stay).
  const a = await startAgentProcess(['--sim', '--bitrate', 'can0=500000', '--bus-state-interval', '60'], { stateDir: tempDir('canrelay-web-bh-info-') });
  procs.push(a.proc);
  // Every bus_state of the run, seen from the start.
  const watch = await SseClient.connect(a.url + '?backlog=10000');
  try {
    await watch.waitFor((evs) => evs.some((e) => e.event === 'bus_state'), 10_000, 'the first bus_state');
    const health = await untilValue(async () => {
      const list = (await getJson(a.base + '/api/v1/info')).body.bus_health as { bus: string; load: number | null }[] | undefined;
      return list?.find((b) => b.bus === 'can0' && b.load !== null);
    }, "can0's figures in /api/v1/info");
    // That bus_state gone from the backlog the page asks for (its 200 latest events): only the info can
    // fill the panel now, until the next report a minute later.
    await untilValue(
      async () => {
        const c = await SseClient.connect(a.url + '?backlog=200');
        try {
          await c.waitFor((evs) => evs.length >= 200, 10_000, 'the backlog');
          return c.events.slice(0, 200).every((e) => e.event !== 'bus_state');
        } finally {
          c.close();
        }
      },
      'a backlog without bus_state',
      20_000,
    );
    const page = await browser.page();
    await page.goto(a.base + '/');
    const item = page.locator('#bus-health .bus-health-item[data-bus="can0"]');
    await item.waitFor({ timeout: 10_000 });
    assert.equal(watch.ofType('bus_state').length, 1, 'no second bus_state came meanwhile (a run this slow cannot tell)');
    assert.equal(await item.locator('.bus-state').textContent(), 'no controller');
    assert.match((await item.getAttribute('title')) ?? '', /500 kbit\/s \(--bitrate\)/);
    assert.match((await item.locator('.bus-load').textContent()) ?? '', /^[\d.]+ %$/);
    assert.equal(await item.getAttribute('data-stale'), null, 'current figures, not "last known"');
    console.log(`bus health shown from /api/v1/info (its load then ${health.load})`);
    await page.close();
  } finally {
    watch.close();
  }
});

test('agent page at load: a bus_state of the backlog, older than the info, is not drawn over it (the panel does not go back in time)', async () => {
  // 20 frames/s: the page's 200-event backlog reaches back to the start, and its first bus_state.
  const a = await startAgentProcess(['--sim', '--sim-rate', '20', '--bitrate', 'can0=500000', '--bus-state-interval', '60'], { stateDir: tempDir('canrelay-web-bh-old-') });
  procs.push(a.proc);
  const watch = await SseClient.connect(a.url + '?backlog=10000');
  try {
    await watch.waitFor((evs) => evs.some((e) => e.event === 'bus_state'), 10_000, 'the first bus_state');
    const first = watch.ofType('bus_state')[0]!;
    const firstPoints = (first.json.load_history as number[]).length;
    // The agent's figures (refreshed every second) two seconds of history past that report.
    const points = await untilValue(async () => {
      const list = (await getJson(a.base + '/api/v1/info')).body.bus_health as { bus: string; load_history: number[] }[] | undefined;
      const n = list?.find((b) => b.bus === 'can0')?.load_history.length ?? 0;
      return n >= firstPoints + 2 ? n : null;
    }, "two more seconds in /api/v1/info's load history");
    const backlog = await SseClient.connect(a.url + '?backlog=200');
    try {
      await backlog.waitFor((evs) => evs.some((e) => e.id === first.id), 5000, 'the first bus_state still in the backlog');
    } finally {
      backlog.close();
    }
    const page = await browser.page();
    await page.goto(a.base + '/');
    // The page's stream past that bus_state (the header's last event id).
    await untilValue(async () => Number(await page.locator('#fig-last').textContent()) > Number(first.id), 'the page past the backlog bus_state');
    const drawn = await page.locator('#bus-health .bus-health-item[data-bus="can0"] .spark polyline').getAttribute('points');
    const n = (drawn ?? '').split(' ').filter(Boolean).length;
    assert.equal(watch.ofType('bus_state').length, 1, 'no second bus_state came meanwhile (a run this slow cannot tell)');
    assert.ok(n >= points, `the sparkline of the info (${points} points or more), not of the older report (${firstPoints}): ${n}`);
    await page.close();
  } finally {
    watch.close();
  }
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
