import { strict as assert } from 'node:assert';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, test } from 'node:test';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { frameProblem, type CanFrame } from '../../../core/can/frame.js';
import type { LogLevel } from '../../../core/console/events.js';
import {
  loadSocketCanBinding,
  type RawChannel,
  type RawChannelOptions,
  type RawClassicMessage,
  type RawFdMessage,
  type RawMessage,
  type SocketCanBinding,
} from '../../../agent/sources/socketcan-binding.js';
import { SocketCanSource, type SocketCanSourceOptions } from '../../../agent/sources/socketcan.js';
import type { SourceSink } from '../../../agent/sources/source.js';
import { skipOrFail } from '../../helpers/skips.js';
import { testFrame } from '../../helpers/can-frames.js';
import { until } from '../../helpers/until.js';

// ---- fakes with the package's shape (native/can.cc) ----

type Listener = ((msg: RawMessage) => void) | (() => void);

class FakeRawChannel implements RawChannel {
  readonly messageListeners: ((msg: RawMessage) => void)[] = [];
  readonly stoppedListeners: (() => void)[] = [];
  started = false;
  stopCalls = 0;
  readonly sent: RawClassicMessage[] = [];
  readonly sentFD: RawFdMessage[] = [];
  /** What send/sendFD return: bytes written, or negative on failure. */
  sendResult = 16;
  throwOnSend: Error | null = null;

  constructor(
    readonly iface: string,
    readonly options: RawChannelOptions,
  ) {}

  addListener(event: 'onMessage' | 'onStopped', listener: Listener): this {
    if (event === 'onMessage') this.messageListeners.push(listener as (msg: RawMessage) => void);
    else this.stoppedListeners.push(listener as () => void);
    return this;
  }

  start(): this {
    this.started = true;
    return this;
  }

  /** Like can.cc: throws when not started, and fires onStopped synchronously. */
  stop(): this {
    this.stopCalls++;
    if (!this.started) throw new Error('Channel not started');
    this.fireStopped();
    return this;
  }

  send(msg: RawClassicMessage): number {
    if (this.throwOnSend) throw this.throwOnSend;
    if (msg.data.length > 8) throw new Error('Data field too long for a CAN frame (max 8 bytes)');
    msg.ts_sec = 1700000001;
    msg.ts_usec = 5;
    this.sent.push(msg);
    return this.sendResult;
  }

  sendFD(msg: RawFdMessage): number {
    if (this.throwOnSend) throw this.throwOnSend;
    msg.ts_sec = 1700000002;
    msg.ts_usec = 7;
    this.sentFD.push(msg);
    return this.sendResult < 0 ? this.sendResult : 72;
  }

  fireMessage(msg: RawMessage): void {
    for (const l of this.messageListeners) l(msg);
  }

  /** A fatal socket error (or our own stop()): the addon stops the thread, then calls the listeners. */
  fireStopped(): void {
    this.started = false;
    for (const l of this.stoppedListeners) l();
  }
}

class FakeBinding implements SocketCanBinding {
  readonly channels: FakeRawChannel[] = [];
  readonly failing = new Set<string>();

  createRawChannelWithOptions(iface: string, options: RawChannelOptions): RawChannel {
    if (this.failing.has(iface)) throw new Error('Error while creating channel');
    const ch = new FakeRawChannel(iface, options);
    this.channels.push(ch);
    return ch;
  }

  last(iface: string): FakeRawChannel {
    const ch = this.channels.filter((c) => c.iface === iface).at(-1);
    assert.ok(ch, `no channel was created for ${iface}`);
    return ch;
  }
}

class RecordingSink implements SourceSink {
  readonly frames: CanFrame[] = [];
  readonly states: { bus: string; state: 'up' | 'down'; reason?: string }[] = [];
  readonly logs: { level: LogLevel; message: string; code?: string }[] = [];
  throwOnFrame = false;
  throwOnLog = false;

  frame(frame: CanFrame): void {
    if (this.throwOnFrame) throw new Error('sink exploded');
    this.frames.push(frame);
  }
  busState(bus: string, state: 'up' | 'down', reason?: string): void {
    this.states.push({ bus, state, reason });
  }
  log(level: LogLevel, message: string, code?: string): void {
    if (this.throwOnLog) throw new Error('log exploded');
    this.logs.push({ level, message, code });
  }
}

// ---- fake sysfs / procfs ----

const PROTOCOLS_WITH_CAN = [
  'protocol  size sockets  memory press maxhdr  slab module     cl co di ac io in de sh ss gs se re bi br ha uh gp em',
  'CAN_RAW    976      0      -1   NI       0   no   can_raw    n  n  n  n  n  n  n  n  n  n  n  n  n  n  n  n  n  n',
  'TCP       2304      1      34   no     192   yes  kernel      y  y  y  y  y  y  y  y  y  y  y  y  n  y  y  y  y  y',
].join('\n');
const PROTOCOLS_WITHOUT_CAN = [
  'protocol  size sockets  memory press maxhdr  slab module     cl co di ac io in de sh ss gs se re bi br ha uh gp em',
  'TCP       2304      1      34   no     192   yes  kernel      y  y  y  y  y  y  y  y  y  y  y  y  n  y  y  y  y  y',
].join('\n');

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

class FakeHost {
  readonly root = mkdtempSync(join(tmpdir(), 'canrelay-socketcan-'));
  readonly sysfsRoot = join(this.root, 'sys');
  readonly procRoot = join(this.root, 'proc');
  private nextIfindex = 3;

  constructor(protocols = PROTOCOLS_WITH_CAN) {
    mkdirSync(join(this.sysfsRoot, 'class', 'net'), { recursive: true });
    mkdirSync(join(this.procRoot, 'net'), { recursive: true });
    writeFileSync(join(this.procRoot, 'net', 'protocols'), protocols + '\n');
    cleanups.push(() => rmSync(this.root, { recursive: true, force: true }));
  }

