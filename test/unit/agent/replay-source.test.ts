import { strict as assert } from 'node:assert';
import { spawn, spawnSync } from 'node:child_process';
import { createWriteStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { after, test } from 'node:test';
import { frameProblem, type CanFrame } from '../../../core/can/frame.js';
import type { LogLevel } from '../../../core/console/events.js';
import { ReplaySource } from '../../../agent/sources/replay.js';
import type { SourceSink } from '../../../agent/sources/source.js';
import { until } from '../../helpers/until.js';
import { testFrame } from '../../helpers/can-frames.js';

const dir = mkdtempSync(join(tmpdir(), 'canrelay-replay-'));
after(() => rmSync(dir, { recursive: true, force: true }));

let fileNo = 0;
function writeLog(lines: string[]): string {
  const file = join(dir, `log-${++fileNo}.log`);
  writeFileSync(file, lines.join('\n') + '\n');
  return file;
}

/** candump timestamp for `us` microseconds after a fixed 2015 recording start. */
function ts(us: number): string {
  const t = 1436509052_000000 + us;
  return `(${Math.floor(t / 1e6)}.${String(t % 1e6).padStart(6, '0')})`;
}

interface LogEntry {
  level: LogLevel;
  message: string;
  code?: string;
  details?: Record<string, string | number | boolean | null>;
}

class RecordingSink implements SourceSink {
  readonly frames: CanFrame[] = [];
  readonly states: Array<[string, 'up' | 'down', string | undefined]> = [];
  readonly logs: LogEntry[] = [];
  endedCalls = 0;
  private onEnded: (() => void) | null = null;
  private waiters: Array<{ n: number; resolve: () => void }> = [];

  readonly done = new Promise<void>((resolve) => {
    this.onEnded = resolve;
  });

  frame(frame: CanFrame): void {
    this.frames.push(frame);
    this.waiters = this.waiters.filter((w) => {
      if (this.frames.length < w.n) return true;
      w.resolve();
      return false;
    });
  }
  busState(bus: string, state: 'up' | 'down', reason?: string): void {
    this.states.push([bus, state, reason]);
  }
  log(level: LogLevel, message: string, code?: string, details?: Record<string, string | number | boolean | null>): void {
    this.logs.push({ level, message, code, details });
    // The replay's end is its replay_ended log (the generic sink has no replay-only method).
    if (code === 'replay_ended') {
      this.endedCalls++;
      this.onEnded?.();
    }
  }
  /** Resolves once `n` frames have arrived. */
  framesReached(n: number): Promise<void> {
    if (this.frames.length >= n) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ n, resolve }));
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

test('speed 0 delivers every frame in order, with direction, live timestamps and bus states', async () => {
  const lines: string[] = [];
  for (let i = 0; i < 5000; i++) {
    const bus = i % 3 === 0 ? 'can1' : 'can0';
    const dir = i % 7 === 0 ? ' T' : i % 7 === 1 ? ' R' : '';
    lines.push(`${ts(i * 100)} ${bus} 123#${(i >> 8).toString(16).padStart(2, '0')}${(i & 0xff).toString(16).padStart(2, '0')}${dir}`);
  }
  const source = new ReplaySource({ file: writeLog(lines), speed: 0, loop: false });
  const sink = new RecordingSink();
  const before = Date.now() * 1000;
  await source.start(sink);
  await withTimeout(sink.done, 10_000, 'the replay to end');

  assert.equal(sink.frames.length, 5000);
  sink.frames.forEach((f, i) => {
    assert.equal((f.data[0]! << 8) | f.data[1]!, i, 'order');
    assert.equal(f.bus, i % 3 === 0 ? 'can1' : 'can0');
    assert.equal(f.direction, i % 7 === 0 ? 'tx' : 'rx', `direction of frame ${i}`);
    assert.equal(frameProblem(f), null);
  });
  // Timestamps are the time of emission (now), not the 2015 recording time, and never go backwards.
  assert.ok(sink.frames[0]!.tsUs >= before - 1_000_000, 'tsUs is wall-clock time of emission');
  for (let i = 1; i < sink.frames.length; i++) assert.ok(sink.frames[i]!.tsUs >= sink.frames[i - 1]!.tsUs);
  assert.deepEqual(sink.states, [
    ['can1', 'up', undefined],
    ['can0', 'up', undefined],
  ]);
  assert.deepEqual(source.buses(), ['can1', 'can0']);
  assert.equal(sink.endedCalls, 1);
  assert.equal(source.rejectedLines(), 0);
  assert.equal(source.position().framesEmitted, 5000);
  assert.equal(source.position().line, 5000);
  assert.equal(source.position().recordedTsUs, 1436509052_000000 + 4999 * 100);
  await source.stop();
});

