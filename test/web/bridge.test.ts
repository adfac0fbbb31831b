/**
 * The console page on a real cloud bridge (`canrelay bridge`) with real agents connected over their
 * uplink, in headless Chromium: the page refuses to show a console without a valid token, a viewer
 * token reads it, the admin token's send form drives a command to `succeeded`, and the group page shows
 * both sides and the group_state figures, also when a side goes offline.
 */
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import type { Page } from 'playwright-core';
import { ADMIN_TOKEN, startBridgeProcess, type StartedBridge } from '../helpers/bridge-process.js';
import { browserSuite, screenshot } from '../helpers/browser.js';
import { untilValue } from '../helpers/until.js';
import { startAgentProcess, type CliProcess } from '../helpers/processes.js';

const { browser, procs } = browserSuite();
let bridge: StartedBridge;
let viewerToken = '';

before(async () => {
  bridge = await startBridgeProcess();
  procs.push(bridge.proc);
  const v = await bridge.admin.post('/api/v1/viewer-tokens');
  assert.equal(v.status, 201);
  viewerToken = String(v.body.token);
});

/** Registers `id` on the bridge and starts an agent on --sim connected to it. */
async function connectedAgent(id: string, rate: number): Promise<CliProcess> {
  const token = await bridge.admin.register(id);
  const a = await startAgentProcess(['--sim', '--sim-rate', String(rate), '--bridge', bridge.base, '--token', token], { id });
  procs.push(a.proc);
  await untilValue(async () => (await bridge.admin.get(`/api/v1/dongles/${id}`)).body.online === true, `${id} online on the bridge`);
  return a.proc;
}

async function giveToken(page: Page, token: string): Promise<void> {
  await page.locator('#token-panel').waitFor();
  await page.fill('#token-input', token);
  await page.press('#token-input', 'Enter');
}

const rowDongles = (page: Page): Promise<string[]> => page.$$eval('#byid tbody tr', (trs) => [...new Set(trs.map((tr) => (tr as HTMLElement).dataset.dongle ?? ''))].sort());

test('the dongle page refuses a missing or wrong token; a viewer token reads the console, without the send form', async () => {
  await connectedAgent('gw1', 300);
  const page = await browser.page();
  await page.goto(bridge.base + '/console/dongles/gw1');
  // No token: the stream's 401 is shown, not hidden behind an endless retry.
  await page.locator('#stream-state[data-state="refused"]').waitFor();
  assert.equal(await page.locator('#token-panel').isVisible(), true);
  assert.match((await page.locator('#token-error').textContent()) ?? '', /needs a token .*HTTP 401/);
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'token-input', 'the token field has the focus');
  assert.equal(await page.locator('#byid tbody tr').count(), 0, 'no console data without a token');
  await screenshot(page, 'bridge-token-required');

  await giveToken(page, 'not-a-valid-token-123456');
  await untilValue(async () => /refused this token/.test((await page.locator('#token-error').textContent()) ?? ''), 'the wrong token refused');
  assert.equal(await page.getAttribute('#token-input', 'aria-invalid'), 'true');
  assert.equal(await page.getAttribute('#stream-state', 'data-state'), 'refused');
  await screenshot(page, 'bridge-token-refused');

  await giveToken(page, viewerToken);
  await page.locator('#stream-state[data-state="live"]').waitFor();
  assert.equal(await page.locator('#token-panel').isHidden(), true);
  await untilValue(async () => (await page.locator('#byid tbody tr').count()) >= 50, "the dongle's ids in the table", 15_000);
  await untilValue(async () => (await page.locator('.dongle[data-dongle="gw1"]').getAttribute('data-presence')) === 'online', 'gw1 shown online');
  await untilValue(async () => (await page.getAttribute('body', 'data-role')) === 'viewer', 'viewer role found');
  assert.equal(await page.locator('#send-panel').isHidden(), true, 'no send form for a viewer');
  await page.waitForTimeout(1500);
  await screenshot(page, 'bridge-dongle-viewer');

  // The token is kept for the tab's session: a reload goes straight to the console.
  await page.reload();
  await page.locator('#stream-state[data-state="live"]').waitFor();
  assert.equal(await page.locator('#token-panel').isHidden(), true);
  // "Change token" forgets it.
  await page.click('#token-change');
  assert.equal(await page.locator('#token-panel').isVisible(), true);
  assert.equal(await page.evaluate(() => sessionStorage.getItem('canrelay.token')), null);
  await page.context().close();
});

