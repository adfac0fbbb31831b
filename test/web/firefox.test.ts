/**
 * The console page in a second engine: Debian's stock Firefox ESR, driven headless over WebDriver BiDi by
 * puppeteer-core (playwright cannot drive stock Firefox; puppeteer-core never downloads a browser). One
 * short pass over what a technician checks first: the header shows the dongle online and the stream live,
 * the By-id table fills, the Trace tab shows frames, and the id filter narrows the rows. The Chromium test
 * (web-agent.test.ts) covers the page in depth; this one proves it also runs in Gecko.
 * The bridge's fleet page too: a viewer token, the snapshot's rows, live updates (an agent connecting, a
 * bus turning error-passive, an agent leaving), the filter, and the admin controls for the admin token.
 * Screenshots: test/artifacts/firefox-byid.png, firefox-fleet.png.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { ARTIFACTS, ROOT, ensureWebBuilt } from '../helpers/browser.js';
import { untilValue } from '../helpers/until.js';
import { ADMIN_TOKEN, startBridgeProcess } from '../helpers/bridge-process.js';
import { FakeAgent } from '../helpers/fake-agent.js';
import { fakeBusState } from '../helpers/fake-fleet.js';
import { startAgentProcess, tempDir, type StartedAgent } from '../helpers/processes.js';
import { skipUnlessPresent } from '../helpers/skips.js';

const FIREFOX = process.env.CANRELAY_FIREFOX ?? '/usr/bin/firefox-esr';

/** Installs Debian's firefox-esr when missing (as root); otherwise the reason it cannot, for the skip. */
function ensureFirefox(): string | null {
  if (existsSync(FIREFOX)) return null;
  try {
    execFileSync('bash', [join(ROOT, '.ci', 'ensure-debs.sh'), 'firefox-esr'], { stdio: 'inherit' });
  } catch (err) {
    return `firefox-esr is not installed at ${FIREFOX} and cannot be installed here (${(err as Error).message.split('\n')[0]}); run: sudo apt-get install -y --no-install-recommends firefox-esr`;
  }
  return existsSync(FIREFOX) ? null : `firefox-esr is still missing at ${FIREFOX}`;
}

const skip = skipUnlessPresent('the page in Firefox', ensureFirefox() ?? undefined);
let browser: Browser | undefined;
let agent: StartedAgent | undefined;
const pageErrors: string[] = [];

before(async () => {
  if (skip) return;
  ensureWebBuilt();
  const home = tempDir('canrelay-ff-home-');
  const profile = tempDir('canrelay-ff-profile-');
  agent = await startAgentProcess(['--sim', '--sim-rate', '500'], { stateDir: tempDir('canrelay-web-ff-') });
  browser = await puppeteer.launch({
    browser: 'firefox',
    protocol: 'webDriverBiDi',
    executablePath: FIREFOX,
    headless: true,
    userDataDir: profile,
    // A throwaway HOME: Firefox (also as root) writes caches and crash-report dirs there.
    env: { ...process.env, HOME: home, MOZ_CRASHREPORTER_DISABLE: '1' },
    defaultViewport: { width: 1280, height: 800 },
    timeout: 60_000,
  });
});

after(async () => {
  await browser?.close().catch(() => {});
  await agent?.proc.stop('SIGKILL');
});

