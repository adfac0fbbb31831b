/** agent/recording/recording-uplink.ts: recording requests from the bridge, answered at most 64 at a time. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MAX_RECORDING_REQUESTS } from '../../../core/uplink/messages.js';
import { answerRecordingAsk, RecordingAnswers, type RecordingAnswer, type RecordingAsk } from '../../../agent/recording/recording-uplink.js';

test('recording answers: past 64 in progress a request is answered 503 at once; once some finish, requests are answered again', async () => {
  const waiting: (() => void)[] = [];
  // An answer that takes as long as the test says (a slow disk).
  const slow = (m: RecordingAsk): Promise<RecordingAnswer> => new Promise((resolve) => waiting.push(() => resolve({ t: 'rec_listing', req: m.req, recordings: [] })));
  const answers = new RecordingAnswers(slow);
  const got: RecordingAnswer[] = [];
  for (let req = 1; req <= 100; req++) answers.handle({ t: 'rec_list', req }, (a) => got.push(a));
  assert.equal(waiting.length, MAX_RECORDING_REQUESTS, 'only 64 reads started');
  assert.equal(got.length, 100 - MAX_RECORDING_REQUESTS, 'the rest answered at once');
  assert.ok(got.every((a) => a.t === 'rec_error' && a.status === 503 && /more than 64/.test(a.error)));
  for (const done of waiting.splice(0, 10)) done();
  await new Promise((r) => setImmediate(r));
  answers.handle({ t: 'rec_list', req: 101 }, (a) => got.push(a));
  assert.equal(waiting.length, MAX_RECORDING_REQUESTS - 10 + 1, 'room again for a new read');
  for (const done of waiting.splice(0)) done();
  await new Promise((r) => setImmediate(r));
  assert.equal(got.filter((a) => a.t === 'rec_listing').length, MAX_RECORDING_REQUESTS + 1);
});

test('recording answers: an agent that does not record says so', async () => {
  const got: RecordingAnswer[] = [];
  new RecordingAnswers((m) => answerRecordingAsk(undefined, m)).handle({ t: 'rec_list', req: 7 }, (a) => got.push(a));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(got, [{ t: 'rec_error', req: 7, status: 503, error: 'this agent does not record' }]);
});
