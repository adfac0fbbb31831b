/**
 * The systemd units, checked against an installed tree (`make install DESTDIR=…`):
 * - `systemd-analyze verify` on every unit (offline: no systemd runs as PID 1 here; the DESTDIR is the
 *   root, so ExecStart= must exist in the installed tree) — no error and no warning;
 * - `systemd-analyze security --offline`: the exposure score of each unit stays at or below 2.0;
 * - the hardening that matters holds (no capabilities, the address families, notify, memory limits);
 * - the agent started the way the unit starts it (its ExecStart= and User= through setpriv, no
 *   capabilities, no_new_privs, UMask=, a read-only root with only StateDirectory= writable, a private
 *   /tmp, $STATE_DIRECTORY, $NOTIFY_SOCKET, $WATCHDOG_USEC) comes up, sends READY=1 after the console
 *   listens, pings the watchdog, serves its console, and sends STOPPING=1 and exits 0 on SIGTERM;
 * - two template instances get their own state directories; a second instance on a taken port fails.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { account, ensureDebs, isRoot, NotifyListener, readUnit, REPO, stageInstall, unitBytes, unitValue, type Staged, type Unit } from '../helpers/deploy.js';
import { CliProcess, freePort } from '../helpers/processes.js';
import { skipUnlessPresent } from '../helpers/skips.js';

const UNITS = ['canrelay-agent.service', 'canrelay-agent@.service', 'canrelay-bridge.service'];
const SANDBOX = join(REPO, 'test/helpers/unit-sandbox.sh');
const skipNoSystemd = ensureDebs('systemd');
const needsRoot = isRoot() ? undefined : 'needs root (setpriv, mount namespace)';
const MAX_EXPOSURE = 2.0;

let staged: Staged;
/** DESTDIR plus the host's own units (targets, slices), so that verify can resolve dependencies. */
let verifyRoot: string;
/** Outside /tmp: the sandbox replaces /tmp like PrivateTmp= does. */
let base: string;

before(() => {
  base = mkdtempSync('/var/tmp/canrelay-systemd-test-');
  chmodSync(base, 0o755);
  staged = stageInstall({}, base);
  verifyRoot = join(base, 'verify-root');
  cpSync(staged.destdir, verifyRoot, { recursive: true, verbatimSymlinks: true });
  for (const f of readdirSync('/lib/systemd/system')) {
    const dst = join(verifyRoot, 'lib/systemd/system', f);
    if (!existsSync(dst)) cpSync(join('/lib/systemd/system', f), dst, { recursive: true, verbatimSymlinks: true });
  }
});

after(() => {
  rmSync(base, { recursive: true, force: true });
});

function instanceName(unit: string): string {
  return unit.endsWith('@.service') ? unit.replace('@.service', '@can0.service') : unit;
}

