/**
 * agent/command-runner.ts: a command's expiry, on the bridge's clock, holds on arrival and in the transmit
 * queue; a bus whose controller is in listen-only mode refuses it, and a send waits for the reading that
 * tells that mode (frame-router.ts, bus health).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { MemoryIdStore } from '../../../core/console/id-store.js';
import { StreamManager } from '../../../core/console/stream-manager.js';
import type { StoredEvent } from '../../../core/console/console-stream.js';
import { BusHealthMonitor, MODE_WAIT_MS } from '../../../agent/bus-health/bus-health-monitor.js';
import { parseIpLinkJson } from '../../../agent/bus-health/ip-link.js';
import Database from 'better-sqlite3';
import { CommandLedger } from '../../../agent/command-ledger.js';
import { CommandRunner } from '../../../agent/command-runner.js';
import { FrameCounters } from '../../../agent/frame-counters.js';
import { FrameRouter } from '../../../agent/frame-router.js';
import type { FrameSource } from '../../../agent/sources/source.js';
import type { CanFrame } from '../../../core/can/frame.js';
import type { SendResult } from '../../../agent/sources/source.js';
import { TxQueue } from '../../../agent/tx-queue.js';
import { until } from '../../helpers/until.js';
import { tempDir } from '../../helpers/processes.js';
import { openStateDb } from '../../../core/state/sqlite.js';
import { testFrame } from '../../helpers/can-frames.js';

/** A real console stream, and the command_status events published on it (status and error). */
function consoleWithStatuses() {
  const streams = new StreamManager({ historyEvents: 1000, historySeconds: 3600, historyMemoryBytes: 1 << 20, maxRate: 1000, ids: new MemoryIdStore() });
  const stream = streams.get('console');
  const statuses: { state: string; error?: string }[] = [];
  stream.subscribe(
    {
      cursor: 0,
      onEvent: (e: StoredEvent) => {
        const json = JSON.parse(/data: (.*)/.exec(e.chunk)![1]!) as { status?: string; error?: string };
        if (json.status !== undefined) statuses.push({ state: json.status, ...(json.error === undefined ? {} : { error: json.error }) });
      },
      onStreamClosed: () => {},
    },
    {},
  );
  return { streams, stream, statuses };
}

/** A runner over a real console stream, its command_status events collected, and a bus that is busy while `busy.on`. */
function setup(ledger = new CommandLedger(new Database(':memory:'))) {
  const { streams, stream, statuses } = consoleWithStatuses();
  const busy = { on: false };
  const sent: number[] = [];
  const tx = new TxQueue((f): SendResult => (busy.on ? { ok: false, busy: true, error: 'ENOBUFS' } : (sent.push(f.id), { ok: true, tsUs: 0 })), {
    retryMs: 60_000,
    maxQueued: 100,
  });
  const runner = new CommandRunner(stream, tx, ledger);
  return { runner, statuses, busy, sent, close: () => (tx.stop(), streams.close()) };
}

const send = { type: 'send_frame' as const, bus: 'can0', id: '0x123', data_hex: '01' };

test('a command is transmitted before its expiry and reported succeeded', async () => {
  const s = setup();
  s.runner.run('c1', new Date(Date.now() + 60_000).toISOString(), send, { offsetMs: 0, errorMs: 2 });
  await until(() => s.statuses.length === 2, 5000, 'two statuses');
  assert.deepEqual(s.statuses, [{ state: 'delivered' }, { state: 'succeeded' }]);
  assert.deepEqual(s.sent, [0x123]);
  s.close();
});

test('the expiry is on the bridge clock: an agent clock 10 s behind refuses a command that expired 5 s ago on the bridge', () => {
  const s = setup();
  // Bridge time = local + 10,000 ms: on the bridge, an expiry 5 s after local now is 5 s in the past.
  s.runner.run('c2', new Date(Date.now() + 5000).toISOString(), send, { offsetMs: 10_000, errorMs: 2 });
  assert.equal(s.statuses.at(-1)!.state, 'failed');
  assert.match(s.statuses.at(-1)!.error!, /expired at/);
  assert.deepEqual(s.sent, []);
  s.close();
});

