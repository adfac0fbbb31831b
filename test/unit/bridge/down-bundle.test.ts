/** The NATS message carrying DOWN batches between cluster nodes (cloud-bridge/cluster/down-bundle.ts): round trip, and malformed input refused. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BundleWriter, readBundle } from '../../../cloud-bridge/cluster/down-bundle.js';

test('a bundle carries its sender and every batch with its dongle, side, relay revision and seq, bytes unchanged, in order', () => {
  const w = new BundleWriter('node-1');
  assert.equal(w.empty, true);
  const batches = [
    { dongle: 'gw.a', side: 'side-1', rev: 'AbC-_9xYz0123456', seq: 0, batch: Buffer.from([1, 2, 3]) },
    { dongle: 'gw-b', side: 'side-2', rev: '', seq: 4_000_000_000, batch: Buffer.alloc(50_000, 7) },
    { dongle: 'gw.a', side: 'side-1', rev: 'AbC-_9xYz0123456', seq: 1, batch: Buffer.from([9]) },
  ];
  for (const b of batches) w.add(b);
  assert.equal(w.empty, false);
  const buf = w.finish();
  assert.equal(buf.length, w.bytes);
  const r = readBundle(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength));
  assert.equal(r.from, 'node-1');
  assert.deepEqual(r.batches, batches);
});

test('a truncated, empty, foreign-version or record-less-sender bundle is refused', () => {
  const w = new BundleWriter('n');
  w.add({ dongle: 'd', side: 's', rev: 'r1', seq: 3, batch: Buffer.from([1, 2, 3, 4]) });
  const good = w.finish();
  for (let cut = 0; cut < good.length; cut++) {
    if (cut === 3) continue; // version, sender: a bundle with no records is valid (nothing to deliver)
    assert.throws(() => readBundle(good.subarray(0, cut)), /DOWN bundle/, `cut at ${cut}`);
  }
  assert.deepEqual(readBundle(good.subarray(0, 3)).batches, []);
  // Version 1 carried no relay revision: a node of an older canrelay is refused, not trusted.
  for (const v of [1, 3]) {
    const other = Buffer.from(good);
    other[0] = v;
    assert.throws(() => readBundle(other), /unknown version/, `version ${v}`);
  }
  assert.throws(() => readBundle(Buffer.from([2, 0])), /without its sender/);
  const badRev = Buffer.from(good);
  badRev[badRev.indexOf('r1') + 1] = 0x0a; // "r\n"
  assert.throws(() => readBundle(badRev), /bad relay revision/);
  const zero = new BundleWriter('n');
  zero.add({ dongle: 'd', side: 's', rev: '', seq: 0, batch: Buffer.alloc(0) });
  assert.throws(() => readBundle(zero.finish()), /without dongle, side or batch/);
});

test('a bundle naming a node, dongle or side stream outside the id rule is refused whole', () => {
  const bundle = (from: string, dongle: string, side: string): Buffer => {
    const w = new BundleWriter(from);
    w.add({ dongle: 'gw-ok', side: 'side-ok', rev: '', seq: 0, batch: Buffer.from([1]) });
    w.add({ dongle, side, rev: '', seq: 1, batch: Buffer.from([2]) });
    return w.finish();
  };
  assert.equal(readBundle(bundle('node-1', 'gw-b', 'side-2')).batches.length, 2, 'the control: valid names pass');
  assert.throws(() => readBundle(bundle('node 1', 'gw-b', 'side-2')), /bad node id/);
  assert.throws(() => readBundle(bundle('node-1', '../etc', 'side-2')), /bad dongle id/);
  assert.throws(() => readBundle(bundle('node-1', 'gw-b', 'side\n2')), /bad side stream id/);
  assert.throws(() => readBundle(bundle('node-1', 'x'.repeat(65), 'side-2')), /bad dongle id/);
});