const rowIds = (page: Page): Promise<string[]> => page.$$eval('#byid tbody tr', (trs) => trs.map((tr) => (tr as HTMLElement).dataset.id ?? ''));
const frameRows = (page: Page): Promise<number> => page.$$eval('#trace .trace-row[data-kind="can_frame"]:not([hidden])', (rs) => rs.length);
const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('Firefox: header live and online, By-id fills, Trace shows frames, the id filter narrows', { skip: skip ?? false, timeout: 90_000 }, async () => {
  const page = await browser!.newPage();
  page.setDefaultTimeout(15_000);
  page.on('pageerror', (err) => pageErrors.push(String((err as Error).message ?? err)));
  await page.goto(agent!.base + '/');

  // Header: the dongle's name, online, and the stream live.
  await page.waitForSelector('#stream-state[data-state="live"]');
  await untilValue(
    async () => (await page.$eval('.dongle[data-dongle="test-gw"]', (el) => el.getAttribute('data-presence')).catch(() => null)) === 'online',
    'test-gw online in the header',
  );
  assert.equal(await page.$eval('.dongle[data-dongle="test-gw"] .name', (el) => el.textContent), 'test-gw');
  assert.equal(await page.$eval('.dongle[data-dongle="test-gw"] .pill', (el) => el.textContent), 'online');
  assert.match(await page.title(), /^test-gw · canrelay console$/);

  // By id: rows for the simulator's ids, with rates and 8-byte data.
  await untilValue(async () => (await rowIds(page)).length >= 10, 'at least 10 ids in the By-id table');
  await untilValue(async () => (await page.$eval('#byid tbody tr[data-id="0x094"] .c-rate', (td) => td.textContent).catch(() => '—')) !== '—', 'a rate for 0x094');
  assert.match(await page.$eval('#byid tbody tr[data-id="0x094"] .c-data', (td) => td.textContent ?? ''), /^([0-9A-F]{2}){8}$/);
  assert.equal(await page.$eval('#byid tbody tr[data-id="0x094"] .c-bus', (td) => td.textContent), 'can0');
  await pause(1000); // let rates settle for the picture
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, 'firefox-byid.png') });

  // Trace: clicking the tab selects it and frame rows with time and id appear.
  await page.click('#tab-trace');
  assert.equal(await page.$eval('#tab-trace', (el) => el.getAttribute('aria-selected')), 'true');
  await untilValue(async () => (await frameRows(page)) > 10, 'frame rows in the trace');
  const first = await page.$eval('#trace .trace-row[data-kind="can_frame"]:not([hidden])', (r) => ({
    t: r.querySelector('.t')?.textContent ?? '',
    i: r.querySelector('.i')?.textContent ?? '',
  }));
  assert.match(first.t, /^\d\d:\d\d:\d\d\.\d{6}$/);
  assert.match(first.i, /^0x[0-9A-F]{3,8}$/);
  await page.screenshot({ path: join(ARTIFACTS, 'firefox-trace.png') });

  // The id filter narrows the rows: back on By id, a range keeps only ids inside it.
  await page.click('#tab-byid');
  await untilValue(async () => (await rowIds(page)).length >= 50, 'all ids before filtering');
  const all = (await rowIds(page)).length;
  await page.type('#filter-id', '300-3FF');
  await page.keyboard.press('Enter');
  const ids = await untilValue(async () => {
    const ids = await rowIds(page);
    return ids.length < all && ids.length > 0 ? ids : null;
  }, 'the range filter to narrow the table');
  assert.ok(ids.length >= 10 && ids.every((i) => parseInt(i, 16) >= 0x300 && parseInt(i, 16) <= 0x3ff), `range 300-3FF: ${ids}`);
  assert.notEqual(await page.$eval('#filter-id', (el) => el.getAttribute('aria-invalid')), 'true');
  // …and the trace follows the filter.
  await page.click('#tab-trace');
  await untilValue(async () => (await frameRows(page)) > 5, 'filtered frame rows');
  const traceIds = await page.$$eval('#trace .trace-row[data-kind="can_frame"]:not([hidden])', (rs) => rs.map((r) => (r as HTMLElement).dataset.id ?? ''));
  assert.ok(
    traceIds.every((i) => parseInt(i, 16) >= 0x300 && parseInt(i, 16) <= 0x3ff),
    `trace ids in range: ${traceIds.slice(0, 10)}`,
  );

  assert.deepEqual(pageErrors, [], 'no uncaught errors in the page');
  await page.close();
});

