/**
 * Bus health parts without processes: exact frame bit counts (hand-computed, and against a plain
 * bit-string reference), the error-frame decoder, the `ip -json -details -statistics link` parser on
 * captured and hand-written output (test/fixtures/ip-link/README.md), the load meter and the monitor's
 * events, warnings and metrics (with a fake readLinks, across failed `ip` reads too).
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { until } from '../../helpers/until.js';
import { tempDir } from '../../helpers/processes.js';
import { registerBusHealthMetrics } from '../../../agent/bus-health/bus-health-metrics.js';
import { BusHealthMonitor, heldFramesAdvice } from '../../../agent/bus-health/bus-health-monitor.js';
import { BusLoadMeter } from '../../../agent/bus-health/bus-load.js';
import { linkOfMonitorLine, monitorLinks } from '../../../agent/bus-health/link-monitor.js';
import { parseIpLinkJson, type LinkHealth } from '../../../agent/bus-health/ip-link.js';
import { frameBits } from '../../../core/can/bit-count.js';
import { decodeErrorFrame } from '../../../core/can/error-frame.js';
import type { CanFrame } from '../../../core/can/frame.js';
import type { BusStateData } from '../../../core/console/events.js';
import { parseEventData } from '../../../core/console/event-schemas.js';
import { canFrameData } from '../../../core/console/normalize.js';

function frame(p: Partial<CanFrame> & { id: number }): CanFrame {
  const data = p.data ?? new Uint8Array();
  return { bus: 'can0', ext: false, rtr: false, err: false, fd: false, brs: false, esi: false, dlc: data.length, data, tsUs: 0, direction: 'rx', ...p };
}

// ---- bit counting ----

/** A deliberately plain reference: the frame as a '0'/'1' string, CRC-15 by long division, stuffing by scanning. */
function referenceClassicBits(f: CanFrame): number {
  const b = (v: number, n: number): string => v.toString(2).padStart(n, '0');
  let s = f.ext ? '0' + b(f.id >>> 18, 11) + '11' + b(f.id & 0x3ffff, 18) + (f.rtr ? '1' : '0') + '00' : '0' + b(f.id, 11) + (f.rtr ? '1' : '0') + '00';
  s += b(f.dlc, 4);
  if (!f.rtr) for (const x of f.data) s += b(x, 8);
  let crc = 0;
  for (const c of s) {
    const fb = ((crc >> 14) & 1) ^ Number(c);
    crc = (crc << 1) & 0x7fff;
    if (fb) crc ^= 0x4599;
  }
  s += b(crc, 15);
  let stuffed = 0;
  let last = '';
  let run = 0;
  for (const c of s) {
    if (c === last && ++run === 5) {
      stuffed++;
      last = c === '0' ? '1' : '0';
      run = 1;
    } else if (c !== last) {
      last = c;
      run = 1;
    }
  }
  return s.length + stuffed + 13;
}

test('classic frame bits, computed by hand: id 0, no data', () => {
  // SOF + 11 id + RTR + IDE + r0 + 4 DLC = 19 zero bits; CRC-15 of zeros is 0: 34 zero bits in a row, so a
  // stuff bit after every 5 zeros (the stuff bit starts a run of ones, broken by the next zero): 6.
  // Then CRC delimiter, ACK, ACK delimiter, 7 EOF, 3 intermission = 13. 34 + 6 + 13 = 53.
  assert.deepEqual(frameBits(frame({ id: 0 })), { nominal: 53, data: 0 });
});

test('classic frame bits, computed by hand: a remote frame has no data field', () => {
  // 0x555 = 101 0101 0101 alternates; RTR 1: SOF..DLC = 0 10101010101 1 0 0 0011 has no 5 equal bits;
  // same as a data frame with DLC 3 minus its 24 data bits (and a different CRC).
  const rtr = frameBits(frame({ id: 0x555, rtr: true, dlc: 3 })).nominal;
  assert.equal(rtr, referenceClassicBits(frame({ id: 0x555, rtr: true, dlc: 3 })));
  assert.ok(rtr < 19 + 15 + 13 + 8, `an RTR frame is at most 55 bits, got ${rtr}`);
});

test('classic frame bits match a plain bit-string reference: standard, extended, RTR, DLC 9-15, 5000 random frames', () => {
  const fixed: CanFrame[] = [
    frame({ id: 0x123, data: Uint8Array.from([0, 1, 2, 3, 4, 5, 6, 7]) }),
    frame({ id: 0x7e8, data: Uint8Array.from([2, 0x10, 3, 0, 0, 0, 0, 0]) }),
    frame({ id: 0x18daf110, ext: true, data: new Uint8Array(8).fill(0xff) }),
    frame({ id: 0x1f334455, ext: true, data: Uint8Array.from([0x11, 0x22]) }),
    frame({ id: 0x100, dlc: 12, data: new Uint8Array(8).fill(0xaa) }),
  ];
  // Values from an independent Python bit-string implementation, written before this code.
  assert.deepEqual(
    fixed.slice(0, 4).map((f) => frameBits(f).nominal),
    [120, 124, 146, 85],
  );
  let seed = 42;
  const rnd = (n: number): number => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) % n;
  for (let i = 0; i < 5000; i++) {
    const ext = rnd(2) === 1;
    const rtr = rnd(8) === 0;
    const len = rnd(9);
    const data = rtr ? new Uint8Array() : Uint8Array.from({ length: len }, () => (rnd(4) === 0 ? rnd(256) : rnd(2) ? 0xff : 0));
    fixed.push(frame({ id: rnd(ext ? 0x20000000 : 0x800), ext, rtr, dlc: len, data }));
  }
  for (const f of fixed)
    assert.equal(frameBits(f).nominal, referenceClassicBits(f), `id ${f.id.toString(16)} ext ${f.ext} rtr ${f.rtr} data ${Buffer.from(f.data).toString('hex')}`);
});

