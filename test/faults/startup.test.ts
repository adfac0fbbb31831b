/**
 * Start-up with an unusable state file (docs/reliability.md): the agent moves a corrupt, unreadable or
 * read-only file aside and starts fresh; the bridge, whose database holds the tokens, refuses with exit 3
 * and one line naming the path; a read-only file system stops both with exit 3; a native addon
 * (better-sqlite3; socketcan on --can) built for another Node.js ABI is reported as exactly that (exit 4). Real processes, real files, a real read-only
 * tmpfs, a real foreign-ABI addon built with the system compiler. The unreadable and read-only files
 * belong to another user (uid 65534), and the daemon runs as root without the capabilities that let root
 * ignore file permissions (setpriv, util-linux): exactly what the service user meets with a file a
 * manual `sudo canrelay …` left behind, and it works wherever the checkout is.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { after, test } from 'node:test';
import { EXIT_BROKEN_INSTALL, EXIT_START_FAILED, EXIT_STATE_UNUSABLE } from '../../core/cli/exit-codes.js';
import { ADMIN_TOKEN } from '../helpers/bridge-process.js';
import { CLI, runCli, tempDir, type CliProcess } from '../helpers/processes.js';

const NOBODY = 65534;
const GARBAGE = Buffer.from('this is not a SQLite database, just a file that got overwritten\n'.repeat(200));
const mounts: string[] = [];
const copies: string[] = [];

after(() => {
  for (const c of copies) rmSync(c, { recursive: true, force: true });
  for (const m of mounts.reverse()) {
    try {
      execFileSync('umount', ['-l', m]);
    } catch {
      /* already gone */
    }
  }
});

/** Root, but bound by file permissions like any other user. */
const NO_DAC = { wrap: ['setpriv', '--bounding-set=-dac_override,-dac_read_search', '--inh-caps=-dac_override,-dac_read_search'] };

/** Hands a state file (and its -wal/-shm) to another user, with `mode`. */
function giveAway(file: string, mode: number): void {
  for (const f of [file, file + '-wal', file + '-shm']) {
    if (!existsSync(f)) continue;
    chownSync(f, NOBODY, NOBODY);
    chmodSync(f, mode);
  }
}

function agentArgs(stateDir: string): string[] {
  return ['agent', '--sim', '--id', 'start-gw', '--listen', '127.0.0.1:0', '--state-dir', stateDir];
}

async function expectAgentStarts(p: CliProcess): Promise<void> {
  await p.waitForLog((l) => l.msg === 'console listening');
  assert.equal(await p.stop(), 0);
}

/** A start on a disk no state file survives: the agent runs, with its state in memory, and /healthz says why. */
async function expectAgentInMemory(p: CliProcess, file: string, cause: RegExp): Promise<void> {
  const line = await p.waitForLog((l) => l.msg === 'console listening');
  const h = (await (await fetch(new URL('/healthz', String(line.url)))).json()) as { state: string; state_reason?: string };
  assert.equal(h.state, 'degraded', JSON.stringify(h));
  assert.ok(h.state_reason!.includes(file), `names ${file}: ${h.state_reason}`);
  assert.match(h.state_reason!, cause);
  assert.match(h.state_reason!, /state in memory/);
  assert.ok(
    p.logs.some((l) => l.level === 50 && /running with the state in memory/.test(l.msg)),
    'one error line says so',
  );
  assert.equal(await p.stop(), 0);
}

