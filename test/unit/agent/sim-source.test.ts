import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { frameProblem, type CanFrame } from '../../../core/can/frame.js';
import type { LogLevel } from '../../../core/console/events.js';
import { SimSource, vehicleState } from '../../../agent/sources/sim.js';
import type { SourceSink } from '../../../agent/sources/source.js';
import { testFrame } from '../../helpers/can-frames.js';

class RecordingSink implements SourceSink {
  readonly frames: CanFrame[] = [];
  readonly states: Array<[string, 'up' | 'down', string | undefined]> = [];
  readonly logs: Array<{ level: LogLevel; message: string; code?: string }> = [];
  frame(frame: CanFrame): void {
    this.frames.push(frame);
  }
  busState(bus: string, state: 'up' | 'down', reason?: string): void {
    this.states.push([bus, state, reason]);
  }
  log(level: LogLevel, message: string, code?: string): void {
    this.logs.push({ level, message, code });
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const hex = (d: Uint8Array): string => Buffer.from(d).toString('hex').toUpperCase();

/** Honda nibble checksum, written independently of the implementation. */
function hondaChecksumOk(f: CanFrame): boolean {
  let sum = 0;
  for (const ch of f.id.toString(16)) sum += parseInt(ch, 16);
  const n = f.data.length;
  for (let i = 0; i < n; i++) sum += (f.data[i]! >> 4) + (i < n - 1 ? f.data[i]! & 15 : 0);
  return ((8 - sum) & 15) === (f.data[n - 1]! & 15);
}

/**
 * Runs the simulator for about `ms`. `seconds` is the span of the frames' own timestamps (each stamped
 * with its due time), not the wall clock: a loaded machine delays the ticks, and the sim catches up
 * (up to 1 s), so rates judged by stamps test the schedule, not this machine's speed.
 */
async function run(options: ConstructorParameters<typeof SimSource>[0], ms: number): Promise<{ sink: RecordingSink; seconds: number }> {
  const sim = new SimSource(options);
  const sink = new RecordingSink();
  await sim.start(sink);
  await sleep(ms);
  await sim.stop();
  const f = sink.frames;
  assert.ok(f.length >= 2, `the simulator produced ${f.length} frames`);
  return { sink, seconds: (f.at(-1)!.tsUs - f[0]!.tsUs) / 1e6 };
}

function countById(frames: CanFrame[]): Map<number, CanFrame[]> {
  const m = new Map<number, CanFrame[]>();
  for (const f of frames) {
    const list = m.get(f.id) ?? [];
    list.push(f);
    m.set(f.id, list);
  }
  return m;
}

test('produces about the configured rate with a realistic mix of ids', async () => {
  const { sink, seconds } = await run({ rate: 2000 }, 1000);
  const rate = sink.frames.length / seconds;
  assert.ok(rate > 0.7 * 2000 && rate < 1.3 * 2000, `rate ${rate.toFixed(0)} frames/s, configured 2000`);

  const byId = countById(sink.frames);
  assert.ok(byId.size >= 40, `only ${byId.size} distinct ids`);
  const ext = sink.frames.filter((f) => f.ext);
  assert.ok(ext.length > 0, 'at least one extended id');
  assert.ok(ext.every((f) => f.id > 0x7ff));
  // Fast ids: the 100 Hz ids of the capture, at rate 2000 (x1.2) about 120 per second.
  const fast = [...byId.values()].filter((l) => l.length / seconds >= 80);
  assert.ok(fast.length >= 4, `only ${fast.length} ids at >= 80 Hz`);
  const slow = [...byId.values()].filter((l) => l.length / seconds <= 3);
  assert.ok(slow.length >= 5, `only ${slow.length} slow ids`);

  for (const f of sink.frames) {
    assert.equal(frameProblem(f), null);
    assert.equal(f.bus, 'can0');
    assert.equal(f.direction, 'rx');
  }
  assert.deepEqual(sink.states, [
    ['can0', 'up', undefined],
    ['can0', 'down', 'simulator stopped'],
  ]);
});

test('the rate option scales the whole mix', async () => {
  const { sink, seconds } = await run({ rate: 500, bus: 'vcan3' }, 1000);
  const rate = sink.frames.length / seconds;
  assert.ok(rate > 0.7 * 500 && rate < 1.3 * 500, `rate ${rate.toFixed(0)} frames/s, configured 500`);
  assert.ok(sink.frames.every((f) => f.bus === 'vcan3'));
});

test('timestamps are increasing, recent and never in the future', async () => {
  const { sink } = await run({ rate: 3000 }, 300);
  const end = Date.now() * 1000;
  const frames = sink.frames;
  assert.ok(frames.length > 300);
  for (let i = 1; i < frames.length; i++) assert.ok(frames[i]!.tsUs >= frames[i - 1]!.tsUs, `frame ${i} goes back in time`);
  assert.ok(frames.at(-1)!.tsUs <= end + 2000);
  assert.ok(frames[0]!.tsUs > end - 5_000_000);
});

test('payloads change: rolling counters, valid checksums, moving sensors; static bytes stay', async () => {
  const { sink } = await run({ rate: 2000 }, 600);
  const byId = countById(sink.frames);
  const honda = sink.frames.filter((f) => !f.ext && f.id !== 0x255);
  assert.ok(honda.every(hondaChecksumOk), 'every Honda-style frame carries a valid checksum');
  // The 2-bit rolling counter (bits 5-4 of the last byte) counts up by one per frame.
  for (const [id, list] of byId) {
    if (id === 0x255 || list[0]!.ext || list.length < 3) continue;
    for (let i = 1; i < list.length; i++) {
      const prev = (list[i - 1]!.data.at(-1)! >> 4) & 3;
      const cur = (list[i]!.data.at(-1)! >> 4) & 3;
      assert.equal(cur, (prev + 1) & 3, `counter of 0x${id.toString(16)}`);
    }
  }
  // A noisy sensor message takes many different values; a static one only differs in its last byte.
  const noisy = byId.get(0x094)!;
  assert.ok(new Set(noisy.map((f) => hex(f.data.subarray(0, 7)))).size > 10, '0x094 payload wanders');
  const statics = byId.get(0x140)!;
  assert.equal(new Set(statics.map((f) => hex(f.data.subarray(0, 7)))).size, 1, '0x140 is static except counter/checksum');
  // RPM at idle in the powertrain message (bytes 2-3), a plausible value.
  const rpm = (byId.get(0x17c)![0]!.data[2]! << 8) | byId.get(0x17c)![0]!.data[3]!;
  assert.ok(rpm >= 600 && rpm <= 1300, `idle rpm ${rpm}`);
});

test('the drive cycle moves smoothly', () => {
  assert.equal(vehicleState(5).speedKph, 0);
  assert.ok(vehicleState(40).speedKph > 70);
  let prev = vehicleState(0);
  for (let t = 0.01; t < 180; t += 0.01) {
    const v = vehicleState(t);
    assert.ok(Math.abs(v.speedKph - prev.speedKph) < 0.5, `speed jumps at ${t.toFixed(2)} s`);
    assert.ok(Math.abs(v.coolantC - prev.coolantC) < 0.1, `coolant jumps at ${t.toFixed(2)} s`);
    assert.ok(v.rpm >= 600 && v.rpm <= 7000);
    prev = v;
  }
  assert.ok(vehicleState(600).coolantC > 80, 'the engine warms up');
});

test('the same seed gives the same frames; another seed differs', async () => {
  const [a, b, c] = await Promise.all([run({ seed: 42 }, 300), run({ seed: 42 }, 300), run({ seed: 7 }, 300)]);
  const n = Math.min(a.sink.frames.length, b.sink.frames.length, c.sink.frames.length);
  assert.ok(n > 200, `only ${n} frames`);
  const key = (f: CanFrame): string => `${f.id.toString(16)}#${hex(f.data)}`;
  const ka = a.sink.frames.slice(0, n).map(key);
  assert.deepEqual(b.sink.frames.slice(0, n).map(key), ka);
  assert.notDeepEqual(c.sink.frames.slice(0, n).map(key), ka);
  // Relative timing is reproducible too (to the microsecond rounding).
  const rel = (fs: CanFrame[]): number[] => fs.slice(0, n).map((f) => f.tsUs - fs[0]!.tsUs);
  const ra = rel(a.sink.frames);
  const rb = rel(b.sink.frames);
  assert.ok(ra.every((v, i) => Math.abs(v - rb[i]!) <= 2));
});

test('send: accepted on its bus, refused elsewhere; answers an OBD-II RPM request from 0x7E8', async () => {
  const sim = new SimSource({ rate: 200 });
  const sink = new RecordingSink();
  const req = testFrame({ id: 0x7df, data: Uint8Array.from([0x02, 0x01, 0x0c, 0, 0, 0, 0, 0]), tsUs: 0, direction: 'tx' });
  assert.equal(sim.send(req).ok, false, 'not running yet');
  await sim.start(sink);
  const r = sim.send(req);
  assert.ok(r.ok);
  const other = sim.send({ ...req, bus: 'can1' });
  assert.ok(!other.ok && !other.busy && other.error.includes('can1'));
  const invalid = sim.send({ ...req, dlc: 3 });
  assert.ok(!invalid.ok && /dlc/.test(invalid.error));
  // An error frame is a controller's report, never traffic: no source sends one (SocketCAN's refuses it too).
  const errorFrame = sim.send({ ...req, err: true, id: 0x004, dlc: 8, data: new Uint8Array(8) });
  assert.ok(!errorFrame.ok && /error frames cannot be sent/.test(errorFrame.error));
  sim.send({ ...req, data: Uint8Array.from([0x02, 0x01, 0x7a, 0, 0, 0, 0, 0]) }); // unsupported PID: silence
  await sleep(100);
  await sim.stop();

  const answers = sink.frames.filter((f) => f.id === 0x7e8);
  assert.equal(answers.length, 1, 'one answer, none for the unsupported PID');
  const a = answers[0]!;
  assert.equal(a.direction, 'rx');
  assert.deepEqual([...a.data.subarray(0, 3)], [0x04, 0x41, 0x0c]);
  const rpm = ((a.data[3]! << 8) | a.data[4]!) / 4;
  assert.ok(rpm >= 600 && rpm <= 1300, `rpm ${rpm}`);
  assert.ok(r.ok && a.tsUs >= r.tsUs + 1000, 'answered a couple of milliseconds after the request');
  // The request itself is not echoed back.
  assert.equal(sink.frames.filter((f) => f.id === 0x7df).length, 0);
});

test('stop() stops the frames', async () => {
  const sim = new SimSource({ rate: 2000 });
  const sink = new RecordingSink();
  await sim.start(sink);
  await sleep(50);
  await sim.stop();
  const n = sink.frames.length;
  assert.ok(n > 0);
  await sleep(50);
  assert.equal(sink.frames.length, n);
  assert.equal(sim.send({ ...sink.frames[0]!, direction: 'tx' }).ok, false);
});

test('invalid options are refused with a reason', () => {
  assert.throws(() => new SimSource({ rate: 0 }), /rate/);
  assert.throws(() => new SimSource({ rate: Number.POSITIVE_INFINITY }), /rate/);
  assert.throws(() => new SimSource({ bus: 'can 0' }), /interface name/);
});
