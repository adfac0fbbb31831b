/**
 * State write failures while running (docs/reliability.md): the state directory is a small real tmpfs
 * that `dd` fills while the agent or the bridge runs. Nothing stops: frames keep flowing and being
 * relayed, consoles keep serving, /healthz says `"state":"degraded"` with the file and the cause,
 * `canrelay_state_write_errors_total{store}` counts, and it heals once space returns. Event ids stay
 * unique through it, after a restart, and after the state directory is deleted. The agent's mirrored
 * events made while its disk was full reach the bridge. Every check that the disk really was full is
 * made (a write of our own fails with ENOSPC), so the "still alive" checks cannot pass on a disk that
 * never filled.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ADMIN_TOKEN, startBridgeProcess, type StartedBridge } from '../helpers/bridge-process.js';
import { FakeAgent, numberedFrame } from '../helpers/fake-agent.js';
import { startAgentProcess, tempDir, type CliProcess, type StartedAgent } from '../helpers/processes.js';
import { getJson, metricValue, SseClient, type SseEvent } from '../helpers/sse-client.js';
import { skipOrFail } from '../helpers/skips.js';
import { pino } from 'pino';
import { MAX_PENDING_STATUSES } from '../../cloud-bridge/pending-statuses.js';
import { BridgeStore } from '../../cloud-bridge/store.js';
import { openStateDb } from '../../core/state/sqlite.js';
import { StateHealth } from '../../core/state/state-health.js';

const mounts: string[] = [];
const procs: CliProcess[] = [];

after(async () => {
  for (const p of procs) await p.stop('SIGKILL');
  for (const m of mounts.reverse()) {
    try {
      execFileSync('umount', ['-l', m]);
    } catch {
      /* already gone */
    }
  }
});

function track<T extends { proc: CliProcess }>(x: T): T {
  procs.push(x.proc);
  return x;
}