test('a command held in the transmit queue past its expiry by a busy bus is not transmitted, and fails saying so', async () => {
  const s = setup();
  s.busy.on = true;
  s.runner.run('c3', new Date(Date.now() + 200).toISOString(), send, { offsetMs: 0, errorMs: 2 });
  await new Promise((r) => setTimeout(r, 400));
  s.busy.on = false;
  await until(() => s.statuses.length === 2, 5000, 'the command failed or succeeded');
  assert.equal(s.statuses[1]!.state, 'failed');
  assert.match(s.statuses[1]!.error!, /expired at .* \(the transmit queue held it\)/);
  assert.deepEqual(s.sent, [], 'never transmitted');
  s.close();
});

test('a command id carried out once is ignored when it comes again (a resend after a reconnect): one frame on the bus', async () => {
  const s = setup();
  const expires = new Date(Date.now() + 60_000).toISOString();
  s.runner.run('c4', expires, send, { offsetMs: 0, errorMs: 2 });
  s.runner.run('c4', expires, send, { offsetMs: 0, errorMs: 2 });
  await until(() => s.statuses.length >= 2, 5000, 'the statuses');
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(s.sent, [0x123], 'transmitted once');
  assert.deepEqual(s.statuses, [{ state: 'delivered' }, { state: 'succeeded' }]);
  s.runner.run('c5', expires, send, { offsetMs: 0, errorMs: 2 });
  await until(() => s.sent.length === 2, 5000, 'another command still goes');
  s.close();
});

test('a command carried out before the agent restarted is not carried out again by the next run (its bridge lost the record and sends it again); one an hour past its expiry is forgotten', async () => {
  const file = join(tempDir('canrelay-ledger-'), 'agent.sqlite');
  const expires = new Date(Date.now() + 60_000).toISOString();
  const firstDb = openStateDb(file);
  const first = setup(new CommandLedger(firstDb));
  first.runner.run('c-r', expires, send, { offsetMs: 0, errorMs: 2 });
  await until(() => first.sent.length === 1, 5000, 'transmitted');
  new CommandLedger(firstDb).add('c-ancient', Date.now() - 2 * 3_600_000, undefined); // expired two hours ago (no fix: kept)
  first.close();
  // The next run, over the same state file.
  const db = openStateDb(file);
  const next = setup(new CommandLedger(db));
  next.runner.run('c-r', expires, send, { offsetMs: 0, errorMs: 2 });
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(next.sent, [], 'not transmitted a second time');
  assert.deepEqual(next.statuses, [], 'and nothing reported: its statuses went with the first run');
  // An add without a clock fix prunes nothing (this agent's wall clock alone cannot tell what expired).
  new CommandLedger(db).add('c-unfixed', Date.now() + 60_000, undefined);
  assert.equal(db.prepare<[], { n: number }>('SELECT count(*) AS n FROM commands_taken').get()!.n, 3);
  new CommandLedger(db).add('c-new', Date.now() + 60_000, Date.now()); // an add prunes what expired more than an hour ago
  const ids = db
    .prepare<[], { id: string }>('SELECT id FROM commands_taken ORDER BY id')
    .all()
    .map((r) => r.id);
  assert.deepEqual(ids, ['c-new', 'c-r', 'c-unfixed'], 'the long-expired command is forgotten');
  next.close();
  db.close();
});

test('a command while the agent has no usable clock fix is refused (its expiry cannot be checked), never transmitted', async () => {
  const s = setup();
  s.runner.run('c-nofix', new Date(Date.now() + 60_000).toISOString(), send, undefined);
  assert.equal(s.statuses.at(-1)!.state, 'failed');
  assert.match(s.statuses.at(-1)!.error!, /no usable clock fix .* not carried out/);
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(s.sent, []);
  s.close();
});

test('a command whose expiry is not a time is refused, never taken as "no expiry"; the uplink schema refuses it first', async () => {
  const s = setup();
  s.runner.run('c9', 'whenever', send, { offsetMs: 0, errorMs: 2 });
  assert.equal(s.statuses.at(-1)!.state, 'failed');
  assert.match(s.statuses.at(-1)!.error!, /expiry "whenever" is not a time/);
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(s.sent, []);
  s.close();
  const { parseBridgeMessage } = await import('../../../core/uplink/messages.js');
  const msg = (expires_at: string): string => JSON.stringify({ t: 'command', command_id: 'c9', expires_at, command: send });
  assert.equal(parseBridgeMessage(msg('whenever')).ok, false);
  assert.equal(parseBridgeMessage(msg(new Date().toISOString())).ok, true);
});