test('CAN FD frame bits, computed by hand, with and without the bit-rate switch', () => {
  // SOF + 11 id + RRS + IDE = 14 zeros (stuff bits after the 5th and 10th), FDF 1, res 0, BRS.
  // Without BRS: res, BRS, ESI, 4 DLC = 7 zeros: one stuff bit. 17 + 5 bits, 3 stuff bits, then the
  // stuff count (4) + CRC-17 + 6 fixed stuff bits + CRC delimiter = 28, then ACK, ACK delimiter, EOF, IFS = 12.
  assert.deepEqual(frameBits(frame({ id: 0, fd: true })), { nominal: 17 + 5 + 3 + 28 + 12, data: 0 });
  // With BRS (1): arbitration = 17 bits + 2 stuff + 12 tail = 31; data phase = ESI + DLC (5 zeros: a stuff
  // bit after the 5th) + 28 = 34.
  assert.deepEqual(frameBits(frame({ id: 0, fd: true, brs: true })), { nominal: 31, data: 34 });
  // 64 bytes: CRC-21 with 7 fixed stuff bits; all-0x55 data never stuffs. Data phase: ESI 0, DLC 1111,
  // 512 data bits, 4 + 21 + 7 + 1.
  const big = frameBits(frame({ id: 0, fd: true, brs: true, esi: false, data: new Uint8Array(64).fill(0x55) }));
  assert.deepEqual(big, { nominal: 31, data: 1 + 4 + 512 + 4 + 21 + 7 + 1 });
});

test('error frames take no bus time (they are controller reports, not frames on the wire)', () => {
  assert.deepEqual(frameBits(frame({ id: 0x40, err: true, ext: true, dlc: 8, data: new Uint8Array(8) })), { nominal: 0, data: 0 });
});

// ---- error frames ----

test('every error class and detail is put into words and named', () => {
  const d = (id: number, bytes: number[]) => decodeErrorFrame(id, Uint8Array.from([...bytes, 0, 0, 0, 0, 0, 0, 0, 0].slice(0, 8)));
  assert.deepEqual(d(0x1, []), { classes: ['tx_timeout'], text: 'transmit timeout' });
  assert.equal(d(0x2, [12]).text, 'lost arbitration at bit 12');
  assert.equal(d(0x4, [0, 0x04 | 0x20]).text, 'controller: RX errors reached warning level, TX errors reached error-passive');
  assert.equal(d(0x4, [0, 0x01]).text, 'controller: RX buffer overflow');
  assert.equal(d(0x8 | 0x80, [0, 0, 0x04, 0x0a]).text, 'protocol violation: bit stuffing error in the data field; bus error');
  assert.deepEqual(d(0x8 | 0x80, [0, 0, 0x04, 0x0a]).classes, ['protocol', 'bus_error']);
  assert.equal(d(0x8, [0, 0, 0x08 | 0x80, 0x19]).text, 'protocol violation: unable to send a dominant bit, error while transmitting in the ACK slot');
  assert.equal(d(0x10, [0, 0, 0, 0, 0x40]).text, 'transceiver: CAN-L wire missing');
  assert.equal(d(0x10, [0, 0, 0, 0, 0x44]).text, 'transceiver: CAN-H wire missing, CAN-L wire missing', 'a nibble per wire');
  assert.match(d(0x20, []).text, /^no ACK on transmission/);
  assert.equal(d(0x40, []).text, 'bus-off');
  assert.equal(d(0x100, []).text, 'controller restarted');
  const cnt = d(0x4 | 0x200, [0, 0x10, 0, 0, 0, 0, 0, 130]);
  assert.deepEqual([cnt.tec, cnt.rec, cnt.text], [0, 130, 'controller: RX errors reached error-passive (error counters: TX 0, RX 130)']);
  assert.match(d(0x4000, []).text, /unknown error class bits 0x4000/);
});

test('a console error frame carries the decoded words next to the raw bytes, and the bridge accepts it', () => {
  const data = canFrameData(frame({ id: 0x4, err: true, ext: true, dlc: 8, data: Uint8Array.from([0, 0x20, 0, 0, 0, 0, 0, 0]) }));
  assert.equal(data.id, '0x00000004');
  assert.equal(data.data_hex, '00 20 00 00 00 00 00 00');
  assert.deepEqual(data.error_classes, ['controller']);
  assert.equal(data.error_text, 'controller: TX errors reached error-passive');
  assert.equal(parseEventData('can_frame', data).ok, true);
});

// ---- ip -json parser ----

const fixture = (name: string): Map<string, LinkHealth> => parseIpLinkJson(readFileSync(new URL(`../../../../test/fixtures/ip-link/${name}`, import.meta.url), 'utf8'));

test('ip -json: a real SJA1000 controller (captured under qemu) in error-active', () => {
  const l = fixture('captured-sja1000-error-active.json').get('can1')!;
  assert.deepEqual(
    { up: l.up, kind: l.kind, state: l.state, tec: l.tec, rec: l.rec, bitrate: l.bitrate, sp: l.samplePoint, dbr: l.dataBitrate, restart: l.restartMs, txq: l.txqlen },
    { up: true, kind: 'can', state: 'error-active', tec: 0, rec: 0, bitrate: 500000, sp: 0.875, dbr: null, restart: 0, txq: 10 },
  );
  assert.deepEqual(l.counters, {
    bus_errors: 0,
    arbitration_lost: 0,
    error_warning: 0,
    error_passive: 0,
    bus_off: 0,
    restarts: 0,
    rx_errors: 0,
    rx_dropped: 0,
    rx_overruns: 0,
    tx_errors: 0,
    tx_dropped: 0,
  });
});

