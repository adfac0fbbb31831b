/**
 * The agent's defaults and small endpoints as the README states them, through the real CLI:
 * `GET /api/v1/info`, `--id` from the host name (cleaned), the default state directory
 * (`$STATE_DIRECTORY`, else `~/.local/state/canrelay`), the `--listen` default, SIGINT like SIGTERM,
 * `--replay-loop` from the command line, and the final offline presence reaching the bridge.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { startBridgeProcess } from '../helpers/bridge-process.js';
import { CLI, runCli, startAgentProcess, tempDir, writeCandumpLog, type CliProcess, type StartedAgent } from '../helpers/processes.js';
import { skipOrFail } from '../helpers/skips.js';
import { getJson, metricValue, SseClient } from '../helpers/sse-client.js';
import { until } from '../helpers/until.js';

const procs: CliProcess[] = [];
after(async () => {
  for (const p of procs) await p.stop('SIGKILL');
});
const track = <T extends { proc: CliProcess }>(x: T): T => (procs.push(x.proc), x);

/** Starts `canrelay agent` with exactly `args` (no --id, no --state-dir added) and waits for its console URL. */
async function bare(args: string[], env: NodeJS.ProcessEnv = {}): Promise<StartedAgent> {
  const proc = runCli(['agent', ...args], env);
  procs.push(proc);
  const url = String((await proc.waitForLog((l) => l.msg === 'console listening')).url);
  return { proc, url, base: url.replace(/\/api\/v1\/.*$/, ''), stateDir: '' };
}

test('GET /api/v1/info: the dongle, source, buses, console path, sampling and guards', async () => {
  const a = track(await startAgentProcess(['--sim', '--sim-rate', '50', '--console-max-rate', '300'], { id: 'info-gw' }));
  const r = await getJson(a.base + '/api/v1/info');
  assert.equal(r.status, 200);
  assert.equal(r.body.dongle, 'info-gw');
  assert.equal(r.body.source, 'sim');
  assert.deepEqual(r.body.buses, { can0: 'up' });
  assert.equal(r.body.console, '/api/v1/streams/dongles/info-gw/console');
  assert.equal(a.url, a.base + r.body.console, 'the console path is where the console is');
  assert.equal(r.body.console_max_rate, 300);
  assert.equal(r.body.sampling, false);
  assert.deepEqual(r.body.local_auth, { writes: false, reads: false });
  assert.equal(typeof r.body.uptime_s, 'number');
  assert.ok(r.body.bus_health !== undefined, 'bus health snapshot');
});

test('--id defaults to the host name, cleaned to the id rule', async (t) => {
  const dir = tempDir('canrelay-defaults-');
  const a = await bare(['--sim', '--sim-rate', '10', '--listen', '127.0.0.1:0', '--state-dir', dir]);
  const info = await getJson(a.base + '/api/v1/info');
  assert.equal(
    info.body.dongle,
    hostname()
      .replace(/[^A-Za-z0-9._-]+/g, '-')
      .replace(/^-+|-+$/g, '')
      .slice(0, 64),
  );
  await a.proc.stop();
  // A host name the id rule does not allow (spaces, brackets, '!'): cleaned, not refused. Needs a UTS
  // namespace of its own (root) to name the host without touching the machine's; written to the kernel
  // directly (hostname(1) itself refuses such names).
  if (process.getuid?.() !== 0) return skipOrFail(t, 'not root: cannot give the agent a host name of its own (unshare -u)');
  const odd = ' Gw 17 (test)!' + 'x'.repeat(40);
  const out = execFileSync(
    'unshare',
    ['-u', 'sh', '-c', 'printf %s "$1" > /proc/sys/kernel/hostname && exec "$2" "$3" agent --sim --check-config', 'sh', odd, process.execPath, CLI],
    { encoding: 'utf8' },
  );
  const id = (JSON.parse(out) as { id: string }).id;
  assert.equal(id, 'Gw-17-test-' + 'x'.repeat(40), `cleaned: ${id}`);
});

