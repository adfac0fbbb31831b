/**
 * The fleet page (the bridge's `/`) in headless Chromium at 1280×800 and tablet width, against a real
 * bridge and real agents on --sim: rows go online/offline/online as agents start, are SIGKILLed (offline
 * within the heartbeat timeout) and restart; a viewer token sees it read-only (and the API refuses its
 * writes); the admin token registers a dongle whose token (shown once) connects an agent, rotates a token
 * (the old one is cut and refused), creates a group that relays (B's tx counter rises) and deletes it
 * (the relay stops); lists a dongle's recent commands, their times dated when not today's (the browser's
 * clock a day on); edits a group (sides, bus map) and deletes it, checked against the admin API; issues a
 * viewer token (Copy puts it on the clipboard; without the Clipboard API the copy command copies it) and
 * revokes it (its open page is refused, and so is the token); reconnects through a cut connection (a
 * clean resume, no second snapshot) and a bridge restart (stream_reset, a fresh snapshot). Fails on any
 * uncaught page error.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Page } from 'playwright-core';
import { ADMIN_TOKEN, startBridgeProcess, type StartedBridge } from '../helpers/bridge-process.js';
import { launchBrowser, screenshot, type TestBrowser } from '../helpers/browser.js';
import { untilValue } from '../helpers/until.js';
import { startAgentProcess, type CliProcess, type StartedAgent } from '../helpers/processes.js';
import { SseClient } from '../helpers/sse-client.js';
import { TcpBalancer } from '../helpers/tcp-balancer.js';

let browser: TestBrowser;
let bridge: StartedBridge;
const procs: CliProcess[] = [];
/** Heartbeat 1 s: a silent link is cut after 2.5 s. */
const HEARTBEAT_S = 1;

before(async () => {
  browser = await launchBrowser();
  bridge = await startBridgeProcess(['--uplink-heartbeat-seconds', String(HEARTBEAT_S), '--group-state-interval', '1']);
  procs.push(bridge.proc);
});
after(async () => {
  for (const p of procs.reverse()) await p.stop('SIGKILL');
  // Last: it fails the file on an uncaught page error, after the processes are gone.
  await browser?.close();
});

async function agent(id: string, token: string, stateDir?: string): Promise<StartedAgent> {
  const a = await startAgentProcess(['--sim', '--sim-rate', '50', '--bridge', bridge.base, '--token', token], { id, stateDir });
  procs.push(a.proc);
  return a;
}

async function openFleet(token: string, width = 1280, height = 800, init?: (page: Page) => Promise<unknown>): Promise<Page> {
  const page = await browser.page({ width, height });
  await init?.(page);
  page.on('dialog', (d) => void d.accept()); // the page's "are you sure?" questions
  await page.goto(bridge.base + '/');
  await page.locator('#token-panel').waitFor();
  await page.fill('#token-input', token);
  await page.press('#token-input', 'Enter');
  // Generous: on a loaded CI machine the first snapshot of a large fleet has taken over 15 s.
  await page.locator('#stream-state[data-state="live"]').waitFor({ timeout: 60_000 });
  return page;
}

const status = (page: Page, id: string): Promise<string | null> =>
  page
    .locator(`#dongles tr[data-dongle="${id}"]`)
    .getAttribute('data-status', { timeout: 1000 })
    .catch(() => null);

async function txFrames(a: StartedAgent): Promise<number> {
  const text = await (await fetch(a.base + '/metrics')).text();
  let n = 0;
  for (const m of text.matchAll(/^canrelay_can_frames_total\{[^}]*direction="tx"[^}]*\} (\S+)$/gm)) n += Number(m[1]);
  return n;
}

