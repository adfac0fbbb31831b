/**
 * The recordings panel in a real browser (headless Chromium) against a real agent with tokens: Record
 * asks for a token (401), a read token is refused (403), the admin token records; the running size and
 * duration move; Stop lists it; its download is the file the agent serves, byte for byte. On the
 * bridge's dongle page the same recording is listed and downloads through the bridge. Delete asks first.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { screenshot, browserSuite } from '../helpers/browser.js';
import { untilValue } from '../helpers/until.js';
import { startBridgeProcess } from '../helpers/bridge-process.js';
import { startAgentProcess, tempDir } from '../helpers/processes.js';

const { browser, procs } = browserSuite();

const ADMIN = 'web-admin-0123456789abcdef';
const READ = 'web-read-0123456789abcdef';

test('record from the page: token asked, read token refused, admin records; size and duration move; download is byte-identical, also through the bridge; Delete asks first', async () => {
  const dir = tempDir('canrelay-web-rec-');
  writeFileSync(join(dir, 'tokens'), `admin ${ADMIN}\nread ${READ}\n`);
  const bridge = await startBridgeProcess();
  procs.push(bridge.proc);
  const agentToken = await bridge.admin.register('web-rec');
  const a = await startAgentProcess(['--sim', '--sim-rate', '500', '--local-token-file', join(dir, 'tokens'), '--bridge', bridge.base, '--token', agentToken], { id: 'web-rec' });
  procs.push(a.proc);
  const page = await browser.page();
  await page.goto(a.base + '/');
  await page.locator('#stream-state[data-state="live"]').waitFor();
  await page.locator('#rec-panel').waitFor();

  await page.click('#rec-toggle');
  await page.locator('#token-panel').waitFor();
  assert.match((await page.textContent('#token-error')) ?? '', /needs a token \(HTTP 401\)/);
  // A mistyped token is refused at once, though reads need none here (it was taken, and refused only at Record).
  await page.fill('#token-input', 'mistyped-token-0123456789');
  await page.click('#token-form button[type=submit]');
  await page.waitForFunction(
    () => !document.querySelector<HTMLElement>('#token-panel')!.hidden && /refused this token \(HTTP 401\)/.test(document.querySelector('#token-error')!.textContent ?? ''),
    undefined,
    {
      timeout: 15_000,
    },
  );
  await page.fill('#token-input', READ);
  await page.click('#token-form button[type=submit]');
  await page.locator('#token-panel').waitFor({ state: 'hidden' });
  await page.click('#rec-toggle');
  await page.locator('#token-panel').waitFor();
  assert.match((await page.textContent('#token-error')) ?? '', /HTTP 403/);
  // The read token still reads: the technician can go back to the page with it (the page was locked).
  await page.click('#token-cancel');
  await page.locator('#token-panel').waitFor({ state: 'hidden' });
  assert.equal(await page.evaluate(() => document.body.classList.contains('locked')), false, 'the page is usable again');
  await page.click('#rec-toggle');
  await page.locator('#token-panel').waitFor();
  await page.fill('#token-input', ADMIN);
  await page.click('#token-form button[type=submit]');
  await page.locator('#token-panel').waitFor({ state: 'hidden' });
  await page.click('#rec-toggle');

  // Running: the status shows size, duration and frames, and they move.
  const status = async (): Promise<string> => (await page.textContent('#rec-status')) ?? '';
  const first = await untilValue(async () => /Recording · .* · \d+:\d\d · [\d,]+ frames/.exec(await status())?.[0], 'the running status');
  await untilValue(async () => (await status()) !== first && /Recording/.test(await status()), 'the status to move');
  assert.equal((await page.textContent('#rec-toggle'))?.trim(), '■ Stop');
  await screenshot(page, 'web-recordings-running');
  await page.click('#rec-toggle');
  const item = page.locator('#rec-list li[data-state="stopped"]').first();
  await item.waitFor();
  assert.equal((await page.textContent('#rec-toggle'))?.trim(), '● Record');
  const id = String(await item.getAttribute('data-id'));
  // The list is polled: the item under the keyboard focus stays the same element across a poll (rebuilt
  // every poll, it lost the focus and a press in progress: a click on Download or Delete did nothing).
  const polls = { n: 0 };
  page.on('request', (r) => {
    if (new URL(r.url()).pathname === '/api/v1/recordings' && r.method() === 'GET') polls.n++;
  });
  await item.locator('a.rec-download').focus();
  await page.evaluate(() => ((document.activeElement as unknown as { marked: boolean }).marked = true));
  const before = polls.n;
  await untilValue(async () => polls.n > before + 1, 'two polls of the list', 20_000);
  assert.equal(
    await page.evaluate(() => (document.activeElement as unknown as { marked?: boolean }).marked === true && document.activeElement!.isConnected),
    true,
    'the same link keeps the focus',
  );

  const [dl] = await Promise.all([page.waitForEvent('download'), item.locator('a.rec-download').click()]);
  assert.equal(dl.suggestedFilename(), `web-rec-${id}.log`);
  // Through a download ticket: the page's token stays out of the URL (history, download list).
  assert.match(dl.url(), new RegExp(`/api/v1/recordings/${id}\\?ticket=`));
  assert.ok(!dl.url().includes(ADMIN) && !dl.url().includes(READ) && !dl.url().includes('access_token'), dl.url());
  const saved = join(dir, 'page.log');
  await dl.saveAs(saved);
  const fromApi = Buffer.from(await (await fetch(`${a.base}/api/v1/recordings/${id}?access_token=${READ}`)).arrayBuffer());
  assert.ok(fromApi.length > 0);
  assert.ok(readFileSync(saved).equals(fromApi), 'the page downloads the agent file, byte for byte');

  // The bridge's dongle page lists it too; its link streams through the bridge.
  const viewer = String((await bridge.admin.post('/api/v1/viewer-tokens')).body.token);
  const bpage = await browser.page();
  await bpage.goto(`${bridge.base}/console/dongles/web-rec`);
  await bpage.locator('#token-panel').waitFor();
  await bpage.fill('#token-input', viewer);
  await bpage.click('#token-form button[type=submit]');
  const bitem = bpage.locator(`#rec-list li[data-id="${id}"]`);
  // The list is polled every 5 s; if it never shows, say what the page showed instead. (Twice in CI it never
  // showed: the first, tokenless stream's 401 arrived after the token was entered and cleared it; fixed in
  // web/src/sse.ts, a stopped connection reports nothing, unit-tested in units.test.ts.)
  await bitem.waitFor({ timeout: 30_000 }).catch(async (err: Error) => {
    const shown = await bpage.evaluate(() => ({ error: document.querySelector('#rec-error')?.textContent, list: document.querySelector('#rec-list')?.textContent }));
    const listed = await fetch(`${bridge.base}/api/v1/dongles/web-rec/recordings?access_token=${viewer}`).then(async (r) => `${r.status} ${await r.text()}`);
    throw new Error(`${err.message}; the page showed ${JSON.stringify(shown)}; the bridge lists ${listed.slice(0, 500)}`);
  });
  assert.equal(await bpage.locator('#rec-toggle').isVisible(), false, 'no Record button on the bridge');
  const [bdl] = await Promise.all([bpage.waitForEvent('download'), bitem.locator('a.rec-download').click()]);
  assert.match(bdl.url(), new RegExp(`/api/v1/dongles/web-rec/recordings/${id}\\?ticket=`));
  assert.ok(!bdl.url().includes(viewer), bdl.url());
  const bsaved = join(dir, 'bridge.log');
  await bdl.saveAs(bsaved);
  assert.ok(readFileSync(bsaved).equals(fromApi), 'the bridge download is the same file');
  await screenshot(bpage, 'web-recordings-bridge');

  // Delete on the agent page asks first: dismissed, the recording stays; accepted, it goes.
  const listed = async (): Promise<boolean> => {
    const r = (await (await fetch(`${a.base}/api/v1/recordings?access_token=${READ}`)).json()) as { recordings: { id: string }[] };
    return r.recordings.some((x) => x.id === id);
  };
  const asked = new Promise<string>((resolve) => page.once('dialog', (d) => void d.dismiss().then(() => resolve(d.message()))));
  await page.locator(`#rec-list li[data-id="${id}"] button.rec-delete`).click();
  assert.match(await asked, /^Delete the recording of .*\? Its files are removed from the gateway\.$/);
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(await listed(), true, 'dismissed: the recording is still on the gateway');
  assert.equal(await page.locator(`#rec-list li[data-id="${id}"]`).count(), 1);
  page.once('dialog', (d) => void d.accept());
  await page.locator(`#rec-list li[data-id="${id}"] button.rec-delete`).click();
  await page.locator(`#rec-list li[data-id="${id}"]`).waitFor({ state: 'detached' });
  assert.equal(await listed(), false, 'accepted: deleted');
});

test('--console-auth: the page asks for a token before anything, then streams with a read token', async () => {
  const dir = tempDir('canrelay-web-rec-');
  writeFileSync(join(dir, 'tokens'), `admin ${ADMIN}\nread ${READ}\n`);
  const a = await startAgentProcess(['--sim', '--sim-rate', '200', '--local-token-file', join(dir, 'tokens'), '--console-auth']);
  procs.push(a.proc);
  const page = await browser.page();
  await page.goto(a.base + '/');
  await page.locator('#token-panel').waitFor();
  assert.match((await page.textContent('#token-error')) ?? '', /needs a token \(HTTP 401\)/);
  assert.match((await page.textContent('#token-help')) ?? '', /--local-token-file/);
  await page.fill('#token-input', READ);
  await page.click('#token-form button[type=submit]');
  await page.locator('#stream-state[data-state="live"]').waitFor();
  await page.locator('#byid tbody tr').first().waitFor({ state: 'attached' });
  await page.locator('#rec-list li').first().waitFor();
  assert.equal(await page.locator('#token-change').isVisible(), true, 'the token can be changed');
});
