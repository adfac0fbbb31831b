/**
 * CommandCenter (cloud-bridge/commands.ts) without processes: the real SQLite store in memory, a fake
 * agent link that records what is written to it, a fake console that records command_status events. The
 * lifecycle queued → sent → delivered → succeeded, statuses that never go backwards, the per-dongle bound,
 * timeouts (and the agent's late word replacing one), a removed dongle's commands failing.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import { CommandCenter, TooManyCommandsError, type CommandLink, type CommandMessage } from '../../../cloud-bridge/commands.js';
import type { BridgeConsoles } from '../../../cloud-bridge/consoles.js';
import { RelayClock } from '../../../cloud-bridge/relay-clock.js';
import { BridgeStore } from '../../../cloud-bridge/store.js';
import type { CommandState, ConsoleEvent } from '../../../core/console/events.js';
import { commandStatusData } from '../../../core/console/normalize.js';
import { until } from '../../helpers/until.js';

class FakeLink implements CommandLink {
  ready = true;
  connectedAt = Date.now();
  readonly sent: CommandMessage[] = [];
  sendCommand(msg: CommandMessage): boolean {
    this.sent.push(msg);
    return true;
  }
}

function setup(limits = { maxQueued: 1000, retentionS: 86_400 }, clock?: RelayClock) {
  const store = new BridgeStore(new Database(':memory:'));
  store.createDongle('gw', 'hash-gw', new Date().toISOString());
  const events: { dongle: string; status: CommandState; error?: string }[] = [];
  const consoles = {
    dongleEvent: (dongle: string, ev: ConsoleEvent) => {
      if (ev.type === 'command_status') events.push({ dongle, status: ev.data.status, ...(ev.data.error ? { error: ev.data.error } : {}) });
    },
  } as unknown as BridgeConsoles;
  let link: FakeLink | undefined;
  const center = new CommandCenter(store, consoles, () => link, 30, pino({ level: 'silent' }), limits, clock);
  return { store, center, events, connect: (l: FakeLink) => (link = l) };
}

const SEND = { type: 'send_frame', bus: 'can0', id: '0x7DF', data_hex: '02 01 0C' } as const;
const history = (center: CommandCenter, id: string): CommandState[] => center.view(id)!.history.map((h) => h.status);

test('command center: queued while the agent is away, sent once it connects, then the agent moves it on; never backwards', async () => {
  const { center, events, connect } = setup();
  const row = await center.create('gw', SEND);
  assert.equal(center.view(row.id)!.status, 'queued');
  const link = new FakeLink();
  connect(link);
  center.connected('gw');
  await until(() => link.sent.length === 1, 5000, 'the command written to the agent');
  assert.equal(link.sent[0]!.command_id, row.id);
  assert.deepEqual(link.sent[0]!.command, SEND);
  assert.equal(center.view(row.id)!.status, 'sent');
  center.agentStatus('gw', commandStatusData(row.id, 'send_frame', 'delivered'));
  center.agentStatus('gw', commandStatusData(row.id, 'send_frame', 'succeeded'));
  center.agentStatus('gw', commandStatusData(row.id, 'send_frame', 'delivered')); // late: ignored
  center.agentStatus('other', commandStatusData(row.id, 'send_frame', 'failed')); // not its command: ignored
  assert.deepEqual(history(center, row.id), ['queued', 'sent', 'delivered', 'succeeded']);
  assert.deepEqual(
    events.map((e) => e.status),
    ['queued', 'sent'],
    "the bridge's own steps on the console (the agent's come mirrored)",
  );
  assert.equal(link.sent.length, 1, 'at most once: never resent');
  center.stop();
});

test('command center: beyond --max-queued-commands a dongle gets TooManyCommandsError, counted', async () => {
  const { center } = setup({ maxQueued: 2, retentionS: 86_400 });
  await center.create('gw', SEND);
  await center.create('gw', SEND);
  await assert.rejects(center.create('gw', SEND), (e: unknown) => e instanceof TooManyCommandsError && /2 unfinished commands/.test(e.message));
  assert.equal(center.refusedFull, 1);
  center.stop();
});

test('command center: concurrent creates whose inserts are awaited (PostgreSQL) stay within --max-queued-commands', async () => {
  const { store, center } = setup({ maxQueued: 3, retentionS: 86_400 });
  // The insert as PostgreSQL's store makes it: committed a moment later, counted once it is.
  const insert = store.insertCommand.bind(store);
  store.insertCommand = async (row) => {
    await new Promise((r) => setTimeout(r, 20));
    return insert(row);
  };
  const results = await Promise.allSettled(Array.from({ length: 10 }, () => center.create('gw', SEND)));
  assert.equal(results.filter((r) => r.status === 'fulfilled').length, 3);
  assert.equal(store.unfinishedCount('gw'), 3);
  assert.equal(center.refusedFull, 7);
  center.stop();
});

test('command center: a command never sent times out as never transmitted; the agent’s own late report still replaces a timeout', async () => {
  const { center, events } = setup();
  const row = await center.create('gw', SEND, 1);
  await until(() => center.view(row.id)!.status === 'timed_out', 10_000, 'the queued command timed out');
  assert.match(events.at(-1)!.error ?? '', /never transmitted/);
  center.agentStatus('gw', commandStatusData(row.id, 'send_frame', 'succeeded'));
  assert.equal(center.view(row.id)!.status, 'succeeded', 'what the agent says wins over the timeout');
  center.stop();
});

/** The bridge's clocks under the test's hand: `wall` is stepped like NTP does, `mono` only moves forward. */
function steppedClock(): { clock: RelayClock; t: { wall: number; mono: number } } {
  const t = { wall: Date.now(), mono: 1_000_000 };
  return {
    clock: new RelayClock(
      () => t.wall,
      () => t.mono,
    ),
    t,
  };
}

