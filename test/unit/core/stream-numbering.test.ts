/**
 * The console stream's cluster hooks (core/console/console-stream.ts; used by cloud-bridge/cluster/
 * console-sync.ts): a mirror adopts ids numbered elsewhere, ignores duplicates, starts again at a hole or
 * a new run and disconnects the readers that would miss events; a node that starts numbering starts a
 * new run above every id it has seen; a node that does not number forwards (frames only when wanted).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConsoleStream, type StoredEvent, type StreamNumbering, type StreamSubscriber } from '../../../core/console/console-stream.js';
import { HistoryStore } from '../../../core/console/history-store.js';
import { idFloor, MemoryIdStore } from '../../../core/console/id-store.js';
import { logData } from '../../../core/console/normalize.js';
import { planResume } from '../../../core/console/resume.js';
import type { CanFrame } from '../../../core/can/frame.js';
import { testFrame } from '../../helpers/can-frames.js';

const NOW = Date.UTC(2026, 0, 1);

function stream(): ConsoleStream {
  return new ConsoleStream('dongles/d1', { historyEvents: 100, historySeconds: 60, maxRate: 1000, ids: new MemoryIdStore(), history: new HistoryStore(1 << 20), now: () => NOW });
}

class Reader implements StreamSubscriber {
  cursor: number;
  got: number[] = [];
  closed = false;
  constructor(s: ConsoleStream) {
    this.cursor = s.latest;
    s.subscribe(this, {});
  }
  onEvent(e: StoredEvent): void {
    if (e.id === this.cursor + 1) {
      this.cursor = e.id;
      this.got.push(e.id);
    }
  }
  onStreamClosed(): void {
    this.closed = true;
  }
}

const frameOf = (id: number): CanFrame => testFrame({ id, data: Uint8Array.of(1), tsUs: 1 });
const log = (n: number): string => JSON.stringify({ level: 'info', message: `m${n}` });

test('a mirror keeps the next id, ignores a duplicate, and serves resumes with the numbering node ids', () => {
  const s = stream();
  const run = 5_000;
  assert.equal(s.adopt(run, 5_000, 'log', log(0)), 'restarted', 'the first event of another run starts the mirror there');
  const r = new Reader(s);
  assert.equal(s.adopt(run, 5_001, 'log', log(1)), 'kept');
  assert.equal(s.adopt(run, 5_001, 'log', log(1)), 'duplicate');
  assert.equal(s.adopt(run, 5_002, 'log', log(2)), 'kept');
  assert.deepEqual(r.got, [5_001, 5_002]);
  assert.equal(s.latest, 5_002);
  assert.deepEqual(planResume(s.position(), { lastEventId: '5000' }), { cursor: 5_000 }, 'a Last-Event-ID from another node resumes here');
  assert.equal(s.after(5_000).event?.chunk, `id: 5001\nevent: log\ndata: ${log(1)}\n\n`);
});

test('a hole starts the mirror again at the next event: readers behind it are disconnected, a resume from before gets too_old', () => {
  const s = stream();
  for (let i = 0; i < 3; i++) s.adopt(7_000, 7_000 + i, 'log', log(i));
  const r = new Reader(s);
  assert.equal(s.adopt(7_000, 7_005, 'log', log(5)), 'restarted');
  assert.equal(r.closed, true, 'a reader at 7002 would silently miss 7003–7004: it is disconnected');
  assert.deepEqual(r.got, []);
  assert.equal(planResume(s.position(), { lastEventId: '7002' }).reset?.reason, 'too_old');
  assert.deepEqual(planResume(s.position(), { lastEventId: '7004' }), { cursor: 7_004 }, 'the id just before the hole continues cleanly');
});

test('a newer run starts the mirror again: a resume from the older run gets previous_run', () => {
  const s = stream();
  for (let i = 0; i < 3; i++) s.adopt(7_000, 7_000 + i, 'log', log(i));
  assert.equal(s.adopt(9_000, 9_000, 'log', log(9)), 'restarted');
  assert.equal(s.runStart, 9_000);
  assert.equal(planResume(s.position(), { lastEventId: '7002' }).reset?.reason, 'previous_run');
});

test('a node that starts numbering starts a new run above every id it has seen and the clock floor', () => {
  const s = stream();
  const high = idFloor(NOW) + 50_000; // the previous numbering node's clock ran ahead
  s.adopt(high - 10, high, 'log', log(1));
  const r = new Reader(s);
  s.startRun();
  assert.equal(s.runStart, high + 2, 'one id left unused between the runs');
  assert.equal(r.closed, true, 'its readers resume and get a stream_reset');
  assert.equal(planResume(s.position(), { lastEventId: String(high) }).reset?.reason, 'previous_run');
  assert.equal(s.publish({ type: 'log', data: logData('info', 'x') }), high + 2);
});

test('a node that does not number forwards events instead of storing them, frames only when wanted', () => {
  const s = stream();
  const forwarded: string[] = [];
  let wanted = false;
  const n: StreamNumbering = { here: false, numbered: () => assert.fail('not numbered here'), forward: (t, json) => forwarded.push(`${t} ${json}`), wantsFrames: () => wanted };
  s.numbering = n;
  const before = s.latest;
  assert.equal(s.publish({ type: 'log', data: logData('info', 'fwd') }), -1);
  s.offerFrame(frameOf(0x123));
  wanted = true;
  s.offerFrame(frameOf(0x124));
  assert.equal(s.latest, before, 'no id taken here');
  assert.equal(s.buffered, 0);
  assert.equal(forwarded.length, 2);
  assert.match(forwarded[0]!, /^log .*"fwd"/);
  assert.match(forwarded[1]!, /^can_frame .*"id":"0x124"/);
});

test('the numbering node tells every stored event, frames kept compactly included, with its id and run', () => {
  const s = stream();
  const told: [number, number, string][] = [];
  s.numbering = { here: true, numbered: (id, run, t) => told.push([id, run, t]), forward: () => assert.fail('numbered here'), wantsFrames: () => true };
  const id1 = s.publish({ type: 'log', data: logData('info', 'a') });
  s.offerFrame(frameOf(0x10));
  assert.deepEqual(told, [
    [id1, s.runStart, 'log'],
    [id1 + 1, s.runStart, 'can_frame'],
  ]);
  assert.equal(s.textAfter(id1 - 1, 1 << 20).length, 2);
});
