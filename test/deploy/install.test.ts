/**
 * `make install` / `make uninstall` (packaging/install.sh, uninstall.sh) into a DESTDIR, the tarball, the
 * upgrade/rollback switch (bin/canrelay-install), and the .deb installed and removed with dpkg for real.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { account, hasCommand, isRoot, readUnit, REPO, stageInstall, unitValue, type Staged } from '../helpers/deploy.js';
import { CliProcess } from '../helpers/processes.js';
import { skipUnlessPresent } from '../helpers/skips.js';

const VERSION = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version;
const PKG = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };
const UNITS = ['canrelay-agent.service', 'canrelay-agent@.service', 'canrelay-bridge.service'];

function sh(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): string {
  return execFileSync(cmd, args, { env: { ...process.env, ...env }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 1_200_000, maxBuffer: 256 * 1024 * 1024 });
}

/** Every path under dir, relative, symlinks not followed. */
function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    for (const name of readdirSync(join(dir, rel))) {
      const r = rel ? `${rel}/${name}` : name;
      out.push(r);
      const st = lstatSync(join(dir, r));
      if (st.isDirectory()) walk(r);
    }
  };
  walk('');
  return out.sort();
}

/** Runs the installed agent from its install location and waits for the console. */
async function runInstalled(launcher: string, stateDir: string): Promise<CliProcess> {
  const child = spawn(launcher, ['agent', '--id', 'installed', '--sim', '--sim-rate', '100', '--listen', '127.0.0.1:0', '--state-dir', stateDir], {
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd: '/',
    env: { PATH: '/usr/bin:/bin', HOME: stateDir },
  });
  const p = new CliProcess(child);
  await p.waitForLog((l) => l.msg === 'console listening', 15_000);
  return p;
}