/**
 * A runner whose transmit path goes through a real FrameRouter and BusHealthMonitor (its `ip` readings
 * given by `links()`, its clock by `clock.ms`), on a source that takes every frame: what a command meets on
 * the way to the bus. `run` carries out one command and returns its last status.
 */
async function throughBusHealth(links: () => ReturnType<typeof parseIpLinkJson> | Promise<ReturnType<typeof parseIpLinkJson>>, firstReading = true) {
  const { streams, stream, statuses } = consoleWithStatuses();
  const sent: number[] = [];
  const source = { send: (f: CanFrame): SendResult => (sent.push(f.id), { ok: true, tsUs: 0 }) } as unknown as FrameSource;
  const router = new FrameRouter(source, new FrameCounters(), stream, () => {});
  const clock = { ms: 0 };
  const health = new BusHealthMonitor({
    buses: () => ['can0'],
    linkState: () => 'up',
    readLinks: async () => links(),
    flagBitrates: new Map(),
    intervalSeconds: 1,
    publish: () => {},
    log: () => {},
    now: () => clock.ms,
    wallNow: () => clock.ms,
  });
  router.sendRefusal = (bus) => health.sendRefusal(bus);
  router.onBusState = (bus, state) => health.linkChanged(bus, state);
  if (firstReading) await health.tick();
  const tx = new TxQueue((f) => router.transmit(f), { retryMs: 1000, maxQueued: 100 });
  const runner = new CommandRunner(stream, tx, new CommandLedger(new Database(':memory:')));
  const run = async (id: string): Promise<{ state: string; error?: string }> => {
    const n = statuses.length;
    runner.run(id, new Date(Date.now() + 60_000).toISOString(), send, { offsetMs: 0, errorMs: 2 });
    await until(() => statuses.length >= n + 2, 5000, `the statuses of ${id}`);
    return statuses.at(-1)!;
  };
  /** Starts a command and returns what settles its last status (run in two halves: the test acts between). */
  const begin = (id: string): (() => Promise<{ state: string; error?: string }>) => {
    const n = statuses.length;
    runner.run(id, new Date(Date.now() + 60_000).toISOString(), send, { offsetMs: 0, errorMs: 2 });
    return async () => {
      await until(() => statuses.length >= n + 2, 10_000, `the statuses of ${id}`);
      return statuses.at(-1)!;
    };
  };
  return { health, router, clock, sent, statuses, run, begin, close: () => (tx.stop(), streams.close()) };
}

test('a controller in listen-only mode (ip -json ctrlmode LISTEN-ONLY) takes no send: the command fails saying so, and nothing reaches the source', async () => {
  // The kernel's view of can0 as iproute2 prints it, the listen-only flag switched on and off.
  const captured = readFileSync(new URL('../../../../test/fixtures/ip-link/captured-sja1000-error-active.json', import.meta.url), 'utf8').replaceAll('"can1"', '"can0"');
  const withMode = (modes: string[]): string => captured.replace('"ctrlmode_supported"', `"ctrlmode":${JSON.stringify(modes)},"ctrlmode_supported"`);
  let reading = parseIpLinkJson(withMode(['LISTEN-ONLY']));
  assert.equal(reading.get('can0')!.listenOnly, true);
  const t = await throughBusHealth(() => reading);
  const r1 = await t.run('lo1');
  assert.equal(r1.state, 'failed');
  assert.match(r1.error!, /can0 is in listen-only mode .*transmits nothing; not sent/);
  assert.deepEqual(t.sent, []);
  // Back in normal mode (ctrlmode without LISTEN-ONLY, or none at all): sent.
  reading = parseIpLinkJson(withMode(['BERR-REPORTING']));
  t.clock.ms += 1000;
  await t.health.tick();
  assert.equal((await t.run('lo2')).state, 'succeeded');
  assert.deepEqual(t.sent, [0x123]);
  t.close();
});

