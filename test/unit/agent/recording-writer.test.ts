/**
 * One recording's writer against a disk that does not answer: the intake (offer) stays synchronous,
 * the waiting lines stay within the buffer, every frame that did not fit is counted and the recording
 * is marked incomplete; once the disk answers, everything accepted is written (real files).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { CanFrame } from '../../../core/can/frame.js';
import { newRecordingMeta, PROBLEM } from '../../../agent/recording/recording-meta.js';
import { RecordingWriter } from '../../../agent/recording/recording-writer.js';
import { tempDir } from '../../helpers/processes.js';
import { waitForValue } from '../../helpers/until.js';
import { testFrame } from '../../helpers/can-frames.js';

const frame = (i: number): CanFrame => testFrame({ data: new Uint8Array([i >>> 24, (i >>> 16) & 255, (i >>> 8) & 255, i & 255]), tsUs: 1_700_000_000_000_000 + i });

test('a disk that stalls: offer never waits, the buffer holds, drops are counted, the rest is written', async () => {
  const dir = tempDir('canrelay-writer-');
  const meta = newRecordingMeta({ id: '20261129T000000Z-000001' });
  let openDisk!: () => void;
  const disk = new Promise<void>((r) => (openDisk = r));
  let reserved = 0;
  const BUFFER = 64 * 1024;
  const w = new RecordingWriter(
    meta,
    { buses: null, ids: null },
    { dir, rotateBytes: 1 << 20, bufferBytes: BUFFER, flushMs: 10 },
    {
      reserve: async (n) => {
        await disk; // the disk does not answer until the test says so
        reserved += n;
        return true;
      },
      release: () => undefined,
      save: async () => undefined,
      ended: () => undefined,
    },
  );
  await w.begin(undefined, () => undefined);
  const N = 20_000; // ~40 bytes a line: far more than the 64 KiB buffer
  for (let i = 0; i < N; i++) w.offer(frame(i)); // synchronous: returns while the disk is stalled
  await waitForValue(
    async () => meta.frames_dropped,
    (d) => d > 0,
    5000,
    'drops to be counted',
  );
  assert.ok(meta.problems.includes(PROBLEM.dropped), 'marked incomplete');
  assert.equal(meta.frames, 0, 'nothing written while the disk is stalled');
  openDisk();
  await w.stop('test over');
  assert.equal(meta.state, 'stopped');
  assert.equal(meta.frames + meta.frames_dropped, N, 'every offered frame is either written or counted as dropped');
  const text = readFileSync(join(dir, meta.parts[0]!.name), 'latin1');
  const lines = text.trimEnd().split('\n');
  assert.equal(lines.length, meta.frames);
  assert.ok(text.length <= 2 * BUFFER, `at most the buffer (plus the chunk in hand) was held: ${text.length} bytes`);
  assert.equal(reserved, text.length);
  // The lines that were kept are the first ones, in order (later ones found the buffer full).
  lines.forEach((l, i) => assert.match(l, new RegExp(`^\\(1700000000\\.${String(i).padStart(6, '0')}\\) can0 100#${i.toString(16).toUpperCase().padStart(8, '0')} R$`)));
});