describe('make install into a DESTDIR', () => {
  let s: Staged;
  before(() => {
    s = stageInstall();
  });
  after(() => s.cleanup());

  test('lays out a versioned program dir, the current symlink, launcher, units, sysusers, examples', () => {
    const app = join(s.destdir, 'opt/canrelay', VERSION);
    assert.equal(readlinkSync(join(s.destdir, 'opt/canrelay/current')), VERSION, 'current is a relative symlink to the version');
    for (const f of [
      'dist/cli.js',
      'dist/web/main.js',
      'package.json',
      'VERSION',
      'bin/canrelay',
      'bin/canrelay-install',
      'docs/deployment.md',
      'share/nginx/canrelay-bridge.conf',
      'share/sysusers.d/canrelay.conf',
    ])
      assert.ok(existsSync(join(app, f)), `missing ${f}`);
    assert.ok(!existsSync(join(app, 'dist/test')), 'tests are not installed');
    // Only the program: never the build tree's caches, packages or test copies (dist/cache, dist/node24…).
    assert.deepEqual(readdirSync(join(app, 'dist')).sort(), ['agent', 'cli.js', 'cloud-bridge', 'core', 'web']);
    assert.equal(readlinkSync(join(s.destdir, 'usr/local/bin/canrelay')), '/opt/canrelay/current/bin/canrelay');
    for (const u of UNITS) assert.ok(existsSync(join(s.unitDir, u)), `unit ${u}`);
    assert.match(readFileSync(join(s.destdir, 'usr/lib/sysusers.d/canrelay.conf'), 'utf8'), /^u canrelay - "canrelay daemon" \/var\/lib\/canrelay/m);
    for (const f of ['agent.example.json', 'bridge.example.json']) assert.ok(existsSync(join(s.destdir, 'etc/canrelay', f)));
    assert.equal(statSync(join(app, 'bin/canrelay')).mode & 0o777, 0o755);
    assert.equal(statSync(join(app, 'dist/cli.js')).mode & 0o777, 0o644);
  });

  test('production dependencies only; the native addons load from the installed location', () => {
    const nm = join(s.destdir, 'opt/canrelay', VERSION, 'node_modules');
    for (const d of Object.keys(PKG.dependencies)) assert.ok(existsSync(join(nm, d, 'package.json')), `dependency ${d} installed`);
    for (const d of Object.keys(PKG.devDependencies)) assert.ok(!existsSync(join(nm, d)), `dev dependency ${d} must not be installed`);
    assert.ok(!existsSync(join(nm, 'better-sqlite3/deps')), 'addon sources pruned');
    // With the packaged runtime, from the app dir (node resolves from there, not from the build tree).
    const runtime = join(s.destdir, 'opt/canrelay', VERSION, 'node/bin/node');
    assert.ok(existsSync(runtime), 'the package carries its own Node.js');
    const r = spawnSync(
      runtime,
      [
        '-e',
        `
      const Database = require('better-sqlite3');
      const can = require('socketcan');
      console.log(JSON.stringify({ one: new Database(':memory:').prepare('select 1 as one').get().one, can: typeof can.createRawChannel, from: require.resolve('better-sqlite3') }));
    `,
      ],
      { cwd: join(s.destdir, 'opt/canrelay', VERSION), encoding: 'utf8' },
    );
    assert.equal(r.status, 0, r.stderr);
    const res = JSON.parse(r.stdout) as { one: number; can: string; from: string };
    assert.equal(res.one, 1);
    assert.equal(res.can, 'function');
    assert.ok(res.from.startsWith(join(s.destdir, 'opt/canrelay')), `resolved ${res.from}`);
  });

  test('the installed launcher runs the agent (through the current symlink)', async () => {
    const state = mkdtempSync(join(tmpdir(), 'canrelay-installed-state-'));
    const p = await runInstalled(s.launcher, state);
    try {
      assert.match(
        readFileSync(`/proc/${p.child.pid}/cmdline`, 'utf8'),
        new RegExp(`opt/canrelay/${VERSION.replaceAll('.', '\\.')}/bin/\\.\\./dist/cli\\.js`),
        'runs from the versioned dir',
      );
      assert.ok(existsSync(join(state, 'agent.sqlite')));
    } finally {
      assert.equal(await p.stop(), 0);
      rmSync(state, { recursive: true, force: true });
    }
  });

  test('the installed units name the installed launcher', () => {
    for (const u of UNITS) {
      const exec = unitValue(readUnit(join(s.unitDir, u)), 'Service', 'ExecStart')!;
      const bin = exec.split(' ')[0]!;
      assert.equal(bin, '/opt/canrelay/current/bin/canrelay');
      assert.ok(existsSync(join(s.destdir, bin)), `${u}: ${bin} exists in the installed tree`);
    }
  });

  test('upgrade and rollback: versions side by side, current flips atomically, units follow', () => {
    // A "next version": the same program, another version number, installed like a tarball would be.
    const unpack = mkdtempSync(join(tmpdir(), 'canrelay-next-'));
    const next = join(unpack, 'canrelay-9.9.9');
    cpSync(join(s.destdir, 'opt/canrelay', VERSION), next, { recursive: true, verbatimSymlinks: true });
    writeFileSync(join(next, 'VERSION'), '9.9.9\n');
    writeFileSync(join(next, 'share/systemd/canrelay-agent.service'), readFileSync(join(next, 'share/systemd/canrelay-agent.service'), 'utf8') + '# 9.9.9\n');
    try {
      sh(join(next, 'bin/canrelay-install'), [], { DESTDIR: s.destdir });
      assert.equal(readlinkSync(join(s.destdir, 'opt/canrelay/current')), '9.9.9');
      assert.ok(existsSync(join(s.destdir, 'opt/canrelay', VERSION, 'dist/cli.js')), 'the previous version stays for rollback');
      assert.match(readFileSync(join(s.unitDir, 'canrelay-agent.service'), 'utf8'), /# 9\.9\.9\n$/);
      // Rollback: the old version's own canrelay-install switches back.
      sh(join(s.destdir, 'opt/canrelay', VERSION, 'bin/canrelay-install'), [], { DESTDIR: s.destdir });
      assert.equal(readlinkSync(join(s.destdir, 'opt/canrelay/current')), VERSION);
      assert.doesNotMatch(readFileSync(join(s.unitDir, 'canrelay-agent.service'), 'utf8'), /9\.9\.9/);
      assert.equal(realpathSync(join(s.destdir, 'opt/canrelay/current/bin/canrelay')), join(realpathSync(s.destdir), 'opt/canrelay', VERSION, 'bin/canrelay'));
    } finally {
      rmSync(unpack, { recursive: true, force: true });
    }
  });

  test('make uninstall removes every version and the system files, keeps the operator config', () => {
    writeFileSync(join(s.destdir, 'etc/canrelay/agent.json'), '{"id":"gw-1","can":"can0"}\n');
    const out = sh('bash', [join(REPO, 'packaging/uninstall.sh')], { DESTDIR: s.destdir });
    assert.match(out, /uninstalled/);
    assert.ok(!existsSync(join(s.destdir, 'opt/canrelay')), 'program dir gone (all versions)');
    assert.ok(!existsSync(join(s.destdir, 'usr/local/bin/canrelay')));
    for (const u of UNITS) assert.ok(!existsSync(join(s.unitDir, u)));
    assert.ok(!existsSync(join(s.destdir, 'usr/lib/sysusers.d/canrelay.conf')));
    assert.ok(!existsSync(join(s.destdir, 'etc/canrelay/agent.example.json')));
    assert.ok(existsSync(join(s.destdir, 'etc/canrelay/agent.json')), "the operator's config stays");
  });

  test('PREFIX and BINDIR are honoured, also inside the units', () => {
    const t = stageInstall({ PREFIX: '/srv/canrelay', BINDIR: '/usr/bin' });
    try {
      assert.equal(readlinkSync(join(t.destdir, 'usr/bin/canrelay')), '/srv/canrelay/current/bin/canrelay');
      for (const u of UNITS) {
        const text = readFileSync(join(t.unitDir, u), 'utf8');
        assert.match(text, /^ExecStart=\/srv\/canrelay\/current\/bin\/canrelay /m);
        assert.doesNotMatch(text, /\/opt\/canrelay/);
      }
      sh('bash', [join(REPO, 'packaging/uninstall.sh')], { DESTDIR: t.destdir, PREFIX: '/srv/canrelay', BINDIR: '/usr/bin' });
      assert.ok(!existsSync(join(t.destdir, 'srv/canrelay')));
      assert.ok(!existsSync(join(t.destdir, 'usr/bin/canrelay')));
    } finally {
      t.cleanup();
    }
  });
});

describe('make tarball', () => {
  test('unpacked and installed with its canrelay-install: the same files as make install', () => {
    const out = mkdtempSync(join(tmpdir(), 'canrelay-tgz-'));
    const ref = stageInstall();
    try {
      const tgz = sh('bash', [join(REPO, 'packaging/tarball.sh'), out])
        .trim()
        .split('\n')
        .pop()!;
      const arch = execFileSync('dpkg', ['--print-architecture'], { encoding: 'utf8' }).trim();
      assert.match(tgz, new RegExp(`canrelay-${VERSION.replaceAll('.', '\\.')}-linux-${arch}\\.tgz$`));
      const unpack = join(out, 'unpack');
      mkdirSync(unpack);
      sh('tar', ['-xzf', tgz, '-C', unpack]);
      const dest = join(out, 'destdir');
      sh(join(unpack, `canrelay-${VERSION}`, 'bin/canrelay-install'), [], { DESTDIR: dest });
      assert.deepEqual(tree(dest), tree(ref.destdir));
    } finally {
      ref.cleanup();
      rmSync(out, { recursive: true, force: true });
    }
  });
});

const debSkip = !isRoot()
  ? 'dpkg -i needs root'
  : !hasCommand('dpkg-deb')
    ? 'no dpkg-deb'
    : spawnSync('dpkg-query', ['-W', '-f=${Status}', 'canrelay'], { encoding: 'utf8' }).stdout.includes('installed')
      ? 'a canrelay package is installed on this machine: not touching it'
      : existsSync('/opt/canrelay') || existsSync('/etc/canrelay') || account('canrelay') !== undefined
        ? '/opt/canrelay, /etc/canrelay or a canrelay user exists here (a real install?): not touching it'
        : undefined;

describe('make deb', { skip: skipUnlessPresent('make deb', debSkip) }, () => {
  let out: string;
  let deb: string;
  before(() => {
    out = mkdtempSync(join(tmpdir(), 'canrelay-deb-'));
    deb = sh('bash', [join(REPO, 'packaging/deb/build-deb.sh'), out])
      .trim()
      .split('\n')
      .pop()!;
  });
  after(() => {
    // Whatever happened: leave the machine as it was (purge keeps the user: the test made it, it goes).
    spawnSync('dpkg', ['-P', 'canrelay'], { stdio: 'ignore' });
    spawnSync('userdel', ['canrelay'], { stdio: 'ignore' });
    spawnSync('groupdel', ['canrelay'], { stdio: 'ignore' });
    rmSync(out, { recursive: true, force: true });
  });

  test('the package: control fields, conffiles, paths', () => {
    const info = sh('dpkg-deb', ['-f', deb]);
    assert.match(info, /^Package: canrelay$/m);
    assert.match(info, new RegExp(`^Version: ${VERSION.replaceAll('.', '\\.')}-1$`, 'm'));
    // Self-contained: its own Node.js under /opt/canrelay/<version>/node, no nodejs package.
    // The C library floor it declares is what its binaries need (their highest GLIBC_ symbol version):
    // dpkg must refuse a system where the addons could not load.
    const depends = /^Depends: (.*)$/m.exec(info)?.[1] ?? '';
    const dep = [depends, /libc6 \(>= ([\d.]+)\)/.exec(depends)?.[1], /libstdc\+\+6 \(>= ([\d.]+)\)/.exec(depends)?.[1]] as const;
    assert.ok(dep[1] !== undefined && dep[2] !== undefined && /\bpasswd\b/.test(depends), info);
    const unpacked = mkdtempSync(join(tmpdir(), 'canrelay-deb-x-'));
    sh('dpkg-deb', ['-x', deb, unpacked]);
    const elfs = sh('find', [join(unpacked, 'opt'), '-type', 'f', '(', '-name', '*.node', '-o', '-path', '*/node/bin/node', ')'])
      .trim()
      .split('\n');
    const needed = [...sh('readelf', ['-W', '--version-info', ...elfs]).matchAll(/GLIBC_2\.(\d+)/g)].map((m) => Number(m[1]));
    rmSync(unpacked, { recursive: true, force: true });
    assert.ok(needed.length > 0);
    assert.ok(Number(dep[1]!.split('.')[1]) >= Math.max(...needed), `declared libc6 >= ${dep[1]}, binaries need 2.${Math.max(...needed)}`);
    // …and no newer than the oldest Debian the packages support (packaging/targets.sh, Debian 11:
    // glibc 2.31, GCC 10's libstdc++), whose libraries the addons are built against.
    const [floorGlibc, floorGcc] = sh('bash', ['-c', `. ${join(REPO, 'packaging/targets.sh')} && echo "$FLOOR_GLIBC $FLOOR_GCC"`])
      .trim()
      .split(' ') as [string, string];
    assert.ok(Number(dep[1]!.split('.')[1]) <= Number(floorGlibc.split('.')[1]), `libc6 >= ${dep[1]} is newer than the supported floor, glibc ${floorGlibc}`);
    assert.ok(Number(dep[2]) <= Number(floorGcc), `libstdc++6 >= ${dep[2]} is newer than the supported floor, GCC ${floorGcc}'s`);
    assert.doesNotMatch(info, /nodejs/);
    assert.equal(sh('dpkg-deb', ['-f', deb, 'Architecture']).trim(), sh('dpkg', ['--print-architecture']).trim());
    const files = sh('dpkg-deb', ['-c', deb])
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split(/\s+/).slice(5).join(' ').replace(/^\./, ''));
    for (const f of [
      '/usr/bin/canrelay -> /opt/canrelay/current/bin/canrelay',
      '/opt/canrelay/current -> ' + VERSION,
      `/opt/canrelay/${VERSION}/dist/cli.js`,
      '/lib/systemd/system/canrelay-agent.service',
      '/lib/systemd/system/canrelay-agent@.service',
      '/lib/systemd/system/canrelay-bridge.service',
      '/usr/lib/sysusers.d/canrelay.conf',
      '/etc/canrelay/agent.example.json',
    ])
      assert.ok(files.includes(f), `package lacks ${f}`);
    assert.ok(!files.some((f) => f.startsWith('/usr/local')), 'nothing under /usr/local');
    const ctrl = mkdtempSync(join(tmpdir(), 'canrelay-ctrl-'));
    sh('dpkg-deb', ['-e', deb, ctrl]);
    assert.deepEqual(readFileSync(join(ctrl, 'conffiles'), 'utf8').trim().split('\n').sort(), ['/etc/canrelay/agent.example.json', '/etc/canrelay/bridge.example.json']);
    for (const s of ['preinst', 'postinst', 'prerm', 'postrm']) assert.equal(spawnSync('sh', ['-n', join(ctrl, s)]).status, 0, `${s} parses`);
    assert.match(readFileSync(join(ctrl, 'control'), 'utf8'), /^Recommends: systemd, iproute2$/m, 'ip (bus health) recommended');
    // The preinst on an armhf system: an ARMv6 CPU (a Raspberry Pi Zero: the kernel's machine armv6l, though
    // its /proc/cpuinfo says "CPU architecture: 7") refused with the reason; ARMv7 and a 64-bit kernel under
    // a 32-bit userland let through. dpkg's and uname's answers stood in for on PATH.
    const shim = mkdtempSync(join(tmpdir(), 'canrelay-preinst-'));
    writeFileSync(join(shim, 'dpkg'), '#!/bin/sh\necho armhf\n', { mode: 0o755 });
    const preinst = (machine: string): { status: number | null; stderr: string } => {
      writeFileSync(join(shim, 'uname'), `#!/bin/sh\necho ${machine}\n`, { mode: 0o755 });
      const r = spawnSync('sh', [join(ctrl, 'preinst'), 'install'], { encoding: 'utf8', env: { ...process.env, PATH: `${shim}:${process.env.PATH}` } });
      return { status: r.status, stderr: r.stderr };
    };
    const v6 = preinst('armv6l');
    assert.equal(v6.status, 1, `ARMv6 refused: ${v6.stderr}`);
    assert.match(v6.stderr, /armv6l; canrelay's armhf package needs ARMv7 or later/);
    for (const machine of ['armv7l', 'aarch64', 'armv8l']) assert.equal(preinst(machine).status, 0, `${machine} installs`);
    rmSync(shim, { recursive: true, force: true });
    rmSync(ctrl, { recursive: true, force: true });
  });

  test('dpkg -i installs cleanly without a running systemd, creates the user; the agent runs as that user', async () => {
    const r = spawnSync('dpkg', ['-i', deb], { encoding: 'utf8' });
    assert.equal(r.status, 0, `dpkg -i: ${r.stdout}${r.stderr}`);
    assert.doesNotMatch(r.stderr, /error|warning: .*postinst/i);
    const user = account('canrelay');
    assert.ok(user, 'user canrelay created');
    assert.ok(user.uid < 1000, 'a system user');
    const pw = sh('getent', ['passwd', 'canrelay']).trim().split(':');
    assert.equal(pw[5], '/var/lib/canrelay');
    assert.equal(pw[6], '/usr/sbin/nologin');
    assert.ok(sh('getent', ['group', 'canrelay']).startsWith('canrelay:'));
    assert.equal(readlinkSync('/usr/bin/canrelay'), '/opt/canrelay/current/bin/canrelay');
    // As the service user (setpriv, as in test/helpers/unit-sandbox.sh), with the example config (token file readable by the group, as documented).
    const etc = mkdtempSync('/var/tmp/canrelay-deb-etc-');
    sh('chmod', ['0755', etc]);
    const token = join(etc, 'agent.token');
    writeFileSync(token, 'deb-test-token-0123456789abcdef\n', { mode: 0o640 });
    sh('chown', ['root:canrelay', token]);
    const localTokens = join(etc, 'local-tokens');
    writeFileSync(localTokens, 'admin deb-test-admin-0123456789abcdef\nread deb-test-read-0123456789abcdef\n', { mode: 0o640 });
    sh('chown', ['root:canrelay', localTokens]);
    const cfg = {
      ...(JSON.parse(readFileSync('/etc/canrelay/agent.example.json', 'utf8')) as Record<string, unknown>),
      'token-file': token,
      'local-token-file': localTokens,
    };
    writeFileSync(join(etc, 'agent.json'), JSON.stringify(cfg));
    const check = spawnSync(
      'setpriv',
      ['--reuid=canrelay', '--regid=canrelay', '--init-groups', '--', '/usr/bin/canrelay', 'agent', '--config', join(etc, 'agent.json'), '--check-config'],
      { encoding: 'utf8', env: { PATH: '/usr/bin:/bin', STATE_DIRECTORY: '/var/lib/canrelay/agent' } },
    );
    rmSync(etc, { recursive: true, force: true });
    assert.equal(check.status, 0, check.stderr);
    assert.equal((JSON.parse(check.stdout) as Record<string, unknown>).token, undefined);
    assert.doesNotMatch(check.stdout, /deb-test-token|deb-test-admin|deb-test-read/);
    // A reinstall (same version) is clean too.
    assert.equal(spawnSync('dpkg', ['-i', deb], { stdio: 'ignore' }).status, 0, 'reinstall');
  });

  test('the installed package runs on a system with no Node.js', async () => {
    // Every node on this machine is hidden in a private mount namespace (bind-mounted /dev/null, which
    // cannot be executed), then the installed command starts the agent and its console serves.
    const state = mkdtempSync('/var/tmp/canrelay-deb-nonode-');
    const script = [
      'set -e',
      'for n in $(which -a node nodejs 2>/dev/null) /usr/bin/node /usr/local/bin/node; do [ -e "$n" ] && mount --bind /dev/null "$n"; done',
      'if node -v >/dev/null 2>&1; then echo "a node is still runnable" >&2; exit 97; fi',
      'exec /usr/bin/canrelay agent --id nonode --sim --sim-rate 100 --listen 127.0.0.1:0 --state-dir "$1"',
    ].join('\n');
    const p = new CliProcess(
      spawn('unshare', ['--mount', '--propagation', 'private', 'bash', '-c', script, 'bash', state], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
      }),
    );
    try {
      const line = await p.waitForLog((l) => l.msg === 'console listening', 60_000);
      const health = (await (await fetch(String(line.url).replace(/\/api\/v1\/.*$/, '/healthz'))).json()) as { status: string; frames_rx: number };
      assert.equal(health.status, 'ok');
      assert.equal(readlinkSync(`/proc/${p.child.pid}/exe`), `/opt/canrelay/${VERSION}/node/bin/node`, 'the packaged runtime runs it');
    } finally {
      assert.equal(await p.stop(), 0, p.stderr);
      rmSync(state, { recursive: true, force: true });
    }
  });

  test('dpkg -r removes the program and keeps the configs; dpkg -P removes the rest, keeps the user that owns the kept files', () => {
    writeFileSync('/etc/canrelay/agent.json', '{"id":"gw-1","can":"can0"}\n');
    let r = spawnSync('dpkg', ['-r', 'canrelay'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    for (const p of ['/opt/canrelay', '/usr/bin/canrelay', '/lib/systemd/system/canrelay-agent.service', '/usr/lib/sysusers.d/canrelay.conf'])
      assert.ok(!existsSync(p), `${p} removed`);
    assert.ok(existsSync('/etc/canrelay/agent.example.json'), 'conffiles stay until purge');
    assert.ok(account('canrelay'), 'the user stays until purge');
    r = spawnSync('dpkg', ['-P', 'canrelay'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.ok(!existsSync('/etc/canrelay/agent.example.json'));
    assert.ok(existsSync('/etc/canrelay/agent.json'), "the operator's own config is never deleted");
    // Kept, with its ids: deleted, they went to the next system account, which could then read the kept token files.
    assert.ok(account('canrelay'), 'the user stays after purge');
    assert.equal(spawnSync('getent', ['group', 'canrelay']).status, 0, 'and its group');
    assert.doesNotMatch(spawnSync('dpkg-query', ['-W', '-f=${Status}', 'canrelay'], { encoding: 'utf8' }).stdout, /installed/);
    rmSync('/etc/canrelay', { recursive: true, force: true });
  });
});