  addInterface(name: string, opts: { type?: number; mtu?: number; up?: boolean } = {}): void {
    const dir = join(this.sysfsRoot, 'class', 'net', name);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'type'), `${opts.type ?? 280}\n`);
    writeFileSync(join(dir, 'mtu'), `${opts.mtu ?? 72}\n`);
    writeFileSync(join(dir, 'ifindex'), `${this.nextIfindex++}\n`);
    this.setLink(name, opts.up ?? true);
  }

  /** As vcan shows it: flags 0xc1 / operstate "unknown" when up, 0x80 / "down" when down. */
  setLink(name: string, up: boolean, operstate?: string): void {
    const dir = join(this.sysfsRoot, 'class', 'net', name);
    writeFileSync(join(dir, 'flags'), up ? '0xc1\n' : '0x80\n');
    writeFileSync(join(dir, 'operstate'), `${operstate ?? (up ? 'unknown' : 'down')}\n`);
  }

  /** The interface's transmit counters, as a driver keeps them (kernel-held-frames.ts reads them). */
  setTx(name: string, packets: number, opts: { dropped?: number; carrierChanges?: number } = {}): void {
    const dir = join(this.sysfsRoot, 'class', 'net', name);
    mkdirSync(join(dir, 'statistics'), { recursive: true });
    writeFileSync(join(dir, 'statistics', 'tx_packets'), `${packets}\n`);
    writeFileSync(join(dir, 'statistics', 'tx_dropped'), `${opts.dropped ?? 0}\n`);
    writeFileSync(join(dir, 'carrier_changes'), `${opts.carrierChanges ?? 0}\n`);
  }

  removeInterface(name: string): void {
    rmSync(join(this.sysfsRoot, 'class', 'net', name), { recursive: true, force: true });
  }
}

function makeSource(host: FakeHost, binding: FakeBinding, interfaces: string[], opts: Partial<SocketCanSourceOptions> = {}): SocketCanSource {
  const src = new SocketCanSource({ interfaces, binding, sysfsRoot: host.sysfsRoot, procRoot: host.procRoot, pollIntervalMs: 10, ...opts });
  cleanups.push(() => src.stop());
  return src;
}

async function started(interfaces = ['can0']): Promise<{ host: FakeHost; binding: FakeBinding; sink: RecordingSink; src: SocketCanSource }> {
  const host = new FakeHost();
  for (const i of interfaces) host.addInterface(i);
  const binding = new FakeBinding();
  const sink = new RecordingSink();
  const src = makeSource(host, binding, interfaces);
  await src.start(sink);
  return { host, binding, sink, src };
}

function frame(over: Partial<CanFrame>): CanFrame {
  return testFrame({ id: 0x123, data: new Uint8Array([0xde, 0xad]), tsUs: 0, direction: 'tx', ...over });
}

// ---- receive ----

test('opens one channel per interface with timestamps and non-blocking send, and reports them up', async () => {
  const { binding, sink, src } = await started(['can0', 'can1']);
  assert.deepEqual(src.buses(), ['can0', 'can1']);
  assert.equal(src.kind, 'socketcan');
  for (const i of ['can0', 'can1']) {
    const ch = binding.last(i);
    assert.deepEqual(ch.options, { timestamps: true, non_block_send: true });
    assert.equal(ch.started, true);
    assert.equal(ch.messageListeners.length, 1);
    assert.equal(ch.stoppedListeners.length, 1);
  }
  assert.deepEqual(
    sink.states.map((s) => [s.bus, s.state]),
    [
      ['can0', 'up'],
      ['can1', 'up'],
    ],
  );
});

test('maps standard, extended, RTR, FD and error frames and kernel timestamps', async () => {
  const { binding, sink } = await started(['can0', 'can1']);
  const ch = binding.last('can0');
  ch.fireMessage({ id: 0x7e8, data: Buffer.from([0x02, 0x10, 0x03]), ts_sec: 1700000000, ts_usec: 123456 });
  ch.fireMessage({ id: 0x18daf110, ext: true, data: Buffer.from([1, 2, 3, 4, 5, 6, 7, 8]), ts_sec: 1700000000, ts_usec: 1 });
  ch.fireMessage({ id: 0x7df, rtr: true, data: Buffer.alloc(4), ts_sec: 1, ts_usec: 0 });
  ch.fireMessage({ id: 0x100, data: Buffer.alloc(12, 0xaa), ts_sec: 1, ts_usec: 0 });
  ch.fireMessage({ id: 0x1abcdef, ext: true, data: Buffer.alloc(64, 0x55), ts_sec: 1, ts_usec: 0 });
  ch.fireMessage({ id: 0x40, err: true, data: Buffer.from([0, 0, 0, 0, 0, 0, 0, 0]), ts_sec: 1, ts_usec: 0 });
  const before = Date.now() * 1000;
  binding.last('can1').fireMessage({ id: 0x1, data: Buffer.alloc(0) });
  const after = Date.now() * 1000;

  const [std, ext, rtr, fd12, fd64, err, noTs] = sink.frames;
  assert.equal(sink.frames.length, 7);
  for (const f of sink.frames) {
    assert.equal(frameProblem(f), null, `frame ${f.id.toString(16)} breaks the frame invariants`);
    assert.equal(f.direction, 'rx');
    assert.equal(Object.getPrototypeOf(f.data), Uint8Array.prototype, 'data is a plain Uint8Array, not a Buffer');
  }

  assert.deepEqual(
    { ...std!, data: [...std!.data] },
    {
      bus: 'can0',
      id: 0x7e8,
      ext: false,
      rtr: false,
      err: false,
      fd: false,
      brs: false,
      esi: false,
      dlc: 3,
      data: [0x02, 0x10, 0x03],
      tsUs: 1700000000123456,
      direction: 'rx',
    },
  );
  assert.equal(ext!.id, 0x18daf110);
  assert.equal(ext!.ext, true);
  assert.equal(ext!.dlc, 8);
  assert.equal(ext!.tsUs, 1700000000000001);

  assert.equal(rtr!.rtr, true);
  assert.equal(rtr!.dlc, 4, 'RTR dlc is the requested length');
  assert.equal(rtr!.data.length, 0, 'RTR carries no data');

  assert.equal(fd12!.fd, true);
  assert.equal(fd12!.dlc, 12);
  assert.equal(fd12!.data.length, 12);
  assert.equal(fd64!.fd, true);
  assert.equal(fd64!.ext, true);
  assert.equal(fd64!.id, 0x1abcdef);
  assert.equal(fd64!.dlc, 64);
  assert.equal(fd64!.brs, false, 'BRS is not reported by the addon');

  assert.equal(err!.err, true);
  assert.equal(err!.id, 0x40, 'id is the error class (CAN_ERR_BUSOFF)');
  assert.equal(err!.ext, false);
  assert.equal(err!.dlc, 8);

  assert.equal(noTs!.bus, 'can1');
  assert.equal(noTs!.dlc, 0);
  assert.ok(noTs!.tsUs >= before && noTs!.tsUs <= after, 'falls back to the wall clock without a kernel timestamp');
});

