/**
 * Shutdown never hangs (docs/reliability.md): SIGTERM ends the agent and the bridge with exit 0 also when
 * stdout's reader has gone away (EPIPE), and the console keeps answering until then. The negative control
 * runs the same harness against pino's default destination, which hangs: the fault is real, so the
 * passing checks are not passing by accident.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { HARD_STOP_MS } from '../../core/cli/daemon.js';
import { startBridgeProcess } from '../helpers/bridge-process.js';
import { freePort, startAgentProcess, tempDir, type CliProcess } from '../helpers/processes.js';

/** The documented promise is 5 s; the test allows twice that so a loaded machine does not flake it. */
const EXIT_BOUND_MS = 10_000;

/** Sends SIGTERM and resolves with the exit code, or 'hung' if the process outlives `boundMs` (then killed). */
async function terminate(proc: CliProcess, boundMs: number): Promise<number | null | 'hung'> {
  proc.child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<'hung'>((resolve) => (timer = setTimeout(() => resolve('hung'), boundMs)));
  const result = await Promise.race([proc.wait(), hung]);
  clearTimeout(timer);
  if (result === 'hung') proc.child.kill('SIGKILL');
  return result;
}

/** The reader of the child's stdout goes away: its next write fails with EPIPE. */
function closeStdout(proc: CliProcess): void {
  proc.child.stdout!.destroy();
}

test('the hard-stop deadline is inside the documented 5 s', () => {
  assert.ok(HARD_STOP_MS <= 5000, `HARD_STOP_MS is ${HARD_STOP_MS}`);
});

test('agent: SIGTERM with a closed stdout pipe exits 0; the console answers until then', async () => {
  // An unreachable bridge keeps the agent logging warnings, so lines are written after the reader left.
  const dead = await freePort();
  const agent = await startAgentProcess(['--sim', '--bridge', `http://127.0.0.1:${dead}`, '--token', 'token-0123456789abcdef', '--log-level', 'debug']);
  closeStdout(agent.proc);
  for (let i = 0; i < 5; i++) {
    const r = await fetch(`${agent.base}/healthz`);
    assert.equal(r.status, 200, 'console answers with stdout closed');
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.equal(await terminate(agent.proc, EXIT_BOUND_MS), 0);
});

test('bridge: SIGTERM with a closed stdout pipe exits 0', async () => {
  const bridge = await startBridgeProcess();
  closeStdout(bridge.proc);
  // Requests the bridge logs about (a refused admin call), after the reader left.
  for (let i = 0; i < 5; i++) {
    const r = await bridge.admin.withToken('wrong-token-0123456789').get('/api/v1/dongles');
    assert.equal(r.status, 401);
  }
  assert.equal(await terminate(bridge.proc, EXIT_BOUND_MS), 0);
});

/** A process that logs a line, waits for its reader to leave, and on SIGTERM logs three more and exits. */
function loggerScript(dir: string, kind: 'pino-default' | 'canrelay'): string {
  const require = createRequire(import.meta.url);
  const file = join(dir, `${kind}.mjs`);
  const pinoUrl = pathToFileURL(require.resolve('pino')).href;
  const ours = new URL('../../../dist/core/log/logger.js', import.meta.url).href;
  const make = kind === 'pino-default' ? `(await import(${JSON.stringify(pinoUrl)})).pino()` : `(await import(${JSON.stringify(ours)})).createLogger('info', {})`;
  writeFileSync(
    file,
    `const log = ${make};
process.on('SIGTERM', () => { for (let i = 0; i < 3; i++) log.info('stopping ' + i); process.exit(0); });
log.info('started');
setInterval(() => {}, 1000);
`,
  );
  return file;
}

async function runLoggerScript(file: string): Promise<number | null | 'hung'> {
  // Without the runner's NODE_TEST_CONTEXT, which changes how a plain script handles its signals.
  const env = { ...process.env };
  delete env.NODE_TEST_CONTEXT;
  const child = spawn(process.execPath, [file], { stdio: ['ignore', 'pipe', 'pipe'], env });
  let seen = '';
  await new Promise<void>((resolve) =>
    child.stdout.on('data', (d: Buffer) => {
      seen += d.toString();
      if (seen.includes('"started"')) resolve();
    }),
  );
  child.stdout.destroy();
  child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const hung = new Promise<'hung'>((resolve) => (timer = setTimeout(() => resolve('hung'), 6000)));
  const result = await Promise.race([exited, hung]);
  clearTimeout(timer);
  if (result === 'hung') {
    child.kill('SIGKILL');
    await exited;
  }
  return result;
}

test('negative control: the same closed pipe hangs pino’s default destination; canrelay’s logger exits', async () => {
  const dir = tempDir('canrelay-logpipe-');
  assert.equal(await runLoggerScript(loggerScript(dir, 'pino-default')), 'hung', 'the fault is real: pino’s exit flush retries EPIPE for ever');
  assert.equal(await runLoggerScript(loggerScript(dir, 'canrelay')), 0);
});

test('agent: frames held for an unreachable bridge when it stops are said, never silently gone: how many were never sent', async () => {
  const dead = await freePort();
  const agent = await startAgentProcess(['--sim', '--bridge', `http://127.0.0.1:${dead}`, '--token', 'token-0123456789abcdef']);
  // The simulator's frames wait for the bridge (bounded by --uplink-buffer-frames and the age limit).
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(await terminate(agent.proc, EXIT_BOUND_MS), 0);
  const line = agent.proc.logs.find((l) => l.msg.startsWith('frames for the bridge were still held when the agent stopped'));
  assert.ok(line, 'a warn line at the stop');
  assert.equal(line.level, 40);
  assert.ok(Number(line.never_sent) > 0, `never sent: ${String(line.never_sent)}`);
  assert.equal(line.sent_unacknowledged, 0, 'nothing was ever sent');
});
