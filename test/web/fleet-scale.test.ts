/**
 * The fleet page with 2,000 dongles in headless Chromium: a real bridge and 2,000 protocol-level fake
 * agents in this process (test/helpers/fake-fleet.ts, no 2,000 processes). The snapshot is drawn (2,000
 * known, one page of 100 rows); while every dongle sends "seen" and bus_state, live changes keep reaching
 * the page (a dongle on the first page going offline, the last dongle's bus turning error-passive and
 * back; a row whose "seen" moves on is updated in place, its buttons kept); the filter finds the last dongle (#1999) and a state; sorting and paging answer. Behaviour only:
 * how fast the page is goes to `make bench-fleet-page`. Fails on any uncaught page error.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Page } from 'playwright-core';
import { ADMIN_TOKEN, startBridgeProcess, type StartedBridge } from '../helpers/bridge-process.js';
import { launchBrowser, screenshot, type TestBrowser } from '../helpers/browser.js';
import { untilValue } from '../helpers/until.js';
import { FakeFleet } from '../helpers/fake-fleet.js';

const N = 2000;
/** The load: every dongle sends "seen" + bus_state once per PERIOD_S seconds (a share of them each second). */
const PERIOD_S = 5;
const MAX_TICKS = 240;

let browser: TestBrowser;
let bridge: StartedBridge;
let fleet: FakeFleet | undefined;

before(async () => {
  browser = await launchBrowser();
  bridge = await startBridgeProcess();
  fleet = await FakeFleet.start(bridge, N);
  for (const a of fleet.agents) fleet.bus(a, 'error-active');
});
after(async () => {
  await fleet?.close();
  await bridge?.proc.stop('SIGKILL');
  await browser?.close();
});

const rowIds = (page: Page): Promise<string[]> => page.$$eval('#dongles tbody tr', (trs) => trs.map((tr) => (tr as HTMLElement).dataset.dongle ?? ''));
const text = async (page: Page, sel: string): Promise<string> => ((await page.locator(sel).textContent()) ?? '').trim();
const busState = (page: Page, id: string): Promise<string | null> =>
  page
    .locator(`#dongles tr[data-dongle="${id}"] .bus-state[data-bus="can0"]`)
    .getAttribute('data-state', { timeout: 1000 })
    .catch(() => null);
const events = (page: Page): Promise<number> => page.evaluate(() => (window as unknown as { canrelayFleet: { version: number } }).canrelayFleet.version);