/** A real tmpfs of `mib` MiB. */
function smallDisk(mib: number): string {
  const dir = tempDir('canrelay-disk-');
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${mib}m`, 'tmpfs', dir]);
  mounts.push(dir);
  return dir;
}

/** Fills the file system with `dd` until it has no space left, and proves it: our own write fails. */
function fill(dir: string): string {
  const file = join(dir, 'filler');
  try {
    execFileSync('dd', ['if=/dev/zero', `of=${file}`, 'bs=64k'], { stdio: 'ignore' });
  } catch {
    /* dd stops with ENOSPC: that is the point */
  }
  assert.throws(() => writeFileSync(join(dir, 'probe'), Buffer.alloc(64 * 1024)), /ENOSPC/, 'the disk is really full');
  return file;
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function health(base: string): Promise<Record<string, unknown>> {
  return (await getJson(base + '/healthz')).body;
}

async function metric(base: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  return metricValue((await getJson(base + '/metrics')).text, name, labels) ?? 0;
}

function ids(events: SseEvent[]): number[] {
  // The reset is a position, and the presence told after it carries no id: neither is a new event.
  return events.filter((e) => e.event !== 'stream_reset' && e.id !== undefined).map((e) => Number(e.id));
}

function assertIncreasing(list: number[], what: string): void {
  for (let i = 1; i < list.length; i++) assert.ok(list[i]! > list[i - 1]!, `${what}: id ${list[i]} after ${list[i - 1]}`);
}

test('agent: a full state disk degrades, never stops; mirrored events made meanwhile arrive; ids stay unique', async () => {
  const bridge = track(await startBridgeProcess());
  const token = await bridge.admin.register('full-gw');
  const disk = smallDisk(4);
  // Unsampled 2,000 events/s on the console: an id block (10,000) is reserved every 5 s; presence "seen"
  // every second goes through the outbox.
  const args = ['--sim', '--sim-rate', '2000', '--console-max-rate', '100000', '--presence-interval', '1', '--bridge', bridge.base, '--token', token];
  const agent = track(await startAgentProcess(args, { id: 'full-gw', stateDir: disk }));
  const local = await SseClient.connect(agent.url);
  const mirrored = await SseClient.connect(`${bridge.base}/api/v1/streams/dongles/full-gw/console`, { Authorization: `Bearer ${ADMIN_TOKEN}` });
  await local.waitFor((ev) => ev.length > 100, 10_000, 'console events');

  const filler = fill(disk);
  const degraded = await until('state degraded', async () => {
    const h = await health(agent.base);
    return h.state === 'degraded' ? h : undefined;
  });
  assert.match(String(degraded.state_reason), new RegExp(`${join(disk, 'agent.sqlite')}.*disk full`));
  await until('both stores failing', async () =>
    (await metric(agent.base, 'canrelay_state_write_errors_total', { store: 'ids' })) > 0 &&
    (await metric(agent.base, 'canrelay_state_write_errors_total', { store: 'outbox' })) > 0
      ? true
      : undefined,
  );
  // Alive and serving while full: frames counted, console events flowing, presence piling up in memory.
  const rx = await metric(agent.base, 'canrelay_can_frames_total', { bus: 'can0', direction: 'rx' });
  const before = local.events.length;
  await local.waitFor((ev) => ev.length > before + 2000, 20_000, 'console events while the disk is full');
  assert.ok((await metric(agent.base, 'canrelay_can_frames_total', { bus: 'can0', direction: 'rx' })) > rx);
  const presenceWhileFull = await until('presence made while full', async () => {
    const p = local.ofType('presence').filter((e) => Number(e.id) > Number(local.events[before]!.id));
    return p.length >= 3 ? p : undefined;
  });
  assert.ok(
    agent.proc.logs.some((l) => l.level === 50 && l.msg.startsWith('state writes failing')),
    'one clear error line',
  );

  rmSync(filler);
  await until('state ok again', async () => ((await health(agent.base)).state === 'ok' ? true : undefined));
  assert.ok(agent.proc.logs.some((l) => l.msg.includes('recovered')));
  // Every presence event made while the disk was full reaches the bridge, once.
  const want = presenceWhileFull.map((e) => String(e.json.ts));
  await mirrored.waitFor((ev) => want.every((ts) => ev.some((e) => e.event === 'presence' && e.json.ts === ts)), 20_000, 'presence mirrored');
  const got = mirrored.ofType('presence').map((e) => String(e.json.ts));
  assert.equal(new Set(got).size, got.length, 'each mirrored once');
  assert.equal(await metric(agent.base, 'canrelay_uplink', { kind: 'outbox_dropped_unwritable' }), 0);
  assert.equal(await metric(agent.base, 'canrelay_console_events_withheld_total'), 0);

  const run1 = ids(local.events);
  assertIncreasing(run1, 'run 1');
  local.close();
  mirrored.close();
  assert.equal(await agent.proc.stop(), 0);

  // A restart on the same state: every id above the first run's.
  const again = track(await startAgentProcess(args, { id: 'full-gw', stateDir: disk }));
  const c2 = await SseClient.connect(again.url, {}, {});
  await c2.waitFor((ev) => ev.length > 10, 10_000, 'events after the restart');
  assert.ok(Number(c2.events[0]!.id) > run1[run1.length - 1]!, 'ids above the previous run');
  c2.close();
  assert.equal(await again.proc.stop(), 0);
});

test('agent: events acknowledged while held in memory (disk full), then a restart: the next run numbers its events above them, none is dropped', async () => {
  const bridge = track(await startBridgeProcess());
  const token = await bridge.admin.register('renum-gw');
  const disk = smallDisk(4);
  const args = ['--sim', '--sim-rate', '50', '--presence-interval', '1', '--bridge', bridge.base, '--token', token];
  const mirrored = await SseClient.connect(`${bridge.base}/api/v1/streams/dongles/renum-gw/console`, { Authorization: `Bearer ${ADMIN_TOKEN}` });
  const first = track(await startAgentProcess(args, { id: 'renum-gw', stateDir: disk }));
  await first.proc.waitForLog((l) => l.msg === 'uplink connected');
  const filler = fill(disk);
  await until('outbox writes failing', async () => ((await metric(first.base, 'canrelay_state_write_errors_total', { store: 'outbox' })) > 0 ? true : undefined));
  // Presence "seen" every second: numbered, held in memory, sent and acknowledged, never written.
  const seenBefore = mirrored.ofType('presence').length;
  await mirrored.waitFor(() => mirrored.ofType('presence').length >= seenBefore + 5, 20_000, 'events of the full-disk time at the bridge');
  assert.equal(await first.proc.stop(), 0);
  rmSync(filler);

  const second = track(await startAgentProcess(args, { id: 'renum-gw', stateDir: disk }));
  await second.proc.waitForLog((l) => l.msg === 'uplink connected');
  // What the second run mirrored from its start (its own console's history), each at the bridge.
  const local = await SseClient.connect(`${second.url}?backlog=1000`);
  await local.waitFor((ev) => ev.filter((e) => e.event === 'presence').length >= 3, 10_000, 'run 2 presence');
  const made = local.events.filter((e) => e.event === 'presence' || e.event === 'log').slice(0, 5);
  assert.ok(made.length >= 3, 'run 2 made mirrored events');
  await mirrored.waitFor(
    (ev) => made.every((m) => ev.some((e) => e.event === m.event && e.json.ts === m.json.ts && e.json.message === m.json.message)),
    20_000,
    `run 2's first events at the bridge: ${made.map((m) => `${m.event} ${m.json.ts}`).join(', ')}`,
  );
  assert.ok((await metric(second.base, 'canrelay_uplink', { kind: 'outbox_renumbered' })) >= 1, 'renumbered, and counted');
  local.close();
  mirrored.close();
  assert.equal(await second.proc.stop(), 0);
});

