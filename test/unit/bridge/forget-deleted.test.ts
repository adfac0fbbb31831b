/**
 * What the bridge keeps per dongle or stream goes when the dongle is deleted, so that memory follows the
 * fleet, not its history of ids: the relay's highest DOWN batch, the fleet stream's last presence, the
 * in-memory event-id ceiling of a removed stream (PostgreSQL mode), the cluster's remote-side and console
 * state (RemoteSides, ConsoleSync), and — for a dongle removed on another node — its console, DBC decoder
 * and uplink state on this node (remote-dongles.ts). Each: made, deleted, gone.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { pino } from 'pino';
import { BridgeConsoles } from '../../../cloud-bridge/consoles.js';
import { ConsoleSync } from '../../../cloud-bridge/cluster/console-sync.js';
import { BundleWriter } from '../../../cloud-bridge/cluster/down-bundle.js';
import { SUBJECTS } from '../../../cloud-bridge/cluster/nats-connection.js';
import type { Ownership } from '../../../cloud-bridge/cluster/ownership.js';
import { RemoteSides } from '../../../cloud-bridge/cluster/remote-sides.js';
import type { AgentLink } from '../../../cloud-bridge/agent-link.js';
import { DongleDbcs } from '../../../cloud-bridge/dongle-dbc.js';
import { FleetFeed } from '../../../cloud-bridge/fleet-feed.js';
import { GroupRelay, type RelayLink } from '../../../cloud-bridge/group-relay.js';
import { forgetRemovedDongles } from '../../../cloud-bridge/remote-dongles.js';
import type { StateStore } from '../../../cloud-bridge/state-store.js';
import type { GroupRow } from '../../../cloud-bridge/store.js';
import { MemoryIdStore } from '../../../core/console/id-store.js';
import { presenceData } from '../../../core/console/normalize.js';
import { StreamManager } from '../../../core/console/stream-manager.js';
import { dbcChunks } from '../../../core/uplink/dbc-transfer.js';
import { decodeBatch } from '../../../core/uplink/frame-codec.js';
import { testFrame } from '../../helpers/can-frames.js';
import { fakeNats } from '../../helpers/fake-nats.js';

const silent = pino({ level: 'silent' });
const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

function streamManager(ids = new MemoryIdStore()): StreamManager {
  return new StreamManager({ historyEvents: 1000, historySeconds: 60, historyMemoryBytes: 4 << 20, maxRate: 1000, ids });
}

test('GroupRelay.forget: the highest DOWN batch sent to a deleted dongle goes (an ack of it is then one of a batch never sent)', async () => {
  const row: GroupRow = { id: 'g', side_a: 'a1', side_b: 'b1', bus_map: '{}', created_at: 't', updated_at: 't', dropped: 0, relayed_total: 0 };
  const store = { groups: () => [row], saveGroupCounters: () => undefined, saveAllGroupCounters: () => undefined } as unknown as StateStore;
  const consoles = { groupLog: () => undefined, groupState: () => undefined, downFrames: () => undefined } as unknown as BridgeConsoles;
  const relay = new GroupRelay({ backlogMaxFrames: 100, backlogMaxAgeMs: 60_000, groupStateIntervalMs: 3_600_000 }, store, consoles, silent);
  try {
    relay.load();
    const batches: number[] = [];
    const link = (): RelayLink => ({ ready: true, canSend: () => true, sendBinary: (b: Buffer) => void batches.push(decodeBatch(b).batch), notifyGroup: () => undefined });
    relay.attach('a1', link());
    relay.attach('b1', link());
    relay.relay('a1', [{ seq: 0, frame: testFrame() }]);
    await turn();
    const sent = batches.at(-1)!;
    relay.remove('g'); // the deletion ends its group first
    assert.equal(relay.downAck('b1', sent), true, 'before: an ack of the batch sent is valid');
    relay.forget('b1');
    assert.equal(relay.downAck('b1', sent), false, 'after: nothing is remembered of the deleted dongle');
  } finally {
    relay.stop();
  }
});

test('FleetFeed.dongleRemoved: the fleet stream no longer keeps (nor tells) the removed dongle presence', () => {
  const streams = streamManager();
  const stream = streams.get('fleet');
  const feed = new FleetFeed(stream, { dongles: () => [], connected: () => true });
  try {
    feed.dongleEvent('gw-1', { type: 'presence', data: { ...presenceData('online'), dongle: 'gw-1' } });
    feed.dongleEvent('gw-2', { type: 'presence', data: { ...presenceData('online'), dongle: 'gw-2' } });
    const told = (): string[] => stream.presenceNotices().map((b) => String((JSON.parse(/data: (.*)/.exec(b)![1]!) as { dongle: string }).dongle));
    assert.deepEqual(told(), ['gw-1', 'gw-2']);
    feed.dongleRemoved('gw-1');
    assert.deepEqual(told(), ['gw-2']);
  } finally {
    feed.stop();
    streams.close();
  }
});

test("StreamManager.remove: an in-memory id store (PostgreSQL mode) forgets the removed stream's ceiling; made again, its ids start above the old ones", () => {
  const ids = new MemoryIdStore();
  const streams = streamManager(ids);
  try {
    const s = streams.get('dongles/gw');
    s.publish({ type: 'presence', data: presenceData('online') });
    const oldLatest = s.latest;
    assert.ok(ids.load('dongles/gw') > 0, 'a ceiling is kept while the stream lives');
    streams.remove('dongles/gw');
    assert.equal((ids as unknown as { m: Map<string, number> }).m.size, 0, 'its entry is gone with the stream');
    const again = streams.get('dongles/gw');
    again.publish({ type: 'presence', data: presenceData('online') });
    assert.ok(again.runStart > oldLatest + 1, 'the new run starts above every id of the old one, even within the same millisecond');
  } finally {
    streams.close();
  }
});

test('cluster RemoteSides.forget: a deleted dongle fed from another node leaves neither its batch stream nor its "fed remotely" mark', async () => {
  const nats = fakeNats();
  const ownership = { node: 'n2', ownerOf: () => undefined } as unknown as Ownership;
  const relay = {
    groupOf: (d: string) => (d === 'gw' ? { group: 'g', side: 'b', rev: 'rev-1' } : undefined),
    attach: () => undefined,
    detach: () => undefined,
    remoteAck: () => undefined,
  } as unknown as GroupRelay;
  const written: Buffer[] = [];
  const link = { ready: true, canSend: () => true, sendBinary: (b: Buffer) => void written.push(b) } as unknown as AgentLink;
  const sides = new RemoteSides(nats.link, ownership, relay, (d) => (d === 'gw' ? link : undefined), silent);
  const bundle = (seq: number): Uint8Array => {
    const w = new BundleWriter('n1');
    w.add({ dongle: 'gw', side: 'stream-1', rev: 'rev-1', seq, batch: Buffer.from([1, 2, 3]) });
    return w.finish();
  };
  nats.deliver(SUBJECTS.down('n2'), bundle(0));
  assert.equal(written.length, 1, 'the first batch of the stream reaches the local agent');
  assert.equal(sides.localAck('gw', 1), true, 'its acks go to the other nodes');
  sides.forget('gw');
  assert.equal(sides.localAck('gw', 1), false, 'forgotten: no longer fed remotely');
  nats.deliver(SUBJECTS.down('n2'), bundle(1));
  assert.equal(written.length, 1, 'forgotten: the stream is unknown, so its next batch is not taken mid-stream');
  assert.ok(nats.published.includes(SUBJECTS.resend), 'and the sender is asked to start over');
  await turn();
});

test('cluster ConsoleSync.forget: the node last heard holding a deleted dongle is forgotten; one announced for no registered dongle is not remembered', () => {
  const nats = fakeNats();
  const streams = streamManager();
  const owners = new Map([['gw', 'n1']]);
  const sync = new ConsoleSync({
    nats: nats.link,
    node: 'n2',
    streams,
    ownerOf: (d) => owners.get(d),
    holderInStore: async () => undefined,
    sidesOf: () => undefined,
    streamOf: () => undefined,
    isDongle: (d) => d === 'gw',
    log: silent,
  });
  const lastOwner = (sync as unknown as { lastOwner: Map<string, string> }).lastOwner;
  try {
    sync.leaseChanged('gw');
    assert.equal(lastOwner.get('gw'), 'n1');
    sync.forget('gw');
    assert.equal(lastOwner.has('gw'), false);
    // A lease announced (on NATS) for a name that is no registered dongle — a deleted one whose last
    // announcement came after its deletion, or any client's — is not remembered.
    owners.set('gone', 'n1');
    sync.leaseChanged('gone');
    assert.equal(lastOwner.has('gone'), false);
  } finally {
    sync.stop();
    streams.close();
  }
});

test('a dongle removed on another node: its console, DBC decoder, uplink and relay state and metric series go here too; a dongle still registered, or a local notice, changes nothing', () => {
  const streams = streamManager();
  const fleet = new FleetFeed(streams.get('fleet'), { dongles: () => [], connected: () => false });
  const dbcs = new DongleDbcs(silent);
  const consoles = new BridgeConsoles(streams, () => undefined, dbcs, fleet);
  const calls: string[] = [];
  const registered = new Set(['gw-kept']);
  const onChange = forgetRemovedDongles(
    { dongle: (id: string) => (registered.has(id) ? ({ id } as never) : undefined) },
    {
      agents: { forget: (d) => void calls.push(`agents ${d}`) },
      relay: { forget: (d) => void calls.push(`relay ${d}`) },
      consoles,
      stats: { forgetDongle: (d) => void calls.push(`stats ${d}`) },
    },
  );
  try {
    const text = readFileSync(fileURLToPath(new URL('../../../../test/fixtures/dbc/features.dbc', import.meta.url)), 'utf8');
    for (const d of ['gw', 'gw-kept']) {
      const linkKey = {};
      for (const m of dbcChunks([{ bus: null, file: 'features.dbc', text }], 1).messages) assert.equal(dbcs.accept(linkKey, d, m), undefined);
      consoles.dongleStream(d).publish({ type: 'presence', data: presenceData('online') });
    }
    assert.ok(dbcs.decoderOf('gw'), 'the agent sent its DBC');
    onChange({ kind: 'dongle', id: 'gw', remote: false });
    onChange({ kind: 'dongle', id: 'gw-kept', remote: true });
    assert.deepEqual(calls, [], 'this node acted on its own change already; a registered dongle stays');
    onChange({ kind: 'dongle', id: 'gw', remote: true });
    assert.equal(dbcs.decoderOf('gw'), undefined, 'its DBC decoder is gone');
    assert.equal(streams.find('dongles/gw'), undefined, 'its console is closed');
    assert.deepEqual(calls, ['agents gw', 'relay gw', 'stats gw']);
    assert.ok(dbcs.decoderOf('gw-kept') && streams.find('dongles/gw-kept'), 'the other dongle keeps its own');
  } finally {
    fleet.stop();
    streams.close();
  }
});