test('ip -json: stopped (interface down), vcan without a controller', () => {
  const s = fixture('captured-sja1000-stopped.json').get('can0')!;
  assert.deepEqual([s.up, s.state, s.bitrate, s.samplePoint, s.restartMs], [false, 'stopped', 125000, 0.75, 100]);
  const v = fixture('captured-vcan.json').get('vcan0')!;
  assert.deepEqual([v.up, v.kind, v.state, v.tec, v.bitrate], [true, 'vcan', null, null, null]);
});

test('ip -json -s -s: rx missed comes from missed_errors (iproute2 prints it only with -statistics twice)', () => {
  const links = JSON.parse(readFileSync(new URL('../../../../test/fixtures/ip-link/captured-sja1000-error-active.json', import.meta.url), 'utf8')) as {
    stats64?: { rx?: Record<string, number> };
  }[];
  links[0]!.stats64!.rx = { ...links[0]!.stats64!.rx, length_errors: 0, crc_errors: 0, frame_errors: 0, fifo_errors: 0, missed_errors: 7 };
  const s = [...parseIpLinkJson(JSON.stringify(links)).values()][0]!;
  assert.equal(s.counters.rx_missed, 7);
});

test('ip -json: error-warning, error-passive, bus-off and a restart (hand-written from iproute2 and kernel sources)', () => {
  const w = fixture('hand-error-warning.json').get('can0')!;
  assert.deepEqual([w.state, w.tec, w.rec, w.counters.bus_errors, w.counters.error_warning], ['error-warning', 100, 0, 31, 1]);
  const p = fixture('hand-error-passive.json').get('can0')!;
  assert.deepEqual([p.state, p.tec, p.counters.error_passive, p.counters.rx_errors], ['error-passive', 136, 1, 3]);
  const o = fixture('hand-bus-off.json').get('can0')!;
  assert.deepEqual([o.state, o.tec, o.counters.bus_off, o.restartMs], ['bus-off', 0, 1, 0]);
  const r = fixture('hand-restarted.json').get('can0')!;
  assert.deepEqual([r.state, r.counters.restarts, r.counters.rx_dropped, r.counters.rx_overruns], ['error-active', 2, 4, 2]);
});

test('ip -json: CAN FD data bit timing, sample point as a number (older iproute2)', () => {
  const l = fixture('hand-fd-older-iproute2.json').get('can2')!;
  assert.deepEqual([l.bitrate, l.samplePoint, l.dataBitrate, l.dataSamplePoint, l.counters.rx_missed, l.counters.tx_dropped], [500000, 0.8, 2000000, 0.75, 7, 2]);
});

test('ip -json: garbage gets an error that says what is wrong; an interface of another kind that does not fit is skipped, not the reading', () => {
  assert.throws(() => parseIpLinkJson('Usage: ip link'), /not JSON/);
  assert.throws(() => parseIpLinkJson('{"ifname": "can0"}'), /unexpected ip -json link output/);
  assert.equal(parseIpLinkJson('[]').size, 0);
  // A gateway's bridge or VPN interface with fields of its own (here info_xstats as a list) next to can1.
  const can = JSON.parse(readFileSync(new URL('../../../../test/fixtures/ip-link/captured-sja1000-error-active.json', import.meta.url), 'utf8')) as unknown[];
  const odd = { ifname: 'br0', flags: ['UP'], linkinfo: { info_kind: 'bridge', info_xstats: [{ multicast: {} }] } };
  const links = parseIpLinkJson(JSON.stringify([odd, { ifname: 3 }, ...can]));
  assert.deepEqual([...links.keys()], ['can1'], 'the CAN bus is read; the interfaces that do not fit are skipped');
  assert.equal(links.get('can1')!.state, 'error-active');
  // A CAN interface that does not fit fails the reading (the last good one is kept, and it is logged).
  const badCan = { ifname: 'can2', link_type: 'can', linkinfo: { info_kind: 'can', info_data: { berr_counter: { tx: -1, rx: 0 } } } };
  assert.throws(() => parseIpLinkJson(JSON.stringify([...can, badCan])), /unexpected ip -json link output for a CAN interface/);
});

// ---- load and the monitor ----