test('agent: the state directory deleted while running and between runs; said, and ids still above the previous run', async () => {
  const dir = join(tempDir('canrelay-gone-'), 'state');
  mkdirSync(dir);
  const first: StartedAgent = track(await startAgentProcess(['--sim', '--console-max-rate', '100000'], { stateDir: dir }));
  const c1 = await SseClient.connect(first.url);
  await c1.waitFor((ev) => ev.length > 500, 10_000, 'run 1 events');
  assert.equal((await health(first.base)).state, 'ok');
  // SQLite writes on into the deleted file without an error: the agent notices and says so.
  rmSync(dir, { recursive: true });
  const h = await until('deletion noticed', async () => {
    const x = await health(first.base);
    return x.state === 'degraded' ? x : undefined;
  });
  assert.match(String(h.state_reason), new RegExp(`${join(dir, 'agent.sqlite')} was deleted while running`));
  const seen = c1.events.length;
  await c1.waitFor((ev) => ev.length > seen + 500, 10_000, 'console serving after the deletion');
  c1.close();
  const last = Math.max(...ids(c1.events));
  assert.equal(await first.proc.stop(), 0);
  const second = track(await startAgentProcess(['--sim'], { stateDir: dir }));
  const c2 = await SseClient.connect(second.url, { 'Last-Event-ID': String(last) });
  await c2.waitFor((ev) => ev.length > 3, 10_000, 'run 2 events');
  // Told that the id is from an earlier run, not resumed as if it were this run's.
  assert.equal(c2.events[0]!.event, 'stream_reset');
  assert.equal(c2.events[0]!.json.reason, 'previous_run');
  const run2 = ids(c2.events);
  assert.ok(run2[0]! > last, `first id ${run2[0]} above run 1's last ${last}`);
  assert.ok(
    run2.every((id) => Number.isSafeInteger(id) && String(id).length <= 15),
    'ids exact in JS and accepted as Last-Event-ID',
  );
  c2.close();
  assert.equal(await second.proc.stop(), 0);
});