test('three agents online; a SIGKILLed one turns offline within the heartbeat timeout and back online on restart; a viewer sees it read-only', async () => {
  const started: StartedAgent[] = [];
  const tokens = new Map<string, string>();
  for (const id of ['f1', 'f2', 'f3']) {
    tokens.set(id, await bridge.admin.register(id));
    started.push(await agent(id, tokens.get(id)!));
  }
  const viewer = String((await bridge.admin.post('/api/v1/viewer-tokens')).body.token);
  const page = await openFleet(viewer);
  for (const id of ['f1', 'f2', 'f3']) await untilValue(async () => (await status(page, id)) === 'online', `${id} online`, 20_000);
  assert.equal(await page.locator(`#dongles tr[data-dongle="f1"] a[href="/console/dongles/f1"]`).count(), 1, 'the row links to its console');
  await untilValue(async () => (await page.locator('#dongles tr[data-dongle="f1"] .bus-state[data-bus="can0"]').count()) === 1, 'f1 bus can0 shown', 20_000);
  await untilValue(async () => (await page.getAttribute('body', 'data-role')) === 'viewer', 'viewer role');
  assert.equal(await page.locator('#admin-panel').isHidden(), true, 'no management for a viewer');
  assert.equal(await page.locator('#dongles button[data-action]').count(), 0, 'no row buttons for a viewer');
  // …and the API refuses the viewer's writes whatever the page shows.
  assert.equal((await bridge.admin.withToken(viewer).put('/api/v1/dongles/intruder')).status, 403);
  assert.equal((await bridge.admin.withToken(viewer).del('/api/v1/dongles/f1')).status, 403);
  await screenshot(page, 'fleet-viewer-1280');

  // Filter and sort.
  await page.fill('#dongle-filter', 'f2');
  await untilValue(async () => (await page.locator('#dongles tbody tr').count()) === 1, 'filtered to f2');
  await page.fill('#dongle-filter', '');
  // aria-sort on the sorted column's header cell (the columnheader), never on its button.
  const sortMarks = (): Promise<string[]> =>
    page.$$eval('#dongles thead [aria-sort]', (els) =>
      els.map((e) => `${e.tagName.toLowerCase()}:${e.querySelector('button')?.dataset.sort ?? ''}:${e.getAttribute('aria-sort')}`),
    );
  assert.deepEqual(await sortMarks(), ['th:id:ascending'], 'sorted by id at first');
  await page.click('#dongles th button[data-sort="id"]'); // already by id: now descending
  await untilValue(async () => (await page.locator('#dongles tbody tr').first().getAttribute('data-dongle')) === 'f3', 'sorted descending');
  assert.deepEqual(await sortMarks(), ['th:id:descending']);
  const arrow = await page.$eval('#dongles th button[data-sort="id"]', (b) => getComputedStyle(b, '::after').content);
  assert.equal(arrow, '" ▼"', 'the arrow follows the header cell');
  await page.click('#dongles th button[data-sort="last_seen"]');
  assert.deepEqual(await sortMarks(), ['th:last_seen:ascending'], 'one column marked at a time');
  await page.click('#dongles th button[data-sort="id"]');
  await page.click('#dongles th button[data-sort="id"]');
  await untilValue(async () => (await page.locator('#dongles tbody tr').first().getAttribute('data-dongle')) === 'f3', 'by id descending again');

  const killedAt = Date.now();
  await started[1]!.proc.stop('SIGKILL');
  await untilValue(async () => (await status(page, 'f2')) === 'offline', 'f2 offline', 20_000);
  console.log(`# f2 shown offline ${Date.now() - killedAt} ms after SIGKILL (heartbeat ${HEARTBEAT_S} s, cut after ${HEARTBEAT_S * 2.5} s)`);
  assert.equal(await status(page, 'f1'), 'online');
  // Restart with its token and state (the same gateway).
  await agent('f2', tokens.get('f2')!, started[1]!.stateDir);
  await untilValue(async () => (await status(page, 'f2')) === 'online', 'f2 online again', 20_000);

  const tablet = await openFleet(viewer, 820, 1180);
  await untilValue(async () => (await tablet.locator('#dongles tbody tr[data-status="online"]').count()) >= 3, 'tablet rows', 20_000);
  const overflow = await tablet.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 1, `the page fits the tablet's width (overflow ${overflow}px; wide tables scroll inside their card)`);
  await screenshot(tablet, 'fleet-viewer-tablet');
});