test('speed 0 yields to the event loop while replaying (HTTP clients keep being served)', async () => {
  const lines: string[] = [];
  for (let i = 0; i < 30_000; i++) lines.push(`${ts(i)} can0 1A4#0068042410800107`);
  // One read gets the whole file, so only the replay's own yielding can let other callbacks run.
  const source = new ReplaySource({ file: writeLog(lines), speed: 0, loop: false, chunkSize: 16 * 1024 * 1024 });
  let turns = 0;
  let turnsAtFirstFrame = -1;
  let turnsAtLastFrame = -1;
  const sink = new (class extends RecordingSink {
    override frame(frame: CanFrame): void {
      super.frame(frame);
      if (this.frames.length === 1) turnsAtFirstFrame = turns;
      if (this.frames.length === 30_000) turnsAtLastFrame = turns;
    }
  })();
  let ended = false;
  const spin = (): void => {
    turns++;
    if (!ended) setImmediate(spin);
  };
  await source.start(sink);
  setImmediate(spin);
  await withTimeout(sink.done, 10_000, 'the replay to end');
  ended = true;
  assert.equal(sink.frames.length, 30_000);
  const during = turnsAtLastFrame - turnsAtFirstFrame;
  assert.ok(during >= 10, `the event loop turned only ${during} times while 30,000 frames were emitted`);
  await source.stop();
});

test('speed 0 ignores the recorded timing: 100 s of recording replayed without waiting', async (t) => {
  // Behaviour, not a speed (lines/s belong in benchmarks): 100,000 lines 1 ms apart are 100 s at speed 1;
  // at speed 0 they must all come well before that, whatever the machine's load.
  const lines: string[] = [];
  for (let i = 0; i < 100_000; i++) lines.push(`${ts(i * 1000)} can0 ${i % 2 ? '094' : '18DAF110'}#8064880A06000CC1`);
  const source = new ReplaySource({ file: writeLog(lines), speed: 0, loop: false });
  const sink = new RecordingSink();
  const t0 = performance.now();
  await source.start(sink);
  await withTimeout(sink.done, 60_000, 'the replay to end (speed 1 would take 100 s)');
  const seconds = (performance.now() - t0) / 1000;
  assert.equal(sink.frames.length, 100_000);
  t.diagnostic(`replayed ${Math.round(100_000 / seconds)} lines/s`);
  await source.stop();
});

test('speed 1 honours the recorded timing', async () => {
  // Four frames spanning 300 ms.
  const file = writeLog([0, 100_000, 200_000, 300_000].map((us, i) => `${ts(us)} can0 100#0${i}`));
  const source = new ReplaySource({ file, speed: 1, loop: false });
  const sink = new RecordingSink();
  const t0 = performance.now();
  await source.start(sink);
  await withTimeout(sink.done, 10_000, 'the replay to end');
  const elapsed = performance.now() - t0;
  assert.equal(sink.frames.length, 4);
  assert.ok(elapsed >= 250, `a 300 ms recording replayed in ${elapsed.toFixed(0)} ms`);
  // Never ahead of the recording (a frame may leave up to 0.5 ms early, EARLY_US); a busy machine may make
  // one late, and a frame more than 20 ms late carries the real clock, so only the lower bound is exact.
  for (let i = 1; i < 4; i++) {
    const offset = sink.frames[i]!.tsUs - sink.frames[0]!.tsUs;
    assert.ok(offset >= i * 100_000 - 1000, `frame ${i} at +${offset} µs, recorded at +${i * 100_000}`);
  }
  await source.stop();
});

