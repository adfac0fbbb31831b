/**
 * test/helpers/skips.ts, the one way a test skips: under CI=true a skip of something CI must run fails
 * the run; outside CI it passes but is printed loudly and listed in the skip log. Run on a throw-away
 * test file through a real `node --test`, as the Makefile runs the suites.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const dir = mkdtempSync(join(tmpdir(), 'canrelay-skips-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const helper = fileURLToPath(new URL('../../helpers/skips.js', import.meta.url));

const probe = join(dir, 'probe.test.mjs');
writeFileSync(
  probe,
  `import { test } from 'node:test';
import { skipOrFail, skipUnlessPresent } from ${JSON.stringify(helper)};
test('needs nginx', { skip: skipUnlessPresent('needs nginx', 'nginx not installed') }, () => {});
test('needs a tmpfs', (t) => skipOrFail(t, 'cannot mount a tmpfs'));
test('no-SocketCAN path', (t) => skipOrFail(t, 'this host has SocketCAN', { evenUnderCi: true }));
test('present', { skip: skipUnlessPresent('present', undefined) }, () => {});
`,
);

function run(ci: string | undefined, log: string): { code: number | null; out: string } {
  const env: NodeJS.ProcessEnv = { ...process.env, CANRELAY_SKIP_LOG: log };
  delete env.CI;
  delete env.NODE_TEST_CONTEXT; // a fresh runner, not a subtest of this one
  if (ci !== undefined) env.CI = ci;
  // TAP explicitly: Node 20 prints it to a pipe by default, Node 24 the spec reporter.
  const r = spawnSync(process.execPath, ['--test', '--test-force-exit', '--test-reporter=tap', probe], { env, encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, out: r.stdout + r.stderr };
}

test('under CI=true a skip fails the run, naming the reason; an expected-under-CI skip does not', () => {
  const log = join(dir, 'ci.txt');
  const r = run('true', log);
  assert.notEqual(r.code, 0, r.out);
  assert.match(r.out, /CI=true and .*needs nginx would be skipped: nginx not installed/);
  assert.match(r.out, /CI=true and .*needs a tmpfs would be skipped: cannot mount a tmpfs/);
  assert.match(r.out, /# fail 2/, r.out);
  assert.match(readFileSync(log, 'utf8'), /SKIPPED .*no-SocketCAN path: this host has SocketCAN/);
});

test('outside CI the same skips pass, loudly, and are listed in the skip log', () => {
  const log = join(dir, 'local.txt');
  const r = run(undefined, log);
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /\*\*\* SKIPPED probe\.test\.mjs: needs nginx: nginx not installed \*\*\*/);
  const lines = readFileSync(log, 'utf8').trim().split('\n');
  assert.equal(lines.length, 3, lines.join('\n'));
  assert.ok(!lines.some((l) => l.includes('present')), 'a test that runs is not listed');
  // Negative control: CI=false is "not CI".
  const off = join(dir, 'off.txt');
  assert.equal(run('false', off).code, 0);
  assert.ok(existsSync(off));
});
