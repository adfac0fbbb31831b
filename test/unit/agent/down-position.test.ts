/**
 * agent/uplink/down-position.ts with the Downlink and TxQueue, on a real SQLite state file: a next run of
 * the agent takes up the DOWN position of the last, so batches the bridge resends to it (the last ack had
 * not left: a restart while the link was down) are duplicates — acknowledged, never transmitted again.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import type { CanFrame } from '../../../core/can/frame.js';
import { openStateDb } from '../../../core/state/sqlite.js';
import { decodeBatch, encodeBatch, KIND_DOWN, type Batch } from '../../../core/uplink/frame-codec.js';
import type { SendResult } from '../../../agent/sources/source.js';
import { TxQueue } from '../../../agent/tx-queue.js';
import { DownPosition } from '../../../agent/uplink/down-position.js';
import { Downlink } from '../../../agent/uplink/downlink.js';
import { testFrame } from '../../helpers/can-frames.js';
import { tempDir } from '../../helpers/processes.js';

const LOCAL = { offsetMs: 0, errorMs: 2 };
const down = (batch: number): Batch =>
  decodeBatch(
    encodeBatch({
      kind: KIND_DOWN,
      batch,
      origin: 'gw-a',
      clock: LOCAL,
      frames: [{ frame: testFrame({ bus: 'can0', data: Uint8Array.of(batch), tsUs: Date.now() * 1000 }), seq: batch + 1 }],
    }),
  );

/** One run of the agent's relay path over the state file `file`: what reached the bus, and the acks. */
function run(file: string) {
  const db = openStateDb(file);
  const sent: number[] = [];
  const acks: number[] = [];
  const tx = new TxQueue((f: CanFrame): SendResult => (sent.push(f.data[0]!), { ok: true, tsUs: Date.now() * 1000 }), { retryMs: 100, maxQueued: 100 });
  const d = new Downlink(tx, 60_000, new DownPosition(db));
  d.onAck = (n) => acks.push(n);
  return {
    d,
    sent,
    acks,
    stop: () => {
      tx.stop();
      d.savePosition();
      db.close();
    },
  };
}

test('a next run of the agent skips the batches of the same bridge process it already carried out (their resend after a restart), acknowledging them; another bridge process starts afresh', () => {
  const file = join(tempDir('canrelay-down-position-'), 'agent.sqlite');
  const first = run(file);
  first.d.setEpoch('epoch-1');
  for (const b of [0, 1, 2]) first.d.apply(down(b), LOCAL);
  assert.deepEqual(first.sent, [0, 1, 2]);
  first.stop(); // the link was down: the ack of 0..2 never reached the bridge
  const second = run(file);
  second.d.setEpoch('epoch-1');
  for (const b of [1, 2, 3]) second.d.apply(down(b), LOCAL); // the bridge resends 1 and 2, then sends 3
  assert.deepEqual(second.sent, [3], 'the resent batches are not transmitted again');
  assert.ok(second.acks.includes(2), 'the resends are acknowledged (the bridge frees its window)');
  assert.equal(second.acks.at(-1), 3);
  second.stop();
  // A new bridge process numbers from 0 again: nothing of the old position applies.
  const third = run(file);
  third.d.setEpoch('epoch-2');
  third.d.apply(down(0), LOCAL);
  assert.deepEqual(third.sent, [0]);
  third.stop();
});
