/**
 * make bench-fleet-page: the fleet page (the bridge's `/`) in headless Chromium at fleet size. One real
 * bridge process, N protocol-level fake agents (default 2,000, BENCH_FLEET_PAGE_DONGLES; each reports one
 * bus), the page opened with the admin token (row buttons: the heavier case). Measures how long the
 * snapshot takes to be drawn, then — while every agent sends "seen" and a same-state bus_state every 5 s
 * (staggered) — the page's main-thread time (Chrome's TaskDuration), long tasks (> 50 ms), table rows
 * created per second, and how long the page takes to answer: the Next page button, the filter finding the
 * last dongle, a change of that dongle's bus shown in its row, the filter cleared.
 * BENCH_LABEL names the result files (bench/results/fleet-page[-label].{md,json}), to compare builds.
 * Not a test: the figures depend on the machine (the bridge, the load generator and Chromium share it).
 */
import type { CDPSession, Page } from 'playwright-core';
import { ADMIN_TOKEN, startBridgeProcess } from '../test/helpers/bridge-process.js';
import { launchBrowser } from '../test/helpers/browser.js';
import { FakeFleet } from '../test/helpers/fake-fleet.js';
import { median, writeResults, runBench } from './lib.js';

const N = Number(process.env.BENCH_FLEET_PAGE_DONGLES ?? 2000);
const LOAD_SECONDS = Number(process.env.BENCH_FLEET_PAGE_SECONDS ?? 15);
const PERIOD = 5;
const CHANGES = 5;
const LABEL = process.env.BENCH_LABEL ?? '';

interface Probe {
  longTasks: number[];
  rowsAdded: number;
}

/** Installed before the page's scripts: long tasks and every dongle row put into the table. */
function installProbe(): void {
  const w = window as unknown as { probe: Probe };
  w.probe = { longTasks: [], rowsAdded: 0 };
  new PerformanceObserver((l) => {
    for (const e of l.getEntries()) w.probe.longTasks.push(e.duration);
  }).observe({ type: 'longtask', buffered: true });
  new MutationObserver((ms) => {
    for (const m of ms) for (const n of m.addedNodes) if (n instanceof HTMLTableRowElement && n.dataset.dongle !== undefined) w.probe.rowsAdded++;
  }).observe(document, { childList: true, subtree: true });
}

const probe = (page: Page): Promise<Probe> => page.evaluate(() => (window as unknown as { probe: Probe }).probe);
const modelVersion = (page: Page): Promise<number> => page.evaluate(() => (window as unknown as { canrelayFleet: { version: number } }).canrelayFleet.version);

async function taskSeconds(cdp: CDPSession): Promise<number> {
  const { metrics } = (await cdp.send('Performance.getMetrics')) as { metrics: { name: string; value: number }[] };
  return metrics.find((m) => m.name === 'TaskDuration')?.value ?? NaN;
}

/**
 * In-page milliseconds from a click on `#id` (dispatched by the page itself, so no driver overhead) to the
 * end of the next frame: what a person waits for the table to answer.
 */
function clickToFrame(page: Page, id: string): Promise<{ handler: number; layout: number; frame: number }> {
  return page.evaluate(async (id) => {
    const t = performance.now();
    document.getElementById(id)!.click();
    const handler = performance.now() - t;
    void document.body.offsetHeight; // the layout it caused, done now
    const layout = performance.now() - t;
    await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
    return { handler, layout, frame: performance.now() - t };
  }, id);
}

/** The wait for the next frame with nothing done: what headless Chromium adds to every "next frame" figure. */
function idleFrame(page: Page): Promise<number> {
  return page.evaluate(async () => {
    const t = performance.now();
    await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
    return performance.now() - t;
  });
}

/** The same for typing `text` into the filter (one input event). */
function filterToFrame(page: Page, text: string): Promise<number> {
  return page.evaluate(async (text) => {
    const el = document.getElementById('dongle-filter') as HTMLInputElement;
    const t = performance.now();
    el.value = text;
    el.dispatchEvent(new Event('input', { bubbles: true }));
    await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
    return performance.now() - t;
  }, text);
}