test('bridge: a full database disk degrades, never stops; relay and consoles go on; admin changes get 503', async () => {
  const disk = smallDisk(4);
  const db = join(disk, 'bridge.sqlite');
  const bridge: StartedBridge = track(await startBridgeProcess([], { db }));
  const ta = await bridge.admin.register('fa');
  const tb = await bridge.admin.register('fb');
  await bridge.admin.group('fg', 'fa', 'fb');
  const a = track(await startAgentProcess(['--sim', '--sim-rate', '300', '--bridge', bridge.base, '--token', ta], { id: 'fa' }));
  const b = track(await startAgentProcess(['--sim', '--sim-rate', '1', '--bridge', bridge.base, '--token', tb], { id: 'fb' }));
  const group = await SseClient.connect(`${bridge.base}/api/v1/streams/groups/fg/console`, { Authorization: `Bearer ${ADMIN_TOKEN}` });
  await until('relaying', async () => ((await metric(b.base, 'canrelay_can_frames_total', { bus: 'can0', direction: 'tx' })) > 100 ? true : undefined));

  const filler = fill(disk);
  const degraded = await until('bridge degraded', async () => {
    const h = await health(bridge.base);
    return h.state === 'degraded' ? h : undefined;
  });
  assert.match(String(degraded.state_reason), new RegExp(`${db}.*disk full`));
  assert.ok((await metric(bridge.base, 'canrelay_state_write_errors_total', { store: 'bridge' })) > 0);
  // The relay goes on: B keeps transmitting A's frames; the group console keeps serving.
  const tx = await metric(b.base, 'canrelay_can_frames_total', { bus: 'can0', direction: 'tx' });
  await until('relay while full', async () => ((await metric(b.base, 'canrelay_can_frames_total', { bus: 'can0', direction: 'tx' })) > tx + 300 ? true : undefined));
  const seen = group.events.length;
  await group.waitFor((ev) => ev.length > seen + 50, 10_000, 'group console while full');
  // An admin change cannot be stored: refused, with the file and the cause, nothing half-done.
  const refused = await bridge.admin.put('/api/v1/dongles/fc');
  assert.equal(refused.status, 503);
  assert.match(String(refused.body.error), new RegExp(`${db}.*disk full.*nothing was changed`));
  assert.equal((await bridge.admin.get('/api/v1/dongles/fc')).status, 404);

  rmSync(filler);
  await until('bridge state ok again', async () => ((await health(bridge.base)).state === 'ok' ? true : undefined));
  assert.equal((await bridge.admin.put('/api/v1/dongles/fc')).status, 201);
  const run1 = ids(group.events);
  assertIncreasing(run1, 'group console');
  group.close();

  // A restart: the bridge's console ids continue above the first run's.
  await a.proc.stop();
  await b.proc.stop();
  assert.equal(await bridge.proc.stop(), 0);
  const again = track(await startBridgeProcess([], { db }));
  const c2 = await SseClient.connect(`${again.base}/api/v1/streams/groups/fg/console?backlog=10`, { Authorization: `Bearer ${ADMIN_TOKEN}` });
  const a2 = track(await startAgentProcess(['--sim', '--sim-rate', '300', '--bridge', again.base, '--token', ta], { id: 'fa' }));
  await c2.waitFor((ev) => ev.length > 3, 15_000, 'group events after the restart');
  assert.ok(Number(c2.events[0]!.id) > run1[run1.length - 1]!, 'ids above the previous run');
  c2.close();
  await a2.proc.stop();
  assert.equal(await again.proc.stop(), 0);
});

test('bridge: its database deleted while running: admin changes get 503 at once, never a 2xx that is gone at the next start', async () => {
  const db = join(tempDir('canrelay-gone-db-'), 'bridge.sqlite');
  const bridge: StartedBridge = track(await startBridgeProcess([], { db }));
  assert.equal((await bridge.admin.put('/api/v1/dongles/kept')).status, 201);
  const cmd = await bridge.admin.post('/api/v1/dongles/kept/commands', { type: 'send_frame', bus: 'can0', id: '0x123', data_hex: '01', timeout_s: 600 });
  assert.equal(cmd.status, 202);
  rmSync(db);
  // At once, before the 5 s check says so in /healthz.
  const refused = await bridge.admin.put('/api/v1/dongles/lost');
  assert.equal(refused.status, 503, JSON.stringify(refused.body));
  assert.match(String(refused.body.error), new RegExp(`${db} was deleted while running.*nothing was changed`));
  assert.equal((await bridge.admin.post('/api/v1/dongles/kept/token', {})).status, 503, 'a token rotation too');
  // A refused delete changes nothing: the dongle's queued command is not failed as "removed".
  assert.equal((await bridge.admin.del('/api/v1/dongles/kept')).status, 503);
  assert.equal((await bridge.admin.get(`/api/v1/commands/${String(cmd.body.command_id)}`)).body.status, 'queued');
  await until('said in /healthz', async () => ((await health(bridge.base)).state === 'degraded' ? true : undefined), 15_000);
  assert.equal(await bridge.proc.stop(), 0);
});