test('an exception in the sink never escapes the onMessage listener', async () => {
  const { binding, sink } = await started();
  const ch = binding.last('can0');
  sink.throwOnFrame = true;
  assert.doesNotThrow(() => ch.fireMessage({ id: 1, data: Buffer.alloc(1) }));
  assert.doesNotThrow(() => ch.fireMessage({ id: 2, data: Buffer.alloc(1) }));
  const errors = sink.logs.filter((l) => l.code === 'socketcan_sink_error');
  assert.equal(errors.length, 1, 'logged once, then rate-limited');
  assert.match(errors[0]!.message, /can0.*sink exploded/);

  sink.throwOnLog = true;
  assert.doesNotThrow(() => ch.fireMessage({ id: 3, data: Buffer.alloc(1) }));
  // A message the addon could never produce (no data) must not throw either.
  assert.doesNotThrow(() => ch.fireMessage({ id: 4 } as unknown as RawMessage));

  sink.throwOnFrame = false;
  sink.throwOnLog = false;
  ch.fireMessage({ id: 5, data: Buffer.alloc(1) });
  assert.deepEqual(
    sink.frames.map((f) => f.id),
    [5],
    'keeps delivering after the sink recovers',
  );
});

// ---- open failures ----

test('a missing interface rejects start() with an error naming it, and closes the channels already opened', async () => {
  const host = new FakeHost();
  host.addInterface('can0');
  const binding = new FakeBinding();
  binding.failing.add('can3');
  const src = makeSource(host, binding, ['can0', 'can3']);
  await assert.rejects(src.start(new RecordingSink()), (e: Error) => {
    assert.match(e.message, /interface can3 does not exist/);
    assert.match(e.message, /ip link show/);
    assert.match(e.message, /--can/);
    return true;
  });
  assert.equal(binding.last('can0').started, false, 'can0 was closed again');
  const r = src.send(frame({}));
  assert.equal(r.ok, false, 'a source that failed to start sends nothing');
});

test('a missing vcan interface suggests how to create it', async () => {
  const host = new FakeHost();
  const binding = new FakeBinding();
  binding.failing.add('vcan0');
  const src = makeSource(host, binding, ['vcan0']);
  await assert.rejects(src.start(new RecordingSink()), /interface vcan0 does not exist.*ip link add dev vcan0 type vcan/);
});

test('a kernel without AF_CAN rejects start() saying SocketCAN is missing and what to do', async () => {
  const host = new FakeHost(PROTOCOLS_WITHOUT_CAN);
  const binding = new FakeBinding();
  binding.failing.add('can0');
  binding.failing.add('can1');
  const src = makeSource(host, binding, ['can0', 'can1']);
  await assert.rejects(src.start(new RecordingSink()), (e: Error) => {
    assert.match(e.message, /^cannot open can0: this kernel has no SocketCAN \(AF_CAN\)/);
    assert.doesNotMatch(e.message, /can1/, 'a kernel-wide problem is reported once');
    assert.match(e.message, /modprobe can_raw/);
    assert.match(e.message, /--sim\/--replay/);
    assert.match(e.message, /can0/);
    return true;
  });
});

test('under the units (ProcSubset=pid: /proc/net hidden, /proc/self/net kept) a kernel without AF_CAN is still told so', async () => {
  const host = new FakeHost(PROTOCOLS_WITHOUT_CAN);
  mkdirSync(join(host.procRoot, 'self'), { recursive: true });
  renameSync(join(host.procRoot, 'net'), join(host.procRoot, 'self', 'net'));
  const binding = new FakeBinding();
  binding.failing.add('can0');
  const src = makeSource(host, binding, ['can0']);
  await assert.rejects(src.start(new RecordingSink()), /cannot open can0: this kernel has no SocketCAN \(AF_CAN\)/);
});

test('a kernel with the CAN core but without can_raw says to load can_raw', async () => {
  const host = new FakeHost(PROTOCOLS_WITHOUT_CAN);
  mkdirSync(join(host.procRoot, 'net', 'can'));
  const binding = new FakeBinding();
  binding.failing.add('can0');
  await assert.rejects(makeSource(host, binding, ['can0']).start(new RecordingSink()), /no CAN_RAW protocol.*modprobe can_raw/);
});

test('several missing interfaces are all named', async () => {
  const host = new FakeHost();
  const binding = new FakeBinding();
  binding.failing.add('can0');
  binding.failing.add('can1');
  await assert.rejects(makeSource(host, binding, ['can0', 'can1']).start(new RecordingSink()), /interface can0 does not exist.*; interface can1 does not exist/);
});