test('admin: register from the page (token shown once) connects an agent; rotate cuts the old token; a group made on the page relays and its deletion stops it', async () => {
  const page = await openFleet(ADMIN_TOKEN);
  await untilValue(async () => (await page.getAttribute('body', 'data-role')) === 'admin', 'admin role');
  await page.fill('#register-id', 'newgw');
  await page.click('#register-form button[type="submit"]');
  await page.locator('#secret:not([hidden])').waitFor();
  const token = ((await page.locator('#secret-token').textContent()) ?? '').trim();
  assert.match(token, /^\S{16,}$/);
  await untilValue(async () => (await status(page, 'newgw')) === 'offline', 'newgw listed, offline');
  await screenshot(page, 'fleet-admin-token-once');
  await page.click('#secret-close');
  assert.equal(await page.locator('#secret-token').textContent(), '', 'the token is gone from the page once hidden');

  const gw = await agent('newgw', token);
  await untilValue(async () => (await status(page, 'newgw')) === 'online', 'newgw online with the token from the page', 20_000);

  // Rotate and Remove ask first: answered "no", nothing changes (the agent stays connected, the dongle stays).
  for (const [action, question] of [
    ['rotate', /^Rotate the token of newgw\?/],
    ['remove', /^Remove dongle newgw\?/],
  ] as const) {
    page.removeAllListeners('dialog');
    const asked = new Promise<string>((resolve) => page.once('dialog', (d) => void d.dismiss().then(() => resolve(d.message()))));
    await page.click(`#dongles tr[data-dongle="newgw"] button[data-action="${action}"]`);
    assert.match(await asked, question);
  }
  page.on('dialog', (d) => void d.accept());
  assert.equal((await bridge.admin.get('/api/v1/dongles/newgw')).status, 200, 'a dismissed Remove removes nothing');
  assert.equal(await status(page, 'newgw'), 'online', 'a dismissed Rotate cuts nothing');
  assert.equal(await page.locator('#secret').isHidden(), true, 'no new token was issued');

  // Rotate: the connected agent is cut and its token refused from now on.
  await page.click('#dongles tr[data-dongle="newgw"] button[data-action="rotate"]');
  await page.locator('#secret:not([hidden])').waitFor();
  const rotated = ((await page.locator('#secret-token').textContent()) ?? '').trim();
  assert.notEqual(rotated, token);
  await untilValue(async () => (await status(page, 'newgw')) === 'offline', 'newgw cut by the rotation', 20_000);
  const up = await fetch(bridge.base + '/api/v1/agents/connect', { headers: { Authorization: `Bearer ${token}` } });
  assert.equal(up.status, 401, 'the old token is refused');
  await gw.proc.stop('SIGKILL');

  // A group from the page: B's tx counter rises; deleting it from the page stops the relay.
  const ga = await agent('ga', await bridge.admin.register('ga'));
  const gb = await agent('gb', await bridge.admin.register('gb'));
  await untilValue(async () => (await status(page, 'ga')) === 'online' && (await status(page, 'gb')) === 'online', 'ga, gb online', 20_000);
  const before = await txFrames(gb);
  await page.fill('#group-id', 'line1');
  await page.fill('#group-a', 'ga');
  await page.fill('#group-b', 'gb');
  await page.click('#group-form button[type="submit"]');
  await untilValue(
    async () =>
      (await page
        .locator('#groups tr[data-group="line1"]')
        .getAttribute('data-mode', { timeout: 1000 })
        .catch(() => null)) === 'relaying',
    'line1 relaying',
    20_000,
  );
  await untilValue(async () => (await txFrames(gb)) > before + 50, "B's tx counter rises", 20_000);
  await untilValue(async () => (await page.locator('#dongles tr[data-dongle="gb"] a[href="/console/groups/line1"]').count()) === 1, 'gb row names its group');
  // A command's statuses: the row's last one, and the dongle's recent commands on a click.
  const cmd = await bridge.admin.post('/api/v1/dongles/ga/commands', { type: 'send_frame', bus: 'can0', id: '0x321', data_hex: 'AA' });
  assert.equal(cmd.status, 202);
  const cmdButton = page.locator('#dongles tr[data-dongle="ga"] button.cmd');
  await untilValue(
    async () => (await cmdButton.getAttribute('data-command-status', { timeout: 1000 }).catch(() => null)) === 'succeeded',
    'the command succeeded on the row',
    20_000,
  );
  await cmdButton.click();
  await untilValue(
    async () =>
      (await page
        .locator(`#commands tr[data-command="${String(cmd.body.command_id)}"]`)
        .getAttribute('data-status', { timeout: 1000 })
        .catch(() => null)) === 'succeeded',
    'recent commands list it',
  );
  // A page opened later lists the commands from before it opened too (the admin API; the fleet
  // snapshot carries only each dongle's last one).
  const cmd2 = await bridge.admin.post('/api/v1/dongles/ga/commands', { type: 'send_frame', bus: 'can0', id: '0x322', data_hex: 'BB' });
  await untilValue(async () => (await bridge.admin.get(`/api/v1/commands/${String(cmd2.body.command_id)}`)).body.status === 'succeeded', 'the second command succeeded', 20_000);
  const later = await openFleet(ADMIN_TOKEN);
  await untilValue(async () => (await later.getAttribute('body', 'data-role')) === 'admin', 'admin role on the later page');
  await untilValue(async () => (await later.locator('#dongles tr[data-dongle="ga"] button.cmd').count()) === 1, 'ga row with its last command', 20_000);
  await later.locator('#dongles tr[data-dongle="ga"] button.cmd').click();
  for (const c of [cmd, cmd2])
    await untilValue(
      async () =>
        (await later
          .locator(`#commands tr[data-command="${String(c.body.command_id)}"]`)
          .getAttribute('data-status', { timeout: 1000 })
          .catch(() => null)) === 'succeeded',
      `the later page lists ${String(c.body.command_id)}`,
      20_000,
    );
  await later.close();
  await screenshot(page, 'fleet-admin-group');
  await page.click('#groups tr[data-group="line1"] button[data-action="delete"]');
  await untilValue(async () => (await page.locator('#groups tr[data-group="line1"]').count()) === 0, 'line1 gone from the page');
  assert.equal((await bridge.admin.get('/api/v1/groups/line1')).status, 404);
  // Stopped: the counter settles (whatever was in flight lands), then stays put while A keeps sending.
  let last = await txFrames(gb);
  await untilValue(
    async () => {
      const n = await txFrames(gb);
      const same = n === last;
      last = n;
      return same;
    },
    "B's tx counter stops",
    10_000,
    1000,
  );
  const settled = last;
  await untilValue(async () => (await fetch(ga.base + '/metrics')).ok, 'A still up');
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(await txFrames(gb), settled, 'no more relayed frames after the deletion');

  // A refused action is shown with the API's text.
  await page.fill('#group-id', 'bad');
  await page.fill('#group-a', 'ga');
  await page.fill('#group-b', 'no-such-dongle');
  await page.click('#group-form button[type="submit"]');
  await untilValue(async () => /HTTP 4\d\d/.test((await page.locator('#admin-error').textContent()) ?? ''), 'the API error shown');
});

