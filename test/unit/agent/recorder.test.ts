/**
 * agent/recording/recorder.ts on real files: two DELETEs of one recording at once count its bytes off once
 * (twice, the disk bound let the folder grow past --record-max-bytes), and a stop asked while the
 * recording is still starting stops it (it answered and the recording ran on), recordings of older agents
 * (an error past its bound, a filter written before ids had a kind) are listed, and a finished recording
 * whose file was deleted outside the agent is listed incomplete.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { Recorder } from '../../../agent/recording/recorder.js';
import { newRecordingMeta } from '../../../agent/recording/recording-meta.js';
import { testFrame } from '../../helpers/can-frames.js';
import { tempDir } from '../../helpers/processes.js';

/** A recorder opened on `dir` (a new folder, or one an older agent wrote). */
async function recorder(dir = tempDir('canrelay-recorder-')): Promise<{ rec: Recorder; dir: string }> {
  const rec = new Recorder(
    { dir, maxBytes: 1 << 20, rotateBytes: 1 << 16, gzip: false, flushMs: 5 },
    () => undefined,
    () => ['can0'],
  );
  await rec.open();
  return { rec, dir };
}

/** A recording's metadata as an older agent left it in `dir` (a stopped recording unless `fields` say otherwise). */
function writeOlderMeta(dir: string, id: string, fields: Record<string, unknown>): void {
  const meta = {
    ...newRecordingMeta({ id, state: 'stopped', started_at: '2026-11-30T12:00:00.000Z', stopped_at: '2026-11-30T12:01:00.000Z', stop_reason: 'requested', next_part: 2 }),
    ...fields,
  };
  writeFileSync(join(dir, `${id}.json`), JSON.stringify(meta));
}

test('two DELETEs of one recording at once: both answered, its bytes counted off once', async () => {
  const { rec, dir } = await recorder();
  const keep = await rec.start({});
  for (let i = 0; i < 100; i++) rec.record(testFrame({ data: Uint8Array.of(i) }));
  await rec.stop(keep.id);
  const gone = await rec.start({});
  for (let i = 0; i < 100; i++) rec.record(testFrame({ data: Uint8Array.of(i) }));
  await rec.stop(gone.id);
  const keptBytes = rec.info(keep.id).bytes;
  assert.ok(keptBytes > 0 && rec.bytesOnDisk === keptBytes + rec.info(gone.id).bytes);
  await Promise.all([rec.delete(gone.id), rec.delete(gone.id)]);
  assert.equal(rec.bytesOnDisk, keptBytes, 'only the deleted recording counted off, once');
  assert.deepEqual(
    (await rec.list()).map((r) => r.id),
    [keep.id],
  );
  assert.ok(
    readdirSync(dir).every((f) => !f.startsWith(gone.id)),
    'its files are gone',
  );
});

test('a stop asked while the recording is still starting stops it once started', async () => {
  const { rec } = await recorder();
  const starting = rec.start({});
  const id = (await rec.list())[0]!.id; // listed from the moment the start was asked
  const stopped = await rec.stop(id, 'stopped at once');
  await starting;
  assert.equal(stopped.state, 'stopped');
  assert.equal(stopped.stop_reason, 'stopped at once');
  assert.equal(rec.running, 0, 'nothing left recording');
});

test('a recording whose metadata carries an error past its bound (an older agent, a long --record-dir) is listed, its error cut', async () => {
  const dir = tempDir('canrelay-recorder-');
  const id = '20261130T120000Z-abcdef';
  writeOlderMeta(dir, id, {
    state: 'failed',
    frames_dropped: 3,
    problems: ['a write failed'],
    stop_reason: 'write error',
    error: 'disk full writing /' + 'd'.repeat(400) + '/x.log',
  });
  const { rec } = await recorder(dir);
  const [listed] = await rec.list();
  assert.equal(listed?.id, id);
  assert.equal(listed!.error!.length, 300);
});

test('a finished recording whose file was deleted outside the agent is listed incomplete, saying so; put back, complete again', async () => {
  const { rec, dir } = await recorder();
  const r = await rec.start({});
  for (let i = 0; i < 100; i++) rec.record(testFrame({ data: Uint8Array.of(i) }));
  await rec.stop(r.id);
  const [before] = await rec.list();
  assert.equal(before!.complete, true);
  const file = readdirSync(dir).find((f) => f.startsWith(r.id) && f.endsWith('.log'))!;
  const kept = readFileSync(join(dir, file));
  rmSync(join(dir, file)); // a clean-up script, or a technician tidying the disk
  const [after] = await rec.list();
  assert.equal(after!.complete, false);
  assert.match(after!.problems[0]!, /^1 of its 1 files deleted outside the agent/);
  assert.ok(after!.problems[0]!.length <= 200, 'within the listing schema');
  writeFileSync(join(dir, file), kept);
  assert.equal((await rec.list())[0]!.complete, true, 'a file put back is there again: nothing was written down');
});

test('recordings made before ids had a kind list and load unchanged, their filter text as it was (a mixed range included)', async () => {
  // "0-1FFFFFFF" took standard and extended ids alike and is refused today (two entries are asked for);
  // "123" took the extended 0x00000123 too. A stored filter is a record of what was asked, never parsed again.
  const dir = tempDir('canrelay-recorder-');
  const line = '(1700000000.000001) can0 00000123#01 R\n';
  const old = [
    ['20261130T120000Z-abcdef', '0-1FFFFFFF'],
    ['20261130T120100Z-abcdef', '123'],
  ] as const;
  for (const [id, ids] of old) {
    writeFileSync(join(dir, `${id}.0001.log`), line);
    writeOlderMeta(dir, id, { ids, frames: 1, parts: [{ name: `${id}.0001.log`, offset: 0, bytes: line.length }] });
  }
  const { rec } = await recorder(dir);
  assert.deepEqual(
    (await rec.list()).map((r) => [r.id, r.ids, r.state, r.frames, r.bytes, r.complete]).sort(),
    old.map(([id, ids]) => [id, ids, 'stopped', 1, line.length, true]),
  );
  for (const [id] of old) assert.deepEqual(rec.parts(id).meta.parts, [{ name: `${id}.0001.log`, offset: 0, bytes: line.length }], 'its file is there to download');
  assert.equal(rec.bytesOnDisk, 2 * line.length);
});
