/**
 * cluster/remote-sides.ts, the receiving node's side of the cross-node relay, over a stand-in NATS: a
 * batch another node relayed under another revision of the group than this node relays under is dropped,
 * and its frames are counted as dropped (group_changed) on the group side here. Before, only a batch
 * counter moved: the sending node had counted the frames relayed, the agent no gap, and frames were lost
 * without a frame counter saying so (found by review: 68 of 12,000 at four bus-map changes).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import type { AgentLink } from '../../../cloud-bridge/agent-link.js';
import { BundleWriter } from '../../../cloud-bridge/cluster/down-bundle.js';
import { SUBJECTS } from '../../../cloud-bridge/cluster/nats-connection.js';
import type { Ownership } from '../../../cloud-bridge/cluster/ownership.js';
import { RemoteSides } from '../../../cloud-bridge/cluster/remote-sides.js';
import type { GroupRelay } from '../../../cloud-bridge/group-relay.js';
import { encodeBatch, KIND_DOWN } from '../../../core/uplink/frame-codec.js';
import { testFrame } from '../../helpers/can-frames.js';
import { fakeNats } from '../../helpers/fake-nats.js';

test('a batch relayed under another revision of the group is dropped, its frames counted as group_changed on the side here', async () => {
  const nats = fakeNats();
  const ownership = { node: 'n2', ownerOf: () => undefined } as unknown as Ownership;
  const dropped: [string, number][] = [];
  const relay = {
    groupOf: (d: string) => (d === 'gw' ? { group: 'g', side: 'b', rev: 'rev-2' } : undefined),
    droppedForGroupChange: (d: string, n: number) => void dropped.push([d, n]),
    attach: () => undefined,
    detach: () => undefined,
    remoteAck: () => undefined,
  } as unknown as GroupRelay;
  const written: Buffer[] = [];
  const link = { ready: true, canSend: () => true, sendBinary: (b: Buffer) => void written.push(b) } as unknown as AgentLink;
  new RemoteSides(nats.link, ownership, relay, (d) => (d === 'gw' ? link : undefined), pino({ level: 'silent' }));
  const down = (n: number): Buffer =>
    encodeBatch({
      kind: KIND_DOWN,
      batch: n,
      origin: 'gw-a',
      clock: { offsetMs: 0, errorMs: 1 },
      frames: [0, 1, 2].map((i) => ({ seq: 3 * n + i, frame: testFrame({ bus: i === 2 ? 'can1' : 'can0' }) })),
    });
  const bundle = (seq: number, rev: string): Uint8Array => {
    const w = new BundleWriter('n1');
    w.add({ dongle: 'gw', side: 'stream-1', rev, seq, batch: down(seq) });
    return w.finish();
  };
  nats.deliver(SUBJECTS.down('n2'), bundle(0, 'rev-1'));
  assert.equal(written.length, 0, 'not written to the agent');
  assert.deepEqual(dropped, [['gw', 3]], 'its 3 frames counted as dropped here');
  nats.deliver(SUBJECTS.down('n2'), bundle(1, 'rev-2'));
  assert.equal(written.length, 1, 'the next batch, under the revision here, goes to the agent');
  assert.deepEqual(dropped, [['gw', 3]]);
  await new Promise((r) => setImmediate(r));
});
