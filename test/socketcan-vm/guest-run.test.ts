/**
 * `make test-socketcan` on the host: boots the qemu guest (run.sh, agent-guest.sh: every guest check, with
 * four emulated Kvaser PCIcan boards, SJA1000 on the guest kernel's kvaser_pci driver) with qemu forwarding
 * two host ports into it, and while the guest's bus-health-checks.ts holds its agent on the real `can0`,
 * drives the real console page in Chromium on the host:
 *  - the bus badge shows the controller state the kernel reports (error-active), the tooltip the kernel's
 *    bitrate and sample point; the same in /metrics;
 *  - `ip link set can0 down` (the kernel's STOPPED) raises the alert bar at once, and it goes when can0 is
 *    up again — at a new bitrate (10 kbit/s), which the page then shows;
 *  - steady bursts of cangen on can1 (the same frames each second): the load gauge shows the load those
 *    frames make (their exact bits, as canbusload -e counts them, / the bitrate) within 5 %, the bound the
 *    guest uses against canbusload; the title the frame rate, the sparkline fills;
 *  - error frames injected on vcan2 with cansend render in the trace in words next to their raw bytes.
 * The emulated controller cannot reach error-warning, error-passive or bus-off (see docs/bus-health.md):
 * the alert bar for those is checked with mirrored states in test/web/bus-health.test.ts.
 * Then the guest run must end with exit status 0 (every guest check passed).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import { frameBits } from '../../core/can/bit-count.js';
import { parseCandumpLine } from '../../core/can/candump.js';
import { browserSuite, screenshot } from '../helpers/browser.js';
import { untilValue } from '../helpers/until.js';
import { freePort } from '../helpers/processes.js';
import { underCi } from '../helpers/skips.js';
import { getJson, metricValue } from '../helpers/sse-client.js';
import { GUEST_AGENT_PORT, GUEST_CONTROL_PORT, GuestControl, PAGE_HOST_ENV } from './page-link.js';

const HERE = fileURLToPath(new URL('../../../test/socketcan-vm/', import.meta.url));
const VM_TIMEOUT_S = Number(process.env.SOCKETCAN_VM_TIMEOUT ?? 1800);
const { browser } = browserSuite();

let vm: { exit: Promise<number>; kill: () => void; exited: () => boolean };
let results = '';
let agentPort = 0;
let control: GuestControl;

before(async () => {
  // A developer may narrow the guest run; CI runs all of it, or it would pass having checked less.
  if (underCi() && (process.env.GUEST_CHECKS !== undefined || process.env.SOCKETCAN_VM_GUEST_ARGS))
    throw new Error('GUEST_CHECKS and SOCKETCAN_VM_GUEST_ARGS narrow the guest run: not under CI (unset them)');
  agentPort = await freePort();
  const controlPort = await freePort();
  control = new GuestControl(controlPort);
  // Not tempDir (removed at exit): a failed guest run's results are kept for a look; a passed one removes them.
  results = mkdtempSync(join(tmpdir(), 'canrelay-vm-'));
  const passenv = [process.env.SOCKETCAN_VM_PASSENV ?? '', PAGE_HOST_ENV, process.env.GUEST_CHECKS !== undefined ? 'GUEST_CHECKS' : ''].join(' ').trim();
  // Extra arguments for the guest's node --test (e.g. --test-name-pattern=page), for a developer's run.
  const guestArgs = (process.env.SOCKETCAN_VM_GUEST_ARGS ?? '').split(/\s+/).filter(Boolean);
  const child = spawn('bash', [join(HERE, 'run.sh'), join(HERE, 'agent-guest.sh'), ...guestArgs], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      SOCKETCAN_VM_KVASER: '4',
      SOCKETCAN_VM_TIMEOUT: String(VM_TIMEOUT_S),
      SOCKETCAN_VM_OUT: results,
      SOCKETCAN_VM_HOSTFWD: `tcp:127.0.0.1:${agentPort}-:${GUEST_AGENT_PORT} tcp:127.0.0.1:${controlPort}-:${GUEST_CONTROL_PORT}`,
      SOCKETCAN_VM_PASSENV: passenv,
      [PAGE_HOST_ENV]: '1',
    },
  });
  // The guest's console and its test report, as make test-socketcan always showed them.
  child.stdout!.pipe(process.stderr, { end: false });
  child.stderr!.pipe(process.stderr, { end: false });
  let code: number | null = null;
  const exit = new Promise<number>((resolve) => child.on('close', (c, sig) => resolve((code = c ?? (sig ? 128 : 125)))));
  vm = { exit, kill: () => child.kill('SIGTERM'), exited: () => code !== null };
});

after(async () => {
  // run.sh's own trap stops qemu on TERM.
  if (vm && !vm.exited()) {
    vm.kill();
    await vm.exit;
  }
});

/** The guest's progress files, for a failure's message. */
function guestProgress(): string {
  const tail = (f: string): string => {
    try {
      return readFileSync(join(results, f), 'utf8').split('\n').slice(-15).join('\n');
    } catch {
      return '';
    }
  };
  return `bus-health-progress.log (tail):\n${tail('bus-health-progress.log')}`;
}

