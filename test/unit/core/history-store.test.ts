/**
 * The console history under one memory budget: compact events render exactly as the live ones, the
 * budget holds whatever the number of streams, a resume into forgotten history gets stream_reset (never a
 * gap), and an event shown on a dongle's and its group's console is stored once.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CanFrame } from '../../../core/can/frame.js';
import { frameJsonLength, sseLength } from '../../../core/console/compact-event.js';
import type { StoredEvent, StreamSubscriber } from '../../../core/console/console-stream.js';
import { MemoryIdStore } from '../../../core/console/id-store.js';
import { canFrameData, logData } from '../../../core/console/normalize.js';
import { StreamManager } from '../../../core/console/stream-manager.js';

function randomFrame(i: number): CanFrame {
  const r = (n: number): number => Math.floor(Math.random() * n);
  const fd = r(4) === 0;
  const len = fd ? [0, 1, 8, 12, 20, 48, 64][r(7)]! : r(9);
  const data = new Uint8Array(len).map(() => r(256));
  const ext = r(2) === 0;
  const err = !ext && r(10) === 0;
  return {
    bus: ['can0', 'vcan12', 'a', 'x'.repeat(32), 'bus_1.2:3-4'][r(5)]!,
    id: ext ? r(0x20000000) : err ? r(0x20000000) : r(0x800),
    ext,
    rtr: !fd && r(8) === 0,
    err,
    fd,
    brs: fd && r(2) === 0,
    esi: fd && r(2) === 0,
    dlc: fd ? len : len === 8 ? 8 + r(8) : len,
    data,
    tsUs: i === 0 ? 0 : Date.now() * 1000 + r(1e9),
    direction: r(2) === 0 ? 'rx' : 'tx',
  };
}

/** Frames kept compactly (error frames are kept as text). */
const plainFrame = (i: number): CanFrame => ({ ...randomFrame(i), err: false });

const settings = (memoryBytes: number, historyEvents = 10_000, maxRate = 1_000_000) => ({
  historyEvents,
  historySeconds: 3600,
  historyMemoryBytes: memoryBytes,
  maxRate,
  ids: new MemoryIdStore(),
});

/** A subscriber that records what it is handed and pulls the rest from the ring, like the SSE writer. */
class Reader implements StreamSubscriber {
  cursor = 0;
  readonly got: StoredEvent[] = [];
  onEvent(e: StoredEvent): void {
    this.got.push(e);
    this.cursor = e.id;
  }
  onStreamClosed(): void {}
}

test('a frame kept compactly renders exactly as the live builder makes it, and its length is known without rendering', () => {
  const m = new StreamManager(settings(8 << 20));
  try {
    const s = m.get('dongles/d');
    const r = new Reader();
    r.cursor = s.subscribe(r, {}).cursor;
    const frames: { f: CanFrame; dongle?: string }[] = [];
    for (let i = 0; i < 2000; i++) {
      const f = randomFrame(i);
      const dongle = i % 3 === 0 ? undefined : `gw-${i}`;
      frames.push({ f, dongle });
      s.offerFrame(f, dongle);
    }
    assert.equal(r.got.length, frames.length);
    for (let i = 0; i < frames.length; i++) {
      const { f, dongle } = frames[i]!;
      const data = canFrameData(f);
      if (dongle !== undefined) data.dongle = dongle;
      const json = JSON.stringify(data);
      const id = r.got[i]!.id;
      const want = `id: ${id}\nevent: can_frame\ndata: ${json}\n\n`;
      assert.equal(r.got[i]!.chunk, want, 'live');
      assert.equal(s.after(id - 1).event?.chunk, want, 'replayed from the ring');
      assert.equal(sseLength(id, 'can_frame', Buffer.byteLength(json)), Buffer.byteLength(want));
      // Error frames (their words vary) are kept as text, never measured from their fields.
      if (f.err) continue;
      assert.equal(frameJsonLength(f, undefined, dongle), json.length, `length of ${json}`);
      for (const rep of [1, 9, 10, 12345]) assert.equal(frameJsonLength(f, rep, dongle), JSON.stringify({ ...canFrameData(f, rep), ...(dongle ? { dongle } : {}) }).length);
    }
    for (const id of [0, 9, 10, 99_999, 1e8, 1_732_912_345_678, 1e15 - 1, 1e15])
      assert.equal(sseLength(id, 'log', 2), `id: ${id}\nevent: log\ndata: {}\n\n`.length, `SSE length with id ${id}`);
    // The client's backlog is counted in the bytes it would receive.
    const first = r.got[0]!.id;
    const total = r.got.reduce((n, e) => n + Buffer.byteLength(e.chunk), 0);
    assert.equal(s.backlogBytes(first - 1), total);
  } finally {
    m.close();
  }
});