interface GroupConfig {
  group: string;
  sides: { a: string; b: string };
  bus_map: Record<string, string>;
}
const groupConfig = async (gid: string): Promise<GroupConfig | undefined> => ((await bridge.admin.get('/api/v1/groups')).body.groups as GroupConfig[]).find((g) => g.group === gid);

test('admin: a group created, edited (sides, bus map) and deleted on the page is what the admin API holds', async () => {
  for (const id of ['e1', 'e2', 'e3']) await bridge.admin.register(id);
  const page = await openFleet(ADMIN_TOKEN);
  await untilValue(async () => (await page.getAttribute('body', 'data-role')) === 'admin', 'admin role');
  await untilValue(async () => (await status(page, 'e3')) === 'offline', 'e1…e3 listed');
  await page.fill('#group-id', 'edit1');
  await page.fill('#group-a', 'e1');
  await page.fill('#group-b', 'e2');
  await page.fill('#group-map', 'can0=can1, can1=can0');
  await page.click('#group-form button[type="submit"]');
  await untilValue(async () => (await groupConfig('edit1')) !== undefined, 'edit1 created on the bridge');
  const created = (await groupConfig('edit1'))!;
  assert.deepEqual(
    [created.sides, created.bus_map],
    [
      { a: 'e1', b: 'e2' },
      { can0: 'can1', can1: 'can0' },
    ],
  );
  await untilValue(async () => (await page.locator('#groups tr[data-group="edit1"]').count()) === 1, 'edit1 on the page');

  // Edit fills the form with the group as the bridge holds it (the bus map too), whatever was typed before.
  for (const f of ['#group-id', '#group-a', '#group-b', '#group-map']) await page.fill(f, '');
  await page.click('#groups tr[data-group="edit1"] button[data-action="edit"]');
  await untilValue(async () => (await page.inputValue('#group-map')) === 'can0=can1, can1=can0', 'the bus map filled in by Edit');
  assert.deepEqual([await page.inputValue('#group-id'), await page.inputValue('#group-a'), await page.inputValue('#group-b')], ['edit1', 'e1', 'e2']);
  await page.fill('#group-b', 'e3');
  await page.fill('#group-map', 'can0=can2');
  await page.click('#group-form button[type="submit"]');
  await untilValue(async () => (await groupConfig('edit1'))?.sides.b === 'e3', 'side B changed on the bridge');
  assert.deepEqual((await groupConfig('edit1'))!.bus_map, { can0: 'can2' });
  await untilValue(async () => (await page.locator('#groups tr[data-group="edit1"] a[href="/console/dongles/e3"]').count()) === 1, 'the page shows e3 as side B');
  await untilValue(async () => (await page.locator('#dongles tr[data-dongle="e3"] a[href="/console/groups/edit1"]').count()) === 1, "e3's row names the group");
  await untilValue(async () => (await page.locator('#dongles tr[data-dongle="e2"] a[href^="/console/groups/"]').count()) === 0, 'e2 is in no group any more');

  // Saving an edit without touching the bus map keeps it.
  await page.click('#groups tr[data-group="edit1"] button[data-action="edit"]');
  await untilValue(async () => (await page.inputValue('#group-map')) === 'can0=can2', 'the changed map filled in');
  await page.fill('#group-b', 'e2');
  await page.click('#group-form button[type="submit"]');
  await untilValue(async () => (await groupConfig('edit1'))?.sides.b === 'e2', 'side B back to e2');
  assert.deepEqual((await groupConfig('edit1'))!.bus_map, { can0: 'can2' }, 'the bus map survived the edit');
  assert.equal(await page.locator('#admin-error').isHidden(), true);

  assert.equal(await page.locator('#groups tr[data-group="edit1"] a[href="/console/groups/edit1"]').count(), 1, 'the row links to the group console');

  // Delete asks first: answered "no", nothing happens.
  page.removeAllListeners('dialog');
  const asked = new Promise<string>((resolve) => page.once('dialog', (d) => void d.dismiss().then(() => resolve(d.message()))));
  await page.click('#groups tr[data-group="edit1"] button[data-action="delete"]');
  assert.match(await asked, /^Delete group edit1\?/);
  assert.equal((await bridge.admin.get('/api/v1/groups/edit1')).status, 200, 'a dismissed question deletes nothing');
  page.on('dialog', (d) => void d.accept());
  await page.click('#groups tr[data-group="edit1"] button[data-action="delete"]');
  await untilValue(async () => (await groupConfig('edit1')) === undefined, 'edit1 deleted on the bridge');
  assert.equal((await bridge.admin.get('/api/v1/groups/edit1')).status, 404);
  await untilValue(async () => (await page.locator('#groups tr[data-group="edit1"]').count()) === 0, 'edit1 gone from the page');
});