test('command center: a queued command times out by the time that passed, not by a wall clock stepped back meanwhile (it is never sent)', async () => {
  const { clock, t } = steppedClock();
  const { center } = setup(undefined, clock);
  const row = await center.create('gw', SEND); // 30 s, while the dongle is offline
  t.wall -= 3_600_000; // NTP: the bridge's clock was an hour ahead
  t.wall += 600_000; // ten minutes pass
  t.mono += 600_000;
  await until(() => center.view(row.id)!.status === 'timed_out', 5000, 'timed out at the next sweep');
  center.stop();
});

test('command center: a command sent after the wall clock was stepped back carries the expiry left by the time that passed, on the clock as it reads now', async () => {
  const { clock, t } = steppedClock();
  const { center, connect } = setup(undefined, clock);
  const row = await center.create('gw', SEND);
  t.wall -= 3_600_000;
  t.wall += 5000;
  t.mono += 5000;
  const link = new FakeLink();
  connect(link);
  center.connected('gw');
  await until(() => link.sent.length === 1, 5000, 'sent');
  assert.equal(Date.parse(link.sent[0]!.expires_at), t.wall + 25_000, 'the 25 s left, from now on the bridge clock the agent measures against');
  assert.equal(center.view(row.id)!.expires_at, row.expires_at, 'the stored expiry as it was');
  center.stop();
});

test('command center: a command of an earlier run (loaded) whose wall-clock expiry is far ahead gets no more than its whole timeout', async () => {
  const { clock, t } = steppedClock();
  const first = setup(undefined, clock);
  const row = await first.center.create('gw', SEND);
  first.center.stop();
  // The next run, on a clock stepped back an hour: by the wall clock the command has 3,630 s left.
  t.wall -= 3_600_000;
  const next = new CommandCenter(first.store, { dongleEvent: () => undefined } as unknown as BridgeConsoles, () => undefined, 30, pino({ level: 'silent' }), undefined, clock);
  next.load();
  t.mono += 30_001;
  t.wall += 30_001;
  await until(() => next.view(row.id)!.status === 'timed_out', 5000, 'timed out after its 30 s');
  next.stop();
});

