/**
 * The Signals view in headless Chromium against a real agent decoding a replayed log with a DBC:
 * the by-id table shows message names and signals, the Signals view lists and searches them, and
 * pinned signals plot on the live uPlot chart (own axis per unit) that pauses and zooms. With nothing
 * new on the stream, neither the by-id table nor the Signals view sorts or touches the DOM (only the
 * signals' ages move).
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import { pageErrors, screenshot, browserSuite } from '../helpers/browser.js';
import { untilValue } from '../helpers/until.js';
import { startAgentProcess, tempDir } from '../helpers/processes.js';

const FEATURES = fileURLToPath(new URL('../../../test/fixtures/dbc/features.dbc', import.meta.url));
const { browser, procs } = browserSuite();

/** 4 s of a drive, looped: BE_ACROSS_3 ramps (deg), LE_ACROSS_13 ramps (km/h), GEAR stays D. */
function writeDrive(path: string): void {
  const lines: string[] = [];
  for (let i = 0; i < 400; i++) {
    const t = (1 + i * 0.01).toFixed(6);
    const deg = (i * 5) & 0xfff; // 12 bits, Motorola from bit 3
    const be = [(deg >> 8) & 0x0f, deg & 0xff, 0, 0, 0, 0, 0, 0];
    const kmh = (i * 17) & 0x1fff; // 13 bits, Intel from bit 5
    const le = [(kmh << 5) & 0xff, (kmh >> 3) & 0xff, (kmh >> 11) & 0x03, 0, 0, 0, 0, 0x30];
    const hex = (b: number[]): string => b.map((x) => x.toString(16).padStart(2, '0').toUpperCase()).join('');
    lines.push(`(${t}) can0 100#${hex(be)}`, `(${t}) can0 101#${hex(le)}`);
  }
  writeFileSync(path, lines.join('\n') + '\n');
}

const chart = (page: Page): Promise<{ points: number; span: number; zoomed: boolean; paused: boolean }> =>
  page.evaluate(() => {
    const c = (window as unknown as { canrelayChart: { points: number; span: number; isZoomed: boolean; isPaused: boolean } }).canrelayChart;
    return { points: c.points, span: c.span, zoomed: c.isZoomed, paused: c.isPaused };
  });