test('Firefox: the fleet page loads with a viewer token, follows live changes, filters; the admin token gets the controls; tablet width fits', {
  skip: skip ?? false,
  timeout: 120_000,
}, async () => {
  const bridge = await startBridgeProcess();
  const agents: FakeAgent[] = [];
  const errors: string[] = [];
  try {
    const tokens = new Map<string, string>();
    for (const id of ['ff1', 'ff2', 'ff3']) tokens.set(id, await bridge.admin.register(id));
    await bridge.admin.group('ffg', 'ff1', 'ff2');
    for (const id of ['ff1', 'ff2']) agents.push(await FakeAgent.connect(bridge.base, { dongle: id, token: tokens.get(id)! }));
    const viewer = String((await bridge.admin.post('/api/v1/viewer-tokens')).body.token);

    const page = await browser!.newPage();
    page.setDefaultTimeout(15_000);
    page.on('pageerror', (err) => errors.push(String((err as Error).message ?? err)));
    await page.goto(bridge.base + '/');
    await page.waitForSelector('#token-panel:not([hidden])');
    await page.type('#token-input', viewer);
    await page.keyboard.press('Enter');
    await page.waitForSelector('#stream-state[data-state="live"]');
    const status = (id: string): Promise<string | null> => page.$eval(`#dongles tr[data-dongle="${id}"]`, (tr) => tr.getAttribute('data-status')).catch(() => null);
    const rows = (): Promise<string[]> => page.$$eval('#dongles tbody tr', (trs) => trs.map((tr) => (tr as HTMLElement).dataset.dongle ?? ''));
    // The snapshot: two online, one registered but offline; the group with its mode.
    await untilValue(async () => (await status('ff1')) === 'online' && (await status('ff2')) === 'online' && (await status('ff3')) === 'offline', 'the snapshot rows');
    await untilValue(async () => (await page.$eval('#groups tr[data-group="ffg"]', (tr) => tr.getAttribute('data-mode')).catch(() => null)) === 'relaying', 'the group relaying');
    await untilValue(async () => (await page.$eval('body', (b) => b.dataset.role)) === 'viewer', 'viewer role');
    assert.equal(await page.$eval('#admin-panel', (el) => (el as HTMLElement).hidden), true, 'no management for a viewer');

    // Live: ff3 connects, ff1's bus turns error-passive, ff2 leaves (the group degrades).
    agents.push(await FakeAgent.connect(bridge.base, { dongle: 'ff3', token: tokens.get('ff3')! }));
    await untilValue(async () => (await status('ff3')) === 'online', 'ff3 online, live');
    agents[0]!.sendEvent(1, 'bus_state', { ...fakeBusState('error-passive') });
    await untilValue(
      async () => (await page.$eval('#dongles tr[data-dongle="ff1"] .bus-state[data-bus="can0"]', (el) => el.getAttribute('data-state')).catch(() => null)) === 'error-passive',
      'ff1 error-passive, live',
    );
    await agents[1]!.close();
    await untilValue(async () => (await status('ff2')) === 'offline', 'ff2 offline, live');
    await untilValue(
      async () => (await page.$eval('#groups tr[data-group="ffg"]', (tr) => tr.getAttribute('data-mode')).catch(() => null)) === 'degraded',
      'the group degraded, live',
    );

    // The filter.
    await page.type('#dongle-filter', 'error-passive');
    await untilValue(async () => (await rows()).join() === 'ff1', 'the filter finds ff1');
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'firefox-fleet.png') });
    await page.close();

    // The admin token: the Manage panel and row buttons.
    const admin = await browser!.newPage();
    admin.setDefaultTimeout(15_000);
    admin.on('pageerror', (err) => errors.push(String((err as Error).message ?? err)));
    await admin.goto(bridge.base + '/');
    await admin.waitForSelector('#token-panel:not([hidden])');
    await admin.type('#token-input', ADMIN_TOKEN);
    await admin.keyboard.press('Enter');
    await untilValue(async () => (await admin.$eval('body', (b) => b.dataset.role)) === 'admin', 'admin role');
    await admin.waitForSelector('#admin-panel:not([hidden])');
    await untilValue(async () => (await admin.$$('#dongles tr[data-dongle="ff3"] button[data-action="rotate"]')).length === 1, 'row buttons for the admin');
    await admin.close();

    // Tablet width (portrait): the same rows, and the page fits the screen (wide tables scroll in their card).
    const tablet = await browser!.newPage();
    tablet.setDefaultTimeout(15_000);
    tablet.on('pageerror', (err) => errors.push(String((err as Error).message ?? err)));
    await tablet.setViewport({ width: 820, height: 1180 });
    await tablet.goto(bridge.base + '/');
    await tablet.waitForSelector('#token-panel:not([hidden])');
    await tablet.type('#token-input', viewer);
    await tablet.keyboard.press('Enter');
    await tablet.waitForSelector('#stream-state[data-state="live"]');
    const tabletRows = (): Promise<string[]> => tablet.$$eval('#dongles tbody tr', (trs) => trs.map((tr) => (tr as HTMLElement).dataset.dongle ?? '').sort());
    await untilValue(async () => (await tabletRows()).join() === 'ff1,ff2,ff3', 'the three rows at tablet width');
    const overflow = await tablet.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    const wide = await tablet.evaluate(() => {
      const w = document.documentElement.clientWidth;
      return [...document.querySelectorAll('body *')]
        .filter((e) => e.getBoundingClientRect().right > w + 0.5)
        .slice(0, 8)
        .map((e) => `${e.tagName.toLowerCase()}#${e.id}.${[...e.classList].join('.')} right=${e.getBoundingClientRect().right}`);
    });
    assert.ok(overflow <= 1, `the page fits the tablet's width in Firefox (overflow ${overflow}px: ${wide.join(', ')})`);
    await tablet.screenshot({ path: join(ARTIFACTS, 'firefox-fleet-tablet.png') });
    await tablet.close();
    assert.deepEqual(errors, [], 'no uncaught errors in the fleet page');
  } finally {
    for (const a of agents) await a.close();
    await bridge.proc.stop('SIGKILL');
  }
});