test('command center: a removed dongle’s unfinished commands fail with the reason', async () => {
  const { center } = setup();
  const a = await center.create('gw', SEND);
  const b = await center.create('gw', SEND);
  center.dongleRemoved('gw');
  for (const id of [a.id, b.id]) {
    const v = center.view(id)!;
    assert.equal(v.status, 'failed');
    assert.match(v.history.at(-1)!.error ?? '', /removed/);
  }
  center.stop();
});

test("command center (cluster): statuses the agent reports before this node's view has the command are held and applied once it does, not dropped", async () => {
  const { store, center, connect, events } = setup();
  connect(new FakeLink());
  const row = await center.create('gw', SEND);
  // Another node's command, this node's view behind (its NOTIFY not read, or PostgreSQL away): hidden.
  const hidden = new Set([row.id]);
  const command = store.command.bind(store);
  store.command = (id: string) => (hidden.has(id) ? undefined : command(id));
  assert.equal(center.agentStatus('gw', commandStatusData(row.id, 'send_frame', 'delivered')), false, 'not shown: not known here yet');
  assert.equal(center.agentStatus('gw', commandStatusData(row.id, 'send_frame', 'succeeded')), false);
  hidden.delete(row.id);
  center.storedElsewhere(row.id); // the change feed delivers it
  assert.equal(center.view(row.id)!.status, 'succeeded', "the agent's statuses, held, are applied");
  assert.deepEqual(history(center, row.id).slice(-2), ['delivered', 'succeeded']);
  assert.deepEqual(
    events.filter((e) => e.status === 'delivered' || e.status === 'succeeded').map((e) => e.status),
    ['delivered', 'succeeded'],
    'and shown on the console once applied',
  );
  // A status for a command of another dongle is never applied, held or not; nor does it replace the
  // statuses held for the dongle whose command it is.
  const other = await center.create('gw', SEND);
  hidden.add(other.id);
  center.agentStatus('gw', commandStatusData(other.id, 'send_frame', 'succeeded'));
  center.agentStatus('intruder', commandStatusData(other.id, 'send_frame', 'failed'));
  hidden.delete(other.id);
  center.storedElsewhere(other.id);
  assert.equal(center.view(other.id)!.status, 'succeeded', "its own dongle's held status applied, the intruder's not");
});

test("command center (cluster): a command posted on another node shows 'queued' before 'sent' on the delivering node's console, whichever of the forwarded status and the store's notice comes first", async () => {
  const { store, center, connect, events } = setup();
  const link = new FakeLink();
  connect(link);
  center.connected('gw');
  const stored = (id: string) => {
    // Another node's command: in the shared store (the row it inserted), announced by the change feed.
    store.insertCommand({
      id,
      dongle: 'gw',
      type: 'send_frame',
      body: JSON.stringify(SEND),
      status: 'queued',
      created_at: new Date().toISOString(),
      expires_at: new Date(Date.now() + 30_000).toISOString(),
    });
    center.storedElsewhere(id);
  };
  const queued = (id: string) => commandStatusData(id, 'send_frame', 'queued');

  // The store's notice first: this node shows 'queued' itself, then 'sent'; the forwarded 'queued' that
  // arrives after is left out (shown, it read "sent, …, queued").
  stored('c-notice-first');
  await until(() => link.sent.length === 1, 5000, 'the first command sent');
  assert.deepEqual(
    events.map((e) => e.status),
    ['queued', 'sent'],
  );
  assert.equal(center.admitForwardedStatus(queued('c-notice-first')), false, 'a queued after sent is left out');

  // The forwarded status first: shown as it comes, and not shown again when the command is sent.
  events.length = 0;
  assert.equal(center.admitForwardedStatus(queued('c-forward-first')), true);
  events.push({ dongle: 'gw', status: 'queued' }); // what the console route does with an admitted event
  stored('c-forward-first');
  await until(() => link.sent.length === 2, 5000, 'the second command sent');
  assert.deepEqual(
    events.map((e) => e.status),
    ['queued', 'sent'],
  );
  assert.equal(center.admitForwardedStatus(queued('c-forward-first')), false, 'the same queued again is a duplicate');
  assert.equal(center.admitForwardedStatus(commandStatusData('c-forward-first', 'send_frame', 'delivered')), true, 'other statuses pass');
  center.stop();
});