test('signals: by-id shows them, the Signals view searches them, pinned ones plot live; pause and zoom', async () => {
  const dir = tempDir('canrelay-web-signals-');
  writeDrive(join(dir, 'drive.log'));
  const a = await startAgentProcess(['--replay', join(dir, 'drive.log'), '--replay-loop', '--dbc', FEATURES], { stateDir: join(dir, 'state') });
  procs.push(a.proc);
  const page = await browser.page({ width: 1280, height: 900 });
  const errors = pageErrors(page);
  await page.goto(a.base + '/');
  await page.locator('#stream-state[data-state="live"]').waitFor();

  // By id: the message name and its decoded signals next to the bytes.
  const cell = page.locator('#byid tbody tr[data-id="0x100"] td.c-signals');
  await untilValue(async () => /BIG_ENDIAN_MIX/.test(await cell.innerText()) && /BE_ACROSS_3 [-\d.]+ deg/.test(await cell.innerText()), 'decoded signals in the by-id row');
  await untilValue(async () => /GEAR D/.test(await page.locator('#byid tbody tr[data-id="0x101"] td.c-signals').innerText()), 'the GEAR label');

  // Signals view: every signal, searchable.
  await page.click('#tab-signals');
  await untilValue(async () => (await page.locator('#signals tbody tr').count()) >= 9, 'the signal rows');
  await page.fill('#signal-search', 'gear');
  await untilValue(async () => (await page.locator('#signals tbody tr').count()) === 1, 'the search narrowing to GEAR');
  assert.equal(await page.locator('#signals tbody tr td.c-value').innerText(), 'D');
  assert.equal(await page.locator('#signals tbody tr button.pin').isDisabled(), true, 'a text value cannot be pinned');
  await page.fill('#signal-search', 'km/h');
  await untilValue(async () => (await page.locator('#signals tbody tr').count()) === 1, 'search by unit');
  await page.fill('#signal-search', '');

  // Pin two signals with different units: one chart, two series, two y axes.
  // Each pin checked as pressed: a click can land on a row the live table just replaced (lost in a CI run on
  // a loaded machine); clicked again only while not pressed, since a second click unpins.
  for (const name of ['BE_ACROSS_3', 'LE_ACROSS_13']) {
    const pin = page.locator(`#signals tbody tr[data-signal="${name}"] button.pin`);
    for (let i = 0; i < 5 && (await pin.getAttribute('aria-pressed')) !== 'true'; i++) {
      await pin.click();
      await pin.waitFor({ state: 'attached' });
      await page
        .waitForFunction((sel) => document.querySelector(sel)?.getAttribute('aria-pressed') === 'true', `#signals tbody tr[data-signal="${name}"] button.pin`, { timeout: 2000 })
        .catch(() => undefined);
    }
    assert.equal(await pin.getAttribute('aria-pressed'), 'true', `${name} pinned`);
  }
  await page.locator('#chart .uplot canvas').waitFor();
  // The canvas is there after the first pin; the second series joins on the chart's next draw.
  await untilValue(async () => (await page.getAttribute('#chart', 'data-series')) === '2', 'two series on the chart');
  assert.equal(await page.getAttribute('#chart', 'data-axes'), '2');
  const legend = await page.locator('#chart .u-legend').innerText();
  assert.match(legend, /BE_ACROSS_3 \(deg\)/);
  assert.match(legend, /LE_ACROSS_13 \(km\/h\)/);
  await untilValue(async () => (await chart(page)).points > 20, 'points on the chart');
  const live = await chart(page);
  assert.ok(Math.abs(live.span - 60) < 0.001, `the live window is 60 s (got ${live.span})`);

  // Pause: the chart holds still while values keep arriving in the table.
  await page.click('#chart-pause');
  const held = await chart(page);
  assert.equal(held.paused, true);
  const valueCell = page.locator('#signals tbody tr[data-signal="BE_ACROSS_3"] td.c-value');
  const before = await valueCell.innerText();
  await untilValue(async () => (await valueCell.innerText()) !== before, 'the table moving on while the chart is paused');
  // Two animation frames after the new values: any redraw they would cause has happened.
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
  assert.equal((await chart(page)).points, held.points, 'no new points while paused');
  await page.click('#chart-pause');
  await untilValue(async () => (await chart(page)).points !== held.points, 'new points after resume');

  // Zoom: drag across the newest part of the plot (the data starts at the first pin, at the right).
  const over = await page.locator('#chart .u-over').boundingBox();
  assert.ok(over);
  await page.mouse.move(over.x + over.width * 0.9, over.y + over.height / 2);
  await page.mouse.down();
  await page.mouse.move(over.x + over.width * 0.995, over.y + over.height / 2, { steps: 5 });
  await page.mouse.up();
  await untilValue(async () => (await chart(page)).zoomed, 'the zoom');
  const zoomed = await chart(page);
  assert.ok(zoomed.span < 10, `zoomed into a narrower span (got ${zoomed.span} s)`);
  await screenshot(page, 'signals-chart');
  await page.click('#chart-reset');
  await untilValue(async () => !(await chart(page)).zoomed && Math.abs((await chart(page)).span - 60) < 0.001, 'back to the 60 s window');

  // Zoomed, then a pin removed: the chart is rebuilt with the moving 60 s window (a zoom kept across the
  // rebuild froze its x range for good: new points landed off its right edge).
  await page.mouse.move(over.x + over.width * 0.9, over.y + over.height / 2);
  await page.mouse.down();
  await page.mouse.move(over.x + over.width * 0.995, over.y + over.height / 2, { steps: 5 });
  await page.mouse.up();
  await untilValue(async () => (await chart(page)).zoomed, 'zoomed again');
  await page.click('#signals tbody tr[data-signal="LE_ACROSS_13"] button.pin');
  await untilValue(async () => (await page.getAttribute('#chart', 'data-series')) === '1', 'one series after the unpin');
  await untilValue(async () => !(await chart(page)).zoomed && Math.abs((await chart(page)).span - 60) < 0.001, 'the rebuilt chart moves with the 60 s window');
  const xmax = (): Promise<number> => page.evaluate(() => (window as unknown as { canrelayChart: { plot: { scales: { x: { max: number } } } } }).canrelayChart.plot.scales.x.max);
  const firstMax = await xmax();
  await untilValue(async () => (await xmax()) > firstMax, 'its right edge advancing with new data');
  await page.click('#signals tbody tr[data-signal="LE_ACROSS_13"] button.pin');
  await untilValue(async () => (await page.getAttribute('#chart', 'data-series')) === '2', 'two series again');

  // Unpin both: the chart goes away.
  await page.click('#signals tbody tr[data-signal="BE_ACROSS_3"] button.pin');
  await page.click('#signals tbody tr[data-signal="LE_ACROSS_13"] button.pin');
  await untilValue(async () => await page.locator('#chart').isHidden(), 'the chart hidden with nothing pinned');
  assert.deepEqual(errors, [], 'no uncaught errors in the page');
});