test('the state directory defaults to $STATE_DIRECTORY, else ~/.local/state/canrelay; --listen to 0.0.0.0:8080', async () => {
  const home = tempDir('canrelay-home-');
  const noEnv = { HOME: home, STATE_DIRECTORY: '' };
  const a = await bare(['--sim', '--sim-rate', '10', '--id', 'st-a', '--listen', '127.0.0.1:0'], noEnv);
  await until(() => existsSync(join(home, '.local/state/canrelay/agent.sqlite')), 10_000, 'agent.sqlite under ~/.local/state/canrelay');
  assert.equal(await a.proc.stop(), 0);
  const sd = tempDir('canrelay-statedir-');
  const b = await bare(['--sim', '--sim-rate', '10', '--id', 'st-b', '--listen', '127.0.0.1:0'], { HOME: home, STATE_DIRECTORY: sd });
  await until(() => existsSync(join(sd, 'agent.sqlite')), 10_000, 'agent.sqlite in $STATE_DIRECTORY');
  assert.equal(await b.proc.stop(), 0);
  // The listen default, read from the effective configuration (binding the real port 8080 could meet
  // another program on this machine): 0.0.0.0:8080, and the state dir as above.
  const cfg = runCli(['agent', '--sim', '--check-config'], noEnv);
  assert.equal(await cfg.wait(), 0);
  const eff = JSON.parse(cfg.stdout) as Record<string, unknown>;
  assert.equal(eff.listen, '0.0.0.0:8080');
  assert.equal(eff['state-dir'], join(home, '.local/state/canrelay'));
  const bridgeCfg = runCli(['bridge', '--check-config'], { ...noEnv, CANRELAY_ADMIN_TOKEN: 'check-config-token-0123' });
  assert.equal(await bridgeCfg.wait(), 0);
  const beff = JSON.parse(bridgeCfg.stdout) as Record<string, unknown>;
  assert.equal(beff.listen, '0.0.0.0:8090', 'the bridge listens on 8090 by default');
  assert.equal(beff.db, join(home, '.local/state/canrelay/bridge.sqlite'));
});

test('SIGINT: like SIGTERM, a final offline presence, streams closed, exit 0', async () => {
  const a = track(await startAgentProcess(['--sim', '--sim-rate', '50']));
  const c = await SseClient.connect(a.url);
  await c.waitFor((ev) => ev.length >= 3);
  assert.equal(await a.proc.stop('SIGINT'), 0);
  await c.waitClosed();
  const last = c.events.at(-1)!;
  assert.equal(last.event, 'presence');
  assert.equal(last.json.state, 'offline');
});

test('--replay-loop from the command line: the file starts over and never ends', async () => {
  const N = 200;
  const file = join(tempDir('canrelay-loop-'), 'short.log');
  writeCandumpLog(file, N);
  const a = track(await startAgentProcess(['--replay', file, '--replay-speed', '0', '--replay-loop']));
  const rx = async (): Promise<number> => metricValue((await getJson(a.base + '/metrics')).text, 'canrelay_can_frames_total', { bus: 'can0', direction: 'rx' }) ?? 0;
  await until(async () => (await rx()) >= 5 * N, 30_000, 'five times the file taken in');
  assert.ok(!a.proc.logs.some((l) => l.code === 'replay_ended'), 'a looping replay never ends');
  assert.equal(a.proc.exitCode, null, 'still running');
  // Without --replay-loop the same file ends (the negative control of this check).
  const once = track(await startAgentProcess(['--replay', file, '--replay-speed', '0']));
  await once.proc.waitForLog((l) => l.code === 'replay_ended', 20_000);
  assert.equal(metricValue((await getJson(once.base + '/metrics')).text, 'canrelay_can_frames_total', { bus: 'can0', direction: 'rx' }), N);
});

test("the agent's final offline presence reaches the bridge (SIGTERM and SIGINT)", async () => {
  const bridge = await startBridgeProcess();
  procs.push(bridge.proc);
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    const id = `bye-${signal.toLowerCase()}`;
    const token = await bridge.admin.register(id);
    const a = track(await startAgentProcess(['--sim', '--sim-rate', '10', '--bridge', bridge.base, '--token', token], { id }));
    await a.proc.waitForLog((l) => l.msg === 'uplink connected');
    const c = await SseClient.connect(`${bridge.base}/api/v1/streams/dongles/${id}/console?access_token=${bridge.admin.token}`);
    const own = await SseClient.connect(a.url + '?backlog=1000');
    await own.waitFor((ev) => ev.length >= 2);
    assert.equal(await a.proc.stop(signal), 0);
    await own.waitClosed();
    const offline = own.events.at(-1)!;
    assert.equal(offline.json.state, 'offline', "the agent's last event");
    // The same event, from the agent (its own time and reason), on the bridge's console of the dongle.
    await c.waitFor(
      (ev) => ev.some((e) => e.event === 'presence' && e.json.state === 'offline' && e.json.ts === offline.json.ts),
      10_000,
      `the agent's offline presence at the bridge after ${signal}`,
    );
    const mirrored = c.events.find((e) => e.event === 'presence' && e.json.ts === offline.json.ts)!;
    assert.equal(mirrored.json.reason, offline.json.reason);
    c.close();
  }
});