test("the admin's role check failing once (the bridge restarting, the network): asked again, the send form appears", async () => {
  const page = await browser.page();
  let failed = 0;
  await page.route('**/api/v1/dongles/gw1', async (route) => {
    if (failed++ === 0) return route.fulfill({ status: 503, contentType: 'application/json', body: '{"error":"starting"}' });
    return route.continue();
  });
  await page.goto(bridge.base + '/console/dongles/gw1');
  await giveToken(page, ADMIN_TOKEN);
  await page.locator('#stream-state[data-state="live"]').waitFor();
  await page.locator('#send-panel').waitFor({ state: 'visible', timeout: 20_000 });
  assert.equal(await page.getAttribute('body', 'data-role'), 'admin');
  assert.ok(failed >= 2, 'the first check failed and was asked again');
  await page.context().close();
});

test('with the admin token, the send form drives a command to "succeeded"', async () => {
  const page = await browser.page();
  await page.goto(bridge.base + '/console/dongles/gw1');
  await giveToken(page, ADMIN_TOKEN);
  await page.locator('#stream-state[data-state="live"]').waitFor();
  await page.locator('#send-panel').waitFor({ state: 'visible' });
  assert.equal(await page.getAttribute('body', 'data-role'), 'admin');

  // Bad input is caught in the form, nothing is sent.
  await page.fill('#send-id', 'XYZ');
  await page.click('#send-form button[type=submit]');
  assert.match((await page.locator('#send-error').textContent()) ?? '', /ID: hex/);
  assert.equal(await page.getAttribute('#send-id', 'aria-invalid'), 'true');
  assert.equal(await page.locator('#commands li').count(), 0);

  // An OBD-II request (the simulator answers it); keyboard only: fill and press Enter.
  await page.fill('#send-bus', 'can0');
  await page.fill('#send-id', '7DF');
  await page.fill('#send-data', '02 01 0C');
  await page.press('#send-data', 'Enter');
  const cmd = page.locator('#commands li.command').first();
  await cmd.waitFor();
  const id = (await cmd.getAttribute('data-command-id')) ?? '';
  assert.match(id, /\S{8,}/);
  await untilValue(async () => (await cmd.getAttribute('data-status')) === 'succeeded', 'the command succeeded', 15_000);
  const steps = await cmd.locator('.step.done').allTextContents();
  assert.deepEqual(steps, ['queued', 'sent', 'delivered', 'succeeded']);
  assert.match((await cmd.locator('.cmd-head').textContent()) ?? '', /can0 0x7DF#02010C/);
  // The bridge agrees, and the console carried the statuses.
  const view = await bridge.admin.get(`/api/v1/commands/${id}`);
  assert.equal(view.body.status, 'succeeded');
  await page.click('#tab-trace');
  await page.fill('#filter-id', '!0-7FF !00000000-1FFFFFFF'); // hide frames, standard and extended: the command rows stay
  await page.press('#filter-id', 'Enter');
  await untilValue(
    async () => (await page.$$eval('#trace .trace-row[data-kind="command_status"] .msg', (els) => els.map((e) => e.textContent ?? ''))).some((t) => t.includes(`${id}: succeeded`)),
    'command_status rows in the trace',
  );
  await page.fill('#filter-id', '');
  await page.press('#filter-id', 'Enter');
  await page.click('#tab-byid');
  await screenshot(page, 'bridge-send-succeeded');

  // At tablet width the form sits above the views.
  await page.setViewportSize({ width: 768, height: 1024 });
  await page.waitForTimeout(500);
  await screenshot(page, 'bridge-send-768');
  await page.context().close();
});

test('group page: both sides, group_state figures, and a side going offline', async () => {
  const a = await connectedAgent('gw-a', 200);
  const b = await connectedAgent('gw-b', 100);
  const g = await bridge.admin.group('g1', 'gw-a', 'gw-b');
  assert.ok(g.status === 201 || g.status === 200);
  const page = await browser.page();
  await page.goto(bridge.base + '/console/groups/g1');
  await giveToken(page, viewerToken);
  await page.locator('#stream-state[data-state="live"]').waitFor();
  const panel = page.locator('#group-panel');
  await panel.locator('.mode[data-mode="relaying"]').waitFor({ timeout: 15_000 });
  for (const side of ['a', 'b']) assert.equal(await panel.locator(`.gp-side[data-side="${side}"] .pill`).textContent(), 'online');
  assert.equal(await panel.locator('.gp-side[data-side="a"] .name').textContent(), 'gw-a');
  assert.equal(await panel.locator('.gp-side[data-side="b"] .name').textContent(), 'gw-b');
  await untilValue(async () => Number(((await panel.locator('.gp-total strong').textContent()) ?? '0').replace(/,/g, '')) > 0, 'frames relayed');
  assert.equal(await panel.locator('.gp-offline strong').textContent(), 'none');
  // Both sides' frames, each row marked with its dongle; the header shows both sides.
  await untilValue(async () => (await rowDongles(page)).join() === 'gw-a,gw-b', 'rows from both dongles', 15_000);
  assert.deepEqual(await page.$$eval('.target .dongle', (els) => els.map((e) => (e as HTMLElement).dataset.dongle)), ['gw-a', 'gw-b']);
  assert.equal(await page.locator('#send-panel').isHidden(), true, 'viewer: no send form');
  // The trace's event types: every box unticked shows no events (it showed all of them again on a group page).
  await page.click('#tab-trace');
  const kinds = (): Promise<string[]> =>
    page.$$eval('#trace .trace-row:not([hidden])', (rows) =>
      [...new Set(rows.map((r) => (r as HTMLElement).dataset.kind ?? '').filter((k) => k !== 'note' && k !== 'gap'))].sort(),
    );
  await untilValue(async () => (await kinds()).includes('can_frame'), 'frames in the trace');
  for (const box of await page.locator('.types input[type=checkbox]').all()) if (await box.isChecked()) await box.uncheck();
  await untilValue(async () => (await kinds()).length === 0, 'no events with no type ticked');
  await page.waitForTimeout(300);
  assert.deepEqual(await kinds(), [], 'and none come back');
  for (const box of await page.locator('.types input[type=checkbox]').all()) await box.check();
  await untilValue(async () => (await kinds()).includes('can_frame'), 'frames again once ticked');
  await page.click('#tab-byid');
  await page.waitForTimeout(1500);
  await screenshot(page, 'bridge-group-1280');
  const tablet = await browser.page({ width: 768, height: 1024 });
  await tablet.goto(bridge.base + '/console/groups/g1');
  await giveToken(tablet, viewerToken);
  await tablet.locator('#group-panel .mode[data-mode="relaying"]').waitFor({ timeout: 15_000 });
  await tablet.waitForTimeout(1500);
  await screenshot(tablet, 'bridge-group-768');
  await tablet.context().close();

  // Side B goes away: the group degrades, B is the offline side, frames for it queue or drop.
  await b.stop('SIGKILL');
  await panel.locator('.mode[data-mode="degraded"]').waitFor({ timeout: 20_000 });
  assert.equal(await panel.locator('.gp-offline strong').textContent(), 'B');
  assert.equal(await panel.locator('.gp-side[data-side="b"] .pill').textContent(), 'offline');
  await untilValue(async () => (await page.locator('.target .dongle[data-dongle="gw-b"]').getAttribute('data-presence')) === 'offline', 'gw-b offline in the header');
  await untilValue(
    async () => {
      const backlog = Number(((await panel.locator('.gp-side[data-side="b"] .gp-backlog').textContent()) ?? '0').replace(/,/g, ''));
      const dropped = Number(((await panel.locator('.gp-dropped strong').textContent()) ?? '0').replace(/,/g, ''));
      return backlog > 0 || dropped > 0;
    },
    'a backlog for B, or drops counted',
    15_000,
  );
  await page.click('#tab-trace');
  await page.waitForTimeout(500);
  await screenshot(page, 'bridge-group-degraded');
  assert.ok(a.exitCode === null, 'side A still running');
  await page.context().close();
});

test('group page with the admin token: the send form picks a side\'s dongle and follows its command to "succeeded"', async () => {
  await connectedAgent('gw-c', 50);
  await connectedAgent('gw-d', 50);
  await bridge.admin.group('g2', 'gw-c', 'gw-d');
  const page = await browser.page();
  await page.goto(bridge.base + '/console/groups/g2');
  await giveToken(page, ADMIN_TOKEN);
  await page.locator('#stream-state[data-state="live"]').waitFor();
  await page.locator('#send-panel').waitFor({ state: 'visible' });
  // A group has two dongles: the form asks which one.
  await page.locator('#send-dongle-field').waitFor({ state: 'visible' });
  assert.deepEqual(await page.$$eval('#send-dongle option', (os) => os.map((o) => (o as HTMLOptionElement).value).sort()), ['gw-c', 'gw-d']);
  await page.selectOption('#send-dongle', 'gw-d');
  await page.fill('#send-bus', 'can0');
  await page.fill('#send-id', '7DF');
  await page.fill('#send-data', '02 01 0D');
  await page.click('#send-form button[type=submit]');
  const cmd = page.locator('#commands li.command').first();
  await cmd.waitFor();
  const id = (await cmd.getAttribute('data-command-id')) ?? '';
  await untilValue(async () => (await cmd.getAttribute('data-status')) === 'succeeded', 'the command succeeded', 15_000);
  assert.deepEqual(await cmd.locator('.step.done').allTextContents(), ['queued', 'sent', 'delivered', 'succeeded']);
  // It went to the dongle picked, not the other side.
  const view = await bridge.admin.get(`/api/v1/commands/${id}`);
  assert.equal(view.body.dongle, 'gw-d');
  assert.equal(view.body.status, 'succeeded');
  assert.deepEqual((await bridge.admin.get('/api/v1/dongles/gw-c/commands')).body.commands, []);
  await page.context().close();
});
