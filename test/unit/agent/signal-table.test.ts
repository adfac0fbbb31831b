/** agent/signals/signal-table.ts: the latest value of every signal, as GET /api/v1/signals shows it. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SignalTable } from '../../../agent/signals/signal-table.js';
import { SignalDecoder } from '../../../core/can/dbc-decode.js';
import { parseDbc } from '../../../core/can/dbc-parse.js';
import { testFrame } from '../../helpers/can-frames.js';

test('the latest value per signal: scaled values tidied, labels with their number, 64-bit integers exact', () => {
  const db = parseDbc(
    [
      'BO_ 100 A: 8 X',
      ' SG_ GEAR : 0|8@1+ (1,0) [0|15] "" X',
      ' SG_ TEMP : 8|8@1+ (0.1,-40) [-40|215] "degC" X',
      'BO_ 101 B: 8 X',
      ' SG_ SERIAL : 0|64@1+ (1,0) [0|0] "" X',
      'VAL_ 100 GEAR 3 "D" ;',
      'VAL_ 101 SERIAL 18446744073709551615 "none" ;',
      '',
    ].join('\n'),
    't.dbc',
  );
  const table = new SignalTable();
  table.use(new SignalDecoder([{ bus: undefined, db }]));
  table.frame(testFrame({ id: 100, data: Buffer.from('0301', 'hex'), tsUs: 1_000_000 }));
  table.frame(testFrame({ id: 101, data: Buffer.from('0123456789abcdef', 'hex'), tsUs: 2_000_000 }));
  const byName = Object.fromEntries(table.readings().map((r) => [r.signal, [r.value, r.numeric]]));
  assert.deepEqual(byName, { GEAR: ['D', 3], TEMP: [-39.9, undefined], SERIAL: ['17279655951921914625', undefined] });
  table.frame(testFrame({ id: 101, data: Buffer.from('ffffffffffffffff', 'hex'), tsUs: 3_000_000 }));
  const serial = table.readings().find((r) => r.signal === 'SERIAL')!;
  assert.deepEqual([serial.value, serial.numeric], ['none', '18446744073709551615'], 'the label, and the exact number under it');
});
