/**
 * agent/sources/kernel-held-frames.ts on a sysfs of temp files: what the SocketCAN source relies on to know
 * how many of its frames the kernel holds and which are stale (socketcan-source.test.ts covers the source's
 * use of it: the bound on sends, the warning, the flush).
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { KERNEL_STUCK_MS, KernelHeldFrames } from '../../../agent/sources/kernel-held-frames.js';

function sysfs(t: { after(fn: () => void): void }): { root: string; setTx(packets: number, carrierChanges?: number): void } {
  const root = mkdtempSync(join(tmpdir(), 'canrelay-held-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const dir = join(root, 'class', 'net', 'can0');
  mkdirSync(join(dir, 'statistics'), { recursive: true });
  const setTx = (packets: number, carrierChanges = 0): void => {
    writeFileSync(join(dir, 'statistics', 'tx_packets'), `${packets}\n`);
    writeFileSync(join(dir, 'statistics', 'tx_dropped'), '0\n');
    writeFileSync(join(dir, 'carrier_changes'), `${carrierChanges}\n`);
  };
  setTx(0);
  return { root, setTx };
}

test('a frame is stale once past its deadline and in the kernel KERNEL_STUCK_MS or longer; the oldest goes out first', (t) => {
  const fs = sysfs(t);
  const held = new KernelHeldFrames(fs.root, 'can0', 8);
  held.wrote(1000, 1010); // deadline 10 ms after it was handed over
  held.wrote(1100, Infinity);
  held.wrote(1150, 1160);
  assert.equal(held.stale(1020), 0, 'past its deadline, but handed over only 20 ms ago');
  assert.equal(held.stale(1000 + KERNEL_STUCK_MS), 1);
  assert.equal(held.stale(1150 + KERNEL_STUCK_MS), 2, 'no deadline: never stale');
  assert.equal(held.oldestMs(1300), 300);
  fs.setTx(1); // the oldest went out
  held.refresh();
  assert.equal(held.count, 2);
  assert.equal(held.stale(1150 + KERNEL_STUCK_MS), 1);
  assert.equal(held.oldestMs(1300), 200);
});

test('what is tracked stays bounded with no limit on sends, and the count stays right across compaction', (t) => {
  const fs = sysfs(t);
  const held = new KernelHeldFrames(fs.root, 'can0', 0);
  for (let i = 0; i < 5000; i++) held.wrote(i, Infinity);
  assert.equal(held.count, 4096, 'the oldest forgotten past 4,096');
  assert.equal(held.full(), false, '0: never full');
  fs.setTx(3000);
  held.refresh();
  assert.equal(held.count, 1096);
  assert.equal(held.oldestMs(5000), 5000 - (904 + 3000), 'the oldest left is the 3,905th');
  fs.setTx(3000, 1);
  held.refresh();
  assert.equal(held.count, 0, 'the carrier changed: the kernel emptied the queue');
});
