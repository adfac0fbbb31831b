/**
 * FleetFeed (cloud-bridge/fleet-feed.ts) on a real ConsoleStream: changes are published at once and never
 * dropped; periodic updates are merged per dongle/bus/group and published at most the flush quota at a
 * time, so a fleet of any size cannot raise the stream's rate; the snapshot holds every dongle and group.
 * The flush is called by hand (its timer is the only thing left out), so nothing here depends on timing.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryIdStore } from '../../../core/console/id-store.js';
import { StreamManager } from '../../../core/console/stream-manager.js';
import { groupStateData, presenceData } from '../../../core/console/normalize.js';
import type { StoredEvent } from '../../../core/console/console-stream.js';
import { FleetFeed } from '../../../cloud-bridge/fleet-feed.js';
import { fakeBusState } from '../../helpers/fake-fleet.js';

function setup(dongles: string[], up = new Set<string>(dongles)) {
  const streams = new StreamManager({ historyEvents: 100_000, historySeconds: 3600, historyMemoryBytes: 64 << 20, maxRate: 1000, ids: new MemoryIdStore() });
  const stream = streams.get('fleet');
  const got: { type: string; data: Record<string, unknown> }[] = [];
  stream.subscribe(
    {
      cursor: 0,
      onEvent: (e: StoredEvent) => {
        const type = /event: (\w+)/.exec(e.chunk)![1]!;
        got.push({ type, data: JSON.parse(/data: (.*)/.exec(e.chunk)![1]!) as Record<string, unknown> });
      },
      onStreamClosed: () => {},
    },
    {},
  );
  const rows = dongles.map((id) => ({ id, created_at: '2026-01-01T00:00:00.000Z', last_seen: null }));
  const feed = new FleetFeed(stream, { dongles: () => rows, connected: (d) => up.has(d) });
  return { feed, got, close: () => (feed.stop(), streams.close()) };
}

const bus = (state: 'error-active' | 'error-passive', frameRate: number) =>
  fakeBusState(state, { tec: 0, load: 0.1, load_peak_1m: 0.2, load_history: [0.1, 0.2], frame_rate: frameRate });

test('fleet feed: "seen" updates of 2,000 dongles are merged and flushed by quota; changes pass at once', () => {
  const ids = Array.from({ length: 2000 }, (_, i) => `d${i}`);
  const up = new Set(ids);
  const { feed, got, close } = setup(ids, up);
  for (const id of ids) feed.dongleEvent(id, { type: 'presence', data: presenceData('online', { version: 'v1' }) });
  assert.equal(got.filter((e) => e.type === 'presence' && e.data.state === 'online').length, 2000, 'every online change is published');
  got.length = 0;
  // Ten rounds of "seen" from every dongle: 20,000 updates.
  for (let round = 0; round < 10; round++) for (const id of ids) feed.dongleEvent(id, { type: 'presence', data: { ...presenceData('seen'), reason: `round ${round}` } });
  assert.equal(got.length, 0, 'periodic updates wait for the flush');
  assert.equal(feed.pendingCount, 2000, 'one pending entry per dongle, however many updates');
  feed.flush(100);
  assert.equal(got.length, 100, 'one flush publishes its quota, no more');
  assert.ok(
    got.every((e) => e.data.reason === 'round 9'),
    'a merged update carries the newest data',
  );
  assert.equal(got[0]!.data.dongle, 'd0', 'oldest first');
  assert.equal(got[0]!.data.version, 'v1', 'the version of the connection is carried');
  assert.equal(typeof got[0]!.data.since, 'string', 'since when online');
  // A change for a dongle whose "seen" waits supersedes it, and is not held back by the quota.
  up.delete('d1999');
  feed.dongleEvent('d1999', { type: 'presence', data: presenceData('offline', { reason: 'uplink closed' }) });
  feed.dongleEvent('d1998', { type: 'command_status', data: { ts: new Date().toISOString(), command_id: 'c1', type: 'send_frame', status: 'failed', error: 'ENETDOWN' } });
  assert.deepEqual(
    got.slice(100).map((e) => [e.type, e.data.dongle, e.data.state ?? e.data.status]),
    [
      ['presence', 'd1999', 'offline'],
      ['command_status', 'd1998', 'failed'],
    ],
  );
  for (let i = 0; i < 100 && feed.pendingCount > 0; i++) feed.flush(100);
  assert.equal(feed.pendingCount, 0);
  const seen = got.filter((e) => e.type === 'presence' && e.data.state === 'seen');
  assert.equal(seen.length, 1999, 'every dongle but the one that went offline: one merged "seen" each');
  assert.equal(new Set(seen.map((e) => e.data.dongle)).size, 1999);
  assert.ok(!seen.some((e) => e.data.dongle === 'd1999'));
  close();
});

test('fleet feed: presence follows the bridge\'s link; late mirrored events that contradict it are ignored, a second "online" is a refresh', () => {
  const up = new Set<string>();
  const { feed, got, close } = setup(['a'], up);
  up.add('a');
  feed.dongleEvent('a', { type: 'presence', data: presenceData('online', { version: 'v3' }) });
  const since = got[0]!.data.since;
  // The agent's outbox delivers the "offline" of its previous run after the reconnect.
  feed.dongleEvent('a', { type: 'presence', data: presenceData('offline', { reason: 'agent stopping' }) });
  // Its own "online" of this run: no flip, so a merged refresh keeping since.
  feed.dongleEvent('a', { type: 'presence', data: presenceData('online') });
  assert.equal(got.length, 1, 'neither is a change');
  feed.flush(10);
  assert.deepEqual([got[1]!.data.state, got[1]!.data.since, got[1]!.data.version], ['online', since, 'v3']);
  up.delete('a');
  feed.dongleEvent('a', { type: 'presence', data: presenceData('offline', { reason: 'uplink closed' }) });
  feed.dongleEvent('a', { type: 'presence', data: presenceData('seen') }); // late: ignored
  feed.flush(10);
  assert.deepEqual(
    got.slice(2).map((e) => e.data.state),
    ['offline'],
  );
  close();
});

test('fleet feed: bus_state changes of state pass at once, refreshes are merged and stripped of the load history', () => {
  const { feed, got, close } = setup(['a']);
  feed.dongleEvent('a', { type: 'bus_state', data: bus('error-active', 10) });
  feed.dongleEvent('a', { type: 'bus_state', data: bus('error-active', 11) });
  feed.dongleEvent('a', { type: 'bus_state', data: bus('error-active', 12) });
  assert.equal(got.length, 1, 'the first is a change, the refreshes wait');
  assert.deepEqual(got[0]!.data.load_history, [], 'a summary: no sparkline');
  feed.dongleEvent('a', { type: 'bus_state', data: bus('error-passive', 13) });
  assert.equal(got.length, 2);
  assert.equal(got[1]!.data.state, 'error-passive');
  assert.equal(feed.pendingCount, 0, 'the change superseded the waiting refresh');
  feed.dongleEvent('a', { type: 'log', data: { ts: new Date().toISOString(), level: 'info', message: 'x' } });
  assert.equal(got.length, 2, 'logs are not fleet events');
  close();
});

test('fleet feed: an agent naming bus after bus is kept to 64 buses; the further ones are left out and counted', () => {
  const { feed, got, close } = setup(['a']);
  for (let i = 0; i < 70; i++) feed.dongleEvent('a', { type: 'bus_state', data: { ...bus('error-active', 10), bus: `x${i}` } });
  assert.equal(got.length, 64, 'one change per bus kept');
  assert.equal(feed.counters.busesRefused, 6);
  feed.dongleEvent('a', { type: 'bus_state', data: { ...bus('error-passive', 10), bus: 'x0' } });
  assert.equal(got.at(-1)!.data.state, 'error-passive', 'a bus already kept still changes');
  close();
});

test('fleet feed: group_state changes pass, refreshes merge; the snapshot holds every dongle, bus, last command and group', () => {
  const { feed, got, close } = setup(['a', 'b', 'never']);
  const gs = (mode: 'relaying' | 'degraded', rate: number) =>
    groupStateData({
      group: 'g1',
      mode,
      sides: { a: { dongle: 'a', online: true, backlog: 0 }, b: { dongle: 'b', online: mode === 'relaying', backlog: 0 } },
      offline_side: mode === 'relaying' ? null : 'b',
      dropped: 0,
      relay_rate: rate,
      relayed_total: 0,
    });
  feed.groupState(gs('relaying', 1));
  feed.groupState(gs('relaying', 2));
  feed.groupState(gs('degraded', 3));
  assert.deepEqual(
    got.map((e) => e.data.mode),
    ['relaying', 'degraded'],
  );
  feed.dongleEvent('a', { type: 'presence', data: presenceData('online', { version: 'v2' }) });
  feed.dongleEvent('a', { type: 'bus_state', data: bus('error-passive', 5) });
  feed.dongleEvent('a', { type: 'command_status', data: { ts: new Date().toISOString(), command_id: 'c9', type: 'send_frame', status: 'succeeded' } });
  const snap = feed.snapshot([gs('degraded', 4)]);
  assert.ok(
    snap.every((b) => !b.startsWith('id:') && !b.includes('\nid:')),
    'snapshot blocks carry no id',
  );
  const types = snap.map((b) => /event: (\w+)/.exec(b)![1]);
  assert.deepEqual(types, ['presence', 'bus_state', 'command_status', 'presence', 'presence', 'group_state', 'log']);
  assert.match(snap[3]!, /"state":"offline"/);
  assert.match(snap[4]!, /"dongle":"never"/);
  assert.match(snap[5]!, /"relay_rate":4/);
  assert.match(snap[6]!, /"code":"fleet_snapshot"/);
  feed.dongleRemoved('b');
  assert.equal(got.at(-1)!.data.code, 'dongle_removed');
  close();
});