test('the budget holds for 500 streams filled far past it; evicted history resumes with stream_reset, kept history without a gap', () => {
  const budget = 1 << 20;
  const m = new StreamManager(settings(budget));
  try {
    const streams = Array.from({ length: 500 }, (_, i) => m.get(`dongles/d${i}`));
    const firstIds = streams.map((s) => s.latest + 1);
    let maxBytes = 0;
    // ~500 × 400 events of ~60 bytes compact (~12 MB of history, ~45 MB as SSE text): 12× the budget.
    for (let round = 0; round < 400; round++) {
      for (let i = 0; i < streams.length; i++) {
        const s = streams[i]!;
        if (round % 50 === 7) s.publish({ type: 'log', data: logData('info', `round ${round} of ${s.name}`) });
        else s.offerFrame(randomFrame(round + 1), `d${i}`);
        maxBytes = Math.max(maxBytes, m.history.bytes);
      }
    }
    assert.ok(maxBytes <= budget, `history bytes ${maxBytes} stay within the budget ${budget}`);
    assert.ok(m.history.counters.segmentsEvicted > 0, 'the budget was reached');
    for (let i = 0; i < streams.length; i++) {
      const s = streams[i]!;
      const pos = s.position();
      assert.ok(pos.oldest !== null && pos.oldest > firstIds[i]!, `${s.name} lost its oldest events to the budget`);
      // A resume from the first event: that history is gone, so stream_reset (too_old), then live.
      const reset = s.subscribe(new Reader(), { lastEventId: String(firstIds[i]) });
      assert.equal(reset.reset?.reason, 'too_old');
      assert.equal(reset.cursor, s.latest);
      // A resume from the oldest kept event: every later event, contiguous, up to the latest.
      const ok = s.subscribe(new Reader(), { lastEventId: String(pos.oldest) });
      assert.equal(ok.reset, undefined);
      let cursor = ok.cursor;
      while (cursor < s.latest) {
        const { event, gone } = s.after(cursor);
        assert.equal(gone, false, 'no gap');
        assert.equal(event!.id, cursor + 1);
        cursor = event!.id;
      }
    }
  } finally {
    m.close();
  }
});

test('per-stream limits still apply below the budget, and an idle stream gives its index memory back', () => {
  const m = new StreamManager({ ...settings(64 << 20, 100), historySeconds: 1, now: () => now });
  let now = 1_000_000;
  try {
    const s = m.get('dongles/d');
    assert.equal(m.history.bytes, 0, 'a stream nobody fed costs no history memory');
    for (let i = 0; i < 1000; i++) s.offerFrame(plainFrame(i + 1));
    assert.equal(s.buffered, 100, '--history-events');
    now += 1500;
    s.tick();
    assert.equal(s.buffered, 0, '--history-seconds');
    assert.equal(s.subscribe(new Reader(), { lastEventId: String(s.latest - 1) }).reset?.reason, 'too_old');
    const idle = m.history.bytes;
    s.tick();
    assert.ok(m.history.bytes <= idle && m.history.bytes < 64 * 1024 + 1, 'only the segment is left, no index');
  } finally {
    m.close();
  }
});

test("an event shown on a dongle's and its group's console is stored once, under each stream's own ids", () => {
  const m = new StreamManager(settings(8 << 20));
  try {
    const d = m.get('dongles/a');
    const g = m.get('groups/g');
    for (let i = 0; i < 50; i++) g.publish({ type: 'log', data: logData('info', 'offset the group ids') });
    const before = { ...m.history.counters };
    const frames = Array.from({ length: 100 }, (_, i) => plainFrame(i + 1));
    for (const f of frames) {
      d.offerFrame(f, 'a');
      g.offerFrame(f, 'a');
    }
    const ev = { type: 'presence' as const, data: { ts: '2026-11-29T00:00:00.000000Z', state: 'online' as const, dongle: 'a' } };
    d.publish(ev);
    g.publish(ev);
    assert.equal(m.history.counters.appended - before.appended, 101, 'each event stored once');
    assert.equal(m.history.counters.shared - before.shared, 101);
    // Each console replays them under its own ids, with the same data.
    const dFirst = d.latest - 100;
    const gFirst = g.latest - 100;
    assert.notEqual(dFirst, gFirst);
    for (let k = 0; k <= 100; k++) {
      const a = d.after(dFirst + k - 1).event!;
      const b = g.after(gFirst + k - 1).event!;
      assert.equal(a.id, dFirst + k);
      assert.equal(b.id, gFirst + k);
      assert.equal(a.chunk.slice(a.chunk.indexOf('\n')), b.chunk.slice(b.chunk.indexOf('\n')));
    }
  } finally {
    m.close();
  }
});