test('load: the exact bits of the frames stamped in each second / the bitrate; FD data phase at its own rate; a second closes when complete; late frames, stalls, clock steps; peak over a minute', () => {
  const rates = () => ({ nominal: 500_000, data: 2_000_000 });
  const m = new BusLoadMeter(10_000); // a bus's first open second is 10 (Unix s)
  const at = (tsMs: number, p: Partial<CanFrame> = {}) => m.add(frame({ id: 0, tsUs: tsMs * 1000, ...p })); // 53 bits unless FD
  for (let i = 0; i < 1000; i++) at(10_200);
  m.roll(11_499, ['can0'], rates);
  assert.equal(m.figures('can0').load, null, 'second 10 stays open for the grace after its end');
  // A frame the kernel stamped in second 10 but handed over late still counts there; one of second 11 proves 10 complete.
  at(10_999.999);
  at(11_000);
  m.roll(11_500, ['can0'], rates);
  assert.deepEqual([m.figures('can0').load, m.figures('can0').secondMs, m.figures('can0').frameRate], [53_053 / 500_000, 10_000, 1001]);
  // Delivery lagging: frames keep coming but none of a later second yet, so second 11 waits.
  for (let i = 0; i < 1000; i++) at(11_500, { fd: true, brs: true }); // 31 nominal + 34 data bits each
  m.roll(12_600, ['can0'], rates);
  assert.equal(m.figures('can0').secondMs, 10_000, 'second 11 waits while frames come in late');
  at(11_900);
  at(12_100);
  m.roll(12_700, ['can0'], rates);
  assert.equal(m.figures('can0').load, 31_106 / 500_000 + 34_000 / 2_000_000);
  // Two quiet steps (no frame since the one before): the second closes on the clock.
  m.roll(13_600, ['can0'], rates);
  assert.equal(m.figures('can0').secondMs, 11_000, 'one quiet step is not enough');
  m.roll(13_650, ['can0'], rates);
  assert.deepEqual([m.figures('can0').load, m.figures('can0').secondMs], [53 / 500_000, 12_000]);
  // Too late (its second closed): counted in the first open second, so no bit is lost.
  at(11_100);
  at(13_100);
  m.roll(16_700, ['can0'], rates);
  assert.equal(m.figures('can0').secondMs, 12_000, 'frames came since the last step: waiting for a later one');
  m.roll(17_700, ['can0'], rates);
  m.roll(17_750, ['can0'], rates);
  let fig = m.figures('can0');
  assert.deepEqual(
    fig.history,
    [53_053 / 500_000, 31_106 / 500_000 + 34_000 / 2_000_000, 53 / 500_000, 106 / 500_000, 0, 0, 0],
    'after a stall, several seconds close at once, each with its own frames',
  );
  assert.equal(fig.peak, 53_053 / 500_000);
  // Traffic, then the agent stalls: its first step comes long after, before the backlog is read, and
  // closes nothing empty; once the backlog is read, each second gets its own frames.
  at(17_200);
  m.roll(18_000, ['can0'], rates);
  m.roll(27_000, ['can0'], rates);
  assert.equal(m.figures('can0').secondMs, 16_000, 'one quiet step after a stall is not enough');
  for (let t = 17_300; t < 26_000; t += 100) at(t);
  m.roll(27_500, ['can0'], rates);
  assert.deepEqual([m.figures('can0').secondMs, m.figures('can0').load], [24_000, 530 / 500_000], 'the backlog read: each second with its own frames');
  assert.equal(m.figures('can0').history.at(-8), (8 * 53) / 500_000, 'second 17');
  // Frames keep coming, their timestamps stuck in one second (a frozen clock): the clock closes after 10 steps.
  for (let i = 0; i < 10; i++) {
    at(25_500);
    m.roll(28_000 + i * 1000, ['can0'], rates);
  }
  fig = m.figures('can0');
  assert.deepEqual([fig.secondMs, fig.history.at(-11)], [35_000, (530 + 530) / 500_000]);
  // A stall longer than the open seconds: a frame 70 s ahead closes the oldest ones (its timestamp proves
  // them complete) instead of landing in a wrong second.
  at(36_100);
  at(36_200 + 70_000);
  fig = m.figures('can0');
  assert.deepEqual([fig.secondMs, fig.history.includes(53 / 500_000)], [42_000, true]);
  m.roll(107_000, ['can0'], rates);
  m.roll(108_000, ['can0'], rates);
  m.roll(109_000, ['can0'], rates);
  assert.equal(m.figures('can0').history.at(-1 - (107 - 106)), 53 / 500_000, 'second 106 has its frame');
  // The wall clock steps back: counting goes on from the new current second, the pending bits with it.
  at(18_200);
  m.roll(10_700, ['can0'], rates);
  at(10_100);
  at(11_000);
  m.roll(11_600, ['can0'], rates);
  assert.deepEqual([m.figures('can0').load, m.figures('can0').secondMs], [106 / 500_000, 10_000], 'the pending frame and the new one, none lost');
  // Without a bitrate there is no load, and no history.
  m.roll(12_600, ['can0'], () => ({ nominal: null, data: null }));
  m.roll(13_600, ['can0'], () => ({ nominal: null, data: null }));
  fig = m.figures('can0');
  assert.deepEqual([fig.load, fig.peak, fig.history], [null, null, []]);
});

// The frame path now skips to the last minute of such a step instead of closing every second between
// (a year: ~1 s with the event loop held); that cost is not asserted here (no timing in tests), the result is.
test('load: a received frame stamped a year after the last (NTP after a boot without RTC): a minute of history at most, the new second closed', () => {
  const rates = () => ({ nominal: 500_000, data: null });
  const m = new BusLoadMeter(10_000);
  m.add(frame({ id: 0, tsUs: 10_200 * 1000 }));
  const yearLater = (10_000 + 365 * 86_400_000) * 1000;
  m.add(frame({ id: 0, tsUs: yearLater }));
  m.add(frame({ id: 0, tsUs: yearLater + 1_000_000 }));
  m.roll(yearLater / 1000 + 2_600, ['can0'], rates);
  const fig = m.figures('can0');
  assert.ok(fig.history.length <= 60, `a minute of history at most (${fig.history.length})`);
  assert.equal(fig.secondMs, Math.floor(yearLater / 1e6) * 1000, 'the second of the new time closed');
});

