/**
 * The self-contained packages for every architecture (`make tarball ARCH=…`, packaging/targets.sh): each
 * carries its own Node.js runtime and native addons built for its CPU, and the packaged agent really
 * runs there on the oldest supported Debian's libraries (Debian 11: glibc 2.31, GCC 10's libstdc++, from
 * packaging/sysroot.sh) — arm64 and armhf under Debian's qemu-user-static (`-L` the sysroot), amd64 through
 * the sysroot's own dynamic loader. Per architecture: the ELF machine of the runtime and of every addon,
 * both addons loaded with only the sysroot's C and C++ libraries mapped, the agent on `--sim`
 * (console stream, /metrics), a restart on the same state dir (SQLite through the cross-built addon: ids
 * continue above the previous run and an old Last-Event-ID gets `stream_reset` previous_run), and
 * `--replay` of a log with every frame counted.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { REPO } from '../helpers/deploy.js';
import { CliProcess, freePort, writeCandumpLog } from '../helpers/processes.js';
import { getJson, metricValue, SseClient } from '../helpers/sse-client.js';

const VERSION = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version;

interface Target {
  arch: string;
  elf: string;
  /** How the packaged node binary is started, on the oldest supported Debian's libraries: through
   * qemu-user with the sysroot as its root for libraries (packaging/addons.sh installed qemu-user-static
   * and the cross toolchain while building), or natively through the sysroot's dynamic loader. */
  prefix: string[];
  qemu: string;
  triplet: string;
  node: string;
  sysroot: string;
  /** The oldest supported Debian's glibc (packaging/targets.sh). */
  glibc: string;
}

/** packaging/targets.sh is the one table; the test reads it rather than restating it. */
function target(arch: string): Target {
  const out = execFileSync('bash', ['-c', `. packaging/targets.sh && canrelay_target ${arch} && echo "$ELF_MACHINE|$QEMU_USER|$TRIPLET|$NODE_VERSION|$FLOOR_GLIBC"`], {
    cwd: REPO,
    encoding: 'utf8',
  }).trim();
  const [elf, qemu, triplet, node, glibc] = out.split('|') as [string, string, string, string, string];
  // Built (and cached) by the tarball's addons build already.
  const sysroot = execFileSync('bash', [join(REPO, 'packaging/sysroot.sh'), arch], { encoding: 'utf8' }).trim();
  return { arch, elf, qemu, triplet, prefix: [], node, sysroot, glibc };
}

/** The packaged runtime's command prefix on the sysroot's libraries. Natively: the sysroot's copy of the
 * dynamic loader the binary names, told to look only in the sysroot's library directories. */
function launcher(t: Target, node: string): string[] {
  if (t.qemu) return [t.qemu, '-L', t.sysroot];
  const interp = /\[Requesting program interpreter: (.*)\]/.exec(execFileSync('readelf', ['-l', node], { encoding: 'utf8' }))![1]!;
  return [join(t.sysroot, interp), '--library-path', [`${t.sysroot}/lib/${t.triplet}`, `${t.sysroot}/usr/lib/${t.triplet}`].join(':')];
}

function elfMachine(file: string): string {
  return /Machine:\s+(.*)/.exec(execFileSync('readelf', ['-h', file], { encoding: 'utf8' }))![1]!.trim();
}

/** Under emulation everything is several times slower: generous start-up bounds. */
const START_MS = 120_000;

async function startPackaged(t: Target, app: string, args: string[], stateDir: string): Promise<{ proc: CliProcess; base: string }> {
  const port = await freePort();
  const [cmd, ...pre] = [...t.prefix, join(app, 'node/bin/node')];
  const child = spawn(cmd!, [...pre, join(app, 'dist/cli.js'), 'agent', '--id', `pkg-${t.arch}`, '--listen', `127.0.0.1:${port}`, '--state-dir', stateDir, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd: '/',
    // No Node.js on PATH: the package must need none.
    env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', HOME: stateDir },
  });
  const proc = new CliProcess(child);
  await proc.waitForLog((l) => l.msg === 'console listening', START_MS);
  return { proc, base: `http://127.0.0.1:${port}` };
}