test('a bus-off controller takes no send, from its error frame at once or a reading: the command fails saying so; after CAN_ERR_RESTARTED or an error-active reading it is sent', async () => {
  const active = readFileSync(new URL('../../../../test/fixtures/ip-link/captured-sja1000-error-active.json', import.meta.url), 'utf8').replaceAll('"can1"', '"can0"');
  const busOff = readFileSync(new URL('../../../../test/fixtures/ip-link/hand-bus-off.json', import.meta.url), 'utf8');
  let links = parseIpLinkJson(active);
  const t = await throughBusHealth(() => links);
  const { health, run, sent } = t;
  const clock = t.clock;
  // The controller's bus-off error frame (CAN_ERR_BUSOFF), before any reading says so.
  const errorFrame = (cls: number): CanFrame => testFrame({ id: cls, ext: true, err: true, dlc: 8, data: new Uint8Array(8) });
  clock.ms += 10;
  health.frame(errorFrame(0x40));
  const r1 = await run('bo1');
  assert.equal(r1.state, 'failed');
  assert.match(r1.error!, /can0 is bus-off: its controller takes no part in the bus until it restarts .*not sent/);
  // CAN_ERR_RESTARTED: sent again.
  clock.ms += 10;
  health.frame(errorFrame(0x100));
  assert.equal((await run('bo2')).state, 'succeeded');
  // A reading that says bus-off (no error frame: berr-reporting off, or the frame lost).
  links = parseIpLinkJson(busOff);
  clock.ms += 1000;
  await health.tick();
  assert.match((await run('bo3')).error ?? '', /can0 is bus-off/);
  // A later reading, error-active again (restarted by hand): sent.
  links = parseIpLinkJson(active);
  clock.ms += 1000;
  await health.tick();
  assert.equal((await run('bo4')).state, 'succeeded');
  // Bus-off by its error frame where no reading clears it (sim, replay, vcan, ip failing): a frame the
  // controller receives is on the bus again.
  clock.ms += 10;
  health.frame(errorFrame(0x40));
  assert.match((await run('bo5')).error ?? '', /can0 is bus-off/);
  health.frame(testFrame({ direction: 'rx' }));
  assert.equal((await run('bo6')).state, 'succeeded');
  // A reading begun before the controller restarted, answered after it, says what was: not bus-off again.
  let answer!: (m: ReturnType<typeof parseIpLinkJson>) => void;
  const slow = new Promise<ReturnType<typeof parseIpLinkJson>>((r) => (answer = r));
  (health as unknown as { o: { readLinks: () => Promise<unknown> } }).o.readLinks = () => slow;
  clock.ms += 1000;
  const reading = health.tick();
  clock.ms += 10;
  health.frame(errorFrame(0x100));
  answer(parseIpLinkJson(busOff));
  await reading;
  assert.equal((await run('bo7')).state, 'succeeded');
  assert.deepEqual(sent, [0x123, 0x123, 0x123, 0x123], 'only the sends while the controller was on the bus');
  t.close();
});

test("a send before any reading of the controller's mode, or after the interface came up again, waits for one: a listen-only controller then refuses it, a normal one sends it", async () => {
  const captured = readFileSync(new URL('../../../../test/fixtures/ip-link/captured-sja1000-error-active.json', import.meta.url), 'utf8').replaceAll('"can1"', '"can0"');
  const withMode = (modes: string[]): string => captured.replace('"ctrlmode_supported"', `"ctrlmode":${JSON.stringify(modes)},"ctrlmode_supported"`);
  const listenOnly = parseIpLinkJson(withMode(['LISTEN-ONLY']));
  const normal = parseIpLinkJson(withMode(['BERR-REPORTING']));
  let reading: () => ReturnType<typeof parseIpLinkJson> = () => listenOnly;
  const t = await throughBusHealth(() => reading(), false);
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  // The agent just started on a listen-only controller: no reading has ended yet.
  const first = t.begin('m1');
  await sleep(300);
  assert.deepEqual(t.sent, [], 'nothing reaches the source before the mode is known');
  assert.equal(t.statuses.length, 1, 'still waiting (only its first status)');
  t.clock.ms += 1000;
  await t.health.tick();
  const r1 = await first();
  assert.equal(r1.state, 'failed');
  assert.match(r1.error!, /can0 is in listen-only mode/);
  // Set down, back to normal mode, up: what the last reading said no longer holds — it waits again.
  reading = () => normal;
  t.router.busState('can0', 'up');
  t.router.busState('can0', 'down');
  t.clock.ms += 10;
  t.router.busState('can0', 'up');
  const second = t.begin('m2');
  await sleep(300);
  assert.deepEqual(t.sent, []);
  t.clock.ms += 1000;
  await t.health.tick();
  assert.equal((await second()).state, 'succeeded');
  assert.deepEqual(t.sent, [0x123]);
  // Set down, into listen-only, up: refused, although the last reading said normal.
  reading = () => listenOnly;
  t.router.busState('can0', 'down');
  t.clock.ms += 10;
  t.router.busState('can0', 'up');
  const third = t.begin('m3');
  await sleep(300);
  t.clock.ms += 1000;
  await t.health.tick();
  assert.match((await third()).error ?? '', /can0 is in listen-only mode/);
  // A reading that fails ends the wait: sends go by the last known reading, as when `ip` is unusable.
  reading = () => normal;
  t.clock.ms += 1000;
  await t.health.tick();
  t.router.busState('can0', 'down');
  t.clock.ms += 10;
  t.router.busState('can0', 'up');
  reading = () => {
    throw new Error('ip: timed out');
  };
  const fourth = t.begin('m4');
  await sleep(100);
  t.clock.ms += 1000;
  await t.health.tick();
  assert.equal((await fourth()).state, 'succeeded');
  assert.deepEqual(t.sent, [0x123, 0x123]);
  t.close();
});

