/**
 * The .deb on the oldest Debian the packages support (packaging/targets.sh: FLOOR_SUITE, Debian 11), for
 * real: a minimal root of that release made with debootstrap from the mirror this machine's apt uses, the
 * package installed in it with apt (its Depends resolved by that release's apt, its postinst run without
 * systemd), and the agent started there as the user the postinst made. The packages test proves the
 * binaries load on that Debian's libraries; this proves the package installs and runs on that Debian as an
 * operator would use it. This machine's CPU only (a foreign root would need binfmt_misc).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { hasCommand, isRoot, REPO } from '../helpers/deploy.js';
import { CliProcess } from '../helpers/processes.js';
import { skipUnlessPresent } from '../helpers/skips.js';

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 1_200_000, maxBuffer: 64 * 1024 * 1024 });
}

const skip = !isRoot() ? 'needs root (debootstrap, chroot, mount)' : !hasCommand('apt-get') ? 'needs a Debian machine (apt-get)' : undefined;

describe('the .deb on the oldest supported Debian', { skip: skipUnlessPresent('the .deb on the oldest supported Debian', skip) }, () => {
  const [suite, glibc] = sh('bash', ['-c', `. ${join(REPO, 'packaging/targets.sh')} && echo "$FLOOR_SUITE $FLOOR_GLIBC"`])
    .trim()
    .split(' ') as [string, string];
  let out: string;
  let root: string;
  const mounted: string[] = [];
  before(() => {
    sh('bash', [join(REPO, '.ci/ensure-debs.sh'), 'debootstrap']);
    out = mkdtempSync(join(tmpdir(), 'canrelay-deb-'));
    const deb = sh('bash', [join(REPO, 'packaging/deb/build-deb.sh'), out])
      .trim()
      .split('\n')
      .pop()!;
    root = mkdtempSync('/var/tmp/canrelay-debian-root-');
    chmodSync(root, 0o755); // the root's "/": mkdtemp makes it 0700, which the service user could not enter
    // ~40 MB from the mirror, about a minute.
    sh('debootstrap', ['--variant=minbase', suite, root, sh('bash', [join(REPO, 'packaging/debian-mirror.sh')]).trim()]);
    cpSync(deb, join(root, 'tmp/canrelay.deb'));
    cpSync('/etc/resolv.conf', join(root, 'etc/resolv.conf'), { dereference: true });
    for (const fs of ['proc', 'dev', 'dev/pts']) {
      sh('mount', ['--bind', `/${fs}`, join(root, fs)]);
      mounted.push(join(root, fs));
    }
  });
  after(() => {
    for (const m of mounted.reverse()) spawnSync('umount', ['-l', m]);
    // Only once nothing is mounted in it: rm would otherwise descend into the machine's own /dev.
    if (root && mounted.every((m) => !readFileSync('/proc/mounts', 'utf8').includes(` ${m} `))) rmSync(root, { recursive: true, force: true });
    if (out) rmSync(out, { recursive: true, force: true });
  });

  test(`apt installs it on that Debian with its Depends; the postinst makes the user; the agent runs as that user on that Debian's glibc`, async (t) => {
    const inRoot = (args: string[]) =>
      spawnSync('chroot', [root, ...args], { encoding: 'utf8', timeout: 600_000, env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', DEBIAN_FRONTEND: 'noninteractive' } });
    const os = readFileSync(join(root, 'etc/os-release'), 'utf8');
    assert.match(os, new RegExp(`VERSION_CODENAME=${suite}`), `a ${suite} root`);
    const update = inRoot(['apt-get', 'update', '-q']);
    assert.equal(update.status, 0, `apt-get update in the ${suite} root: ${update.stdout}${update.stderr}`);
    const install = inRoot(['apt-get', 'install', '-y', '-q', '--no-install-recommends', '/tmp/canrelay.deb']);
    assert.equal(install.status, 0, `apt-get install: ${install.stdout}${install.stderr}`);
    t.diagnostic(
      install.stdout
        .split('\n')
        .filter((l) => /^(Setting up|The following NEW)/.test(l))
        .join('; '),
    );
    assert.doesNotMatch(install.stderr, /^E:/m);
    assert.match(readFileSync(join(root, 'etc/passwd'), 'utf8'), /^canrelay:x:\d+:\d+:canrelay daemon:\/var\/lib\/canrelay:\/usr\/sbin\/nologin$/m, 'the system user');
    assert.equal(inRoot(['dpkg-query', '-W', '-f=${Status}', 'canrelay']).stdout, 'install ok installed');

    mkdirSync(join(root, 'var/tmp/agent-state'), { recursive: true });
    sh('chroot', [root, 'chown', 'canrelay:canrelay', '/var/tmp/agent-state']);
    const p = new CliProcess(
      spawn(
        'chroot',
        [
          '--userspec=canrelay:canrelay',
          root,
          '/usr/bin/canrelay',
          'agent',
          '--id',
          'debian-root',
          '--sim',
          '--sim-rate',
          '100',
          '--listen',
          '127.0.0.1:0',
          '--state-dir',
          '/var/tmp/agent-state',
        ],
        { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } },
      ),
    );
    try {
      const line = await p.waitForLog((l) => l.msg === 'console listening', 60_000);
      const health = (await (await fetch(String(line.url).replace(/\/api\/v1\/.*$/, '/healthz'))).json()) as { status: string };
      assert.equal(health.status, 'ok');
      const pid = p.child.pid!;
      assert.match(readFileSync(`/proc/${pid}/status`, 'utf8'), /^Uid:\s+(\d+)\s/m);
      const uid = Number(/^Uid:\s+(\d+)\s/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
      assert.equal(uid, Number(/^canrelay:x:(\d+):/m.exec(readFileSync(join(root, 'etc/passwd'), 'utf8'))![1]), 'runs as the user the postinst made');
      // Inside the root, the process sees that Debian's C library, which it loaded (2.31 on Debian 11).
      const maps = readFileSync(`/proc/${pid}/maps`, 'utf8');
      assert.ok(maps.includes(`libc-${glibc}.so`), `libc-${glibc}.so mapped: ${[...new Set(maps.match(/\S*libc[-.]\S*/g) ?? [])].join(', ')}`);
    } finally {
      assert.equal(await p.stop(), 0, p.stderr);
    }
  });
});