describe('unit files', { skip: skipUnlessPresent('unit files', skipNoSystemd) }, () => {
  test('systemd-analyze verify: every unit, no errors, no warnings', () => {
    for (const u of UNITS) {
      const r = spawnSync('systemd-analyze', ['verify', '--man=no', `--root=${verifyRoot}`, instanceName(u)], { encoding: 'utf8' });
      assert.equal(r.status, 0, `${u}: ${r.stderr}`);
      assert.equal(r.stderr.trim(), '', `${u}: verify printed warnings:\n${r.stderr}`);
    }
  });

  test('systemd-analyze verify catches a broken unit (the check can fail)', () => {
    const broken = join(base, 'broken-root');
    cpSync(verifyRoot, broken, { recursive: true, verbatimSymlinks: true });
    const p = join(broken, 'lib/systemd/system/canrelay-agent.service');
    writeFileSync(p, readFileSync(p, 'utf8').replace('NoNewPrivileges=yes', 'NoNewPrivilege=yes').replace('/current/bin/canrelay', '/current/bin/canrelay-missing'));
    const r = spawnSync('systemd-analyze', ['verify', '--man=no', `--root=${broken}`, 'canrelay-agent.service'], { encoding: 'utf8' });
    assert.match(r.stderr, /Unknown key 'NoNewPrivilege'/);
    assert.match(r.stderr, /canrelay-missing is not executable/);
    assert.notEqual(r.status, 0);
  });

  test('systemd-analyze security: exposure at most 2.0 for every unit', (t) => {
    for (const u of UNITS) {
      const r = spawnSync('systemd-analyze', ['security', '--offline=true', `--root=${verifyRoot}`, '--no-pager', instanceName(u)], { encoding: 'utf8' });
      const m = /Overall exposure level for \S+: (\d+\.\d+)/.exec(r.stdout + r.stderr);
      assert.ok(m, `${u}: no score in ${r.stdout}${r.stderr}`);
      t.diagnostic(`${instanceName(u)}: exposure ${m[1]}`);
      assert.ok(Number(m[1]) <= MAX_EXPOSURE, `${u}: exposure ${m[1]} > ${MAX_EXPOSURE}`);
    }
  });

  test('hardening: no capabilities, only the needed address families, notify, memory bounds', () => {
    const units = Object.fromEntries(UNITS.map((u) => [u, readUnit(join(staged.unitDir, u))])) as Record<string, Unit>;
    for (const [name, u] of Object.entries(units)) {
      const v = (k: string): string | undefined => unitValue(u, 'Service', k);
      assert.equal(v('Type'), 'notify', name);
      assert.equal(v('NotifyAccess'), 'all', `${name}: systemd-notify is a child of the main process`);
      assert.equal(v('Restart'), 'on-failure', name);
      assert.equal(v('User'), 'canrelay', name);
      assert.equal(v('CapabilityBoundingSet'), '', `${name}: no capabilities`);
      assert.equal(v('AmbientCapabilities'), '', name);
      for (const k of ['NoNewPrivileges', 'ProtectHome', 'PrivateTmp', 'PrivateDevices', 'RestrictSUIDSGID', 'LockPersonality']) assert.equal(v(k), 'yes', `${name}: ${k}`);
      assert.equal(v('ProtectSystem'), 'strict', name);
      assert.match(v('StateDirectory') ?? '', /^canrelay\/(agent|agent-%i|bridge)$/, name);
      assert.equal(v('ConfigurationDirectory'), 'canrelay', name);
      assert.ok(unitBytes(v('MemoryMax')!) > unitBytes(v('MemoryHigh')!), `${name}: MemoryMax above MemoryHigh`);
      assert.ok(Number(/^(\d+)s$/.exec(v('WatchdogSec') ?? '')?.[1]) >= 10, `${name}: WatchdogSec`);
      assert.match(v('ExecStart')!, /^\/opt\/canrelay\/current\/bin\/canrelay (agent|bridge) --config \/etc\/canrelay\/(agent|agent-%i|bridge)\.json$/, name);
      const families = v('RestrictAddressFamilies')!.split(/\s+/).sort();
      assert.ok(!families.includes('AF_PACKET'), `${name}: AF_PACKET`);
      if (name.startsWith('canrelay-agent')) assert.deepEqual(families, ['AF_CAN', 'AF_INET', 'AF_INET6', 'AF_NETLINK', 'AF_UNIX'], name);
      else assert.deepEqual(families, ['AF_INET', 'AF_INET6', 'AF_UNIX'], name);
    }
    // The template is the plain unit with the instance in the paths, nothing else.
    const plain = readFileSync(join(REPO, 'systemd/canrelay-agent.service'), 'utf8');
    const tmpl = readFileSync(join(REPO, 'systemd/canrelay-agent@.service'), 'utf8');
    const body = (s: string): string => s.slice(s.indexOf('[Unit]'));
    assert.equal(
      body(tmpl).replaceAll('agent-%i', 'agent').replace('canrelay agent %i (', 'canrelay agent ('),
      body(plain),
      'canrelay-agent@.service drifted from canrelay-agent.service',
    );
  });
});

interface UnitRun {
  proc: CliProcess;
  notify: NotifyListener;
  stateDir: string;
  url: string;
  listenedAt: number;
}

/**
 * Starts the installed agent the way systemd starts `unit` (ExecStart=, User= through setpriv, UMask=,
 * ProtectSystem=strict/PrivateTmp=/ProtectHome= emulated, the environment systemd builds).
 */