test("a send whose bus's mode is never read (ip hangs) fails after the wait, saying why; nothing reaches the source", async () => {
  const t = await throughBusHealth(() => new Promise(() => {}), false);
  const started = performance.now();
  const r = await t.begin('w1')();
  assert.equal(r.state, 'failed');
  assert.match(r.error!, /can0: its controller mode \(listen-only or not\) is not read yet/);
  assert.ok(performance.now() - started >= MODE_WAIT_MS - 50, 'it waited for the reading');
  assert.deepEqual(t.sent, []);
  t.close();
});

test('the monitor reads at once when started, and again after a reading begun before an interface came up', async () => {
  const answers: ((m: ReturnType<typeof parseIpLinkJson>) => void)[] = [];
  const empty = parseIpLinkJson('[]');
  const health = new BusHealthMonitor({
    buses: () => ['can0'],
    linkState: () => 'up',
    readLinks: () => new Promise((r) => answers.push(r)),
    flagBitrates: new Map(),
    intervalSeconds: 1,
    publish: () => {},
    log: () => {},
  });
  assert.ok(health.sendRefusal('can0')?.waitMs, 'unknown before any reading');
  health.start();
  assert.equal(answers.length, 1, 'a reading at once, not at the next step');
  await new Promise((r) => setTimeout(r, 5));
  health.linkChanged('can0', 'up');
  answers[0]!(empty);
  await until(() => answers.length === 2, 2000, 'a second reading');
  assert.ok(health.sendRefusal('can0')?.waitMs, 'the first reading began before the interface came up: still unknown');
  answers[1]!(empty);
  await until(() => health.sendRefusal('can0') === null, 2000, 'the mode known');
  health.stop();
});

test("the ledger judges expiries on the bridge's clock: this agent's wall clock stepped forward by hours (a gateway without a real-time clock, set by NTP) forgets no command still current, and one sent again after a restart is not carried out twice", async (t) => {
  const file = join(tempDir('canrelay-ledger-'), 'agent.sqlite');
  const real = Date.now();
  const expires = new Date(real + 60_000).toISOString(); // on the bridge's clock, which is the real one
  // The first run: the agent's clock 3 hours behind (its fix says so).
  t.mock.timers.enable({ apis: ['Date'], now: real - 3 * 3_600_000 });
  const firstDb = openStateDb(file);
  const first = setup(new CommandLedger(firstDb));
  first.runner.run('c-step', expires, send, { offsetMs: 3 * 3_600_000, errorMs: 2 });
  // Handed to the bus at once (the queue is empty), checked without waiting: until() reads the mocked Date.
  assert.equal(first.sent.length, 1, 'transmitted');
  first.close();
  // NTP steps the clock forward 3 hours; the next run's first add prunes.
  t.mock.timers.reset();
  const db = openStateDb(file);
  const next = setup(new CommandLedger(db));
  next.runner.run('c-other', expires, send, { offsetMs: 0, errorMs: 2 });
  await until(() => next.sent.length === 1, 5000, 'the other command transmitted (its add pruned)');
  next.runner.run('c-step', expires, send, { offsetMs: 0, errorMs: 2 });
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(next.sent.length, 1, 'c-step not transmitted a second time');
  next.close();
  db.close();
});
