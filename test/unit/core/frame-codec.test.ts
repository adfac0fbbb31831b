import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CanFrame } from '../../../core/can/frame.js';
import { BatchDecodeError, BatchEncodeError, batchFrameCount, decodeBatch, encodeBatch, KIND_DOWN, KIND_UP, MAX_BUSES_PER_BATCH } from '../../../core/uplink/frame-codec.js';
import { testFrame } from '../../helpers/can-frames.js';

const base = testFrame({ id: 0x7e8, data: Uint8Array.of(2, 0x10, 3, 0, 0, 0, 0, 0), tsUs: 1_795_787_222_123_456 });
const kinds: CanFrame[] = [
  base,
  { ...base, bus: 'vcan1', id: 0x18daf110, ext: true, dlc: 3, data: Uint8Array.of(1, 2, 3) },
  { ...base, rtr: true, dlc: 4, data: new Uint8Array(0) },
  { ...base, dlc: 0, data: new Uint8Array(0) },
  { ...base, dlc: 13, data: Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8) },
  { ...base, fd: true, brs: true, esi: true, dlc: 64, data: new Uint8Array(64).fill(0xaa) },
  { ...base, err: true, id: 0x4, dlc: 8, data: new Uint8Array(8) },
  { ...base, direction: 'tx' },
];

test('UP and DOWN batches round-trip every frame kind, with sequence numbers and origin', () => {
  const frames = kinds.map((frame, i) => ({ frame, seq: (4_294_967_290 + i) >>> 0 }));
  const up = decodeBatch(encodeBatch({ kind: KIND_UP, batch: 281_474_976_710_000, frames }));
  assert.equal(up.kind, KIND_UP);
  assert.equal(up.batch, 281_474_976_710_000);
  assert.equal(up.origin, undefined);
  assert.deepEqual(
    up.frames.map((f) => ({ ...f, frame: { ...f.frame, data: [...f.frame.data] } })),
    frames.map((f) => ({ ...f, frame: { ...f.frame, data: [...f.frame.data] } })),
  );
  const down = decodeBatch(encodeBatch({ kind: KIND_DOWN, batch: 7, origin: 'gw-a', frames }));
  assert.equal(down.origin, 'gw-a');
  assert.equal(down.frames.length, kinds.length);
});

/** The batch header's clock fields ({0, 0}), between the batch number and the bus table. */
const CLOCK0 = new Array<number>(16).fill(0);

test('batchFrameCount reads the frame count from the header alone: UP, DOWN with its origin, several buses; 0 for a stub', () => {
  const frames = (n: number) => Array.from({ length: n }, (_, i) => ({ seq: i, frame: testFrame({ bus: `can${i % 3}` }) }));
  assert.equal(batchFrameCount(encodeBatch({ kind: KIND_UP, batch: 1, frames: frames(5) })), 5);
  assert.equal(batchFrameCount(encodeBatch({ kind: KIND_DOWN, batch: 2, origin: 'a-rather-long-origin-name', frames: frames(300) })), 300);
  assert.equal(batchFrameCount(encodeBatch({ kind: KIND_DOWN, batch: 3, origin: 'o', frames: [] })), 0);
  assert.equal(batchFrameCount(Buffer.from([2, 0, 0])), 0);
});