async function startLikeSystemd(
  unit: string,
  instance: string | undefined,
  config: Record<string, unknown>,
  extraEnv: NodeJS.ProcessEnv = {},
  readyLog = 'console listening',
): Promise<UnitRun> {
  const u = readUnit(join(staged.unitDir, unit));
  const spec = (k: string): string => {
    const raw = unitValue(u, 'Service', k);
    assert.ok(raw !== undefined, `${unit}: no ${k}=`);
    return instance === undefined ? raw : raw.replaceAll('%i', instance);
  };
  const etc = join(base, 'etc-canrelay');
  mkdirSync(etc, { recursive: true, mode: 0o755 });
  // ExecStart= with the installed tree (DESTDIR) for /opt/canrelay and the test's /etc/canrelay.
  const argv = spec('ExecStart')
    .split(/\s+/)
    .map((a) => a.replace(/^\/opt\/canrelay\//, join(staged.destdir, 'opt/canrelay') + '/').replace(/^\/etc\/canrelay\//, etc + '/'));
  const configPath = argv[argv.indexOf('--config') + 1]!;
  writeFileSync(configPath, JSON.stringify(config, null, 2), { mode: 0o644 });

  // StateDirectory=canrelay/agent → /var/lib/canrelay/agent, created by systemd, owned by User=, 0750.
  const user = account('canrelay') ?? account('nobody')!;
  const stateDir = join(base, 'var/lib', spec('StateDirectory'));
  mkdirSync(stateDir, { recursive: true });
  chownSync(stateDir, user.uid, user.gid);
  chmodSync(stateDir, Number.parseInt(spec('StateDirectoryMode'), 8));

  const notify = new NotifyListener(base);
  await notify.listening();
  // What systemd puts in a system service's environment (env -i: nothing of the test runner's).
  const env: NodeJS.ProcessEnv = {
    PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    LANG: 'C.UTF-8',
    HOME: '/var/lib/canrelay',
    USER: 'canrelay',
    LOGNAME: 'canrelay',
    SHELL: '/usr/sbin/nologin',
    INVOCATION_ID: 'c0ffee00c0ffee00c0ffee00c0ffee00',
    STATE_DIRECTORY: stateDir,
    CONFIGURATION_DIRECTORY: etc,
    NOTIFY_SOCKET: notify.path,
    WATCHDOG_USEC: String(Number(/^(\d+)s$/.exec(spec('WatchdogSec'))![1]) * 1_000_000),
    ...extraEnv,
  };
  const child = spawn(SANDBOX, [String(user.uid), String(user.gid), spec('UMask'), stateDir, '--', ...argv], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const proc = new CliProcess(child);
  try {
    const line = await proc.waitForLog((l) => l.msg === readyLog, 20_000);
    return { proc, notify, stateDir, url: String(line.url), listenedAt: Number(line.time) };
  } catch (err) {
    await proc.stop('SIGKILL');
    notify.close();
    throw err;
  }
}

describe('the agent started like canrelay-agent.service', { skip: skipUnlessPresent('the agent started like canrelay-agent.service', skipNoSystemd ?? needsRoot) }, () => {
  test('READY=1 after the console listens, watchdog pings, console served, STOPPING=1 and exit 0 on SIGTERM', async (t) => {
    const example = JSON.parse(readFileSync(join(REPO, 'systemd/agent.example.json'), 'utf8')) as Record<string, unknown>;
    // The shipped example, with the simulated bus instead of can0,can1, no bridge, no token files (the
    // local API's is tested in test/e2e/local-auth.test.ts), and a free port.
    const { can: _can, bridge: _bridge, 'token-file': _tf, 'local-token-file': _ltf, ...rest } = example;
    const run = await startLikeSystemd(
      'canrelay-agent.service',
      undefined,
      { ...rest, sim: true, 'sim-rate': 500, listen: '127.0.0.1:0', id: 'unit-gw' },
      { WATCHDOG_USEC: '1000000' },
    );
    try {
      const pid = run.proc.child.pid!;
      // The process is what systemd would run: the service user, no capabilities, no_new_privs.
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      const user = account('canrelay') ?? account('nobody')!;
      assert.match(status, new RegExp(`^Uid:\\s+${user.uid}\\s+${user.uid}\\s+${user.uid}\\s+${user.uid}$`, 'm'));
      for (const cap of ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb']) assert.match(status, new RegExp(`^${cap}:\\s+0+$`, 'm'), cap);
      assert.match(status, /^NoNewPrivs:\s+1$/m);
      assert.match(readFileSync(`/proc/${pid}/cmdline`, 'utf8'), /dist\/cli\.js\0agent\0--config\0/, 'the launcher execs node: the main PID is node');

      const ready = await run.notify.waitFor((m) => m.fields.READY === '1');
      assert.ok(ready.t >= run.listenedAt, `READY=1 (${ready.t}) before 'console listening' (${run.listenedAt})`);
      assert.equal(ready.fields.MAINPID, String(pid));
      assert.match(ready.fields.STATUS ?? '', /console listening on http:\/\/127\.0\.0\.1:\d+\//);
      assert.equal(ready.uid, user.uid, 'sent with the service user credentials');
      t.diagnostic(`READY=1 ${(ready.t - run.listenedAt).toFixed(1)} ms after 'console listening'; sender pid ${ready.pid} (main ${pid})`);

      // The console answers and streams.
      const ac = new AbortController();
      const res = await fetch(run.url + '?backlog=5', { signal: ac.signal });
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
      const reader = res.body!.getReader();
      let text = '';
      while (!/event: can_frame/.test(text)) text += new TextDecoder().decode((await reader.read()).value);
      ac.abort();

      // WATCHDOG_USEC=1 s → a ping every 0.5 s.
      const t0 = Date.now();
      await new Promise((r) => setTimeout(r, 1600));
      const pings = run.notify.messages.filter((m) => m.fields.WATCHDOG === '1' && m.t >= t0);
      assert.ok(pings.length >= 2, `watchdog pings in 1.6 s: ${pings.length}`);

      // The state lives in $STATE_DIRECTORY, private to the service user (UMask=0077).
      const db = join(run.stateDir, 'agent.sqlite');
      assert.ok(existsSync(db), 'agent.sqlite in $STATE_DIRECTORY');
      assert.equal(statSync(db).uid, user.uid);
      assert.equal(statSync(db).mode & 0o077, 0, 'state files are not group/world readable');

      const code = await Promise.race([run.proc.stop('SIGTERM'), new Promise((r) => setTimeout(() => r('timeout'), 6000))]);
      assert.equal(code, 0, `exit on SIGTERM: ${run.proc.stderr}`);
      await run.notify.waitFor((m) => m.fields.STOPPING === '1', 2000);
    } finally {
      await run.proc.stop('SIGKILL');
      run.notify.close();
    }
  });

  test('without NOTIFY_SOCKET nothing is sent and nothing fails (not under systemd)', async () => {
    const run = await startLikeSystemd(
      'canrelay-agent.service',
      undefined,
      { id: 'plain-gw', sim: true, 'sim-rate': 100, listen: '127.0.0.1:0' },
      { NOTIFY_SOCKET: '', WATCHDOG_USEC: '' },
    );
    try {
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(run.notify.messages.length, 0);
      assert.ok(!run.proc.logs.some((l) => /notify/.test(l.msg)), 'no notify warning');
    } finally {
      assert.equal(await run.proc.stop(), 0);
      run.notify.close();
    }
  });

  test('canrelay-agent@: two instances, own state directories; a taken port fails clearly', async () => {
    const port = await freePort();
    const a = await startLikeSystemd('canrelay-agent@.service', 'can0', { id: 'gw-can0', sim: true, 'sim-rate': 100, listen: `127.0.0.1:${port}` });
    const b = await startLikeSystemd('canrelay-agent@.service', 'can1', { id: 'gw-can1', sim: true, 'sim-rate': 100, listen: '127.0.0.1:0' });
    try {
      assert.notEqual(a.stateDir, b.stateDir);
      assert.match(a.stateDir, /canrelay\/agent-can0$/);
      assert.match(b.stateDir, /canrelay\/agent-can1$/);
      await a.notify.waitFor((m) => m.fields.READY === '1');
      await b.notify.waitFor((m) => m.fields.READY === '1');
      assert.ok(existsSync(join(a.stateDir, 'agent.sqlite')) && existsSync(join(b.stateDir, 'agent.sqlite')));
      assert.match(a.url, /dongles\/gw-can0\//);
      assert.match(b.url, /dongles\/gw-can1\//);
      // A third instance configured with can0's port: exit 1 (restartable), with the reason.
      const c = startLikeSystemd('canrelay-agent@.service', 'can2', { id: 'gw-can2', sim: true, listen: `127.0.0.1:${port}` });
      await assert.rejects(c, /port is in use|exited \(1\)/);
    } finally {
      assert.equal(await a.proc.stop(), 0);
      assert.equal(await b.proc.stop(), 0);
      a.notify.close();
      b.notify.close();
    }
  });
});

describe('the bridge started like canrelay-bridge.service', { skip: skipUnlessPresent('the bridge started like canrelay-bridge.service', skipNoSystemd ?? needsRoot) }, () => {
  test('READY=1 after the bridge listens, STOPPING=1 and exit 0 on SIGTERM', async () => {
    const dir = join(base, 'bridge-secrets');
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    const tokenFile = join(dir, 'bridge-admin.token');
    writeFileSync(tokenFile, 'bridge-admin-token-0123456789abcdef\n', { mode: 0o644 });
    const example = JSON.parse(readFileSync(join(REPO, 'systemd/bridge.example.json'), 'utf8')) as Record<string, unknown>;
    const run = await startLikeSystemd('canrelay-bridge.service', undefined, { ...example, listen: '127.0.0.1:0', 'admin-token-file': tokenFile }, {}, 'bridge listening');
    try {
      assert.ok(existsSync(join(run.stateDir, 'bridge.sqlite')), 'the default --db is $STATE_DIRECTORY/bridge.sqlite');
      const ready = await run.notify.waitFor((m) => m.fields.READY === '1', 5000);
      assert.ok(ready.t >= run.listenedAt);
      assert.equal(await run.proc.stop('SIGTERM'), 0);
      await run.notify.waitFor((m) => m.fields.STOPPING === '1', 2000);
    } finally {
      await run.proc.stop('SIGKILL');
      run.notify.close();
    }
  });
});
