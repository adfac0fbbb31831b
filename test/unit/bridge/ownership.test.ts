/**
 * cloud-bridge/cluster/ownership.ts with a stand-in NATS and lease bucket: a node whose claim took a
 * dongle's lease answers "I hold it" before the link is admitted. It said no in that window, and a
 * connection of the same dongle on another node, judged against nobody, was admitted too: two gateways
 * sharing a token both connected (CI saw it in "the same dongle token on two nodes at once").
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { KV } from 'nats';
import { pino } from 'pino';
import { Ownership } from '../../../cloud-bridge/cluster/ownership.js';
import { SUBJECTS } from '../../../cloud-bridge/cluster/nats-connection.js';
import { fakeNats } from '../../helpers/fake-nats.js';

test('between its claim and the hold, a node says it holds the dongle; once abandoned, it does not', async (t) => {
  const nats = fakeNats();
  const own = new Ownership(nats.link, 'n1', 2000, 60_000, { lost: () => undefined, changed: () => undefined }, pino({ level: 'silent' }));
  t.after(() => own.stop());
  // The lease bucket: nobody holds the dongle yet; the claim creates its lease.
  const kv = { get: async () => null, create: async () => 1, update: async () => 2, delete: async () => undefined } as unknown as KV;
  (own as unknown as { kv: KV }).kv = kv;
  const ask = (): { held: boolean } => {
    nats.deliver(SUBJECTS.holds('n1'), Buffer.from(JSON.stringify({ dongle: 'gw' })));
    return JSON.parse(nats.responses.at(-1)!) as { held: boolean };
  };
  assert.equal(ask().held, false, 'nothing claimed');
  assert.equal(await own.claim('gw', undefined, () => 'accept'), 'accept');
  assert.equal(ask().held, true, 'claimed, not yet admitted: held');
  const link = { silentMs: 0 };
  own.hold('gw', link);
  assert.equal(ask().held, true, 'admitted: held');
  own.release('gw', link);
  assert.equal(ask().held, false, 'released');
  assert.equal(await own.claim('gw', undefined, () => 'accept'), 'accept');
  await own.abandon('gw');
  assert.equal(ask().held, false, 'the link closed before admission: given back');
  assert.equal(await own.claim('gw', undefined, () => 'accept'), 'accept');
  own.unclaim('gw');
  assert.equal(ask().held, false, 'the claim refused after all (another connection admitted meanwhile): not answered for');
});

test('a lease write still on its way when the link is released: the key it wrote is deleted with its revision and nothing is announced (every node took this one for the holder)', async (t) => {
  const nats = fakeNats();
  const own = new Ownership(nats.link, 'n1', 2000, 60_000, { lost: () => undefined, changed: () => undefined }, pino({ level: 'silent' }));
  t.after(() => own.stop());
  let created!: (rev: number) => void;
  const deleted: { key: string; previousSeq: number | undefined }[] = [];
  const kv = {
    get: async () => null,
    create: () => new Promise<number>((r) => (created = r)),
    update: async () => 2,
    delete: async (key: string, o?: { previousSeq?: number }) => void deleted.push({ key, previousSeq: o?.previousSeq }),
  } as unknown as KV;
  (own as unknown as { kv: KV }).kv = kv;
  const link = { silentMs: 0 };
  own.hold('gw', link); // its first write: kv.get, then kv.create, held back
  await new Promise((r) => setImmediate(r));
  own.release('gw', link);
  const leases = (): number => nats.published.filter((s) => s === SUBJECTS.lease).length;
  assert.equal(leases(), 1, 'the release is announced');
  created(7);
  await new Promise((r) => setTimeout(r, 10));
  assert.equal(leases(), 1, 'no announcement of a lease for the released link');
  assert.deepEqual(deleted, [{ key: 'gw', previousSeq: 7 }], 'the key written for it is deleted');
});