test('admin: a viewer token issued on the page (Copy puts it on the clipboard) opens the fleet; revoked on the page, that page is refused and so is the token', async () => {
  const page = await openFleet(ADMIN_TOKEN);
  await page.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: bridge.base });
  await untilValue(async () => (await page.getAttribute('body', 'data-role')) === 'admin', 'admin role');
  await page.click('#viewer-issue');
  await page.locator('#secret:not([hidden])').waitFor();
  const token = ((await page.locator('#secret-token').textContent()) ?? '').trim();
  const id = /^Viewer token ([0-9a-f]{16}):$/.exec(((await page.locator('#secret-what').textContent()) ?? '').trim())?.[1];
  assert.ok(id !== undefined && token.length >= 16, `issued: ${id} ${token}`);
  await page.click('#secret-copy');
  await untilValue(async () => (await page.locator('#secret-copy').textContent()) === 'Copied', 'the Copy button says Copied');
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), token, 'the clipboard holds the token');
  const row = page.locator(`#viewer-tokens tr[data-viewer-token="${id}"]`);
  await untilValue(async () => (await row.count()) === 1, 'the new token listed');

  const viewerPage = await openFleet(token);
  await untilValue(async () => (await viewerPage.getAttribute('body', 'data-role')) === 'viewer', 'viewer role with the issued token');
  await page.click('#viewer-refresh');
  await untilValue(async () => ((await row.textContent()) ?? '').includes('1 open'), 'the list shows its open stream');
  await row.locator('button', { hasText: 'Revoke' }).click();
  await untilValue(async () => (await row.count()) === 0, 'the token gone from the list');
  assert.ok(!((await bridge.admin.get('/api/v1/viewer-tokens')).body.viewer_tokens as { id: string }[]).some((t) => t.id === id), 'the bridge no longer lists it');
  // The bridge closed the viewer's stream; its reconnect is refused and the page asks for a token.
  await untilValue(async () => (await viewerPage.locator('#stream-state').getAttribute('data-state')) === 'refused', 'the viewer page refused', 20_000);
  await viewerPage.locator('#token-panel:not([hidden])').waitFor();
  assert.match((await viewerPage.locator('#token-error').textContent()) ?? '', /refused this token \(HTTP 401\)/);
  assert.equal((await fetch(bridge.base + '/api/v1/streams/fleet', { headers: { Authorization: `Bearer ${token}` } })).status, 401, 'the bridge refuses the revoked token');
  await screenshot(viewerPage, 'fleet-viewer-revoked');
  await viewerPage.close();
});