const item = (page: Page, bus: string) => page.locator(`#bus-health .bus-health-item[data-bus="${bus}"]`);
const badge = async (page: Page, bus: string): Promise<string | null> => item(page, bus).locator('.bus-state').textContent();
const title = async (page: Page, bus: string): Promise<string> => (await item(page, bus).getAttribute('title')) ?? '';

/** The kernel's bit timing of an interface, as `ip -json -details link show` prints it. */
async function kernelTiming(dev: string): Promise<{ bitrate: number; samplePoint: number; state: string }> {
  const j = JSON.parse(await control.run('ip', '-json', '-details', 'link', 'show', dev)) as {
    linkinfo: { info_data: { state: string; bittiming: { bitrate: number; sample_point: string | number } } };
  }[];
  const d = j[0]!.linkinfo.info_data;
  return { bitrate: d.bittiming.bitrate, samplePoint: Number(d.bittiming.sample_point), state: d.state };
}

async function setBitrate(dev: string, bps: number, restartMs: number | null): Promise<void> {
  await control.run('ip', 'link', 'set', dev, 'down');
  await control.run('ip', 'link', 'set', dev, 'type', 'can', 'bitrate', String(bps), ...(restartMs === null ? [] : ['restart-ms', String(restartMs)]));
  await control.run('ip', 'link', 'set', dev, 'up');
}