/** strace on a running daemon: its syncs with the files they sync (-y), and its writes with the start of what they write (-s). */
async function traceSyncsAndWrites(pid: number): Promise<{ stop(): Promise<string[]> }> {
  const trace = join(tempDir('canrelay-fsync-'), 'strace.txt');
  const strace = spawn('strace', ['-f', '-y', '-s', '24', '-e', 'trace=fsync,fdatasync,write,writev,pwrite64', '-o', trace, '-p', String(pid)], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  // strace says when it holds every thread of the process.
  await new Promise<void>((resolve, reject) => {
    let err = '';
    strace.stderr.on('data', (c: Buffer) => {
      err += c.toString();
      if (/attached/.test(err)) resolve();
    });
    strace.on('exit', (code) => reject(new Error(`strace exited ${code}: ${err}`)));
  });
  return {
    async stop() {
      strace.kill('SIGINT');
      await new Promise((r) => strace.once('exit', r));
      return readFileSync(trace, 'utf8').split('\n');
    },
  };
}

const isDbSync = (l: string): boolean => /\b(fsync|fdatasync)\(\d+<[^>]*bridge\.sqlite/.test(l);
const isWalWrite = (l: string): boolean => /\bpwrite64\(\d+<[^>]*bridge\.sqlite-wal>/.test(l);

test('bridge: an admin change answered 2xx is on the disk (fsync) when answered, not only in the page cache a power loss takes', async (t) => {
  if (spawnSync('strace', ['-V']).status !== 0) return skipOrFail(t, 'strace is not installed (.ci/ensure-debs.sh strace)');
  const bridge: StartedBridge = track(await startBridgeProcess());
  const trace = await traceSyncsAndWrites(bridge.proc.child.pid!);
  const put = await bridge.admin.put('/api/v1/dongles/durable-gw');
  assert.equal(put.status, 201);
  const cmd = await bridge.admin.post('/api/v1/dongles/durable-gw/commands', { type: 'send_frame', bus: 'can0', id: '0x123', data_hex: '01' });
  assert.equal(cmd.status, 202, JSON.stringify(cmd.body));
  // The promise is an order, a sync of the database before each answer (201, 202).
  const answers: boolean[] = [];
  let synced = false;
  for (const l of await trace.stop()) {
    if (isDbSync(l)) synced = true;
    else if (/\bwritev?\(.*HTTP\/1\.1 20[12] /.test(l)) {
      answers.push(synced);
      synced = false;
    }
  }
  assert.deepEqual(answers, [true, true], 'each of the two answers came after a sync of the database');
  assert.equal(await bridge.proc.stop(), 0);
});

test('bridge: hellos, new console streams, positions and counters are written without a sync (none holds the event loop for the disk); a command status is synced', async (t) => {
  if (spawnSync('strace', ['-V']).status !== 0) return skipOrFail(t, 'strace is not installed (.ci/ensure-debs.sh strace)');
  const bridge: StartedBridge = track(await startBridgeProcess(['--group-state-interval', '1']));
  const tokenA = await bridge.admin.register('sync-a');
  const tokenB = await bridge.admin.register('sync-b');
  assert.equal((await bridge.admin.group('sync-g', 'sync-a', 'sync-b')).status, 201);
  // Written behind: each hello's last-seen time, the console streams the frames create (event-id blocks),
  // the UP positions (a second) and the group's counters (--group-state-interval 1).
  let trace = await traceSyncsAndWrites(bridge.proc.child.pid!);
  const a = await FakeAgent.connect(bridge.base, { dongle: 'sync-a', token: tokenA });
  const b = await FakeAgent.connect(bridge.base, { dongle: 'sync-b', token: tokenB });
  for (let n = 0; n < 50; n++) a.sendFrames([numberedFrame('can0', 0x100, n)]);
  await b.waitFor(() => b.applied.length === 50, 10_000, 'the 50 frames relayed to B');
  await new Promise((r) => setTimeout(r, 2500));
  let lines = await trace.stop();
  assert.ok(lines.filter(isWalWrite).length >= 4, `the writes behind reached the WAL (${lines.filter(isWalWrite).length} writes)`);
  assert.deepEqual(lines.filter(isDbSync), [], 'no sync of the database for them');
  const row = (await bridge.admin.get('/api/v1/groups/sync-g')).body;
  assert.ok(Number((row.state as { relayed_total?: number } | undefined)?.relayed_total ?? row.relayed_total) >= 50, JSON.stringify(row));
  // A command status is answered to the API: its write is synced. A queued one, delivered at B's next hello.
  await b.close();
  const cmd = await bridge.admin.post('/api/v1/dongles/sync-b/commands', { type: 'send_frame', bus: 'can0', id: '0x123', data_hex: '01' });
  assert.equal(cmd.status, 202, JSON.stringify(cmd.body));
  trace = await traceSyncsAndWrites(bridge.proc.child.pid!);
  const b2 = await FakeAgent.connect(bridge.base, { dongle: 'sync-b', token: tokenB });
  await b2.waitFor(() => b2.messages.some((m) => m.t === 'command'), 10_000, 'the command delivered');
  await until('status sent', async () => ((await bridge.admin.get(`/api/v1/commands/${String(cmd.body.command_id)}`)).body.status !== 'queued' ? true : undefined), 10_000);
  lines = await trace.stop();
  assert.ok(lines.some(isDbSync), 'the status write was synced');
  await Promise.all([a.close(), b2.close()]);
  assert.equal(await bridge.proc.stop(), 0);
});

test('bridge store: while the disk refuses writes, queued commands past the first window are still offered (statuses held in memory do not take their places)', () => {
  const disk = smallDisk(4);
  const file = join(disk, 'bridge.sqlite');
  const health = new StateHealth(pino({ level: 'silent' }));
  const db = openStateDb(file, { onUnusable: 'refuse', flag: '--db' });
  try {
    const store = new BridgeStore(db, health.store('bridge', file));
    store.createDongle('gw', 'h'.repeat(64), new Date().toISOString());
    const expires = new Date(Date.now() + 600_000).toISOString();
    for (let i = 0; i < 40; i++)
      store.insertCommand({
        id: `c${String(i).padStart(2, '0')}`,
        dongle: 'gw',
        type: 'send_frame',
        body: '{}',
        status: 'queued',
        created_at: new Date(Date.now() + i).toISOString(),
        expires_at: expires,
      });
    fill(disk);
    // Fill what SQLite can still reuse inside its files, until a write is refused.
    for (let n = 0; n < 10_000 && health.status().state === 'ok'; n++) store.setLastSeen('gw', 'x'.repeat(2000) + n);
    assert.equal(health.status().state, 'degraded', 'the disk refuses writes');
    const first = store.queuedCommands('gw', 32);
    assert.equal(first.length, 32);
    for (const c of first) store.setCommandStatus(c.id, 'succeeded', new Date().toISOString());
    assert.ok(store.pendingWrites >= 32, 'their statuses wait in memory');
    assert.deepEqual(
      store.queuedCommands('gw', 32).map((c) => c.id),
      Array.from({ length: 8 }, (_, i) => `c${32 + i}`),
      'the 8 still queued are offered',
    );
    // Past the bound the oldest go, and are counted (canrelay_bridge_command_statuses_dropped_total).
    assert.equal(store.statusesDropped, 0);
    for (let i = 0; i < MAX_PENDING_STATUSES; i++) store.setCommandStatus('c39', 'failed', new Date().toISOString());
    assert.equal(health.status().state, 'degraded', 'the disk still refuses writes');
    assert.equal(store.statusesDropped, 32, '32 dropped and counted');
    // …the superseded ones (c39's earlier failures), not the first window's: every command keeps its last word.
    assert.deepEqual(
      store.queuedCommands('gw', 64).map((c) => c.id),
      Array.from({ length: 7 }, (_, i) => `c${32 + i}`),
      'the 32 succeeded stay finished (not offered again); c39 failed; the 7 still queued are offered',
    );
  } finally {
    db.close();
  }
});