test('Copy where the Clipboard API is missing (a page over plain HTTP): the token is selected and copied with the copy command', async () => {
  const page = await openFleet(ADMIN_TOKEN, 1280, 800, (p) =>
    p.addInitScript(() => {
      // What a non-secure origin looks like: no navigator.clipboard. The copy event records what was copied.
      Object.defineProperty(Navigator.prototype, 'clipboard', { get: () => undefined, configurable: true });
      const w = window as unknown as { copied: string[] };
      w.copied = [];
      document.addEventListener('copy', () => w.copied.push(String(document.getSelection())));
    }),
  );
  await untilValue(async () => (await page.getAttribute('body', 'data-role')) === 'admin', 'admin role');
  await page.fill('#register-id', 'copyme');
  await page.click('#register-form button[type="submit"]');
  await page.locator('#secret:not([hidden])').waitFor();
  const token = ((await page.locator('#secret-token').textContent()) ?? '').trim();
  await page.click('#secret-copy');
  await untilValue(async () => (await page.locator('#secret-copy').textContent()) !== 'Copy', 'the Copy button answered');
  assert.equal(await page.evaluate(() => String(document.getSelection())), token, 'the token is selected');
  assert.deepEqual(await page.evaluate(() => (window as unknown as { copied: string[] }).copied), [token], 'the copy command copied exactly the token');
  assert.equal(await page.locator('#secret-copy').textContent(), 'Copied');
  await page.close();
});

/** The local date of an ISO time, as the page writes it ("2026-11-28"). */
function localDay(iso: string): string {
  const d = new Date(Date.parse(iso));
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
}

