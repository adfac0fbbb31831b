/**
 * core/cli/daemon.ts: a daemon survives a promise rejection nothing handled, and says so in its log. Run
 * as a real process (a throw-away script around the built runDaemon), against the same script without
 * runDaemon as the control: Node's default exits on it.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const dir = mkdtempSync(join(tmpdir(), 'canrelay-daemon-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const built = (p: string): string => JSON.stringify(fileURLToPath(new URL(`../../../core/${p}`, import.meta.url)));

/** A daemon whose running operation rejects unheard, then reports whether it is still alive 300 ms later. */
function probe(withDaemon: boolean): { code: number | null; out: string } {
  const file = join(dir, `probe-${withDaemon}.mjs`);
  const lost = `setTimeout(() => void Promise.reject(new Error('lost write to a closed store')), 20);`;
  // Still running 300 ms later: says so, after the log lines have reached stdout (they are written asynchronously).
  const alive = (drain: string): string => `setTimeout(() => void ${drain}.then(() => { process.stdout.write('STILL ALIVE\\n'); process.exit(0); }), 300);`;
  writeFileSync(
    file,
    withDaemon
      ? `import { runDaemon } from ${built('cli/daemon.js')};
import { createLogger, drainLogs } from ${built('log/logger.js')};
const log = createLogger('info', { daemon: 'probe' });
await runDaemon('probe', log, async () => { ${lost} ${alive('drainLogs(2000)')} return { stop: async () => {} }; }, () => 'ready');
`
      : `${lost}\n${alive('Promise.resolve()')}\n`,
  );
  const env = { ...process.env };
  delete env.NOTIFY_SOCKET;
  const r = spawnSync(process.execPath, [file], { env, encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, out: r.stdout + r.stderr };
}

test('an unhandled rejection is logged with its error, and the daemon goes on', () => {
  const r = probe(true);
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /STILL ALIVE/);
  const line = r.out.split('\n').find((l) => l.includes('nothing handled it'));
  assert.ok(line, `the log says what happened: ${r.out}`);
  const entry = JSON.parse(line) as { level: number; msg: string; err?: { message?: string; stack?: string } };
  assert.equal(entry.level, 50, 'logged at error level');
  assert.equal(entry.err?.message, 'lost write to a closed store');
  assert.match(entry.err?.stack ?? '', /probe-true\.mjs/, 'with the stack, to find the bug');
});

test('control: without the daemon wrapper, Node exits on the same rejection', () => {
  const r = probe(false);
  assert.notEqual(r.code, 0, r.out);
  assert.doesNotMatch(r.out, /STILL ALIVE/);
  assert.match(r.out, /lost write to a closed store/);
});