test('an interface that is not CAN is reported as such', async () => {
  const host = new FakeHost();
  host.addInterface('eth0', { type: 1 });
  const binding = new FakeBinding();
  binding.failing.add('eth0');
  await assert.rejects(makeSource(host, binding, ['eth0']).start(new RecordingSink()), /interface eth0 is not a CAN interface \(link type 1/);
});

test('the constructor rejects bad interface lists', () => {
  assert.throws(() => new SocketCanSource({ interfaces: [] }), /no CAN interface given/);
  assert.throws(() => new SocketCanSource({ interfaces: ['..'] }), /not an interface name/);
  assert.throws(() => new SocketCanSource({ interfaces: ['can0/../../etc'] }), /not an interface name/);
  assert.deepEqual(new SocketCanSource({ interfaces: ['can0', 'can0'] }).buses(), ['can0']);
});

// ---- interface state ----

test('interface down/up in sysfs gives busState events and delivery resumes after up', async () => {
  const { host, binding, sink } = await started();
  const ch = binding.last('can0');

  host.setLink('can0', false);
  await until(() => sink.states.length === 2, 2000, 'down');
  assert.equal(sink.states[1]!.state, 'down');
  assert.match(sink.states[1]!.reason ?? '', /can0 is set down \(ip link set can0 up\)/);

  host.setLink('can0', true);
  await until(() => sink.states.length === 3, 2000, 'up');
  assert.equal(sink.states[2]!.state, 'up');
  assert.equal(binding.channels.length, 1, 'down/up keeps the same socket (ENETDOWN is recoverable)');

  ch.fireMessage({ id: 0x321, data: Buffer.from([9]) });
  assert.deepEqual(
    sink.frames.map((f) => f.id),
    [0x321],
  );

  // Up but without carrier (bus-off on a real controller).
  host.setLink('can0', true, 'down');
  await until(() => sink.states.length === 4, 2000, 'no carrier');
  assert.equal(sink.states[3]!.state, 'down');
  assert.match(sink.states[3]!.reason ?? '', /no carrier/);
});

test('an interface that is down at start is reported down', async () => {
  const host = new FakeHost();
  host.addInterface('can0', { up: false });
  const sink = new RecordingSink();
  await makeSource(host, new FakeBinding(), ['can0']).start(sink);
  assert.deepEqual(
    sink.states.map((s) => s.state),
    ['down'],
  );
});

test('onStopped reports down and the channel is reopened when the interface returns', async () => {
  const { host, binding, sink } = await started();
  const old = binding.last('can0');

  host.removeInterface('can0');
  old.fireStopped();
  assert.equal(sink.states.at(-1)!.state, 'down');
  assert.equal(sink.logs.filter((l) => l.code === 'socketcan_stopped').length, 1);

  await new Promise((r) => setTimeout(r, 50)); // several polls while it is gone: nothing reopened, no crash
  assert.equal(binding.channels.length, 1);
  assert.equal(sink.states.length, 2);

  host.addInterface('can0');
  await until(() => binding.channels.length === 2 && sink.states.at(-1)!.state === 'up', 2000, 'reopen');
  const fresh = binding.last('can0');
  assert.equal(fresh.started, true);
  assert.ok(sink.logs.some((l) => l.code === 'socketcan_reopened'));

  old.fireMessage({ id: 0x1, data: Buffer.alloc(1) });
  fresh.fireMessage({ id: 0x2, data: Buffer.alloc(1) });
  assert.deepEqual(
    sink.frames.map((f) => f.id),
    [0x2],
    'only the live channel delivers',
  );
});

test('an interface removed without onStopped is noticed by the poll, closed, and reopened', async () => {
  const { host, binding, sink } = await started();
  const old = binding.last('can0');
  host.removeInterface('can0');
  await until(() => sink.states.at(-1)!.state === 'down', 2000, 'down');
  assert.match(sink.states.at(-1)!.reason ?? '', /can0 is gone/);
  assert.equal(old.stopCalls, 1);
  assert.equal(old.started, false);

  binding.failing.add('can0'); // comes back, but opening fails for a while: logged once, retried
  host.addInterface('can0');
  await until(() => sink.logs.some((l) => l.code === 'socketcan_reopen_failed'), 2000, 'reopen failure logged');
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(sink.logs.filter((l) => l.code === 'socketcan_reopen_failed').length, 1);

  binding.failing.delete('can0');
  await until(() => binding.channels.length === 2 && sink.states.at(-1)!.state === 'up', 2000, 'reopen');
});

test('an interface re-created between two polls is reopened (new ifindex)', async () => {
  const { host, binding, sink } = await started();
  host.removeInterface('can0');
  host.addInterface('can0'); // new ifindex
  await until(() => binding.channels.length === 2, 2000, 'reopen');
  await until(() => sink.states.at(-1)!.state === 'up', 2000, 'up again');
  assert.deepEqual(
    sink.states.map((s) => s.state),
    ['up', 'down', 'up'],
  );
  assert.equal(binding.channels[0]!.started, false);
});

test('a closed channel can be collected (its socket closed): the listeners the addon keeps as GC roots do not hold it', async () => {
  // The addon keeps each listener as a persistent reference until its channel is destroyed, and closes
  // the socket only then (~RawChannel): here `roots` plays those references, and nothing else holds a
  // channel once the source let it go.
  const roots: unknown[] = [];
  const refs: WeakRef<FakeRawChannel>[] = [];
  const binding: SocketCanBinding = {
    createRawChannelWithOptions(iface, options) {
      const ch = new FakeRawChannel(iface, options);
      const add = ch.addListener.bind(ch);
      ch.addListener = (event, listener) => {
        roots.push(listener);
        return add(event, listener);
      };
      refs.push(new WeakRef(ch));
      return ch;
    },
  };
  const host = new FakeHost();
  host.addInterface('can0');
  const sink = new RecordingSink();
  const src = makeSource(host, binding as FakeBinding, ['can0']);
  await src.start(sink);
  for (let i = 0; i < 3; i++) {
    host.removeInterface('can0');
    host.addInterface('can0'); // new ifindex: the poll closes the channel and opens another
    await until(() => refs.length === i + 2 && sink.states.at(-1)!.state === 'up', 2000, `reopen ${i + 1}`);
  }
  v8.setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  await new Promise((r) => setImmediate(r));
  gc();
  assert.deepEqual(
    refs.map((r) => r.deref() !== undefined),
    [false, false, false, true],
    'only the open channel is left',
  );
});

test('stop() closes every channel, reports down, and later messages are ignored', async () => {
  const { binding, sink, src } = await started(['can0', 'can1']);
  await src.stop();
  await src.stop();
  for (const ch of binding.channels) {
    assert.equal(ch.started, false);
    assert.equal(ch.stopCalls, 1);
  }
  assert.deepEqual(
    sink.states.slice(2).map((s) => [s.bus, s.state]),
    [
      ['can0', 'down'],
      ['can1', 'down'],
    ],
  );
  binding.last('can0').fireMessage({ id: 1, data: Buffer.alloc(1) });
  assert.equal(sink.frames.length, 0);
  assert.equal(sink.logs.filter((l) => l.code === 'socketcan_stopped').length, 0, 'our own stop is not a fatal stop');
});

// ---- send ----

test('send maps classic, extended, RTR and FD frames to send/sendFD', async () => {
  const { binding, src, sink } = await started();
  const ch = binding.last('can0');

  const r1 = src.send(frame({ id: 0x7df, dlc: 2, data: new Uint8Array([0x01, 0x0c]) }));
  assert.deepEqual(r1, { ok: true, tsUs: 1700000001000005 });
  const r2 = src.send(frame({ id: 0x18db33f1, ext: true, dlc: 3, data: new Uint8Array([1, 2, 3]) }));
  assert.equal(r2.ok, true);
  const r3 = src.send(frame({ id: 0x123, rtr: true, dlc: 5, data: new Uint8Array(0) }));
  assert.equal(r3.ok, true);
  const fdData = new Uint8Array(16).fill(0x11);
  const r4 = src.send(frame({ id: 0x456, fd: true, brs: true, dlc: 16, data: fdData }));
  assert.deepEqual(r4, { ok: true, tsUs: 1700000002000007 });

  const plain = ch.sent.map((m) => ({ id: m.id, ext: m.ext, rtr: m.rtr, data: [...m.data], isBuffer: Buffer.isBuffer(m.data) }));
  assert.deepEqual(plain, [
    { id: 0x7df, ext: false, rtr: false, data: [0x01, 0x0c], isBuffer: true },
    { id: 0x18db33f1, ext: true, rtr: false, data: [1, 2, 3], isBuffer: true },
    { id: 0x123, ext: false, rtr: true, data: [0, 0, 0, 0, 0], isBuffer: true },
  ]);
  assert.equal(ch.sentFD.length, 1);
  assert.deepEqual(
    { ...ch.sentFD[0]!, data: [...ch.sentFD[0]!.data] },
    {
      id: 0x456,
      ext: false,
      fd_brs: true,
      data: [...fdData],
      ts_sec: 1700000002,
      ts_usec: 7,
    },
  );
  assert.equal(sink.frames.length, 0, 'transmits are not echoed to the sink');
});

test('send: negative result is busy, a throw is an error', async () => {
  const { binding, src } = await started();
  const ch = binding.last('can0');
  ch.sendResult = -1;
  const busy = src.send(frame({}));
  assert.equal(busy.ok, false);
  assert.equal(!busy.ok && busy.busy, true);
  assert.match(!busy.ok ? busy.error : '', /transmit queue of can0 is full/);
  const busyFd = src.send(frame({ fd: true, dlc: 12, data: new Uint8Array(12) }));
  assert.equal(!busyFd.ok && busyFd.busy, true);

  ch.sendResult = 16;
  ch.throwOnSend = new Error('Invalid channel!');
  const thrown = src.send(frame({}));
  assert.deepEqual(thrown, { ok: false, busy: false, error: 'socketcan refused the frame on can0: Invalid channel!' });
});

test('send: a failure right after the interface was set down (before the next poll) is an error, not a full queue to retry', async () => {
  const { host, binding, src } = await started();
  const ch = binding.last('can0');
  host.setLink('can0', false); // the poll has not seen it yet
  ch.sendResult = -1;
  const r = src.send(frame({}));
  assert.equal(r.ok, false);
  assert.equal(!r.ok && r.busy, false, 'not retried for --tx-retry-ms as if the queue were full');
  assert.match(!r.ok ? r.error : '', /can0 is set down/);
});

// ---- frames the kernel holds (kernel-held-frames.ts) ----

async function startedWith(opts: Partial<SocketCanSourceOptions>): Promise<{ host: FakeHost; binding: FakeBinding; sink: RecordingSink; src: SocketCanSource }> {
  const host = new FakeHost();
  host.addInterface('can0');
  host.setTx('can0', 100);
  const binding = new FakeBinding();
  const sink = new RecordingSink();
  const src = makeSource(host, binding, ['can0'], opts);
  await src.start(sink);
  return { host, binding, sink, src };
}

test('the kernel holds at most --tx-kernel-frames frames of this agent: the next send waits (busy) until the driver counts them sent, dropped, or the queue was emptied', async () => {
  const { host, binding, src } = await startedWith({ txKernelFrames: 3 });
  const ch = binding.last('can0');
  for (let i = 0; i < 3; i++) assert.equal(src.send(frame({})).ok, true);
  const held = src.send(frame({}));
  assert.equal(held.ok, false);
  assert.equal(!held.ok && held.busy && held.kernelHeld, true, 'busy, and told apart from a full kernel queue');
  assert.match(!held.ok ? held.error : '', /the kernel still holds 3 frames of this agent for can0, the oldest for \d+ ms \(--tx-kernel-frames 3\)/);
  assert.equal(ch.sent.length, 3, 'the fourth not handed to the kernel');
  assert.deepEqual(src.kernelTx(), { held: 3, stale: 0, flushed: 0 });

  host.setTx('can0', 101); // the controller sent one
  assert.equal(src.send(frame({})).ok, true);
  assert.equal(src.send(frame({})).ok, false, 'three held again');
  host.setTx('can0', 102, { dropped: 1 }); // one sent, one the driver discarded: neither goes out any more
  assert.equal(src.send(frame({})).ok, true);
  assert.equal(src.send(frame({})).ok, true);
  assert.equal(src.send(frame({})).ok, false);
  host.setTx('can0', 102, { dropped: 1, carrierChanges: 2 }); // down and up (or bus-off, a restart): the kernel emptied its queue
  for (let i = 0; i < 3; i++) assert.equal(src.send(frame({})).ok, true, `after the queue was emptied, send ${i}`);
  assert.equal(src.send(frame({})).ok, false);
  host.setTx('can0', 0, { dropped: 0, carrierChanges: 2 }); // counters started over: the interface was re-created
  assert.equal(src.send(frame({})).ok, true);
  assert.equal(ch.sent.length, 10);
});

test('--tx-kernel-frames 0 leaves the kernel its own queue; without readable counters no send is held back', async () => {
  const { binding, src } = await startedWith({ txKernelFrames: 0 });
  for (let i = 0; i < 50; i++) assert.equal(src.send(frame({})).ok, true);
  assert.equal(src.kernelTx().held, 50);
  const host = new FakeHost();
  host.addInterface('can1'); // no statistics/ (an unusual driver, a sysfs without them)
  const binding1 = new FakeBinding();
  const src1 = makeSource(host, binding1, ['can1'], { txKernelFrames: 2 });
  await src1.start(new RecordingSink());
  for (let i = 0; i < 10; i++) assert.equal(src1.send(frame({ bus: 'can1' })).ok, true, `send ${i}: what cannot be counted is not held back`);
  assert.equal(binding.last('can0').sent.length, 50);
});

test('frames past their deadline still in the kernel: counted as stale and warned of (tx_stale_in_kernel); none once they went out', async () => {
  const { host, sink, src } = await startedWith({ txKernelFrames: 8 });
  const deadline = performance.now() + 30;
  assert.equal(src.send(frame({}), deadline).ok, true);
  assert.equal(src.send(frame({}), deadline).ok, true);
  assert.equal(src.send(frame({})).ok, true, 'no deadline: never stale');
  await until(() => sink.logs.some((l) => l.code === 'tx_stale_in_kernel'), 3000, 'the warning');
  const warning = sink.logs.find((l) => l.code === 'tx_stale_in_kernel')!;
  assert.equal(warning.level, 'warn');
  // 1 when a look came between the two frames' 200 ms in the kernel (a slow machine), else 2.
  assert.match(warning.message, /the kernel holds [12] frames of this agent for can0 past their deadline \(3 held; is any node acknowledging\?\).*--tx-flush-stale.*one-shot on/);
  await until(() => src.kernelTx().stale === 2, 3000, 'both frames with a deadline stale');
  assert.deepEqual(src.kernelTx(), { held: 3, stale: 2, flushed: 0 });
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(sink.logs.filter((l) => l.code === 'tx_stale_in_kernel').length, 1, 'once, not at every look');
  host.setTx('can0', 103); // they went out after all
  await until(() => src.kernelTx().held === 0, 3000, 'seen sent');
  assert.deepEqual(src.kernelTx(), { held: 0, stale: 0, flushed: 0 });
  // A frame handed over in time and sent at once is never stale (the control: the same deadline, sent).
  assert.equal(src.send(frame({}), performance.now() + 30).ok, true);
  host.setTx('can0', 104);
  await until(() => src.kernelTx().held === 0, 3000, 'seen sent');
  await new Promise((r) => setTimeout(r, 300)); // past its deadline and KERNEL_STUCK_MS
  assert.deepEqual(src.kernelTx(), { held: 0, stale: 0, flushed: 0 });
  assert.equal(sink.logs.filter((l) => l.code === 'tx_stale_in_kernel').length, 1, 'no warning for it');
});

/** A fake `ip link set`: records each call; `down` sets the fake interface down, `up` as `onUp` says. */
function fakeIpLink(
  host: FakeHost,
  onUp: (attempt: number) => 'up' | 'later' | 'fail' = () => 'up',
  onDown: () => 'ok' | 'fail' | 'timeout' = () => 'ok',
): { calls: string[]; ipLink: (iface: string, state: 'down' | 'up') => Promise<void> } {
  const calls: string[] = [];
  let ups = 0;
  return {
    calls,
    ipLink: async (iface, state) => {
      calls.push(`${state} ${iface}`);
      await new Promise((r) => setTimeout(r, 60)); // longer than the poll interval (10 ms): a poll runs meanwhile
      if (state === 'down') {
        const d = onDown();
        if (d === 'fail') throw new Error(`ip link set dev ${iface} down: RTNETLINK answers: Operation not permitted`);
        host.setLink(iface, false);
        if (d === 'timeout') throw new Error(`ip link set dev ${iface} down: timed out`);
        return;
      }
      const u = onUp(++ups);
      if (u === 'fail') throw new Error(`ip link set dev ${iface} up: RTNETLINK answers: Device or resource busy`);
      if (u === 'up') host.setLink(iface, true);
      else setTimeout(() => host.setLink(iface, true), 150); // the carrier back a moment after `up`
    },
  };
}

test('--tx-flush-stale sets the interface down and up when frames of this agent passed their deadline in the kernel: dropped and counted, sends wait meanwhile, not reported down; then one frame at a time until the bus takes frames', async () => {
  const host = new FakeHost();
  host.addInterface('can0');
  host.setTx('can0', 100);
  const ip = fakeIpLink(host, () => 'later');
  const sink = new RecordingSink();
  const src = makeSource(host, new FakeBinding(), ['can0'], { txKernelFrames: 8, flushStale: true, ipLink: ip.ipLink });
  await src.start(sink);
  for (let i = 0; i < 4; i++) assert.equal(src.send(frame({}), performance.now() + 20).ok, true);
  assert.equal(src.send(frame({})).ok, true, 'held behind them, no deadline');
  await until(() => ip.calls.length === 1, 3000, 'the flush');
  const during = src.send(frame({}));
  assert.equal(!during.ok && during.busy && during.kernelHeld, true, 'a send waits while the interface is flushed');
  assert.match(!during.ok ? during.error : '', /can0 is being set down and up to drop stale frames/);
  await until(() => ip.calls.length === 2, 3000, 'up');
  const waiting = src.send(frame({}));
  assert.equal(!waiting.ok && waiting.kernelHeld, true, 'and until the interface reads up again: not failed as down');
  await until(() => sink.logs.some((l) => l.code === 'tx_flushed_stale'), 3000, 'the flush logged');
  assert.deepEqual(ip.calls, ['down can0', 'up can0']);
  assert.match(
    sink.logs.find((l) => l.code === 'tx_flushed_stale')!.message,
    /set can0 down and up: dropped 5 frames of this agent from its kernel queue, [1-4] of them past their deadline/,
  );
  assert.deepEqual(src.kernelTx(), { held: 0, stale: 0, flushed: 5 });
  assert.deepEqual(
    sink.states.filter((st) => st.state === 'down'),
    [],
    'a flush is not a bus going down (the poll ran while it was down)',
  );
  // After the flush: one frame at a time, until the counters move.
  assert.equal(src.send(frame({})).ok, true);
  const second = src.send(frame({}));
  assert.equal(!second.ok && second.kernelHeld, true);
  assert.match(!second.ok ? second.error : '', /one at a time since a flush/);
  host.setTx('can0', 101);
  for (let i = 0; i < 8; i++) assert.equal(src.send(frame({})).ok, true, `the bus takes frames again: send ${i}`);
  assert.equal(src.send(frame({})).ok, false, 'the bound of 8 again');
});

test('a flush refused (no CAP_NET_ADMIN) is logged with what to do and tried again only a minute later; the frames stay counted as stale', async () => {
  const host = new FakeHost();
  host.addInterface('can0');
  host.setTx('can0', 100);
  const ip = fakeIpLink(host, undefined, () => 'fail');
  const sink = new RecordingSink();
  const src = makeSource(host, new FakeBinding(), ['can0'], { flushStale: true, ipLink: ip.ipLink });
  await src.start(sink);
  assert.equal(src.send(frame({}), performance.now() + 20).ok, true);
  await until(() => sink.logs.some((l) => l.code === 'tx_flush_failed'), 3000, 'the failure logged');
  const failed = sink.logs.find((l) => l.code === 'tx_flush_failed')!;
  assert.equal(failed.level, 'error');
  assert.match(failed.message, /could not set can0 down and up to drop 1 stale frames from its kernel queue: .*Operation not permitted \(--tx-flush-stale needs CAP_NET_ADMIN/);
  await new Promise((r) => setTimeout(r, 400));
  assert.deepEqual(ip.calls, ['down can0'], 'no up for an interface still up; not tried at every look');
  assert.deepEqual(src.kernelTx(), { held: 1, stale: 1, flushed: 0 });
  assert.equal(src.send(frame({})).ok, true, 'sends go on');
});

test('the agent never leaves an interface down: a down that timed out is followed by up, an up that fails is tried again, and then at every poll until it works', async () => {
  const host = new FakeHost();
  host.addInterface('can0');
  host.setTx('can0', 100);
  let upWorks = false;
  const ip = fakeIpLink(
    host,
    () => (upWorks ? 'up' : 'fail'),
    () => 'timeout',
  );
  const sink = new RecordingSink();
  const src = makeSource(host, new FakeBinding(), ['can0'], { flushStale: true, ipLink: ip.ipLink });
  await src.start(sink);
  assert.equal(src.send(frame({}), performance.now() + 20).ok, true);
  await until(() => sink.logs.some((l) => l.code === 'tx_flush_failed'), 5000, 'the flush failed');
  assert.deepEqual(ip.calls.slice(0, 4), ['down can0', 'up can0', 'up can0', 'up can0'], 'up after a down that timed out, three times (then the poll)');
  assert.match(sink.logs.find((l) => l.code === 'tx_flush_failed')!.message, /Device or resource busy; can0 is DOWN: the agent tries to set it up at every look/);
  await until(() => ip.calls.length >= 5, 3000, 'the poll trying again');
  upWorks = true;
  await until(() => sink.logs.some((l) => l.code === 'tx_flush_link_up'), 3000, 'up again');
  await new Promise((r) => setTimeout(r, 200));
  const after = ip.calls.length;
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(ip.calls.length, after, 'no more tries once it is up');
  assert.equal(src.send(frame({})).ok, true);
});

test('stop() waits for a flush between its down and its up', async () => {
  const host = new FakeHost();
  host.addInterface('can0');
  host.setTx('can0', 100);
  const ip = fakeIpLink(host);
  const src = makeSource(host, new FakeBinding(), ['can0'], { flushStale: true, ipLink: ip.ipLink });
  await src.start(new RecordingSink());
  assert.equal(src.send(frame({}), performance.now() + 20).ok, true);
  await until(() => ip.calls.length === 1, 3000, 'the flush begun');
  await src.stop();
  assert.deepEqual(ip.calls, ['down can0', 'up can0'], 'up done before stop() returned');
});

test('a link notice (a quick down and up between two looks) and a one-shot controller start the count again; one-shot frames are not tracked', async () => {
  const { host, src } = await startedWith({ txKernelFrames: 3 });
  for (let i = 0; i < 3; i++) assert.equal(src.send(frame({})).ok, true);
  assert.equal(src.send(frame({})).ok, false);
  src.linkNotice('can0'); // the kernel emptied the queue without a count
  assert.equal(src.send(frame({})).ok, true);
  src.controllerOneShot('can0', true); // a frame nobody acknowledges is discarded, counted in neither counter
  for (let i = 0; i < 20; i++) assert.equal(src.send(frame({})).ok, true, `one-shot: send ${i}`);
  assert.equal(src.kernelTx().held, 0);
  src.controllerOneShot('can0', false);
  for (let i = 0; i < 3; i++) assert.equal(src.send(frame({})).ok, true);
  assert.equal(src.send(frame({})).ok, false, 'tracked again');
  host.setTx('can0', 103); // the three went out
  for (let i = 0; i < 3; i++) assert.equal(src.send(frame({})).ok, true);
  assert.equal(src.send(frame({})).ok, false);
  // Seen down by the poll: the kernel emptied the queue.
  host.setLink('can0', false);
  await until(() => src.kernelTx().held === 0, 3000, 'forgotten when down');
  host.setLink('can0', true);
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(src.send(frame({})).ok, true, 'up again: not held back by frames the kernel dropped');
});

test("other programs' frames sent while none of the agent's is held are not taken for the agent's later", async () => {
  const { host, src } = await startedWith({ txKernelFrames: 2 });
  host.setTx('can0', 150); // another program sent 50 frames
  await new Promise((r) => setTimeout(r, 300)); // a look while none of ours is held
  assert.equal(src.send(frame({})).ok, true);
  assert.equal(src.send(frame({})).ok, true);
  assert.equal(src.send(frame({})).ok, false, 'ours still held: the 50 are not counted as ours');
});

test('--tx-flush-stale without CAP_NET_ADMIN for `ip` is said at the start (tx_flush_unavailable); ambient, or root with it, is enough', async () => {
  const all = '000001ffffffffff';
  const none = '0000000000000000';
  const netAdmin = '0000000000001000'; // bit 12
  for (const [uid, eff, amb, warned] of [
    [999, none, none, true],
    [999, netAdmin, netAdmin, false], // systemd's AmbientCapabilities=
    [0, all, none, false], // root
    [999, netAdmin, none, true], // setcap on the node binary: not passed to `ip`
  ] as const) {
    const host = new FakeHost();
    host.addInterface('can0');
    mkdirSync(join(host.procRoot, 'self'), { recursive: true });
    writeFileSync(
      join(host.procRoot, 'self', 'status'),
      `Name:\tnode\nUid:\t${uid}\t${uid}\t${uid}\t${uid}\nCapInh:\t${none}\nCapPrm:\t${eff}\nCapEff:\t${eff}\nCapBnd:\t${all}\nCapAmb:\t${amb}\n`,
    );
    const sink = new RecordingSink();
    await makeSource(host, new FakeBinding(), ['can0'], { flushStale: true }).start(sink);
    const said = sink.logs.filter((l) => l.code === 'tx_flush_unavailable');
    assert.equal(said.length, warned ? 1 : 0, `uid ${uid} CapEff ${eff} CapAmb ${amb}`);
    if (warned) assert.match(said[0]!.message, /--tx-flush-stale needs CAP_NET_ADMIN, which this process lacks.*AmbientCapabilities=CAP_NET_ADMIN/);
  }
});

test('send refuses what cannot be sent, with a reason', async () => {
  const host = new FakeHost();
  host.addInterface('can0');
  host.addInterface('can1', { mtu: 16 });
  const binding = new FakeBinding();
  const src = makeSource(host, binding, ['can0', 'can1']);
  const sink = new RecordingSink();
  await src.start(sink);

  const expectError = (f: CanFrame, re: RegExp): void => {
    const r = src.send(f);
    assert.equal(r.ok, false);
    assert.equal(!r.ok && r.busy, false);
    assert.match(!r.ok ? r.error : '', re);
  };
  expectError(frame({ bus: 'can9' }), /bus can9 is not opened by this agent/);
  expectError(frame({ err: true, id: 0x40 }), /error frames cannot be sent/);
  expectError(frame({ id: 0x800 }), /does not fit 11 bits/);
  expectError(frame({ dlc: 9, data: new Uint8Array(8) }), /DLC 9/);
  expectError(frame({ bus: 'can1', fd: true, dlc: 12, data: new Uint8Array(12) }), /can1 is not in CAN FD mode \(mtu 16\)/);

  host.setLink('can0', false);
  await until(() => sink.states.some((s) => s.bus === 'can0' && s.state === 'down'), 2000, 'can0 down');
  expectError(frame({}), /can0 is down; bring it up/);
  assert.equal(binding.last('can0').sent.length, 0);
  assert.equal(binding.last('can1').sentFD.length, 0);
});

// ---- the real package on this host ----

test('the real socketcan package loads, and start() explains a kernel without SocketCAN', async (t) => {
  const binding = loadSocketCanBinding();
  assert.equal(typeof binding.createRawChannelWithOptions, 'function');
  assert.equal(loadSocketCanBinding(), binding, 'loaded once');

  const hasCanRaw = (): boolean => {
    try {
      return /^CAN_RAW\s/m.test(readFileSync('/proc/net/protocols', 'utf8'));
    } catch {
      return false;
    }
  };
  if (hasCanRaw()) {
    skipOrFail(t, 'this host has AF_CAN (CAN_RAW in /proc/net/protocols); the no-SocketCAN path cannot be exercised', { evenUnderCi: true });
    return;
  }
  const src = new SocketCanSource({ interfaces: ['vcan0'] });
  let error: Error | null = null;
  try {
    await src.start(new RecordingSink());
  } catch (e) {
    error = e as Error;
  } finally {
    await src.stop();
  }
  if (!error) {
    skipOrFail(t, 'vcan0 opened: this host has SocketCAN after all', { evenUnderCi: true });
    return;
  }
  if (!/no SocketCAN/.test(error.message) && hasCanRaw()) {
    skipOrFail(t, `the kernel loaded can_raw on demand, so the no-SocketCAN path cannot be exercised (${error.message})`, { evenUnderCi: true });
    return;
  }
  assert.match(error.message, /cannot open vcan0: this kernel has no SocketCAN \(AF_CAN\): load the can and can_raw modules \(modprobe can_raw\) or use --sim\/--replay/);
});