test("recent commands: a time that is not today's carries its date (one of yesterday read like today's)", async () => {
  await agent('cmdday', await bridge.admin.register('cmdday'));
  await untilValue(async () => (await bridge.admin.get('/api/v1/dongles/cmdday')).body.online === true, 'cmdday online', 20_000);
  const cmd = await bridge.admin.post('/api/v1/dongles/cmdday/commands', { type: 'send_frame', bus: 'can0', id: '0x123', data_hex: '01' });
  assert.equal(cmd.status, 202);
  const id = String(cmd.body.command_id);
  const done = await untilValue(
    async () => {
      const v = (await bridge.admin.get(`/api/v1/commands/${id}`)).body;
      return v.status === 'succeeded' ? v : null;
    },
    'the command succeeded',
    20_000,
  );
  const iso = (done.history as { ts: string }[]).at(-1)!.ts;
  /** The time cell of the command in the dongle's recent commands: its text and title. */
  const timeCell = async (page: Page): Promise<{ text: string; title: string }> => {
    const button = page.locator('#dongles tr[data-dongle="cmdday"] button.cmd');
    await untilValue(async () => (await button.getAttribute('data-command-status', { timeout: 1000 }).catch(() => null)) === 'succeeded', 'the row with its command', 20_000);
    await button.click();
    const td = page.locator(`#commands tr[data-command="${id}"][data-status="succeeded"] td`).first();
    await td.waitFor();
    return { text: (await td.textContent()) ?? '', title: (await td.getAttribute('title')) ?? '' };
  };

  const today = await openFleet(ADMIN_TOKEN);
  const { text: time } = await timeCell(today);
  // Today's: the time alone (unless the command was just before midnight and this is the next day).
  if (localDay(iso) === localDay(new Date().toISOString())) assert.match(time, /^\d\d:\d\d:\d\d\.\d{6}$/, "today's command: its time");
  const clock = time.slice(-15);
  await today.close();

  // The same command seen a day later (the browser's clock 30 h on: another day whatever the DST).
  const later = await openFleet(ADMIN_TOKEN, 1280, 800, (page) => page.clock.install({ time: Date.now() + 30 * 3600_000 }));
  const dated = await timeCell(later);
  assert.equal(dated.text, `${localDay(iso)} ${clock}`, 'a command of another day: its date, then its time');
  assert.match(dated.title, /^\d{4}-\d\d-\d\dT[\d:.]+Z$/, 'the full time in the title');
  await screenshot(later, 'fleet-commands-dated');
  await later.close();
});

test('the fleet page is served at / and /console/ (and /console)', async () => {
  for (const path of ['/', '/console/', '/console']) {
    const r = await fetch(bridge.base + path);
    assert.equal(r.status, 200, path);
    assert.match(await r.text(), /<body data-mode="fleet">/, `${path} is the fleet page`);
  }
  const page = await browser.page();
  await page.goto(bridge.base + '/console/');
  await page.locator('#token-panel').waitFor();
  await page.fill('#token-input', ADMIN_TOKEN);
  await page.press('#token-input', 'Enter');
  await page.locator('#stream-state[data-state="live"]').waitFor();
  await untilValue(async () => (await page.locator('#dongles tbody tr').count()) > 0, 'rows at /console/');
  await page.close();
});

test('300 registered dongles: 100-row pages, the filter searches all of them', async () => {
  const ids = Array.from({ length: 300 }, (_, i) => `p${String(i).padStart(3, '0')}`);
  for (let i = 0; i < ids.length; i += 20) await Promise.all(ids.slice(i, i + 20).map((id) => bridge.admin.register(id)));
  const page = await openFleet(ADMIN_TOKEN);
  await untilValue(
    async () =>
      /^\d+ of \d+$/.test((await page.locator('#dongle-count').textContent()) ?? '') && Number(((await page.locator('#dongle-count').textContent()) ?? '').split(' ')[0]) >= 300,
    'all rows known',
  );
  assert.equal(await page.locator('#dongles tbody tr').count(), 100, 'one page of rows exists');
  await page.fill('#dongle-filter', 'p2');
  await untilValue(
    async () =>
      (await page.locator('#dongle-count').textContent()) ===
      `100 of ${await page.evaluate(() => (window as unknown as { canrelayFleet: { dongles: Map<string, unknown> } }).canrelayFleet.dongles.size)}`,
    'p200…p299 match',
  );
  assert.equal(await page.locator('#page-next').isDisabled(), true, 'one page only');
  await page.fill('#dongle-filter', '');
  await page.click('#page-next');
  await page.click('#page-next');
  await untilValue(async () => /^page 3 of \d+$/.test((await page.locator('#page-info').textContent()) ?? ''), 'third page');
  await screenshot(page, 'fleet-paged');
});

