/**
 * The negative control of test/helpers/browser.ts: a page that throws an uncaught error makes
 * TestBrowser.close() (every web test file's after hook) reject, so no browser test passes over a page
 * error; a page that does not throw closes cleanly.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { launchBrowser } from '../helpers/browser.js';
import { untilValue } from '../helpers/until.js';

test('an uncaught page error fails close(); a clean page does not', { timeout: 120_000 }, async () => {
  const clean = await launchBrowser();
  const ok = await clean.page();
  await ok.setContent('<p id="x">fine</p><script>document.getElementById("x").textContent = "ran"</script>');
  assert.equal(await ok.textContent('#x'), 'ran');
  await clean.close();

  const b = await launchBrowser();
  const page = await b.page();
  await page.setContent('<script>setTimeout(() => { throw new Error("deliberate page bug") }, 0)</script>');
  await untilValue(() => b.errors.length > 0, 'the page error to be seen');
  await assert.rejects(b.close(), /uncaught page error\(s\):[\s\S]*deliberate page bug/);
});