test('monitor: bus_state on change and every interval; warn logs on error-passive, bus-off and a restart', async () => {
  const states: BusStateData[] = [];
  const logs: { level: string; code: string; message: string }[] = [];
  let links = fixture('captured-sja1000-error-active.json');
  let clock = 0;
  const mon = new BusHealthMonitor({
    buses: () => ['can1'],
    linkState: () => 'up',
    readLinks: async () => links,
    flagBitrates: new Map(),
    intervalSeconds: 5,
    publish: (d) => states.push(d),
    log: (level, message, code) => logs.push({ level, code, message }),
    now: () => clock,
    wallNow: () => clock,
  });
  const step = async (): Promise<void> => {
    clock += 1000;
    await mon.tick();
  };
  await step();
  assert.equal(states.length, 1, 'the first reading is published (the bitrate is known from then on)');
  for (let i = 0; i < 1000; i++) mon.frame(frame({ bus: 'can1', id: 0, tsUs: 1_200_000 }));
  mon.frame(frame({ bus: 'can1', id: 0, tsUs: 2_100_000 })); // a frame of second 2: second 1 is complete
  mon.frame(frame({ bus: 'can1', id: 0x8 | 0x80, err: true, ext: true, dlc: 8, data: Uint8Array.from([0, 0, 4, 0x0a, 0, 0, 0, 0]) }));
  await step();
  await step(); // second 1 closes once its end + the grace has passed
  const s0 = mon.snapshot()[0]!;
  assert.deepEqual(
    { state: s0.state, bitrate: s0.bitrate, src: s0.bitrate_source, sp: s0.sample_point, load: s0.load, errs: s0.error_frames },
    { state: 'error-active', bitrate: 500000, src: 'kernel', sp: 0.875, load: 0.106, errs: { protocol: 1, bus_error: 1 } },
  );
  for (let i = 0; i < 2; i++) await step();
  assert.equal(states.length, 1, 'nothing changed: nothing published before the interval');
  await step();
  assert.equal(states.length, 2, 'the periodic bus_state after 5 s');
  assert.equal(states[1]!.load, 0, 'the last second had no frames');
  const rename = (m: Map<string, LinkHealth>): Map<string, LinkHealth> => new Map([['can1', { ...m.get('can0')!, name: 'can1' }]]);
  links = rename(fixture('hand-error-passive.json'));
  await step();
  assert.equal(states.at(-1)!.state, 'error-passive');
  assert.deepEqual(logs.at(-1), { level: 'warn', code: 'bus_error_passive', message: logs.at(-1)!.message });
  assert.match(logs.at(-1)!.message, /can1: error-passive.*TX errors 136/);
  assert.match(logs.at(-1)!.message, /up to 10 the kernel holds \(txqueuelen\) go out whenever one returns.*ip link set can1 type can one-shot on/, 'the advice, where it matters');
  links = rename(fixture('hand-bus-off.json'));
  await step();
  assert.equal(logs.at(-1)!.code, 'bus_off');
  links = rename(fixture('hand-restarted.json'));
  await step();
  assert.deepEqual(
    logs.slice(-2).map((l) => [l.level, l.code]),
    [
      ['info', 'bus_error_active'],
      ['warn', 'bus_restarted'],
    ],
  );
  assert.equal(states.length, 5);
  for (const s of states) assert.equal(parseEventData('bus_state', s).ok, true, 'the bridge accepts every bus_state');
});

test('monitor: without a kernel view (sim, replay) the --bitrate gives the load, state stays unknown', async () => {
  const states: BusStateData[] = [];
  let clock = 0;
  const mon = new BusHealthMonitor({
    buses: () => ['can0'],
    linkState: () => 'up',
    flagBitrates: new Map([['can0', 250_000]]),
    intervalSeconds: 5,
    publish: (d) => states.push(d),
    log: () => {},
    now: () => clock,
    wallNow: () => clock,
  });
  for (let i = 0; i < 500; i++) mon.frame(frame({ id: 0 }));
  mon.frame(frame({ id: 0, tsUs: 1_000_000 })); // second 0 is complete
  clock = 1500;
  await mon.tick();
  const s = mon.snapshot()[0]!;
  assert.equal(s.ts, '1970-01-01T00:00:01.000Z', 'ts: the end of the second the load covers');
  assert.deepEqual([s.link, s.state, s.bitrate, s.bitrate_source, s.load, s.frame_rate], ['up', null, 250000, 'flag', 0.106, 500]);
});

// ---- the monitor across failed `ip` reads ----

/** One `ip` reading: a good one (the interfaces), or a failed one (ip failing, or killed by its 3 s timeout). */
type Reading = Map<string, LinkHealth> | Error;
const TIMED_OUT = (): Error => new Error('ip -json -details -statistics -statistics link show failed: Command failed (killed after 3000 ms)');

/** A fixture's interface as can0 (the hand-written ones are can0, the captured error-active one is can1). */
function can0(name: string, change: (l: LinkHealth) => LinkHealth = (l) => l): Map<string, LinkHealth> {
  const l = [...fixture(name).values()].find((x) => x.kind === 'can')!;
  return new Map([['can0', change({ ...l, name: 'can0' })]]);
}

/**
 * A monitor of can0 whose readLinks gives the next reading of the script at each step (a step is a second
 * of the fake clocks), its bus_state events, its logs, and its metrics as /metrics shows them.
 */
