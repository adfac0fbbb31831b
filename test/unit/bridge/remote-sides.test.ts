/**
 * cloud-bridge/cluster/remote-sides.ts, the node an agent is connected to: DOWN batches from another node
 * reach the agent only under the relay revision this node holds for the agent's group, and only while its
 * socket is within the bound a local side keeps.
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
import type { Membership } from '../../../cloud-bridge/group-membership.js';
import { fakeNats } from '../../helpers/fake-nats.js';

test("a batch addressed under another revision of the group than this node's, or to an agent in no group here, is dropped and counted; the stream goes on", () => {
  const nats = fakeNats();
  const ownership = { node: 'n2', ownerOf: () => undefined } as unknown as Ownership;
  // This node's view of gw-b's group: the bus map changed (rev-2), or the group was deleted (undefined).
  let membership: Membership | undefined = { group: 'g', side: 'b', rev: 'rev-2' };
  const relay = { groupOf: () => membership, attach: () => undefined, detach: () => undefined, remoteAck: () => undefined } as unknown as GroupRelay;
  const written: number[] = [];
  const link = { ready: true, canSend: () => true, sendBinary: (b: Buffer) => void written.push(b[0]!) } as unknown as AgentLink;
  const sides = new RemoteSides(nats.link, ownership, relay, (d) => (d === 'gw-b' ? link : undefined), pino({ level: 'silent' }));
  const deliver = (seq: number, rev: string): void => {
    const w = new BundleWriter('n1');
    w.add({ dongle: 'gw-b', side: 'stream-1', rev, seq, batch: Buffer.from([seq]) });
    nats.deliver(SUBJECTS.down('n2'), w.finish());
  };
  deliver(0, 'rev-1'); // n1 still relays under the old bus map
  deliver(1, 'rev-1');
  deliver(2, 'rev-2'); // n1 caught up
  membership = undefined; // the group deleted here
  deliver(3, 'rev-2');
  assert.deepEqual(written, [2], 'only the batch made under the revision this node told the agent');
  assert.equal(sides.stats.batchesGroupChanged, 3);
  assert.equal(sides.stats.batchesIn, 1);
  assert.deepEqual(nats.published, [], 'no resend asked: the stream had no hole');
});

test('a socket over its bound takes no batch from another node: the stream is cut, and the sender asked to start over once it drained', async () => {
  const nats = fakeNats();
  const ownership = { node: 'n2', ownerOf: () => undefined } as unknown as Ownership;
  const relay = { groupOf: () => ({ group: 'g', side: 'b', rev: 'r' }), attach: () => undefined, detach: () => undefined, remoteAck: () => undefined } as unknown as GroupRelay;
  const written: number[] = [];
  let full = false;
  const link = {
    ready: true,
    canSend: () => !full,
    get drained() {
      return !full;
    },
    sendBinary: (b: Buffer) => void written.push(b[0]!),
  } as unknown as AgentLink;
  const sides = new RemoteSides(nats.link, ownership, relay, (d) => (d === 'gw-b' ? link : undefined), pino({ level: 'silent' }));
  const deliver = (seq: number, side = 'stream-1'): void => {
    const w = new BundleWriter('n1');
    w.add({ dongle: 'gw-b', side, rev: 'r', seq, batch: Buffer.from([seq]) });
    nats.deliver(SUBJECTS.down('n2'), w.finish());
  };
  deliver(0);
  full = true; // the agent reads slowly (a cellular link): its socket holds 256 KiB unsent
  deliver(1);
  deliver(2);
  assert.deepEqual(written, [0]);
  assert.equal(sides.stats.batchesUndeliverable, 2);
  await new Promise((r) => setTimeout(r, 150));
  assert.deepEqual(nats.published, [], 'no resend asked while the socket is still full (it would only fill it again)');
  full = false;
  await new Promise((r) => setTimeout(r, 150));
  assert.deepEqual(nats.published, [SUBJECTS.resend], 'once drained, the sender is asked to start over, once');
  // The sender starts over (a new stream) and the socket is over the bound again at once (the agent still
  // slow): asked again only a second after the last time.
  full = true;
  deliver(0, 'stream-2');
  full = false;
  await new Promise((r) => setTimeout(r, 120)); // two drain checks
  assert.deepEqual(nats.published, [SUBJECTS.resend], 'not yet');
  await new Promise((r) => setTimeout(r, 1200));
  assert.deepEqual(nats.published, [SUBJECTS.resend, SUBJECTS.resend], 'then once more');
});

test('a peer moving between nodes: the old node and the new one both send to this dongle for a moment; both streams are forwarded, neither displaces the other', () => {
  const nats = fakeNats();
  const ownership = { node: 'n3', ownerOf: () => undefined } as unknown as Ownership;
  const relay = { groupOf: () => ({ group: 'g', side: 'b', rev: 'r' }), attach: () => undefined, detach: () => undefined, remoteAck: () => undefined } as unknown as GroupRelay;
  const written: string[] = [];
  const link = { ready: true, canSend: () => true, sendBinary: (b: Buffer) => void written.push(b.toString()) } as unknown as AgentLink;
  const sides = new RemoteSides(nats.link, ownership, relay, (d) => (d === 'gw-b' ? link : undefined), pino({ level: 'silent' }));
  const deliver = (from: string, side: string, seq: number): void => {
    const w = new BundleWriter(from);
    w.add({ dongle: 'gw-b', side, rev: 'r', seq, batch: Buffer.from(`${from}:${seq}`) });
    nats.deliver(SUBJECTS.down('n3'), w.finish());
  };
  // n1 still sends its window (the peer's frames from before the move); n2 the peer's new ones.
  deliver('n1', 'old', 0);
  deliver('n1', 'old', 1);
  deliver('n2', 'new', 0);
  deliver('n1', 'old', 2);
  deliver('n2', 'new', 1);
  deliver('n1', 'old', 3);
  assert.deepEqual(written, ['n1:0', 'n1:1', 'n2:0', 'n1:2', 'n2:1', 'n1:3'], 'every batch of both streams, as it came');
  assert.equal(sides.stats.batchesUndeliverable, 0);
  assert.deepEqual(nats.published, [], 'no node asked to start over');
  // A hole is still a hole, in the stream it is in.
  deliver('n2', 'new', 3);
  deliver('n1', 'old', 4);
  assert.deepEqual(written.slice(6), ['n1:4']);
  assert.deepEqual(nats.published, [SUBJECTS.resend], 'n2 asked to start over, n1 not');
});
