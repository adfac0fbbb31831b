/**
 * The uplink's control messages (core/uplink/messages.ts): the data_ack fast path accepts exactly what the
 * zod schema accepts, with the same result, on both sides; everything else still goes through the schema.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AgentMessage, BridgeMessage, parseAgentMessage, parseBridgeMessage } from '../../../core/uplink/messages.js';

/** What the schema alone says about a text: the message, or undefined when it is refused. */
function bySchema(schema: typeof AgentMessage | typeof BridgeMessage, text: string): unknown {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return undefined;
  }
  const r = schema.safeParse(json);
  return r.success ? r.data : undefined;
}

const TEXTS = [
  '{"t":"data_ack","batch":0}',
  '{"t":"data_ack","batch":7}',
  '{"t":"data_ack","batch":180000000000000}',
  `{"t":"data_ack","batch":${Number.MAX_SAFE_INTEGER}}`,
  `{"t":"data_ack","batch":${Number.MAX_SAFE_INTEGER + 1}}`,
  '{"t":"data_ack","batch":9999999999999999}',
  '{"t":"data_ack","batch":99999999999999999}',
  '{"t":"data_ack","batch":-1}',
  '{"t":"data_ack","batch":1.5}',
  '{"t":"data_ack","batch":1.0}',
  '{"t":"data_ack","batch":1e3}',
  '{"t":"data_ack","batch":007}',
  '{"t":"data_ack","batch":"7"}',
  '{"t":"data_ack","batch":null}',
  '{"t":"data_ack"}',
  '{"t":"data_ack","batch":7,"x":1}',
  '{"batch":7,"t":"data_ack"}',
  '{ "t": "data_ack", "batch": 7 }',
  '{"t":"data_ack","batch":7} ',
  '{"t":"data_ack","batch":7}\n',
  '{"t":"data_acks","batch":7}',
  '{"t":"data_ack","batch":7}}',
  '{"t":"event_ack","seq":7}',
];

test('uplink messages: data_ack by its fast path agrees with the schema for every text, on both sides', () => {
  let fast = 0;
  for (const text of TEXTS) {
    for (const [schema, parse] of [
      [AgentMessage, parseAgentMessage],
      [BridgeMessage, parseBridgeMessage],
    ] as const) {
      const expected = bySchema(schema, text);
      const got = parse(text);
      assert.equal(got.ok, expected !== undefined, `${text}: accepted ${got.ok}, schema ${expected !== undefined}`);
      if (got.ok) assert.deepEqual(got.msg, expected, text);
      else assert.ok(got.error.length > 0, text);
      if (got.ok && got.msg.t === 'data_ack') fast++;
    }
  }
  // Negative control: the cases above include accepted acks (the fast path's input), not only refusals.
  assert.ok(fast >= 8, `${fast} data_acks accepted`);
});