/** A refused start: the exit code, and exactly one line on stderr that names the file. */
async function expectRefused(p: CliProcess, code: number, file: string): Promise<string> {
  assert.equal(await p.wait(), code, `exit code; stderr: ${p.stderr}`);
  const lines = p.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line on stderr, got: ${p.stderr}`);
  assert.ok(lines[0]!.includes(file), `names ${file}: ${lines[0]}`);
  return lines[0]!;
}

function movedAside(dir: string): string[] {
  return readdirSync(dir).filter((f) => /^agent\.sqlite\.corrupt-\d{8}T\d{6}Z$/.test(f));
}

test('agent: a corrupt state file is moved aside, logged loudly, and the agent starts fresh', async () => {
  const dir = tempDir('canrelay-start-');
  writeFileSync(join(dir, 'agent.sqlite'), GARBAGE);
  const p = runCli(agentArgs(dir));
  const loud = await p.waitForLog((l) => l.msg === 'state file unusable: moved aside, starting with fresh state');
  assert.equal(loud.level, 50, 'logged at error level');
  assert.match(String(loud.cause), /not a usable SQLite database/);
  await expectAgentStarts(p);
  const aside = movedAside(dir);
  assert.equal(aside.length, 1);
  assert.deepEqual(readFileSync(join(dir, aside[0]!)), GARBAGE, 'the old file is kept, byte for byte');
});

test('negative control: a healthy state file is not moved aside', async () => {
  const dir = tempDir('canrelay-start-');
  await expectAgentStarts(runCli(agentArgs(dir)));
  const p = runCli(agentArgs(dir));
  await expectAgentStarts(p);
  assert.deepEqual(movedAside(dir), []);
  assert.ok(!p.logs.some((l) => l.msg.includes('moved aside')));
});

test('agent: a state file it may not read, or not write, is moved aside and the agent starts', async () => {
  for (const mode of [0o600, 0o444]) {
    const dir = tempDir('canrelay-start-');
    await expectAgentStarts(runCli(agentArgs(dir)));
    giveAway(join(dir, 'agent.sqlite'), mode);
    const p = runCli(agentArgs(dir), {}, NO_DAC);
    const loud = await p.waitForLog((l) => l.msg.includes('moved aside'));
    assert.match(String(loud.cause), mode === 0o600 ? /cannot be opened/ : /read-only/);
    await expectAgentStarts(p);
    assert.equal(movedAside(dir).length, 1, `mode ${mode.toString(8)}`);
  }
});

test('a read-only file system: the agent runs with its state in memory, said in /healthz; the bridge exits 3 with one line naming the path', async () => {
  const dir = tempDir('canrelay-start-');
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,ro', 'tmpfs', dir]);
  mounts.push(dir);
  await expectAgentInMemory(runCli(agentArgs(dir)), join(dir, 'agent.sqlite'), /read-only/);
  const db = join(dir, 'bridge.sqlite');
  const bridge = runCli(['bridge', '--listen', '127.0.0.1:0', '--db', db], { CANRELAY_ADMIN_TOKEN: ADMIN_TOKEN });
  assert.match(await expectRefused(bridge, EXIT_STATE_UNUSABLE, db), /read-only/);
});

test('a full disk at start: the agent runs with its state in memory, also with a state file from before; the bridge exits 1 (a restart may help) with one line naming the path', async () => {
  const dir = tempDir('canrelay-start-');
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir]);
  mounts.push(dir);
  const old = join(dir, 'old');
  mkdirSync(old);
  await expectAgentStarts(runCli(agentArgs(old))); // a state file, closed cleanly (no -wal, no -shm left)
  try {
    execFileSync('dd', ['if=/dev/zero', `of=${join(dir, 'filler')}`, 'bs=4k'], { stdio: 'ignore' });
  } catch {
    /* ENOSPC ends dd: the disk is full */
  }
  assert.throws(() => writeFileSync(join(dir, 'probe'), Buffer.alloc(4096)), /ENOSPC/, 'the disk is really full');
  await expectAgentInMemory(runCli(agentArgs(dir)), join(dir, 'agent.sqlite'), /disk full.*free space/);
  // SQLite cannot make the old file's -shm: every statement failed, and the agent exited into a restart loop.
  await expectAgentInMemory(runCli(agentArgs(old)), join(old, 'agent.sqlite'), /disk full.*free space/);
  const db = join(dir, 'bridge.sqlite');
  const bridge = runCli(['bridge', '--listen', '127.0.0.1:0', '--db', db], { CANRELAY_ADMIN_TOKEN: ADMIN_TOKEN });
  assert.match(await expectRefused(bridge, EXIT_START_FAILED, db), /disk full.*free space/);
});

test('bridge: a corrupt database is refused (exit 3, one line naming it) and left untouched', async () => {
  const db = join(tempDir('canrelay-start-'), 'bridge.sqlite');
  writeFileSync(db, GARBAGE);
  const p = runCli(['bridge', '--listen', '127.0.0.1:0', '--db', db], { CANRELAY_ADMIN_TOKEN: ADMIN_TOKEN });
  const line = await expectRefused(p, EXIT_STATE_UNUSABLE, db);
  assert.match(line, /not a usable SQLite database.*tokens/);
  assert.deepEqual(readFileSync(db), GARBAGE);
  assert.deepEqual(readdirSync(dirname(db)), ['bridge.sqlite']);
});

test('bridge: a database it may not read, or not write, is refused with exit 3', async () => {
  for (const mode of [0o600, 0o444]) {
    const dir = tempDir('canrelay-start-');
    const db = join(dir, 'bridge.sqlite');
    const first = runCli(['bridge', '--listen', '127.0.0.1:0', '--db', db], { CANRELAY_ADMIN_TOKEN: ADMIN_TOKEN });
    await first.waitForLog((l) => l.msg === 'bridge listening');
    assert.equal(await first.stop(), 0);
    giveAway(db, mode);
    const p = runCli(['bridge', '--listen', '127.0.0.1:0', '--db', db], { CANRELAY_ADMIN_TOKEN: ADMIN_TOKEN }, NO_DAC);
    const line = await expectRefused(p, EXIT_STATE_UNUSABLE, db);
    assert.match(line, mode === 0o600 ? /cannot be opened/ : /read-only/);
  }
});

/**
 * A copy of the installed program whose addon `pkg` declares another NODE_MODULE_VERSION: a tiny real
 * addon compiled here (as `file`, registered under `name` the way node-gyp modules are), so Node's own
 * check rejects it. The package's JavaScript is copied as it is.
 */
function installWithForeignAbi(pkg: string, jsDirs: string[], file: string, name: string): string {
  const root = tempDir('canrelay-abi-');
  copies.push(root);
  const require = createRequire(import.meta.url);
  const realModules = dirname(dirname(require.resolve(`${pkg}/package.json`)));
  const dist = dirname(CLI);
  cpSync(dist, join(root, 'dist'), { recursive: true });
  writeFileSync(join(root, 'package.json'), readFileSync(join(dirname(dist), 'package.json')));
  mkdirSync(join(root, 'node_modules'));
  for (const name of readdirSync(realModules)) {
    if (name !== pkg && !name.startsWith('.')) symlinkSync(join(realModules, name), join(root, 'node_modules', name));
  }
  const addonDir = join(root, 'node_modules', pkg);
  for (const d of jsDirs) cpSync(join(realModules, pkg, d), join(addonDir, d), { recursive: true });
  writeFileSync(join(addonDir, 'package.json'), readFileSync(join(realModules, pkg, 'package.json')));
  const release = join(addonDir, 'build', 'Release');
  mkdirSync(release, { recursive: true });
  const foreign = Number(process.versions.modules) === 108 ? 115 : 108;
  const src = join(root, 'foreign.c');
  writeFileSync(
    src,
    `struct node_module { int v; unsigned f; void *dso; const char *file; void *reg; void *ctx; const char *name; void *priv; void *link; };
extern void node_module_register(void *);
static struct node_module m = { ${foreign}, 0, 0, __FILE__, 0, 0, "${name}", 0, 0 };
__attribute__((constructor)) static void reg(void) { node_module_register(&m); }
`,
  );
  execFileSync('cc', ['-shared', '-fPIC', '-o', join(release, file), src]);
  return join(root, 'dist', 'cli.js');
}

test('a native addon built for another Node.js ABI is reported as such, with how to rebuild (exit 4)', async () => {
  const cli = installWithForeignAbi('better-sqlite3', ['lib'], 'better_sqlite3.node', 'better_sqlite3');
  const dir = tempDir('canrelay-start-');
  const p = runCli(agentArgs(dir), {}, { cli });
  assert.equal(await p.wait(), EXIT_BROKEN_INSTALL, p.stderr);
  const lines = p.stderr.trim().split('\n');
  assert.equal(lines.length, 1, p.stderr);
  assert.match(lines[0]!, /built for another Node\.js \(built for NODE_MODULE_VERSION \d+, this Node\.js v[\d.]+ needs \d+\)/);
  assert.match(lines[0]!, /npm rebuild better-sqlite3/);
  assert.doesNotMatch(lines[0]!, /permission|writable|readable/i);
});

test('a socketcan addon built for another Node.js ABI stops the agent on --can the same way (exit 4, not retried)', async () => {
  const cli = installWithForeignAbi('socketcan', ['dist'], 'can.node', 'can');
  const dir = tempDir('canrelay-start-');
  const p = runCli(['agent', '--can', 'can0', '--id', 'start-gw', '--listen', '127.0.0.1:0', '--state-dir', dir], {}, { cli });
  assert.equal(await p.wait(), EXIT_BROKEN_INSTALL, p.stderr);
  const lines = p.stderr.trim().split('\n');
  assert.equal(lines.length, 1, p.stderr);
  assert.match(lines[0]!, /the native addon \S*can\.node was built for another Node\.js \(built for NODE_MODULE_VERSION \d+, this Node\.js v[\d.]+ needs \d+\)/);
  assert.match(lines[0]!, /npm rebuild socketcan/);
});