/** Milliseconds until `cond` holds in the page (polled every animation frame in the page itself). */
async function timeUntil(page: Page, act: () => Promise<unknown>, cond: string, arg: string): Promise<number> {
  const t = performance.now();
  await act();
  await page.waitForFunction(new Function('arg', `return (${cond})(arg)`) as (a: string) => boolean, arg, { polling: 'raf', timeout: 60_000 });
  return performance.now() - t;
}

async function main(): Promise<void> {
  const b = await startBridgeProcess();
  const t0 = Date.now();
  const fleet = await FakeFleet.start(b, N);
  const agents = fleet.agents;
  for (const a of agents) fleet.bus(a, 'error-active');
  console.log(`${N} dongles registered and connected in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  await new Promise((r) => setTimeout(r, 3000));

  const browser = await launchBrowser();
  const page = await browser.page({ width: 1280, height: 800 });
  await page.addInitScript(installProbe);
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Performance.enable');
  await page.goto(b.base + '/');
  await page.locator('#token-panel').waitFor();
  await page.fill('#token-input', ADMIN_TOKEN);
  const snapshotMs = await timeUntil(
    page,
    () => page.press('#token-input', 'Enter'),
    '(n) => document.getElementById("dongle-count")?.textContent === `${n} of ${n}` && document.querySelectorAll("#dongles tbody tr").length === Math.min(100, n)',
    String(N),
  );
  await page.waitForFunction(() => document.body.dataset.role === 'admin');
  console.log(`snapshot drawn in ${snapshotMs.toFixed(0)} ms`);

  // Load: every agent "seen" + bus_state once per PERIOD, staggered; the page unfiltered on page 1.
  const tick = (s: number): void => {
    for (let i = s % PERIOD; i < agents.length; i += PERIOD) {
      fleet.seen(agents[i]!);
      fleet.bus(agents[i]!, 'error-active');
    }
  };
  const task0 = await taskSeconds(cdp);
  const p0 = await probe(page);
  const v0 = await modelVersion(page);
  const w0 = performance.now();
  let s = 0;
  const second = async (f?: () => Promise<void>): Promise<void> => {
    const start = performance.now();
    tick(s++);
    await f?.();
    await new Promise((r) => setTimeout(r, Math.max(0, 1000 - (performance.now() - start))));
  };
  while (s < LOAD_SECONDS) await second();
  const wall = (performance.now() - w0) / 1000;
  const busy = (await taskSeconds(cdp)) - task0;
  const p1 = await probe(page);
  const events = (await modelVersion(page)) - v0;
  const longTasks = p1.longTasks.slice(p0.longTasks.length);

  // Paging under the same load: Next, then back.
  const next: { handler: number; layout: number; frame: number }[] = [];
  const idle: number[] = [];
  for (let i = 0; i < 6; i++)
    await second(async () => {
      next.push(await clickToFrame(page, 'page-next'));
      if (!((await page.textContent('#page-info')) ?? '').startsWith('page 2 ')) throw new Error('Next did not show page 2');
      await clickToFrame(page, 'page-prev');
      idle.push(await idleFrame(page));
    });
  const nextMs = next.map((x) => x.frame);
  const nextHandlerMs = next.map((x) => x.handler);
  const nextLayoutMs = next.map((x) => x.layout);

  // Answers under the same load: the filter finds the last dongle; its bus changes; the filter is cleared.
  const last = agents[N - 1]!;
  const lastId = last.opts.dongle;
  tick(s++);
  const filterMs = await filterToFrame(page, lastId);
  if ((await page.locator('#dongles tbody tr').count()) !== 1) throw new Error(`the filter did not find ${lastId} alone`);
  const changeMs: number[] = [];
  for (let c = 0; c < CHANGES; c++) {
    tick(s++);
    const state = c % 2 === 0 ? 'error-passive' : 'error-active';
    changeMs.push(
      await timeUntil(
        page,
        async () => fleet.bus(last, state),
        '(x) => { const [id, st] = x.split(" "); return document.querySelector(`#dongles tr[data-dongle="${id}"] .bus-state[data-bus="can0"]`)?.dataset.state === st; }',
        `${lastId} ${state}`,
      ),
    );
    await new Promise((r) => setTimeout(r, 500));
  }
  tick(s++);
  const clearMs = await filterToFrame(page, '');
  if ((await page.locator('#dongles tbody tr').count()) !== 100) throw new Error('the cleared filter did not show 100 rows');

  const figures = {
    label: LABEL,
    dongles: N,
    load_seconds: Math.round(wall),
    updates_per_second_in: Math.round((2 * N) / PERIOD),
    snapshot_drawn_ms: Math.round(snapshotMs),
    model_events_per_second: Math.round(events / wall),
    main_thread_busy_pct: Math.round((busy / wall) * 1000) / 10,
    long_tasks: longTasks.length,
    long_task_max_ms: Math.round(Math.max(0, ...longTasks)),
    rows_created_per_second: Math.round((p1.rowsAdded - p0.rowsAdded) / wall),
    next_page_handler_ms_median: Math.round(median(nextHandlerMs)),
    next_page_layout_ms_median: Math.round(median(nextLayoutMs)),
    idle_frame_ms_median: Math.round(median(idle)),
    next_page_ms_median: Math.round(median(nextMs)),
    next_page_ms_max: Math.round(Math.max(...nextMs)),
    filter_finds_last_ms: Math.round(filterMs),
    change_shown_ms_median: Math.round(median(changeMs)),
    change_shown_ms_max: Math.round(Math.max(...changeMs)),
    filter_cleared_ms: Math.round(clearMs),
  };
  console.log(figures);
  const md = `# Fleet page at ${N} dongles (make bench-fleet-page${LABEL ? `, ${LABEL}` : ''})

Measured ${new Date().toISOString()} on this machine (loaded; bridge, fake agents and Chromium share the cores).
Headless Chromium at 1280×800, admin token, page 1 of the dongles (100 rows) shown.

| figure | value |
|---|---|
| dongles (protocol-level fake agents, one bus each) | ${N} |
| snapshot drawn: token submitted → \`${N} of ${N}\` and 100 rows | ${figures.snapshot_drawn_ms} ms |
| load: presence "seen" + same-state bus_state, every dongle every ${PERIOD} s | ${figures.updates_per_second_in}/s into the bridge for ${figures.load_seconds} s |
| fleet events applied by the page | ${figures.model_events_per_second}/s |
| page main thread busy (Chrome TaskDuration / wall time) | ${figures.main_thread_busy_pct} % |
| long tasks (> 50 ms) during the load / longest | ${figures.long_tasks} / ${figures.long_task_max_ms} ms |
| dongle rows created per second (nothing clicked) | ${figures.rows_created_per_second} |
| Next page clicked → its handler done (100 rows built; median) / and laid out | ${figures.next_page_handler_ms_median} / ${figures.next_page_layout_ms_median} ms |
| the wait for the next frame when nothing happens (headless Chromium's frame pacing, part of every "next frame" figure) | ${figures.idle_frame_ms_median} ms |
| Next page clicked → page 2 drawn, to the end of the next frame, in the page (median / max of ${nextMs.length}) | ${figures.next_page_ms_median} / ${figures.next_page_ms_max} ms |
| filter typed (one input event) → only the last dongle (#${N - 1}) shown, next frame | ${figures.filter_finds_last_ms} ms |
| its bus changes (agent → bridge → fleet stream → page, drawn every 250 ms) → shown in its row (median / max of ${CHANGES}) | ${figures.change_shown_ms_median} / ${figures.change_shown_ms_max} ms |
| filter cleared → 100 rows again, next frame | ${figures.filter_cleared_ms} ms |
`;
  console.log(writeResults(LABEL ? `fleet-page-${LABEL}` : 'fleet-page', figures, md));
  await browser.close();
  await fleet.close();
  await b.proc.stop();
}

runBench(main);