test('speed 2 replays twice as fast', async () => {
  // 2 s of recording: 1 s at speed 2. Speed 1 could not end before 2 s; only a stall of most of a second on
  // a busy machine would blur the two, so the bound sits halfway.
  const file = writeLog([0, 500_000, 1_000_000, 1_500_000, 2_000_000].map((us, i) => `${ts(us)} can0 100#0${i}`));
  const source = new ReplaySource({ file, speed: 2, loop: false });
  const sink = new RecordingSink();
  const t0 = performance.now();
  await source.start(sink);
  await withTimeout(sink.done, 10_000, 'the replay to end');
  const elapsed = performance.now() - t0;
  assert.ok(elapsed >= 990, `elapsed ${elapsed.toFixed(0)} ms`);
  const span = sink.frames[4]!.tsUs - sink.frames[0]!.tsUs;
  assert.ok(span >= 999_000 && span < 1_500_000, `timestamps span ${span} µs, expected about 1,000,000`);
  await source.stop();
});

test('loop mode starts over with timestamps still increasing, and never ends', async () => {
  const file = writeLog([`${ts(0)} can0 101#01`, `${ts(1000)} can0 102#02`, `${ts(2000)} can0 103#03 T`]);
  const source = new ReplaySource({ file, speed: 0, loop: true });
  const sink = new RecordingSink();
  await source.start(sink);
  await withTimeout(sink.framesReached(30), 10_000, '30 frames');
  await source.stop();
  const ids = sink.frames.slice(0, 30).map((f) => f.id);
  assert.deepEqual(
    ids,
    Array.from({ length: 30 }, (_, i) => 0x101 + (i % 3)),
  );
  assert.ok(sink.frames.slice(0, 30).every((f) => f.direction === (f.id === 0x103 ? 'tx' : 'rx')));
  for (let i = 1; i < sink.frames.length; i++) assert.ok(sink.frames[i]!.tsUs >= sink.frames[i - 1]!.tsUs);
  assert.equal(sink.endedCalls, 0);
  assert.equal(source.position().pass >= 9, true);
  // Stopping takes the bus down; no frames after stop.
  assert.deepEqual(sink.states.at(-1), ['can0', 'down', 'replay stopped']);
  const count = sink.frames.length;
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(sink.frames.length, count);
});

test('loop mode at speed 1 keeps the recorded spacing across the wrap', async () => {
  const file = writeLog([`${ts(0)} can0 101#01`, `${ts(40_000)} can0 102#02`]);
  const source = new ReplaySource({ file, speed: 1, loop: true });
  const sink = new RecordingSink();
  const t0 = performance.now();
  await source.start(sink);
  await withTimeout(sink.framesReached(5), 10_000, '5 frames');
  const elapsed = performance.now() - t0;
  await source.stop();
  // 5 frames: 0, 40 (wrap, +40 average spacing) 80, 120, 160 ms.
  assert.ok(elapsed >= 130, `5 looped frames took only ${elapsed.toFixed(0)} ms`);
  assert.deepEqual(
    sink.frames.slice(0, 5).map((f) => f.id),
    [0x101, 0x102, 0x101, 0x102, 0x101],
  );
});