function scripted(intervalSeconds = 3600) {
  const states: BusStateData[] = [];
  const logs: { level: string; code: string; message: string; details: Record<string, unknown> }[] = [];
  let next: Reading = new Map();
  let clock = 0;
  const mon = new BusHealthMonitor({
    buses: () => ['can0'],
    linkState: () => 'up',
    readLinks: async () => {
      if (next instanceof Error) throw next;
      return next;
    },
    flagBitrates: new Map(),
    intervalSeconds,
    publish: (d) => states.push(d),
    log: (level, message, code, details) => logs.push({ level, code, message, details }),
    now: () => clock,
    wallNow: () => clock,
  });
  const registry = new Registry();
  registerBusHealthMetrics(registry, () => mon);
  return {
    mon,
    states,
    logs,
    async step(r: Reading): Promise<void> {
      next = r;
      clock += 1000;
      await mon.tick();
    },
    /** The canrelay_bus_state and canrelay_bus_error_counter series, as scraped. */
    async metrics(): Promise<string[]> {
      return (await registry.metrics()).split('\n').filter((x) => /^canrelay_bus_(state|error_counter)\{/.test(x));
    },
  };
}

/** The canrelay_bus_state series of can0 in `state`, and TEC/REC, as a scrape shows them. */
function expectedSeries(state: string, tec: number, rec: number): string[] {
  const states = ['error-active', 'error-warning', 'error-passive', 'bus-off', 'stopped', 'sleeping'];
  return [
    ...states.map((s) => `canrelay_bus_state{bus="can0",state="${s}"} ${s === state ? 1 : 0}`),
    `canrelay_bus_error_counter{bus="can0",direction="tx"} ${tec}`,
    `canrelay_bus_error_counter{bus="can0",direction="rx"} ${rec}`,
  ];
}

test('monitor: error-passive, a failed ip read, error-active: the failed step shows the last known state and publishes nothing; then bus_error_active', async () => {
  const h = scripted();
  await h.step(can0('captured-sja1000-error-active.json'));
  await h.step(can0('hand-error-passive.json'));
  assert.deepEqual(
    h.states.map((s) => s.state),
    ['error-active', 'error-passive'],
  );
  assert.deepEqual(
    h.logs.map((l) => l.code),
    ['bus_error_passive'],
  );
  assert.deepEqual((await h.metrics()).sort(), expectedSeries('error-passive', 136, 0).sort());

  await h.step(TIMED_OUT());
  assert.equal(h.states.length, 2, 'a failed read is no change: no bus_state (it was one with state null)');
  const s = h.mon.snapshot()[0]!;
  assert.deepEqual([s.link, s.state, s.tec, s.rec, s.bitrate, s.counters.error_passive], ['up', 'error-passive', 136, 0, 500000, 1], 'the snapshot keeps the last known values');
  assert.deepEqual(
    (await h.metrics()).sort(),
    expectedSeries('error-passive', 136, 0).sort(),
    'the canrelay_bus_state series stay (an alert on them neither resolves nor fires again)',
  );
  assert.deepEqual(
    h.logs.slice(1).map((l) => [l.level, l.code]),
    [['warn', 'bus_health_unavailable']],
    'the failed read is logged',
  );
  assert.match(h.logs[1]!.message, /cannot read controller state.*killed after 3000 ms.*last known/);

  await h.step(can0('captured-sja1000-error-active.json'));
  assert.deepEqual(
    h.logs.slice(2).map((l) => [l.level, l.code]),
    [
      ['info', 'bus_health_restored'],
      ['info', 'bus_error_active'],
    ],
    'back to error-active is logged, against the last known state (error-passive), not the failed step',
  );
  assert.equal(h.logs[3]!.details.previous, 'error-passive');
  assert.deepEqual(
    h.states.map((x) => x.state),
    ['error-active', 'error-passive', 'error-active'],
  );
  assert.deepEqual((await h.metrics()).sort(), expectedSeries('error-active', 0, 0).sort());
});

test('monitor: bus-off, a failed ip read, bus-off: one bus_off log, one bus_state, the bus-off series all along', async () => {
  const h = scripted();
  await h.step(can0('captured-sja1000-error-active.json'));
  await h.step(can0('hand-bus-off.json'));
  assert.deepEqual((await h.metrics()).sort(), expectedSeries('bus-off', 0, 0).sort());
  await h.step(new Error('ip -json -details -statistics -statistics link show failed: Cannot send dump request: Resource temporarily unavailable'));
  assert.deepEqual((await h.metrics()).sort(), expectedSeries('bus-off', 0, 0).sort(), 'still bus-off while the read fails');
  await h.step(can0('hand-bus-off.json'));
  assert.deepEqual((await h.metrics()).sort(), expectedSeries('bus-off', 0, 0).sort());
  assert.deepEqual(
    h.logs.map((l) => l.code),
    ['bus_off', 'bus_health_unavailable', 'bus_health_restored'],
    'bus-off is logged once: it never ended',
  );
  assert.deepEqual(
    h.states.map((s) => s.state),
    ['error-active', 'bus-off'],
    'no bus_state for the failed read, nor for its return to the same state',
  );
});

test('monitor: restarts 0, a failed ip read, restarts 1: bus_restarted is logged and published', async () => {
  const h = scripted();
  await h.step(can0('captured-sja1000-error-active.json'));
  await h.step(TIMED_OUT());
  await h.step(can0('captured-sja1000-error-active.json', (l) => ({ ...l, counters: { ...l.counters, restarts: 1, bus_off: 1 } })));
  const restarted = h.logs.filter((l) => l.code === 'bus_restarted');
  assert.equal(restarted.length, 1, `one bus_restarted (logs: ${h.logs.map((l) => l.code).join(', ')})`);
  assert.match(restarted[0]!.message, /can0: the controller restarted after bus-off \(1 time, 1 in all\)/);
  assert.deepEqual(
    h.states.map((s) => [s.state, s.counters.restarts]),
    [
      ['error-active', 0],
      ['error-active', 1],
    ],
  );
});

test('monitor: a failing ip is logged at most once a minute, with the failed reads counted; restored only after a logged failure', async () => {
  const h = scripted();
  const codes = (): string[] => h.logs.map((l) => l.code);
  await h.step(can0('captured-sja1000-error-active.json'));
  await h.step(TIMED_OUT()); // t = 2 s
  await h.step(TIMED_OUT());
  await h.step(can0('captured-sja1000-error-active.json'));
  assert.deepEqual(codes(), ['bus_health_unavailable', 'bus_health_restored']);
  // Flaky under load: a read fails every few seconds. Within the minute nothing more is logged.
  for (let i = 0; i < 10; i++) {
    await h.step(TIMED_OUT());
    await h.step(can0('captured-sja1000-error-active.json'));
  }
  assert.deepEqual(codes(), ['bus_health_unavailable', 'bus_health_restored'], 'repeated failures within a minute are held back');
  // Then ip fails for good: said once the minute since the last line has passed, with the reads that failed meanwhile.
  for (let i = 0; i < 100; i++) await h.step(TIMED_OUT());
  assert.deepEqual(codes(), ['bus_health_unavailable', 'bus_health_restored', 'bus_health_unavailable']);
  assert.equal(h.logs[0]!.details.failed_reads, 1);
  // Logged at t = 62 s, a minute after the first line (t = 2 s): the read at t = 3 s, the 10 flaky ones and 38 of the last 100.
  assert.equal(h.logs[2]!.details.failed_reads, 1 + 10 + 38);
  await h.step(can0('captured-sja1000-error-active.json'));
  assert.deepEqual(codes().slice(3), ['bus_health_restored']);
  assert.deepEqual(
    h.states.map((s) => s.state),
    ['error-active'],
    'nothing shown changed',
  );
});

test('monitor: an interface missing from one good reading is unknown for that step; transitions still compare with its last known state', async () => {
  const h = scripted();
  await h.step(can0('hand-bus-off.json'));
  await h.step(new Map()); // read fine, but can0 not listed (an adapter re-enumerating)
  assert.equal(h.states.at(-1)!.state, null, 'that reading says nothing of can0: shown as unknown');
  await h.step(can0('hand-bus-off.json', (l) => ({ ...l, counters: { ...l.counters, restarts: 1 } })));
  assert.deepEqual(
    h.logs.map((l) => l.code),
    ['bus_off', 'bus_restarted'],
    'still bus-off: no second bus_off; the restart is not lost',
  );
  assert.equal(h.logs[0]!.details.previous, null, 'already bus-off at the first reading');
});

test('monitor: the bitrates kept for the load are the source buses only, whatever else ip lists', async () => {
  const h = scripted();
  const ca = can0('captured-sja1000-error-active.json').get('can0')!;
  for (let i = 0; i < 20; i++) {
    // Containers come and go on a gateway: a new veth each second, and docker0.
    await h.step(
      new Map([
        ['can0', ca],
        [`veth${i}`, { ...ca, name: `veth${i}`, kind: 'veth', state: null, bitrate: null }],
        ['docker0', { ...ca, name: 'docker0', kind: 'bridge', state: null, bitrate: null }],
      ]),
    );
  }
  // A private map (no behaviour outside shows it but memory): read it through a cast.
  const rates = (h.mon as unknown as { rates: Map<string, unknown> }).rates;
  assert.deepEqual([...rates.keys()], ['can0']);
  await h.step(new Map());
  assert.deepEqual(rates.get('can0'), { nominal: 500000, data: null }, 'a bus missing from one reading keeps its bitrate (the load goes on)');
});

test('monitor: no second closes before an ip read has worked (or three failed): --bitrate 250000 on a 500 kbit/s controller never shows double the load', async () => {
  let clock = 0;
  /** A monitor of can1 (--bitrate can1=250000) with frames in seconds 1 and 2 (the second completes the first). */
  const monitor = (readLinks: () => Promise<Map<string, LinkHealth>>): BusHealthMonitor => {
    const m = new BusHealthMonitor({
      buses: () => ['can1'],
      linkState: () => 'up',
      readLinks,
      flagBitrates: new Map([['can1', 250_000]]),
      intervalSeconds: 1,
      publish: () => {},
      log: () => {},
      now: () => clock,
      wallNow: () => clock,
    });
    for (let i = 0; i < 1000; i++) m.frame(frame({ bus: 'can1', id: 0, tsUs: 1_200_000 }));
    m.frame(frame({ bus: 'can1', id: 0, tsUs: 2_100_000 }));
    return m;
  };
  let answer: ((m: Map<string, LinkHealth>) => void) | undefined;
  // The first read takes seconds (ip under load, or under emulation): it answers when the test says.
  const mon = monitor(() => (answer ? Promise.resolve(fixture('captured-sja1000-error-active.json')) : new Promise((resolve) => (answer = resolve))));
  const step = async (): Promise<void> => {
    clock += 1000;
    void mon.tick(); // the read hangs: the step's closing part has run when tick() yields
    await new Promise((r) => setImmediate(r));
  };
  for (let i = 0; i < 4; i++) await step();
  assert.equal(mon.snapshot()[0]!.load, null, "no load while the controller's bitrate is not known");
  answer!(fixture('captured-sja1000-error-active.json'));
  await new Promise((r) => setImmediate(r));
  clock += 1000;
  await mon.tick();
  const s = mon.snapshot()[0]!;
  // The seconds held open close together: 0 to 3 (second 2 holds the one frame that completed second 1), second 1 at the kernel's 500 kbit/s (0.212 at the flag's).
  assert.deepEqual([s.bitrate, s.bitrate_source, s.ts, s.load_history, s.load_peak_1m], [500000, 'kernel', '1970-01-01T00:00:04.000Z', [0, 0.106, 0.0001, 0], 0.106]);

  // Where ip never works (missing, or a busybox ip without -json), --bitrate gives the load after three failed reads.
  clock = 0;
  const failing = monitor(() => Promise.reject(TIMED_OUT()));
  const loads: (number | null)[] = [];
  for (let i = 0; i < 5; i++) {
    clock += 1000;
    await failing.tick();
    loads.push(failing.snapshot()[0]!.load);
  }
  assert.deepEqual(loads, [null, null, null, 0.0002, 0], "held while the first three reads fail, then closed at the flag's rate");
  assert.equal(failing.snapshot()[0]!.load_peak_1m, 0.212);
});

test('the error-passive warning tells how to keep unacknowledged frames from going out late, unless the controller is one-shot, its queue holds one, or its TX errors are below 128', () => {
  const passive = fixture('hand-error-passive.json').get('can0')!;
  const d = { bus: 'can0', state: 'error-passive', tec: 136 } as BusStateData;
  assert.match(heldFramesAdvice(d, passive), /one-shot on, or ip link set can0 txqueuelen 1/);
  assert.equal(heldFramesAdvice(d, { ...passive, oneShot: true }), '');
  assert.equal(heldFramesAdvice(d, { ...passive, txqlen: 1 }), '');
  assert.equal(heldFramesAdvice({ ...d, tec: 20 }, passive), '', 'passive by its RX errors: it transmits');
  assert.equal(heldFramesAdvice({ ...d, state: 'error-warning' }, passive), '');
  assert.match(
    heldFramesAdvice(d, passive, { max: 8, flush: false }),
    /up to 10 the kernel holds \(txqueuelen, of this agent's at most 8: --tx-kernel-frames\)/,
    'the agent bounds its own',
  );
  assert.equal(heldFramesAdvice(d, passive, { max: 8, flush: true }), '', '--tx-flush-stale drops them: nothing to advise');
  const oneShot = parseIpLinkJson(
    JSON.stringify([
      {
        ...JSON.parse(readFileSync(new URL('../../../../test/fixtures/ip-link/hand-error-passive.json', import.meta.url), 'utf8'))[0],
        linkinfo: { info_kind: 'can', info_data: { ctrlmode: ['ONE-SHOT'], state: 'ERROR-PASSIVE' } },
      },
    ]),
  );
  assert.equal(oneShot.get('can0')!.oneShot, true, 'ctrlmode ONE-SHOT read');
});

test("the kernel's link notices (ip -o monitor link) are read by interface name; the monitor is started again when it ends", async () => {
  assert.equal(linkOfMonitorLine('4: can0: <NOARP,UP,LOWER_UP,ECHO> mtu 16 qdisc pfifo_fast state UP group default qlen 10 \\    link/can '), 'can0');
  assert.equal(linkOfMonitorLine('3: v0@v1: <BROADCAST,MULTICAST,M-DOWN> mtu 1500 qdisc noqueue state DOWN group default \\    link/ether 02:2b'), 'v0');
  assert.equal(linkOfMonitorLine('Deleted 5: vcan9: <NOARP> mtu 72 qdisc noop state DOWN group default \\    link/can '), 'vcan9');
  assert.equal(linkOfMonitorLine('    link/can '), undefined);
  // A stand-in for ip: prints two notices and ends; the monitor starts it again.
  const dir = tempDir('canrelay-ipmon-');
  const fake = join(dir, 'ip');
  writeFileSync(fake, "#!/bin/sh\necho '4: can0: <NOARP,UP,LOWER_UP,ECHO> mtu 16 state UP'\necho 'junk'\necho '5: can1: <NOARP,ECHO> mtu 16 state DOWN'\n", { mode: 0o755 });
  const seen: string[] = [];
  const failures: string[] = [];
  const m = monitorLinks(
    (n) => seen.push(n),
    (msg) => failures.push(msg),
    fake,
  );
  try {
    await until(() => seen.length >= 4, 5000, 'two runs of the monitor');
    assert.deepEqual(seen.slice(0, 4), ['can0', 'can1', 'can0', 'can1']);
    assert.match(failures[0]!, /ip -o monitor link ended \(exit 0\); starting it again/);
  } finally {
    m.stop();
  }
});

test("a link notice of a bus makes its mode unknown until a reading begun after it: a send waits; other interfaces' notices change nothing", async () => {
  let notice!: (ifname: string) => void;
  let stopped = false;
  const health = new BusHealthMonitor({
    buses: () => ['can0'],
    linkState: () => 'up',
    readLinks: async () => new Map(),
    watchLinks: (changed) => ((notice = changed), () => (stopped = true)),
    flagBitrates: new Map(),
    intervalSeconds: 1,
    publish: () => {},
    log: () => {},
  });
  health.start();
  await until(() => health.sendRefusal('can0') === null, 2000, 'the first reading');
  notice('eth0');
  assert.equal(health.sendRefusal('can0'), null, "another interface's notice");
  notice('can0');
  assert.ok(health.sendRefusal('can0')?.waitMs, 'the mode unknown after the notice');
  await until(() => health.sendRefusal('can0') === null, 2000, 'the reading the notice asked for');
  health.stop();
  assert.equal(stopped, true, 'the watch stops with the monitor');
});