test(`${N} dongles: the snapshot is drawn, live changes keep coming under load, the filter finds dongle #${N - 1}, sorting and paging answer`, async () => {
  const f = fleet!;
  const page = await browser.page({ width: 1280, height: 800 });
  await page.goto(bridge.base + '/');
  await page.locator('#token-panel').waitFor();
  await page.fill('#token-input', ADMIN_TOKEN);
  await page.press('#token-input', 'Enter');
  await untilValue(async () => (await text(page, '#dongle-count')) === `${N} of ${N}`, `all ${N} dongles in the page`, 60_000);
  await untilValue(async () => (await page.getAttribute('body', 'data-role')) === 'admin', 'admin role');
  const first = await rowIds(page);
  assert.equal(first.length, 100, 'one page of rows');
  assert.deepEqual(first.slice(0, 3), ['fl-0000', 'fl-0001', 'fl-0002']);
  assert.equal(await text(page, '#page-info'), `page 1 of ${N / 100}`);
  // The figures are drawn with the model's next version, not with the table's count: wait for them.
  await untilValue(async () => (await text(page, '#fig-online')) === String(N), `${N} online in the figures`, 20_000);
  await untilValue(async () => (await busState(page, 'fl-0000')) === 'error-active', 'the first row shows its bus', 20_000);

  // The load, bounded in ticks: a fifth of the fleet each second.
  let tick = 0;
  const load = setInterval(() => {
    if (tick >= MAX_TICKS) return clearInterval(load);
    for (let i = tick % PERIOD_S; i < N; i += PERIOD_S) {
      f.seen(f.agents[i]!);
      f.bus(f.agents[i]!, 'error-active');
    }
    tick++;
  }, 1000);
  try {
    const v0 = await events(page);
    // Rows are kept, not rebuilt, while they change: mark fl-0010's row and its Rotate button.
    await page.evaluate(() => {
      const tr = document.querySelector('#dongles tr[data-dongle="fl-0010"]') as HTMLElement & { kept?: boolean };
      tr.kept = true;
      (tr.querySelector('button[data-action="rotate"]') as HTMLElement & { kept?: boolean }).kept = true;
    });
    const seen10 = await page.locator('#dongles tr[data-dongle="fl-0010"] td:nth-child(3)').getAttribute('title');
    // A dongle of the first page loses its link: its row turns offline.
    f.agents[5]!.kill();
    await untilValue(async () => (await page.locator('#dongles tr[data-dongle="fl-0005"]').getAttribute('data-status')) === 'offline', 'fl-0005 offline on the page', 30_000);
    await untilValue(async () => (await text(page, '#fig-online')) === String(N - 1), 'the online figure follows', 10_000);

    await untilValue(
      async () => (await page.locator('#dongles tr[data-dongle="fl-0010"] td:nth-child(3)').getAttribute('title')) !== seen10,
      "fl-0010's last seen moves on (its own 'seen')",
      60_000,
    );
    assert.deepEqual(
      await page.evaluate(() => {
        const tr = document.querySelector('#dongles tr[data-dongle="fl-0010"]') as HTMLElement & { kept?: boolean };
        return [tr.kept, (tr.querySelector('button[data-action="rotate"]') as HTMLElement & { kept?: boolean }).kept];
      }),
      [true, true],
      'the changed row and its buttons are the same elements (a click on them is not lost to a redraw)',
    );

    // The last dongle's bus turns error-passive: the filter finds it by id and by state.
    const lastId = `fl-${N - 1}`;
    const last = f.agents[N - 1]!;
    f.bus(last, 'error-passive');
    await page.fill('#dongle-filter', lastId);
    await untilValue(async () => (await rowIds(page)).join() === lastId, `the filter shows ${lastId} alone`);
    await untilValue(async () => (await busState(page, lastId)) === 'error-passive', `${lastId} error-passive in its row`, 30_000);
    await page.fill('#dongle-filter', 'error-passive');
    await untilValue(async () => (await text(page, '#dongle-count')) === `1 of ${N}` && (await rowIds(page)).join() === lastId, 'the state filter finds it');
    // Another one joins it; then the last one recovers and leaves the filtered list.
    f.bus(f.agents[1234]!, 'error-passive');
    await untilValue(async () => (await rowIds(page)).join() === `fl-1234,${lastId}`, 'two error-passive dongles', 30_000);
    f.bus(last, 'error-active');
    await untilValue(async () => (await rowIds(page)).join() === 'fl-1234', `${lastId} recovered`, 30_000);
    await screenshot(page, 'fleet-2000-filtered');

    // Sorting and paging over all of them.
    await page.fill('#dongle-filter', '');
    await untilValue(async () => (await rowIds(page)).length === 100, 'the full page again');
    await page.click('#dongles th button[data-sort="id"]'); // descending
    await untilValue(async () => (await rowIds(page))[0] === lastId, `sorted descending: ${lastId} first`);
    await page.click('#dongles th button[data-sort="status"]'); // offline first
    await untilValue(async () => (await rowIds(page))[0] === 'fl-0005', 'by status: the offline one first');
    await page.click('#dongles th button[data-sort="id"]');
    await untilValue(async () => (await rowIds(page))[0] === 'fl-0000', 'by id again');
    for (let p = 0; p < N / 100 - 1; p++) await page.click('#page-next');
    await untilValue(async () => (await text(page, '#page-info')) === `page ${N / 100} of ${N / 100}`, 'the last page');
    assert.equal((await rowIds(page)).at(-1), lastId);
    assert.equal(await page.locator('#page-next').isDisabled(), true);

    // Live updates kept flowing the whole time (the page's model applied them).
    assert.ok(tick > 0, 'the load ran');
    await untilValue(async () => (await events(page)) - v0 > 200, 'fleet events keep reaching the page', 30_000);
    await screenshot(page, 'fleet-2000');
  } finally {
    clearInterval(load);
  }
  await page.close();
});