test('the console page on the host shows the guest agent on the real kvaser_pci can0: state, bitrate, sample point, a stopped controller, the load cangen makes, error frames in words', {
  timeout: VM_TIMEOUT_S * 1000,
}, async () => {
  // The guest reaches its page test after the bus-load checks (minutes under TCG).
  const deadline = Date.now() + VM_TIMEOUT_S * 1000;
  while (!(await control.ready())) {
    if (vm.exited()) throw new Error(`the guest run ended (exit ${await vm.exit}) before its page checks began (results kept in ${results})\n${guestProgress()}`);
    if (Date.now() > deadline) throw new Error(`the guest did not serve the page checks within ${VM_TIMEOUT_S} s\n${guestProgress()}`);
    await new Promise((r) => setTimeout(r, 2000));
  }
  const base = `http://127.0.0.1:${agentPort}`;
  let verdict: { ok: boolean; error?: string } = { ok: false, error: 'the host checks did not finish' };
  let page: Page | undefined;
  try {
    page = await browser.page();
    await page.goto(base + '/');
    await item(page, 'can0').waitFor({ timeout: 60_000 });

    // 1. What the kernel reports, on the page and in the metrics.
    const k500 = await kernelTiming('can0');
    assert.deepEqual({ bitrate: k500.bitrate, state: k500.state }, { bitrate: 500_000, state: 'ERROR-ACTIVE' }, 'the guest set can0 up at 500 kbit/s');
    await untilValue(async () => (await badge(page!, 'can0')) === 'error-active', 'the can0 badge to show error-active', 30_000);
    assert.equal(await item(page, 'can0').locator('.bus-state').getAttribute('data-state'), 'error-active');
    const t500 = await title(page, 'can0');
    assert.match(t500, /^can0: error-active$/m);
    assert.match(t500, /^TX errors 0, RX errors 0$/m);
    assert.match(t500, /^500 kbit\/s$/m, 'the kernel bitrate (no "--bitrate": it is the kernel\'s)');
    assert.match(t500, new RegExp(`^sample point ${k500.samplePoint}$`, 'm'), `the kernel's sample point ${k500.samplePoint}`);
    assert.equal(await badge(page, 'vcan2'), 'no controller', 'vcan has no controller state');
    assert.match(await title(page, 'vcan2'), /^125 kbit\/s \(--bitrate\)$/m, "vcan has no bit timing: the agent's --bitrate vcan2=125000 (its can0=250000 lost to the kernel's)");
    assert.equal(await page.locator('#bus-alert').isHidden(), true);
    const m500 = (await getJson(base + '/metrics')).text;
    assert.equal(metricValue(m500, 'canrelay_bus_state', { bus: 'can0', state: 'error-active' }), 1);
    assert.equal(metricValue(m500, 'canrelay_bus_bitrate_bps', { bus: 'can0' }), 500_000);
    await screenshot(page, 'kvaser-can0-error-active');

    // 2. The controller stopped (ip link set can0 down): impossible to miss; then up again at 10 kbit/s.
    await control.run('ip', 'link', 'set', 'can0', 'down');
    await untilValue(async () => (await badge(page!, 'can0')) === 'stopped', 'the can0 badge to show stopped', 30_000);
    const alert = page.locator('#bus-alert');
    await alert.waitFor({ timeout: 10_000 });
    assert.match((await alert.textContent()) ?? '', /can0 is STOPPED/);
    assert.equal(await alert.getAttribute('role'), 'alert');
    assert.equal(metricValue((await getJson(base + '/metrics')).text, 'canrelay_bus_state', { bus: 'can0', state: 'stopped' }), 1);
    await screenshot(page, 'kvaser-can0-stopped');
    await control.run('ip', 'link', 'set', 'can0', 'type', 'can', 'bitrate', '10000');
    await control.run('ip', 'link', 'set', 'can0', 'up');
    await setBitrate('can1', 10_000, null); // the other node on the emulated bus, at the same bitrate
    const k10 = await kernelTiming('can0');
    assert.equal(k10.bitrate, 10_000);
    await untilValue(
      async () => (await badge(page!, 'can0')) === 'error-active' && /^10 kbit\/s$/m.test(await title(page!, 'can0')),
      'can0 error-active at 10 kbit/s on the page',
      30_000,
    );
    assert.match(await title(page, 'can0'), new RegExp(`^sample point ${k10.samplePoint}$`, 'm'));
    await untilValue(() => alert.isHidden(), 'the alert bar to go when can0 is up', 10_000);
    assert.equal(metricValue((await getJson(base + '/metrics')).text, 'canrelay_bus_bitrate_bps', { bus: 'can0' }), 10_000);

    // 3. Load: 30 frames each second (id 7E8, 8 zero bytes: the most stuff bits) at 10 kbit/s.
    const FRAMES = 30;
    const parsed = parseCandumpLine('(0.000000) can1 7E8#0000000000000000');
    assert.ok(parsed.ok);
    const bits = frameBits(parsed.frame).nominal;
    const expected = (FRAMES * bits) / 10_000;
    await control.startBursts({ bus: 'can1', frames: FRAMES, id: '7E8', data: '0000000000000000', maxBursts: 120 });
    const within = (x: number): boolean => Math.abs(x - expected) <= 0.05 * expected;
    // The gauge shows the last whole second: wait for a second that holds one burst (the emulation can
    // stretch a burst over a second's end; then that second and the next are off, and the wait goes on).
    const shown = await untilValue(
      async () => {
        const v = Number(await item(page!, 'can0').locator('.gauge').getAttribute('aria-valuenow'));
        return within(v / 100) && (await title(page!, 'can0')).includes(`${FRAMES} frames/s`) ? v : null;
      },
      `a load gauge within 5 % of ${(expected * 100).toFixed(1)} % (${FRAMES} frames of ${bits} bits each second at 10 kbit/s)`,
      90_000,
      200,
    );
    const text = (await item(page, 'can0').locator('.bus-load').textContent()) ?? '';
    assert.ok(within(Number(/^(\d+) %$/.exec(text)?.[1]) / 100), `the load figure "${text}" within 5 % of ${(expected * 100).toFixed(1)} %`);
    await untilValue(
      async () => ((await item(page!, 'can0').locator('.spark polyline').getAttribute('points')) ?? '').split(' ').length >= 3,
      'a sparkline of three seconds',
      30_000,
    );
    // The metric holds the same last closed second: within the same bound (waited for, as the gauge was).
    const ratio = await untilValue(
      async () => {
        const r = metricValue((await getJson(base + '/metrics')).text, 'canrelay_bus_load_ratio', { bus: 'can0' });
        return r !== undefined && within(r) ? r : null;
      },
      `canrelay_bus_load_ratio within 5 % of ${expected.toFixed(4)}`,
      30_000,
      200,
    );
    await screenshot(page, 'kvaser-can0-load');
    const b = await control.stopBursts();
    assert.deepEqual(b.errors, [], 'cangen ran');
    console.log(`load gauge ${shown} % (exact ${(expected * 100).toFixed(2)} %: ${FRAMES} × ${bits} bits / 10 kbit/s); canrelay_bus_load_ratio ${ratio}; ${b.bursts} bursts`);

    // 4. Error frames (vcan takes them from cansend; a controller only makes them) in the trace, in words.
    const errors: [string, string, string, string][] = [
      ['20000004#0030', '0x00000004', '00 30', 'ERR controller: RX errors reached error-passive, TX errors reached error-passive'],
      ['20000008#0000040A', '0x00000008', '00 00 04 0A', 'ERR protocol violation: bit stuffing error in the data field'],
      ['20000040#', '0x00000040', '', 'ERR bus-off'],
    ];
    for (const [f] of errors) await control.run('cansend', 'vcan2', f);
    await page.click('#tab-trace');
    for (const [, id, raw, words] of errors) {
      const row = page.locator(`#trace .trace-row.err[data-bus="vcan2"][data-id="${id}"]`).last();
      await row.waitFor({ timeout: 30_000 });
      assert.equal(await row.locator('.x').textContent(), raw, `${id}: the raw bytes`);
      assert.equal(await row.locator('.o').textContent(), words, `${id}: in words next to them`);
      assert.equal(await row.locator('.o').getAttribute('title'), words, `${id}: the whole text as the tooltip (a long one is cut in the column)`);
    }
    await screenshot(page, 'kvaser-error-frames');

    // 5. can0 and can1 back as the guest had them (the relay check follows).
    await setBitrate('can0', 500_000, 100);
    await setBitrate('can1', 500_000, null);
    await untilValue(async () => (await badge(page!, 'can0')) === 'error-active' && /^500 kbit\/s$/m.test(await title(page!, 'can0')), 'can0 back at 500 kbit/s', 30_000);
    verdict = { ok: true };
  } catch (err) {
    verdict = { ok: false, error: (err as Error).message.slice(0, 2000) };
    throw err;
  } finally {
    await page?.close();
    await control.stopBursts().catch(() => {});
    await control.done(verdict).catch((err: Error) => console.log(`could not tell the guest: ${err.message}`));
  }
});

test('the guest run: every guest check passes (guest-checks, bus-health-checks, failure-checks)', { timeout: VM_TIMEOUT_S * 1000 + 60_000 }, async () => {
  const code = await vm.exit;
  assert.equal(code, 0, `run.sh agent-guest.sh exited ${code} (124: the VM timed out; 125: the harness failed); the guest's results are kept in ${results}\n${guestProgress()}`);
  rmSync(results, { recursive: true, force: true });
});