for (const arch of ['amd64', 'arm64', 'armhf']) {
  describe(`the ${arch} package`, () => {
    let t: Target;
    let out: string;
    let app: string;
    before(() => {
      t = target(arch);
      out = mkdtempSync(join(tmpdir(), `canrelay-pkg-${arch}-`));
      const tgz = execFileSync('bash', [join(REPO, 'packaging/tarball.sh'), out], {
        env: { ...process.env, ARCH: arch },
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
        timeout: 1_500_000,
      })
        .trim()
        .split('\n')
        .pop()!;
      assert.match(tgz, new RegExp(`canrelay-${VERSION.replaceAll('.', '\\.')}-linux-${arch}\\.tgz$`));
      mkdirSync(join(out, 'unpack'));
      execFileSync('tar', ['-xzf', tgz, '-C', join(out, 'unpack')]);
      app = join(out, 'unpack', `canrelay-${VERSION}`);
      t.prefix = launcher(t, join(app, 'node/bin/node'));
    });
    after(() => rmSync(out, { recursive: true, force: true }));

    test('carries its own runtime and addons, all built for its CPU', () => {
      assert.equal(readFileSync(join(app, 'ARCH'), 'utf8').trim(), arch);
      assert.equal(readFileSync(join(app, 'node/VERSION'), 'utf8').trim(), t.node);
      for (const f of ['node/bin/node', 'node_modules/better-sqlite3/build/Release/better_sqlite3.node', 'node_modules/socketcan/build/Release/can.node'])
        assert.match(elfMachine(join(app, f)), new RegExp(t.elf), `${f} is built for ${arch}`);
      // Both addons loaded and used by the packaged runtime on the sysroot's libraries, and nothing else's.
      const probe = [
        `const r = require('node:module').createRequire(${JSON.stringify(`${app}/`)});`,
        "new (r('better-sqlite3'))(':memory:').prepare('select 1').get();",
        "r('socketcan');",
        "const maps = require('node:fs').readFileSync('/proc/self/maps', 'utf8').split('\\n').map((l) => l.split(/\\s+/)[5]).filter(Boolean);",
        'console.log(JSON.stringify({ version: process.version, glibc: process.report.getReport().header.glibcVersionRuntime, maps: [...new Set(maps)] }));',
      ].join('\n');
      const [cmd, ...pre] = [...t.prefix, join(app, 'node/bin/node')];
      const got = JSON.parse(execFileSync(cmd!, [...pre, '-e', probe], { encoding: 'utf8', timeout: START_MS }).trim()) as { version: string; glibc: string; maps: string[] };
      assert.equal(got.version, `v${t.node}`, 'the packaged runtime starts');
      assert.equal(got.glibc, t.glibc, "the C library in use is the oldest supported Debian's");
      for (const addon of ['better_sqlite3.node', 'can.node', 'can_signals.node'])
        assert.ok(
          got.maps.some((m) => m.startsWith(app) && m.endsWith(`/${addon}`)),
          `${addon} is loaded from the package: ${got.maps.join(' ')}`,
        );
      const system = got.maps.filter((m) => /\/(ld-|lib(c|m|dl|pthread|gcc_s|stdc\+\+)[-.])[^/]*$/.test(m));
      assert.ok(system.some((m) => /libstdc\+\+/.test(m)) && system.some((m) => /\/libc[-.]/.test(m)), `the C and C++ libraries are mapped: ${system.join(' ')}`);
      for (const m of system) assert.ok(m.startsWith(t.sysroot), `${m} is the sysroot's, not this machine's`);
      // What its .deb would declare: every library these files load is known to come from a package.
      const elfs = [
        'node/bin/node',
        ...['better-sqlite3/build/Release/better_sqlite3.node', 'socketcan/build/Release/can.node', 'socketcan/build/Release/can_signals.node'].map((f) => `node_modules/${f}`),
      ];
      const depends = execFileSync('bash', [join(REPO, 'packaging/elf-depends.sh'), ...elfs.map((f) => join(app, f))], { encoding: 'utf8' }).trim();
      assert.match(depends, /^libc6 \(>= 2\.\d+\), .*libstdc\+\+6 \(>= [\d.]+\)/, depends);
    });

    test('the packaged agent on --sim: console, metrics, restart on the same state', async () => {
      const state = mkdtempSync(join(tmpdir(), 'canrelay-pkg-state-'));
      try {
        let a = await startPackaged(t, app, ['--sim', '--sim-rate', '100'], state);
        let lastId: number;
        try {
          const c = await SseClient.connect(`${a.base}/api/v1/streams/dongles/pkg-${arch}/console`);
          await c.waitFor((evs) => evs.some((e) => e.event === 'can_frame'), START_MS, 'a can_frame from the packaged agent');
          c.close();
          lastId = Number(c.events.at(-1)!.id);
          const m = await (await fetch(`${a.base}/metrics`)).text();
          assert.ok((metricValue(m, 'canrelay_can_frames_total', { bus: 'can0', direction: 'rx' }) ?? 0) > 0, 'frames counted in /metrics');
        } finally {
          assert.equal(await a.proc.stop(), 0, 'SIGTERM: a clean exit');
        }
        a = await startPackaged(t, app, ['--sim', '--sim-rate', '100'], state);
        try {
          const c = await SseClient.connect(`${a.base}/api/v1/streams/dongles/pkg-${arch}/console`, { 'Last-Event-ID': String(lastId) });
          await c.waitFor((evs) => evs.some((e) => e.event === 'can_frame'), START_MS, 'frames after the restart');
          c.close();
          const reset = c.ofType('stream_reset')[0];
          assert.equal(reset?.json.reason, 'previous_run', 'an id of the previous run is told so');
          const firstNew = Number(c.events.find((e) => e.event !== 'stream_reset' && e.id !== undefined)!.id);
          assert.ok(firstNew > lastId, `ids continue above the previous run (${firstNew} > ${lastId})`);
        } finally {
          assert.equal(await a.proc.stop(), 0);
        }
      } finally {
        rmSync(state, { recursive: true, force: true });
      }
    });

    test('the packaged agent on --replay counts every frame of the log', async () => {
      const state = mkdtempSync(join(tmpdir(), 'canrelay-pkg-replay-'));
      const log = join(state, 'in.log');
      writeCandumpLog(log, 500, { ids: [0x100, 0x200] });
      const a = await startPackaged(t, app, ['--replay', log, '--replay-speed', '0'], state);
      try {
        const deadline = Date.now() + START_MS;
        let n = 0;
        while (Date.now() < deadline) {
          n = metricValue(await (await fetch(`${a.base}/metrics`)).text(), 'canrelay_can_frames_total', { bus: 'can0', direction: 'rx' }) ?? 0;
          if (n >= 500) break;
          await new Promise((r) => setTimeout(r, 200));
        }
        assert.equal(n, 500, 'every frame of the log');
        assert.equal((await getJson(`${a.base}/healthz`)).status, 200);
      } finally {
        await a.proc.stop();
        rmSync(state, { recursive: true, force: true });
      }
    });
  });
}