test('malformed batches are rejected with the reason', () => {
  const good = encodeBatch({ kind: KIND_UP, batch: 1, frames: [{ frame: base, seq: 1 }] });
  const bad: [Buffer, RegExp][] = [
    [good.subarray(0, good.length - 1), /truncated/],
    [Buffer.concat([good, Buffer.of(0)]), /trailing/],
    [Buffer.from([9, 0, 0, 0, 0, 0, 1, ...CLOCK0, 0, 0, 0]), /unknown batch kind/],
    [Buffer.from([1, 0, 0, 0, 0, 0, 1, ...CLOCK0, 0, 0xff, 0xff]), /more than/],
    [Buffer.alloc(0), /truncated/],
  ];
  const badIndex = Buffer.from(good);
  badIndex[1 + 6 + 16 + 1 + 1 + 4 + 2] = 5; // the frame's bus index
  bad.push([badIndex, /bus index/]);
  const badId = encodeBatch({ kind: KIND_UP, batch: 1, frames: [{ frame: { ...base, id: 0x7ff }, seq: 1 }] });
  badId.writeUInt32BE(0x00000fff, 1 + 6 + 16 + 1 + 1 + 4 + 2 + 1 + 4); // 12-bit id without the extended flag
  bad.push([badId, /does not fit 11 bits/]);
  const badClock = Buffer.from(good);
  badClock.writeDoubleBE(NaN, 1 + 6); // the clock offset
  bad.push([badClock, /clock offset/]);
  const badError = Buffer.from(good);
  badError.writeDoubleBE(-1, 1 + 6 + 8); // the clock error
  bad.push([badError, /clock error/]);
  const badFlags = Buffer.from(good);
  badFlags[1 + 6 + 16 + 1 + 1 + 4 + 2 + 1 + 4 + 4] = 0x80; // the frame's flags
  bad.push([badFlags, /unknown flag bits/]);
  bad.push([encodeBatch({ kind: KIND_DOWN, batch: 1, origin: 'bad origin!', frames: [] }), /bad origin/]);
  for (const [buf, why] of bad)
    assert.throws(
      () => decodeBatch(buf),
      (e: unknown) => e instanceof BatchDecodeError && why.test(e.message),
      String(why),
    );
});

test('encodeBatch never writes bytes that say something else: 255 buses round-trip, a 256th (or a name, payload or clock the format cannot carry) throws', () => {
  const onBuses = (n: number) => Array.from({ length: n }, (_, i) => ({ frame: { ...base, bus: `b${i}` }, seq: i }));
  // 255 buses, each frame on its own: names and indexes come back exactly (one byte each, at their limit).
  const full = decodeBatch(encodeBatch({ kind: KIND_DOWN, batch: 1, origin: 'gw-a', frames: onBuses(MAX_BUSES_PER_BATCH) }));
  assert.equal(full.buses?.length, MAX_BUSES_PER_BATCH, 'the bus table as sent');
  assert.deepEqual(
    full.frames.map((f) => [f.frame.bus, f.seq]),
    onBuses(MAX_BUSES_PER_BATCH).map((f) => [f.frame.bus, f.seq]),
  );
  // One more bus: a count of 256 written into one byte was 0, and the indexes after 255 wrapped.
  const refused: [() => Buffer, RegExp][] = [
    [() => encodeBatch({ kind: KIND_DOWN, batch: 1, origin: 'gw-a', frames: onBuses(MAX_BUSES_PER_BATCH + 1) }), /at most 255 buses/],
    [
      () => encodeBatch({ kind: KIND_UP, batch: 1, frames: [...onBuses(200), ...onBuses(200).map((f) => ({ ...f, frame: { ...f.frame, bus: `c${f.seq}` } }))] }),
      /at most 255 buses/,
    ],
    [() => encodeBatch({ kind: KIND_UP, batch: 1, frames: [{ frame: { ...base, bus: 'x'.repeat(256) }, seq: 1 }] }), /bus name of 256 bytes/],
    [() => encodeBatch({ kind: KIND_DOWN, batch: 1, origin: 'g'.repeat(256), frames: [] }), /origin dongle id of 256 bytes/],
    [() => encodeBatch({ kind: KIND_UP, batch: 1, frames: [{ frame: { ...base, fd: true, dlc: 15, data: new Uint8Array(65) }, seq: 1 }] }), /65 data bytes/],
    [() => encodeBatch({ kind: KIND_UP, batch: 1, clock: { offsetMs: 0, errorMs: 1e9 }, frames: [{ frame: base, seq: 1 }] }), /clock error/],
  ];
  for (const [encode, why] of refused) assert.throws(encode, (e: unknown) => e instanceof BatchEncodeError && why.test(e.message), String(why));
});