test('malformed lines are skipped, counted and logged with their line numbers, rate-limited', async () => {
  const lines: string[] = [];
  const badLines: number[] = [];
  for (let i = 0; i < 200; i++) {
    if (i % 2 === 1) {
      lines.push(`${ts(i)} can0 123#ABC`); // odd number of hex digits
      badLines.push(i + 1);
    } else {
      lines.push(`${ts(i)} can0 123#${(i & 0xff).toString(16).padStart(2, '0')}`);
    }
  }
  const source = new ReplaySource({ file: writeLog(lines), speed: 0, loop: false });
  const sink = new RecordingSink();
  await source.start(sink);
  await withTimeout(sink.done, 10_000, 'the replay to end');

  assert.equal(sink.frames.length, 100, 'the good lines after bad ones are still replayed');
  assert.equal(source.rejectedLines(), 100);
  const individual = sink.logs.filter((l) => l.code === 'replay_rejected_line');
  assert.equal(individual.length, 20, 'only the first 20 are logged one by one');
  individual.forEach((l, k) => {
    assert.equal(l.level, 'warn');
    assert.equal(l.details?.line, badLines[k]);
    assert.match(String(l.details?.error), /odd number of hex digits/);
    assert.match(l.message, new RegExp(`line ${badLines[k]}\\b`));
  });
  const summaries = sink.logs.filter((l) => l.code === 'replay_rejected_lines');
  assert.ok(summaries.length >= 1 && summaries.length <= 2, `${summaries.length} summaries`);
  assert.equal(
    summaries.reduce((n, l) => n + Number(l.details?.skipped), 0),
    80,
    'the summaries account for the rest',
  );
  await source.stop();
});

test('a missing file makes start() reject with an error naming the path', async () => {
  const file = join(dir, 'does-not-exist.log');
  const source = new ReplaySource({ file, speed: 1, loop: false });
  const sink = new RecordingSink();
  await assert.rejects(source.start(sink), (e: Error) => {
    assert.ok(e.message.includes(file), e.message);
    assert.match(e.message, /ENOENT/);
    return true;
  });
  assert.equal(sink.frames.length, 0);
});

test('a directory is refused with an error naming it', async () => {
  const source = new ReplaySource({ file: dir, speed: 1, loop: false });
  await assert.rejects(source.start(new RecordingSink()), (e: Error) => e.message.includes(dir) && /directory/.test(e.message));
});

test('an invalid speed is refused', () => {
  assert.throws(() => new ReplaySource({ file: 'x.log', speed: -1, loop: false }), /speed/);
  assert.throws(() => new ReplaySource({ file: 'x.log', speed: Number.NaN, loop: false }), /speed/);
});

test('send: accepted on a replayed bus, refused for unknown buses and when not running', async () => {
  const file = writeLog([`${ts(0)} can0 101#01`, `${ts(10_000_000)} can0 102#02`]);
  const source = new ReplaySource({ file, speed: 1, loop: false });
  const frame = testFrame({ id: 0x7df, data: Uint8Array.from([2, 1, 0x0c]), tsUs: 0, direction: 'tx' });
  assert.equal(source.send(frame).ok, false, 'not started');
  const sink = new RecordingSink();
  await source.start(sink);
  await withTimeout(sink.framesReached(1), 5000, 'the first frame');
  const ok = source.send(frame);
  assert.ok(ok.ok);
  assert.ok(ok.ok && Math.abs(ok.tsUs - Date.now() * 1000) < 5_000_000);
  const bad = source.send({ ...frame, bus: 'can7' });
  assert.ok(!bad.ok && !bad.busy && bad.error.includes('can7'));
  await source.stop();
  assert.equal(source.send(frame).ok, false, 'stopped');
  assert.equal(sink.endedCalls, 0, 'stopped before the end: no ended()');
});

test('a file without a single frame is refused at start, saying so: never "delivered" (exit code 2)', async () => {
  for (const [lines, expect] of [
    [['# nothing but a comment'], /holds no frame to replay: it is empty \(or only blank lines and comments\)/],
    [['hello world', 'this is not a log', '1 2 3'], /holds no frame to replay: none of its 3 lines .*"hello world"/],
    [[], /holds no frame to replay: it is empty/],
  ] as const) {
    for (const loop of [false, true]) {
      const file = writeLog([...lines]);
      const sink = new RecordingSink();
      await assert.rejects(new ReplaySource({ file, speed: 0, loop }).start(sink), (e: Error & { exitCode?: number }) => {
        assert.match(e.message, expect);
        assert.ok(e.message.includes(file), e.message);
        assert.equal(e.exitCode, 2, 'the bad-input exit code');
        return true;
      });
      assert.equal(sink.endedCalls, 0);
    }
  }
});