/**
 * Over `ms` of the page's time, the DOM mutations under `sel` (what kind, on which element) and the sorts
 * of two or more items the page made (counted by the wrapper countSorts installs).
 */
async function watchQuiet(page: Page, sel: string, ms: number): Promise<{ mutations: { what: string; age: boolean }[]; sorts: number }> {
  return page.evaluate(
    async ({ sel, ms }) => {
      const w = window as unknown as { canrelaySorts: number };
      const mutations: { what: string; age: boolean }[] = [];
      const note = (records: MutationRecord[]): void => {
        for (const r of records) {
          const el = r.target instanceof Element ? r.target : r.target.parentElement;
          const name = el ? `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ''}${el.className ? `.${String(el.className).replace(/ /g, '.')}` : ''}` : '?';
          mutations.push({ what: `${r.type}${r.attributeName ? ` ${r.attributeName}` : ''} on ${name}`, age: Boolean(el?.closest('td.c-age')) });
        }
      };
      const obs = new MutationObserver(note);
      obs.observe(document.querySelector(sel)!, { subtree: true, childList: true, attributes: true, characterData: true });
      const sorts = w.canrelaySorts;
      await new Promise((r) => setTimeout(r, ms));
      note(obs.takeRecords());
      obs.disconnect();
      return { mutations, sorts: w.canrelaySorts - sorts };
    },
    { sel, ms },
  );
}

/** Counts the page's sorts of two or more items in window.canrelaySorts (the tables sort their rows). */
async function countSorts(page: Page): Promise<void> {
  await page.addInitScript(() => {
    const w = window as unknown as { canrelaySorts: number };
    w.canrelaySorts = 0;
    const sort = Array.prototype.sort;
    Array.prototype.sort = function <T>(this: T[], compare?: (a: T, b: T) => number): T[] {
      if (this.length > 1) w.canrelaySorts++;
      return sort.call(this, compare) as T[];
    };
  });
}

test('nothing new on the stream: the by-id table and the Signals view neither sort nor touch the DOM; the ages still move', async () => {
  const dir = tempDir('canrelay-web-signals-quiet-');
  // Each id once: no rate (one frame), no highlight; the replay ends and the bus stays silent. A
  // bus_state each second keeps events (and the page's draws) coming without changing either table.
  writeFileSync(join(dir, 'once.log'), '(1.000000) can0 100#0064000000000000\n(1.010000) can0 101#A00F000000000030\n');
  const a = await startAgentProcess(['--replay', join(dir, 'once.log'), '--dbc', FEATURES, '--bus-state-interval', '1'], { stateDir: join(dir, 'state') });
  procs.push(a.proc);
  const page = await browser.page();
  const errors = pageErrors(page);
  await countSorts(page);
  await page.goto(a.base + '/');
  await page.locator('#stream-state[data-state="live"]').waitFor();
  // Steady: both rows there and marked stale (5 s without a frame), which is the last change they make.
  await untilValue(async () => (await page.locator('#byid tbody tr.stale').count()) === 2, 'both by-id rows drawn and gone stale', 20_000);
  const byId = await watchQuiet(page, '#panel-byid', 3000);
  assert.deepEqual(
    byId.mutations.map((m) => m.what),
    [],
    'no DOM change in the by-id view while nothing changes',
  );
  assert.equal(byId.sorts, 0, 'no sorting while nothing changes');

  await page.click('#tab-signals');
  await untilValue(async () => (await page.locator('#signals tbody tr').count()) === 9, 'the signals of both frames');
  const signals = await watchQuiet(page, '#panel-signals', 3000);
  assert.deepEqual(
    signals.mutations.filter((m) => !m.age).map((m) => m.what),
    [],
    'no DOM change in the Signals view but the ages while nothing changes',
  );
  assert.ok(
    signals.mutations.some((m) => m.age),
    'the ages ("3 s ago") still move',
  );
  assert.equal(signals.sorts, 0, 'no searching or sorting while nothing changes');
  assert.deepEqual(errors, [], 'no uncaught errors in the page');
});