test('the page reconnects like the console page: a cut connection resumes without a gap (no second snapshot); a bridge restart gets stream_reset and a fresh snapshot', async () => {
  const b = await startBridgeProcess(['--uplink-heartbeat-seconds', String(HEARTBEAT_S)]);
  procs.push(b.proc);
  const proxy = await TcpBalancer.start([Number(new URL(b.base).port)]);
  try {
    const page = await browser.page();
    await page.goto(proxy.base + '/');
    await page.locator('#token-panel').waitFor();
    await page.fill('#token-input', ADMIN_TOKEN);
    await page.press('#token-input', 'Enter');
    await page.locator('#stream-state[data-state="live"]').waitFor();
    // A live event gives the page its position (snapshot events carry no id: a page that has seen only
    // the snapshot has nothing to resume from, and its reconnect gets a snapshot again).
    await b.admin.register('r1');
    await untilValue(async () => (await status(page, 'r1')) === 'offline', 'r1 listed');
    const snapshots = (): Promise<number> => page.evaluate(() => (window as unknown as { canrelayFleet: { snapshots: number } }).canrelayFleet.snapshots);
    assert.equal(await snapshots(), 1);

    // A drop: the page reconnects with Last-Event-ID and gets what it missed, without a snapshot.
    proxy.cut();
    await b.admin.register('r2'); // while the page is away
    await untilValue(async () => (await status(page, 'r2')) === 'offline', 'r2, registered during the drop, on the page', 20_000);
    await untilValue(async () => (await page.locator('#stream-state').getAttribute('data-state')) === 'resumed', 'the page says resumed');
    assert.equal(await snapshots(), 1, 'a clean resume brings no second snapshot');

    // A restart: the ids are of another run, so stream_reset, then the snapshot of the new run.
    const port = new URL(b.base).port;
    await b.proc.stop();
    await untilValue(async () => (await page.locator('#stream-state').getAttribute('data-state')) === 'reconnecting', 'the page reconnecting', 20_000);
    await screenshot(page, 'fleet-reconnecting');
    const b2 = await startBridgeProcess(['--listen', `127.0.0.1:${port}`], { db: b.db });
    procs.push(b2.proc);
    await b2.admin.del('/api/v1/dongles/r1'); // gone while the page was away: the new snapshot drops its row
    await untilValue(async () => (await snapshots()) === 2, 'the new run’s snapshot', 30_000);
    await untilValue(
      async () => (await page.locator('#dongles tr[data-dongle="r1"]').count()) === 0 && (await status(page, 'r2')) === 'offline',
      'rows as the new bridge has them',
    );
    assert.ok(['reset', 'live'].includes((await page.locator('#stream-state').getAttribute('data-state')) ?? ''), 'reset (then live)');
    await page.close();
  } finally {
    await proxy.close();
  }
});

test('a full fleet stream (--fleet-max-clients): the page says so, keeps retrying, and goes live once a place is free', async () => {
  const b = await startBridgeProcess(['--fleet-max-clients', '1']);
  procs.push(b.proc);
  const holder = await SseClient.connect(b.base + '/api/v1/streams/fleet', { Authorization: `Bearer ${ADMIN_TOKEN}` });
  try {
    assert.equal(holder.status, 200);
    const page = await browser.page();
    await page.goto(b.base + '/');
    await page.locator('#token-panel').waitFor();
    await page.fill('#token-input', ADMIN_TOKEN);
    await page.press('#token-input', 'Enter');
    await untilValue(
      async () => /HTTP 503: the fleet stream is full: 1 clients are connected/.test((await page.locator('#notice').textContent()) ?? ''),
      'the page shows why',
      20_000,
    );
    assert.equal(await page.locator('#stream-state').getAttribute('data-state'), 'reconnecting');
    await screenshot(page, 'fleet-full');
    holder.close();
    await untilValue(async () => (await page.locator('#stream-state').getAttribute('data-state')) === 'live', 'live once the place is free', 30_000);
    await untilValue(async () => await page.locator('#notice').isHidden(), 'the notice gone');
    await page.close();
  } finally {
    holder.close();
  }
});