test('foreign log formats are named at start (PEAK .trc, Vector .asc, plain candump, gzip)', async () => {
  const trc = [
    ';$FILEVERSION=1.1',
    ';$STARTTIME=44166.6169953704',
    ';   Start time: 29.11.2026 14:48:28.400.0',
    ';   Message Number',
    ';   |         Time Offset (ms)',
    '     1)         0.0  Rx         0123  8  01 02 03 04 05 06 07 08',
  ];
  const asc = [
    'date Sun Nov 29 14:48:28.400 2026',
    'base hex  timestamps absolute',
    'no internal events logged',
    '   0.001000 1  123             Rx   d 8 01 02 03 04 05 06 07 08',
  ];
  const screen = ['  can0  123   [4]  DE AD BE EF', '  can0  7E8   [8]  02 10 03 00 00 00 00 00'];
  for (const [lines, name] of [
    [trc, /is not a candump -L log: it is a PEAK PCAN trace \(\.trc\)/],
    [asc, /is not a candump -L log: it is a Vector ASCII log \(\.asc\)/],
    [screen, /candump's screen format/],
  ] as const) {
    await assert.rejects(new ReplaySource({ file: writeLog([...lines]), speed: 1, loop: false }).start(new RecordingSink()), (e: Error & { exitCode?: number }) => {
      assert.match(e.message, name);
      assert.equal(e.exitCode, 2);
      return true;
    });
  }
  const gz = join(dir, 'rec.log.gz');
  writeFileSync(gz, gzipSync(`${ts(0)} can0 123#01\n`));
  await assert.rejects(new ReplaySource({ file: gz, speed: 0, loop: false }).start(new RecordingSink()), /gzip-compressed/);
});

test('a file whose first valid frame comes after many bad lines is replayed', async () => {
  const lines = Array.from({ length: 20_000 }, (_, i) => `garbage line ${i}`);
  lines.push(`${ts(0)} can0 123#01`);
  const source = new ReplaySource({ file: writeLog(lines), speed: 0, loop: false, chunkSize: 4096 });
  const sink = new RecordingSink();
  await source.start(sink);
  await withTimeout(sink.done, 10_000, 'the replay to end');
  assert.equal(sink.frames.length, 1);
  assert.equal(source.rejectedLines(), 20_000);
  await source.stop();
});

test('a pipe that ends without a frame is an error, not "delivered"', async () => {
  const fifo = join(dir, 'in.fifo');
  assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
  const source = new ReplaySource({ file: fifo, speed: 0, loop: false });
  const sink = new RecordingSink();
  const writer = new Promise<void>((resolve, reject) => {
    const w = createWriteStream(fifo);
    w.on('error', reject);
    w.end(';$FILEVERSION=1.1\n;$STARTTIME=44166.6\n', () => resolve());
  });
  await source.start(sink);
  await writer;
  await until(() => sink.logs.some((l) => l.code === 'replay_no_frames'), 10_000, 'the error for the pipe');
  const err = sink.logs.find((l) => l.code === 'replay_no_frames')!;
  assert.equal(err.level, 'error');
  assert.match(err.message, /without a single frame to replay: a PEAK PCAN trace/);
  assert.equal(sink.endedCalls, 0, 'never reported as delivered');
  await source.stop();
});

test('a file of blank lines is looked at quickly: the format check stays within the first 4 KiB and within lines', async () => {
  const { foreignFormat } = await import('../../../agent/sources/replay-input.js');
  // 512 KiB of CRLF: the old patterns (\s* across lines) backtracked over all of it for many minutes.
  assert.equal(foreignFormat(Buffer.from('\r\n'.repeat(256 * 1024))), undefined);
  // What the patterns recognise is still recognised, also after blank lines.
  assert.match(foreignFormat(Buffer.from('\r\n\r\n  can0  7E8   [8]  02 41 0C 1A F8 00 00 00\n'))!, /screen format/);
  assert.match(foreignFormat(Buffer.from('date Mon Nov 30 10:00:00 2026\nbase hex  timestamps absolute\n'))!, /Vector ASCII/);
});

test('a timestamp gap beyond 24.8 days waits, without a flood of TimeoutOverflowWarning (Node takes such a delay as 1 ms)', async () => {
  const file = writeLog([`${ts(0)} can0 100#01`, `${ts(3_000_000_000_000)} can0 100#02`]);
  const warnings: string[] = [];
  const onWarning = (w: Error): void => void warnings.push(w.name);
  process.on('warning', onWarning);
  const source = new ReplaySource({ file, speed: 1, loop: false });
  const sink = new RecordingSink();
  try {
    await source.start(sink);
    await withTimeout(sink.framesReached(1), 10_000, 'the first frame');
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(sink.frames.length, 1, 'the second frame waits for its time');
    assert.deepEqual(
      warnings.filter((w) => w === 'TimeoutOverflowWarning'),
      [],
    );
  } finally {
    process.off('warning', onWarning);
    await source.stop();
  }
});

test('a pipe whose writer went quiet: stop() ends the replay at once (its read waited on a thread, holding even the exit)', async () => {
  const fifo = join(dir, 'quiet.fifo');
  assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
  // A writer that sends one frame and then keeps the pipe open, silent.
  const writer = spawn('sh', ['-c', `exec 3>${fifo}; echo '${ts(0)} can0 100#01' >&3; sleep 60`], { stdio: 'ignore' });
  try {
    const source = new ReplaySource({ file: fifo, speed: 0, loop: false });
    const sink = new RecordingSink();
    await source.start(sink);
    await withTimeout(sink.framesReached(1), 10_000, 'the frame from the pipe');
    await withTimeout(source.stop(), 10_000, 'stop() while the writer is silent');
    assert.deepEqual(sink.states.at(-1), ['can0', 'down', 'replay stopped']);
  } finally {
    writer.kill('SIGKILL');
  }
});

test('a pipe opened before its writer: the replay waits for one, then replays what it writes and ends with it', async () => {
  const fifo = join(dir, 'late.fifo');
  assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
  const source = new ReplaySource({ file: fifo, speed: 0, loop: false });
  const sink = new RecordingSink();
  await source.start(sink);
  await new Promise((r) => setTimeout(r, 300)); // no writer yet: nothing ends
  assert.equal(sink.endedCalls, 0);
  await new Promise<void>((resolve, reject) => {
    const w = createWriteStream(fifo);
    w.on('error', reject);
    w.end([0, 1, 2].map((i) => `${ts(i * 1000)} can0 10${i}#0${i}`).join('\n') + '\n', () => resolve());
  });
  await withTimeout(sink.done, 10_000, 'the end of the replay');
  assert.equal(sink.frames.length, 3);
  await source.stop();
});

test("an anonymous pipe (a shell's <(…)) whose writer is gone without a frame ends as such, not waited on as a FIFO without its writer", () => {
  const replay = new URL('../../../agent/sources/replay.js', import.meta.url).href;
  const script = `const { ReplaySource } = await import(${JSON.stringify(replay)});
const s = new ReplaySource({ file: process.argv[1], speed: 0, loop: false });
await s.start({ frame() {}, busState() {}, log(_l, _m, code) { if (code) console.log(code); } });
setTimeout(async () => { await s.stop(); process.exit(0); }, 2000);`;
  const r = spawnSync('bash', ['-c', `exec 3< <(true); sleep 0.2; exec "${process.execPath}" --input-type=module -e "$0" /dev/fd/3`, script], {
    encoding: 'utf8',
    timeout: 20_000,
  });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /replay_no_frames/);
});
