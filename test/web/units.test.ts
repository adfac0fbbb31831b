/**
 * The console page's pure modules, run in Node from the built dist/web/ files (the page is compiled on
 * its own for the browser, so these are imported by URL and typed here by the little each test uses):
 * the id filter (standard and extended ids apart, and its rule for error frames in the trace, the export and the by-id table), the candump
 * export (read back with the agent's own parser), the by-id rate model under sampling, the SSE parser and
 * connection, the trace model's cap and pause, signal values, dated times, the send form's id, the
 * header's interface states, and the page's routes.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { parseCandumpLine } from '../../core/can/candump.js';
import type { CanFrameData } from '../../core/console/events.js';
import { WEB_JS } from '../helpers/browser.js';

interface IdFilter {
  all: boolean;
  terms: unknown[];
  matches(id: number, ext: boolean): boolean;
  matchesFrame(id: number, ext: boolean, isError: boolean): boolean;
}
type FilterParse = { ok: true; filter: IdFilter } | { ok: false; error: string };
type Frame = CanFrameData;
interface Row {
  key: string;
  count: number;
  events: number;
  bytes: string[];
  changedAt: number[];
}
interface ByIdModel {
  rows: Map<string, Row>;
  add(f: Frame, now: number): Row | undefined;
  rate(r: Row, pageNow?: number): number | null;
  totalRate(pageNow?: number): number;
  clearRates(): void;
}
interface SseMessage {
  type: string;
  data: string;
  lastEventId: string;
}
interface SseParser {
  lastEventId: string;
  retryMs: number | undefined;
  feed(chunk: string): SseMessage[];
}
interface TraceModel {
  visible: { length: number; get(i: number): { seq: number; kind: string } | undefined };
  all: { length: number };
  paused: boolean;
  pending: number;
  pushEvent(ev: unknown): unknown;
  pause(): void;
  resume(): void;
  setFilter(f: unknown): void;
  takeShift(): number | 'rebuilt';
  visibleFrames(): Iterable<Frame>;
}

const web = async <T>(file: string): Promise<T> => {
  const path = join(WEB_JS, file);
  assert.ok(existsSync(path), `${path} is built (node web/build.mjs)`);
  return (await import(pathToFileURL(path).href)) as T;
};

const { parseIdFilter } = await web<{ parseIdFilter: (s: string) => FilterParse }>('filter.js');
const exp = await web<{
  candumpLine: (f: Frame, o?: { direction?: boolean }) => string | null;
  candumpLog: (f: Iterable<Frame>, o?: { direction?: boolean }) => string;
  candumpTimestamp: (ts: string) => string;
}>('candump-export.js');
const { ByIdModel, rowShown } = await web<{ ByIdModel: new () => ByIdModel; rowShown: (r: Row, id: IdFilter | null, bus: string) => boolean }>('state/by-id.js');
interface ConsoleConnection {
  start(): void;
  stop(): void;
}
type ConnectionOptions = {
  url: string;
  backlog?: number;
  fetchImpl: typeof fetch;
  onStatus: (s: { state: string; detail: string; reconnects: number }) => void;
  onMessage: () => void;
};
const { SseParser, ConsoleConnection } = await web<{ SseParser: new () => SseParser; ConsoleConnection: new (o: ConnectionOptions) => ConsoleConnection }>('sse.js');
const traceMod = await web<{ TraceModel: new () => TraceModel; VISIBLE_CAP: number; RAW_CAP: number; SHOW_ALL: { types: Set<string> } }>('state/trace.js');
const { parseRoute } = await web<{ parseRoute: (p: string) => { kind: string; id?: string } }>('route.js');

function filter(text: string): IdFilter {
  const r = parseIdFilter(text);
  assert.ok(r.ok, `"${text}" parses: ${r.ok ? '' : r.error}`);
  return r.filter;
}
/** The ids that pass, each of the kind its number needs (above 7FF extended, standard else). */
const pass = (text: string, ids: number[]): number[] => ids.filter((id) => filter(text).matches(id, id > 0x7ff));
/** The frames that pass, written as the console writes ids: "0x123" standard, "0x00000123" extended. */
const passFrames = (text: string, ids: string[]): string[] =>
  ids.filter((id) => {
    const hex = id.slice(2);
    return filter(text).matches(parseInt(hex, 16), hex.length === 8);
  });

test('id filter: single, list, range, mask (both spellings), inverted mask, exclusion', () => {
  const ids = [0x100, 0x1ff, 0x200, 0x7df, 0x7e0, 0x7e8, 0x7ef, 0x7f0, 0x18daf110];
  assert.deepEqual(pass('', ids), ids, 'empty lets everything through');
  assert.equal(filter('  ').all, true);
  assert.deepEqual(pass('7E8', ids), [0x7e8]);
  assert.deepEqual(pass('0x7e8', ids), [0x7e8], 'case and 0x do not matter');
  assert.deepEqual(pass('0x100,0x200', ids), [0x100, 0x200]);
  assert.deepEqual(pass('100 200 ; 7DF', ids), [0x100, 0x200, 0x7df], 'spaces and semicolons separate too');
  assert.deepEqual(pass('7E0-7EF', ids), [0x7e0, 0x7e8, 0x7ef], 'range includes both ends');
  assert.deepEqual(pass('7E0 - 7EF', ids), [0x7e0, 0x7e8, 0x7ef], 'spaces around the dash');
  assert.deepEqual(pass('700/7F0', ids), [], '700/7F0 is 700-70F');
  assert.deepEqual(pass('7E0/7F0', ids), [0x7e0, 0x7e8, 0x7ef]);
  assert.deepEqual(pass('7E0:7F0', ids), [0x7e0, 0x7e8, 0x7ef], 'candump id:mask');
  assert.deepEqual(
    pass('7E0~7F0', ids),
    ids.filter((i) => (i & 0x7f0) !== 0x7e0),
    'candump inverted mask',
  );
  assert.deepEqual(
    pass('!7DF', ids),
    ids.filter((i) => i !== 0x7df),
    'exclusion alone',
  );
  assert.deepEqual(pass('7D0-7FF !7E8', ids), [0x7df, 0x7e0, 0x7ef, 0x7f0], 'range minus one id');
  // An inverted mask is a selection, ORed with the others as candump ORs its filters (not an exclusion:
  // "7E8,7E0~7F0" showed nothing at all before).
  assert.deepEqual(
    pass('7E8,7E0~7F0', ids),
    ids.filter((i) => i === 0x7e8 || (i & 0x7f0) !== 0x7e0),
    'an id and an inverted mask: their union',
  );
  assert.deepEqual(pass('!7E0~7F0', ids), [0x7e0, 0x7e8, 0x7ef], 'excluding an inverted mask leaves what the mask matches');
  assert.deepEqual(pass('18DAF110', ids), [0x18daf110], 'extended ids');
  assert.deepEqual(pass('18DA0000/1FFF0000', ids), [0x18daf110], 'extended mask');
});

test('id filter: bad input is rejected with a reason', () => {
  for (const [text, why] of [
    ['7G8', /not a hex id/],
    ['7EF-7E0', /end is below the start/],
    ['100-', /not an id, a range/],
    ['1-2-3', /not an id, a range/],
    ['123456789', /not a hex id/],
    ['3FFFFFFF', /29 bits/],
    ['!', /must be followed/],
    ['700/XYZ', /mask/],
  ] as const) {
    const r = parseIdFilter(text);
    assert.equal(r.ok, false, `"${text}" is rejected`);
    if (!r.ok) assert.match(r.error, why, `"${text}": ${r.error}`);
  }
});

test('id filter: at most 256 entries (each frame is checked against every range and mask); a list of plain ids still filters exactly', () => {
  const ids = Array.from({ length: 256 }, (_, i) => (0x100 + 2 * i).toString(16));
  const big = filter(ids.join(','));
  assert.equal(big.terms.length, 256);
  assert.deepEqual(
    [0x100, 0x101, 0x2fe, 0x2ff, 0x300].filter((id) => big.matches(id, false)),
    [0x100, 0x2fe],
    'the 256 ids pass, the ids between and after do not',
  );
  assert.equal(big.matches(0x100, true), false, 'a standard id does not pass the extended frame of the same number');
  const r = parseIdFilter([...ids, '7E8'].join(','));
  assert.equal(r.ok, false, '257 entries are refused');
  if (!r.ok) assert.match(r.error, /257 entries: a filter has at most 256; a range \(7E0-7EF\) or a mask/);
  assert.deepEqual(pass('!100,100-1FF,!1FF', [0x100, 0x101, 0x1fe, 0x1ff]), [0x101, 0x1fe], 'an excluded plain id wins over a range that includes it');
});

test('id filter: standard and extended ids are different frames; each term is of one kind, as it is written', () => {
  // The same numbers as a standard and as an extended id (OBD and J1939 on one bus), and a few more.
  const ids = ['0x123', '0x00000123', '0x705', '0x00000705', '0x7E8', '0x000007E8', '0x7FF', '0x000007FF', '0x00000800', '0x18DAF110'];
  // Single ids: 8 digits are extended; up to 7 digits standard up to 7FF, extended above.
  assert.deepEqual(passFrames('123', ids), ['0x123'], '"123" is the standard 0x123 only');
  assert.deepEqual(passFrames('0x123', ids), ['0x123']);
  assert.deepEqual(passFrames('0123', ids), ['0x123'], 'leading zeros do not make an id extended below 8 digits');
  assert.deepEqual(passFrames('0000123', ids), ['0x123'], '7 digits: still standard');
  assert.deepEqual(passFrames('00000123', ids), ['0x00000123'], '8 digits: the extended 0x123 only');
  assert.deepEqual(passFrames('0x00000123', ids), ['0x00000123']);
  assert.deepEqual(passFrames('7FF', ids), ['0x7FF']);
  assert.deepEqual(passFrames('800', ids), ['0x00000800'], 'above 7FF an id can only be extended');
  assert.deepEqual(passFrames('18DAF110', ids), ['0x18DAF110']);
  assert.deepEqual(passFrames('123,00000123', ids), ['0x123', '0x00000123'], 'both: two entries');
  // Ranges take the kind of their ends.
  assert.deepEqual(passFrames('100-7FF', ids), ['0x123', '0x705', '0x7E8', '0x7FF']);
  assert.deepEqual(passFrames('00000100-000007FF', ids), ['0x00000123', '0x00000705', '0x000007E8', '0x000007FF']);
  assert.deepEqual(passFrames('800-1FFFFFFF', ids), ['0x00000800', '0x18DAF110'], 'ends above 7FF: extended');
  // Masks: extended when the id is, or the mask has 8 digits, or the mask is above FFF.
  assert.deepEqual(passFrames('700/7F0', ids), ['0x705']);
  assert.deepEqual(passFrames('700:FF0', ids), ['0x705'], 'a mask up to FFF is standard');
  assert.deepEqual(passFrames('00000700/7F0', ids), ['0x00000705'], 'an 8-digit id makes the mask extended');
  assert.deepEqual(passFrames('700/000007F0', ids), ['0x00000705'], 'so does an 8-digit mask');
  assert.deepEqual(passFrames('700/1FF0', ids), ['0x00000705'], 'so does a mask above FFF');
  assert.deepEqual(passFrames('0/0', ids), ['0x123', '0x705', '0x7E8', '0x7FF'], '0/0: every standard id');
  assert.deepEqual(passFrames('0/00000000', ids), ['0x00000123', '0x00000705', '0x000007E8', '0x000007FF', '0x00000800', '0x18DAF110'], 'every extended id');
  // Exclusions and candump's inverted mask take out their own kind only.
  assert.deepEqual(
    passFrames('!123', ids),
    ids.filter((i) => i !== '0x123'),
    '"!123" keeps the extended 0x123',
  );
  assert.deepEqual(
    passFrames('!00000123', ids),
    ids.filter((i) => i !== '0x00000123'),
  );
  assert.deepEqual(
    passFrames('7E0~7F0', ids),
    ids.filter((i) => i !== '0x7E8'),
    'the inverted standard mask leaves the extended 0x7E8 in',
  );
  // Error frames still pass whatever the kind in their id field.
  const f = filter('7E8');
  assert.equal(f.matchesFrame(0x004, false, true), true);
  assert.equal(f.matchesFrame(0x004, true, true), true);
  assert.equal(f.matchesFrame(0x7e8, true, false), false, 'an extended data frame 0x7E8 is not "7E8"');
  assert.equal(f.matchesFrame(0x7e8, false, false), true);
});

test('id filter: a range of two kinds and candump flag bits are refused, saying what to write instead', () => {
  for (const [text, why] of [
    ['100-00000200', /mixes a standard id .* two entries: 100-200,00000100-00000200$/],
    ['00000100-200', /two entries: 100-200,00000100-00000200$/],
    ['700-800', /two entries: 700-7FF,00000700-00000800$/],
    ['7FF-18DAF110', /two entries: 7FF,000007FF-18DAF110$/],
    ['!0-1FFFFFFF', /two entries: !000-7FF,!00000000-1FFFFFFF$/],
    ['80000123', /candump's flags .*80000000 extended.*00000123/],
    ['0x9FFFFFFF', /larger than 29 bits .*flags.*1FFFFFFF/],
    ['40000123', /40000000 remote/],
    ['20000004', /20000000 error/],
    ['700/C00007F0', /mask C00007F0 is larger than 29 bits.*Write the mask without them \(000007F0\)/],
    ['18FEF100:DFFFFFFF', /mask DFFFFFFF .*flags.*\(1FFFFFFF\)/],
    ['80000700:1FFFFFFF', /id 80000700 .*flags/],
    ['#1FFFFFFF', /error mask.*error frames pass every id filter/],
    ['7E8,#FFFFFFFF', /error mask/],
  ] as const) {
    const r = parseIdFilter(text);
    assert.equal(r.ok, false, `"${text}" is rejected`);
    if (!r.ok) assert.match(r.error, why, `"${text}": ${r.error}`);
  }
});

const frame = (over: Partial<Frame> = {}): Frame => ({
  ts: '2026-11-27T13:47:02.123456Z',
  direction: 'rx',
  bus: 'can0',
  id: '0x123',
  is_extended: false,
  dlc: 4,
  data_hex: 'DE AD BE EF',
  ...over,
});

test('candump export: every frame kind is written as candump -L and parses back identically', () => {
  const frames: Frame[] = [
    frame(),
    frame({ id: '0x18DAF110', is_extended: true, dlc: 8, data_hex: '02 10 03 00 00 00 00 00', bus: 'can1' }),
    frame({ id: '0x7DF', dlc: 0, data_hex: '', is_remote: true }),
    frame({ id: '0x7DF', dlc: 3, data_hex: '', is_remote: true }),
    frame({ dlc: 14, data_hex: '11 22 33 44 55 66 77 88' }),
    frame({ dlc: 12, data_hex: '01 02 03 04 05 06 07 08 09 0A 0B 0C', is_fd: true, brs: true }),
    frame({ dlc: 2, data_hex: 'AA BB', is_fd: true, esi: true }),
    frame({ id: '0x00000080', is_extended: false, is_error: true, dlc: 8, data_hex: '00 00 00 00 00 00 00 00' }),
    frame({ direction: 'tx', dlc: 0, data_hex: '' }),
    frame({ ts: '2026-01-01T00:00:00.000001Z' }),
  ];
  for (const withDir of [false, true]) {
    const log = exp.candumpLog(frames, { direction: withDir });
    assert.ok(log.endsWith('\n'));
    const lines = log.split('\n').slice(0, -1);
    assert.equal(lines.length, frames.length);
    lines.forEach((line, i) => {
      const f = frames[i]!;
      const r = parseCandumpLine(line);
      assert.ok(r.ok, `line ${i + 1} "${line}" parses: ${r.ok ? '' : r.error}`);
      if (!r.ok) return;
      const p = r.frame;
      assert.equal(p.bus, f.bus, line);
      assert.equal(p.id, parseInt(f.id.slice(2), 16), line);
      assert.equal(p.ext, f.is_extended, line);
      assert.equal(p.rtr, f.is_remote === true, line);
      assert.equal(p.fd, f.is_fd === true, line);
      assert.equal(p.brs, f.brs === true, line);
      assert.equal(p.esi, f.esi === true, line);
      assert.equal(p.err, f.is_error === true, line);
      assert.equal(p.dlc, f.dlc, line);
      assert.equal(Buffer.from(p.data).toString('hex').toUpperCase(), f.data_hex.replace(/ /g, ''), line);
      assert.equal(p.tsUs, Date.parse(f.ts.slice(0, 19) + 'Z') * 1000 + Number(f.ts.slice(20, 26)), `${line}: microseconds kept`);
      if (withDir) assert.equal(p.direction, f.direction, line);
    });
  }
  assert.equal(exp.candumpLine(frames[0]!), '(1795787222.123456) can0 123#DEADBEEF');
  assert.equal(exp.candumpTimestamp('2026-11-27T13:47:02.5Z'), '(1795787222.500000)');
  assert.equal(exp.candumpLog([]), '', 'nothing to export: empty file');
  // A group console: both sides have a can0; each line says whose it was, and still parses.
  const group = exp
    .candumpLog([frame({ dongle: 'gw-a' }), frame({ dongle: 'gw-b' })])
    .trim()
    .split('\n');
  assert.deepEqual(
    group.map((l) => {
      const r = parseCandumpLine(l);
      return r.ok ? r.frame.bus : r.error;
    }),
    ['gw-a-can0', 'gw-b-can0'],
  );
});

test("by-id rates: exact under sampling, from the frames' timestamps and `represents`", () => {
  const m = new ByIdModel();
  const base = Date.parse('2026-11-27T13:00:00Z');
  const iso = (ms: number): string => new Date(Math.floor(ms)).toISOString().replace('Z', '') + String(Math.round((ms % 1) * 1000)).padStart(3, '0') + 'Z';
  // A 300 Hz id sampled to one event in 12 (an event every 40 ms stands for 12 frames), a 1 Hz id
  // unsampled, and a 100 Hz id whose first events are unsampled then sampled 1 in 5.
  let fast: Row | undefined;
  let slow: Row | undefined;
  let mixed: Row | undefined;
  for (let t = 0; t <= 6000; t += 40) fast = m.add(frame({ id: '0x094', ts: iso(base + t), represents: 12 }), t);
  for (let t = 0; t <= 6000; t += 1000) slow = m.add(frame({ id: '0x590', ts: iso(base + t + 3) }), t);
  for (let t = 0; t <= 6000; t += 10) {
    if (t < 3000) mixed = m.add(frame({ id: '0x200', ts: iso(base + t) }), t);
    else if (t % 50 === 0) mixed = m.add(frame({ id: '0x200', ts: iso(base + t), represents: 5 }), t);
  }
  const near = (v: number | null, want: number, tol = 0.01): void => assert.ok(v !== null && Math.abs(v - want) / want < tol, `rate ${v} ≈ ${want}`);
  near(m.rate(fast!), 300);
  near(m.rate(slow!), 1);
  near(m.rate(mixed!), 100);
  near(m.totalRate(), 401);
  assert.equal(fast!.count, 151 * 12, 'count is the frames the events stand for');
  assert.equal(fast!.events, 151);
  // A quiet id's rate falls instead of freezing: the stream clock moves on while 0x590 is silent.
  for (let t = 6040; t <= 16_000; t += 40) m.add(frame({ id: '0x094', ts: iso(base + t), represents: 12 }), t);
  assert.ok((m.rate(slow!) ?? 1) < 0.7, `silent 1 Hz id decays: ${m.rate(slow!)}`);
  // Everything silent (the bus, the replay or the dongle): the stream clock stands still, the page's runs
  // on — the rates fall with the page's time since the last frame came (it came at page time 16,000).
  near(m.totalRate(16_000), 300 + 100, 0.2);
  assert.ok(m.totalRate(46_000) < 150, `30 s after the last frame the header rate falls: ${m.totalRate(46_000)}`);
  assert.ok(m.totalRate() > 300, 'without the page time: the stream clock alone (as before)');
  m.clearRates();
  assert.equal(m.rate(fast!), null, 'after a stream reset the rate starts over');
  assert.equal(m.rows.size, 3);
  // The gateway's clock steps back 100 s (NTP after an RTC that ran fast): the rate is the id's again
  // once its window refills, not frames over the step.
  for (let t = 20_000; t <= 26_000; t += 40) m.add(frame({ id: '0x094', ts: iso(base + t), represents: 12 }), t);
  near(m.rate(fast!), 300);
  for (let t = 26_040; t <= 32_000; t += 40) m.add(frame({ id: '0x094', ts: iso(base + t - 100_000), represents: 12 }), t);
  near(m.rate(fast!), 300);
});

test('by-id: changed bytes are marked with their time; rx and tx of one id share a row, their rates add up', () => {
  const m = new ByIdModel();
  const r1 = m.add(frame({ data_hex: '01 02 03 04' }), 100)!;
  assert.deepEqual(r1.changedAt, [0, 0, 0, 0], 'first frame: nothing changed yet');
  m.add(frame({ data_hex: '01 FF 03 05' }), 200);
  assert.deepEqual(r1.changedAt, [0, 200, 0, 200]);
  m.add(frame({ data_hex: '01 FF 03', dlc: 3 }), 300);
  assert.deepEqual(r1.changedAt, [300, 300, 300], 'a new length changes every byte');
  m.add(frame({ direction: 'tx' }), 400);
  assert.equal(m.rows.size, 1);

  // rx at 100 Hz on this clock, tx at 50 Hz stamped by another clock 2 s behind (a relayed peer's frames),
  // both sampled as one bus+id: the row's rate is the sum.
  const m2 = new ByIdModel();
  const base = Date.parse('2026-11-27T13:00:00Z');
  const iso = (ms: number): string => new Date(ms).toISOString().replace('Z', '000Z');
  let row: Row | undefined;
  for (let t = 0; t < 4000; t += 10) {
    row = m2.add(frame({ ts: iso(base + t), represents: 1 }), t);
    if (t % 20 === 0) row = m2.add(frame({ ts: iso(base + t - 2000), direction: 'tx', represents: 1 }), t);
  }
  const r = m2.rate(row!);
  assert.ok(r !== null && Math.abs(r - 150) < 2, `rx+tx rate ${r}`);
});

test('console connection: a 401 still being read when the page stops the connection (a new token was entered) is not reported', async () => {
  /** A connection whose server answers 401 and sends the body when told; returns the states it reported. */
  const refusedLater = (stopFirst: boolean): Promise<string[]> => {
    const states: string[] = [];
    let release = (): void => {};
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        release = () => {
          c.enqueue(new TextEncoder().encode('{"error":"missing or wrong token"}'));
          c.close();
        };
      },
    });
    const fetchImpl = (async () => new Response(body, { status: 401 })) as typeof fetch;
    const conn = new ConsoleConnection({ url: 'http://127.0.0.1:1/api/v1/streams/dongles/x/console', fetchImpl, onStatus: (s) => states.push(s.state), onMessage: () => {} });
    conn.start();
    return new Promise((resolve) =>
      setTimeout(() => {
        if (stopFirst) conn.stop(); // the page connects again with the token the user just gave
        release();
        setTimeout(() => resolve(states), 50);
      }, 20),
    );
  };
  assert.deepEqual(await refusedLater(false), ['connecting', 'refused'], 'control: a running connection reports the refusal');
  assert.deepEqual(await refusedLater(true), ['connecting'], 'a stopped one says nothing more (the page would drop the new token)');
});

test('console connection: a reconnect before any event id is a fresh start (history asked again), not "resumed, nothing missed"', async () => {
  const asked: { url: string; lastEventId: string | null }[] = [];
  const statuses: { state: string; detail: string; reconnects: number }[] = [];
  const enc = new TextEncoder();
  const fetchImpl = (async (url: string, init: RequestInit) => {
    asked.push({ url, lastEventId: new Headers(init.headers).get('Last-Event-ID') });
    const first = asked.length === 1;
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        // The first connection: a comment and a retry hint, no event with an id, then it is cut.
        if (first) {
          c.enqueue(enc.encode(': hello\nretry: 10\n\n'));
          c.close();
        } else c.enqueue(enc.encode('id: 7\nevent: log\ndata: {}\n\n'));
      },
    });
    return new Response(body, { status: 200, headers: { 'Content-Type': 'text/event-stream' } });
  }) as typeof fetch;
  const conn = new ConsoleConnection({
    url: 'http://127.0.0.1:1/api/v1/stream',
    backlog: 500,
    fetchImpl,
    onStatus: (s) => statuses.push({ ...s }),
    onMessage: () => {},
  } as ConnectionOptions);
  conn.start();
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline && !statuses.some((s) => s.state !== 'connecting' && s.state !== 'live' && s.state !== 'reconnecting')) await new Promise((r) => setTimeout(r, 20));
  await new Promise((r) => setTimeout(r, 600)); // past the 400 ms a resume would be decided in
  conn.stop();
  assert.equal(asked.length, 2, 'connected, lost, connected again');
  assert.deepEqual(
    asked.map((a) => [new URL(a.url).searchParams.get('backlog'), a.lastEventId]),
    [
      ['500', null],
      ['500', null],
    ],
    'no position to give: the reconnect asks for the recent history again',
  );
  const after = statuses.slice(statuses.findIndex((s) => s.state === 'reconnecting') + 1);
  assert.deepEqual(
    after.map((s) => s.state),
    ['reset'],
    'reported as a fresh start, never as resumed',
  );
  assert.match(after[0]!.detail, /no event id to resume after: started afresh with the recent history; events may have been missed/);
  assert.equal(after[0]!.reconnects, 1);
});

test('console connection: a resume is said to be after the id the page sent, also when the backlog since it comes in the first chunk', async () => {
  const asked: (string | null)[] = [];
  const statuses: { state: string; detail: string; resumedAfter?: string }[] = [];
  const enc = new TextEncoder();
  const fetchImpl = (async (_url: string, init: RequestInit) => {
    asked.push(new Headers(init.headers).get('Last-Event-ID'));
    const first = asked.length === 1;
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        if (first) {
          c.enqueue(enc.encode('retry: 10\nid: 5\nevent: log\ndata: {}\n\n'));
          c.close();
        } else c.enqueue(enc.encode('id: 6\nevent: log\ndata: {}\n\nid: 7\nevent: log\ndata: {}\n\nid: 8\nevent: log\ndata: {}\n\n'));
      },
    });
    return new Response(body, { status: 200, headers: { 'Content-Type': 'text/event-stream' } });
  }) as typeof fetch;
  const conn = new ConsoleConnection({ url: 'http://127.0.0.1:1/api/v1/stream', fetchImpl, onStatus: (s) => statuses.push({ ...s }), onMessage: () => {} } as ConnectionOptions);
  conn.start();
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline && !statuses.some((s) => s.state === 'resumed')) await new Promise((r) => setTimeout(r, 20));
  conn.stop();
  assert.deepEqual(asked, [null, '5']);
  const resumed = statuses.find((s) => s.state === 'resumed');
  assert.equal(resumed?.resumedAfter, '5', 'the position the page resumed from, not the newest id read since');
  assert.equal(resumed?.detail, 'resumed after event 5');
});

test('SSE parser: fields, comments, ids, retry, CR/LF/CRLF, split chunks, BOM', () => {
  const p = new SseParser();
  const out = [
    ...p.feed('\uFEFF: canrelay console dongles/gw\nretry: 2000\n\n'),
    ...p.feed('id: 7\nevent: can_frame\ndata: {"a":1}\n\n'),
    ...p.feed('id: 8\r\nevent: log\r\ndata: {"b"'),
    ...p.feed(':2}\r\n\r'),
    ...p.feed('\nid: 9\revent: presence\rdata: x\rdata: y\r\r'),
    ...p.feed(': keep-alive\n\n'),
    ...p.feed('data: no type\n\n'),
    ...p.feed('id: bad\0id\nevent: x\n\n'),
  ];
  assert.equal(p.retryMs, 2000);
  assert.deepEqual(
    out.map((m) => [m.type, m.data, m.lastEventId]),
    [
      ['can_frame', '{"a":1}', '7'],
      ['log', '{"b":2}', '8'],
      ['presence', 'x\ny', '9'],
      ['message', 'no type', '9'],
    ],
  );
  assert.equal(p.lastEventId, '9', 'an id with NUL is ignored; an event without data is not dispatched');
});

test('trace model: capped, pause keeps the rows still and resume appends what came meanwhile', () => {
  const t = new traceMod.TraceModel();
  const ev = (i: number, id = '0x100'): unknown => ({ type: 'can_frame', id: i, data: frame({ id, data_hex: '00' }) });
  for (let i = 1; i <= traceMod.VISIBLE_CAP + 500; i++) t.pushEvent(ev(i));
  assert.equal(t.visible.length, traceMod.VISIBLE_CAP, 'visible rows are capped');
  assert.equal(t.takeShift(), 500, 'the view learns how many rows left the top');
  t.pause();
  const firstSeq = t.visible.get(0)!.seq;
  for (let i = 0; i < 300; i++) t.pushEvent(ev(10_000 + i));
  assert.equal(t.visible.get(0)!.seq, firstSeq, 'paused: nothing moves');
  assert.equal(t.pending, 300);
  t.resume();
  assert.equal(t.visible.length, traceMod.VISIBLE_CAP);
  assert.equal(t.visible.get(traceMod.VISIBLE_CAP - 1)!.seq, traceMod.VISIBLE_CAP + 800, 'resume appends the paused events');
  // A pause longer than the raw history: a note says how many were not kept.
  t.pause();
  for (let i = 0; i < traceMod.RAW_CAP + 50; i++) t.pushEvent(ev(20_000 + i));
  t.resume();
  const notes = Array.from({ length: t.visible.length }, (_, i) => t.visible.get(i)!).filter((x) => x.kind === 'note');
  assert.equal(notes.length, 1, 'one note for the events that fell out of memory');
  assert.match((notes[0] as unknown as { text: string }).text, /^50 events arrived during the pause .*before the filter/, 'it counts the events past the raw history');
  assert.ok(t.all.length <= traceMod.RAW_CAP, 'raw history is capped');
  // Filter: only matching frames become visible, rebuilt from history.
  const f = parseIdFilter('0x200');
  assert.ok(f.ok);
  for (let i = 0; i < 10; i++) t.pushEvent(ev(30_000 + i, '0x200'));
  t.setFilter({ ...traceMod.SHOW_ALL, id: f.ok ? f.filter : undefined });
  assert.equal([...t.visibleFrames()].length, 10);
  assert.equal(t.takeShift(), 'rebuilt');
});

test('id filter on the page: data and remote frames by CAN id; error frames (whose id is an error class) always kept, in the trace, the export and the by-id table', () => {
  // Error class 0x004 (controller problem) and data frames of ids 0x004 and 0x7E8, on one bus.
  const err = frame({ id: '0x00000004', is_error: true, dlc: 8, data_hex: '00 04 00 00 00 00 00 00' });
  const d004 = frame({ id: '0x004', dlc: 1, data_hex: '01' });
  const d7e8 = frame({ id: '0x7E8', dlc: 1, data_hex: '02' });
  const rtr7e0 = frame({ id: '0x7E0', dlc: 0, data_hex: '', is_remote: true });
  const all = [err, d004, d7e8, rtr7e0];
  const t = new traceMod.TraceModel();
  all.forEach((f, i) => t.pushEvent({ type: 'can_frame', id: i + 1, data: f }));
  const shown = (text: string): string[] => {
    t.setFilter({ ...traceMod.SHOW_ALL, id: filter(text) });
    // The export writes what the trace shows: read the ids back from its candump lines.
    const lines = exp.candumpLog(t.visibleFrames()).trim().split('\n');
    return [...t.visibleFrames()].map((f, i) => `${f.id}${f.is_error ? ' err' : ''} ${lines[i]!.split(' ')[2]}`);
  };
  assert.deepEqual(shown('004'), ['0x00000004 err 20000004#0004000000000000', '0x004 004#01'], '"004" selects the data frame 0x004 and keeps the error frame, as an error frame');
  assert.deepEqual(shown('7E0-7EF'), ['0x00000004 err 20000004#0004000000000000', '0x7E8 7E8#02', '0x7E0 7E0#R'], 'a range keeps the error frames');
  assert.deepEqual(shown('!004'), ['0x00000004 err 20000004#0004000000000000', '0x7E8 7E8#02', '0x7E0 7E0#R'], 'excluding id 004 does not exclude error class 004');
  // The by-id table: the error row (keyed apart from data id 0x004) follows the same rule.
  const m = new ByIdModel();
  for (const f of all) m.add(f, 0);
  const rows = (text: string, bus = ''): string[] => [...m.rows.values()].filter((r) => rowShown(r, filter(text), bus)).map((r) => r.key);
  assert.deepEqual(rows('004'), ['|can0|0x00000004!', '|can0|0x004']);
  assert.deepEqual(rows('7E0-7EF'), ['|can0|0x00000004!', '|can0|0x7E8', '|can0|0x7E0']);
  assert.deepEqual(rows('7E0-7EF', 'can1'), [], 'the bus filter still applies to error rows');
  assert.deepEqual(rows(''), ['|can0|0x00000004!', '|can0|0x004', '|can0|0x7E8', '|can0|0x7E0']);
});

test('id filter on the page: the trace, the export and the by-id table tell a standard id from the extended one of the same number', () => {
  const s123 = frame({ id: '0x123', dlc: 1, data_hex: '01' });
  const e123 = frame({ id: '0x00000123', is_extended: true, dlc: 1, data_hex: '02' });
  const err = frame({ id: '0x00000123', is_error: true, dlc: 8, data_hex: '00 00 00 00 00 00 00 00' });
  const all = [s123, e123, err];
  const t = new traceMod.TraceModel();
  all.forEach((f, i) => t.pushEvent({ type: 'can_frame', id: i + 1, data: f }));
  const shown = (text: string): string[] => {
    t.setFilter({ ...traceMod.SHOW_ALL, id: filter(text) });
    return exp
      .candumpLog(t.visibleFrames())
      .trim()
      .split('\n')
      .map((l) => l.split(' ')[2]!);
  };
  assert.deepEqual(shown('123'), ['123#01', '20000123#0000000000000000'], '"123": the standard frame (and the error frame)');
  assert.deepEqual(shown('00000123'), ['00000123#02', '20000123#0000000000000000'], '"00000123": the extended frame');
  assert.deepEqual(shown('!123'), ['00000123#02', '20000123#0000000000000000']);
  const m = new ByIdModel();
  for (const f of all) m.add(f, 0);
  const rows = (text: string): string[] => [...m.rows.values()].filter((r) => rowShown(r, filter(text), '')).map((r) => r.key);
  assert.deepEqual(rows('123'), ['|can0|0x123', '|can0|0x00000123!']);
  assert.deepEqual(rows('00000123'), ['|can0|0x00000123', '|can0|0x00000123!']);
});

test("a time is dated when it is not today's: formatWhen", async () => {
  const { formatWhen } = await web<{ formatWhen: (ts: string, now?: Date) => string }>('format.js');
  // Built from local times: it holds in any time zone.
  const at = new Date(2026, 10, 28, 12, 0, 5, 250);
  const ts = at.toISOString();
  assert.equal(formatWhen(ts, new Date(2026, 10, 28, 23, 59, 59)), '12:00:05.250000', "today's: the time alone");
  assert.equal(formatWhen(ts, new Date(2026, 10, 29, 0, 0, 1)), '2026-11-28 12:00:05.250000', "yesterday's: its date too");
  assert.equal(formatWhen(ts, new Date(2025, 10, 28, 12, 0, 0)), '2026-11-28 12:00:05.250000', 'the same day of another year is another day');
  assert.equal(formatWhen('not a time', at), 'not a time');
});

test('signal values read as the agent sends them: every digit of the exact text, integers whole', async () => {
  const { formatSignal } = await web<{ formatSignal: (v: number | string, unit: string) => string }>('signal-format.js');
  assert.equal(formatSignal(1099511627775, ''), '1099511627775', 'a 40-bit counter, every digit');
  assert.equal(formatSignal(9007199254740991, 'B'), '9007199254740991 B');
  assert.equal(formatSignal(-9007199254740991, ''), '-9007199254740991');
  assert.equal(formatSignal(0.123456789012345, ''), '0.123456789012345', '15 significant digits');
  assert.equal(formatSignal(1.999969482421875, ''), '1.999969482421875', '16 significant digits, as sent (15 said 1.99996948242188)');
  assert.equal(formatSignal(0.30000000000000004, ''), '0.30000000000000004', 'never sent so, but shown as it is');
  assert.equal(formatSignal(-1.2345678901234566e-7, ''), '-0.00000012345678901234566');
  assert.equal(formatSignal(123456.789012345, 'km'), '123456.789012345 km');
  assert.equal(formatSignal(1.5e-7, 'A'), '0.00000015 A');
  assert.equal(formatSignal(864, 'rpm'), '864 rpm');
  assert.equal(formatSignal(-6.2, 'deg'), '-6.2 deg');
  assert.equal(formatSignal('D', ''), 'D', 'a value-table label as it is');
  // A 64-bit integer beyond a double comes as its exact decimal text (the agent's shownValue): shown so,
  // with its unit, and plotted at double precision; a label or "NaN" is not plotted.
  assert.equal(formatSignal('18446744073709551614', 'km'), '18446744073709551614 km');
  assert.equal(formatSignal('18446744073709551.615', 'km'), '18446744073709551.615 km', 'a scaled 64-bit value, exactly');
  const { signalNumber } = await web<{ signalNumber: (v: number | string) => number | undefined }>('signal-format.js');
  assert.deepEqual(
    ['18446744073709551614', '-9223372036854775807', '18446744073709551.615', '-1.2345678901234567e-7', 'D', 'NaN', '42', '1.5', 7.5].map((v) => signalNumber(v)),
    [
      Number('18446744073709551614'),
      Number('-9223372036854775807'),
      Number('18446744073709551.615'),
      Number('-1.2345678901234567e-7'),
      undefined,
      undefined,
      undefined,
      undefined,
      7.5,
    ],
  );
});

test("send form's id: sent as written, the length deciding standard or extended as in cansend; a short id above 7FF refused", async () => {
  const { parseSendId } = await web<{ parseSendId: (t: string, ext: boolean) => { ok: true; id: number; extended: boolean; canId: string } | { ok: false; error: string } }>(
    'state/send-id.js',
  );
  const sent = (t: string, ext = false): string => {
    const r = parseSendId(t, ext);
    return r.ok ? `${r.canId} ${r.extended ? 'ext' : 'std'}` : `refused: ${r.error}`;
  };
  assert.equal(sent('123'), '0x123 std');
  assert.equal(sent('0x7df'), '0x7DF std');
  assert.equal(sent('00000123'), '0x00000123 ext', '8 digits: the extended id 0x123, not the standard 0x123');
  assert.equal(sent('1234'), '0x00001234 ext', 'more than 3 digits: extended, as written');
  assert.equal(sent('0123'), '0x00000123 ext');
  assert.equal(sent('18DAF110'), '0x18DAF110 ext');
  assert.equal(sent('123', true), '0x00000123 ext', '"Extended" ticked makes a short id extended');
  assert.match(sent('800'), /^refused: .*at most 7FF.*8 digits/, 'a short id above 7FF is not guessed at');
  assert.equal(sent('800', true), '0x00000800 ext');
  assert.match(sent('3FFFFFFF'), /^refused: .*29 bits/);
  assert.match(sent('7G8'), /^refused: ID: hex/);
  assert.match(sent('123456789'), /^refused: ID: hex/);
});

test("header's interfaces: a presence about one interface gives that interface's own state from `buses`, not the dongle's", async () => {
  const { busesAfter } = await web<{ busesAfter: (cur: Record<string, string> | undefined, p: unknown) => Record<string, string> }>('state/presence.js');
  const ts = '2026-11-27T13:47:02.123456Z';
  // As agent/frame-router.ts publishes it: the agent is online, can0 went down.
  const down = { ts, state: 'online', bus: 'can0', reason: 'interface down', buses: { can0: 'down', can1: 'up' } };
  assert.deepEqual(busesAfter({ can0: 'up', can1: 'up' }, down), { can0: 'down', can1: 'up' });
  assert.deepEqual(busesAfter({ can0: 'down', can1: 'up' }, { ...down, reason: 'interface up', buses: { can0: 'up', can1: 'up' } }), { can0: 'up', can1: 'up' });
  // Without the map (an older agent), the event's own state is all there is.
  assert.deepEqual(busesAfter({ can0: 'up' }, { ts, state: 'offline', bus: 'can0' }), { can0: 'down' });
  // A presence about the dongle: its map as it comes.
  assert.deepEqual(busesAfter({ can0: 'up' }, { ts, state: 'offline', reason: 'stopping', buses: { can0: 'down' } }), { can0: 'down' });
  assert.deepEqual(busesAfter(undefined, { ts, state: 'online' }), {});
});

test('rate meter: events per second over whole seconds, also while young', async () => {
  const { RateMeter, SamplingTracker } = await web<{
    RateMeter: new (span?: number) => { add(n: number, now: number): void; rate(now: number): number };
    SamplingTracker: new () => { active: boolean; announced: { input: number } | null; onFrame(f: Frame): void; onLog(l: unknown): void };
  }>('state/sampling.js');
  const m = new RateMeter(3);
  const t0 = 1_700_000_000_000;
  for (let t = 0; t < 1500; t += 5) m.add(1, t0 + t); // 200/s
  assert.ok(Math.abs(m.rate(t0 + 1500) - 200) < 5, `young meter: ${m.rate(t0 + 1500)}`);
  for (let t = 1500; t < 6000; t += 10) m.add(1, t0 + t); // 100/s
  assert.equal(m.rate(t0 + 6000), 100);
  assert.equal(m.rate(t0 + 20_000), 0, 'silence');

  const s = new SamplingTracker();
  s.onLog({ ts: '', level: 'info', message: '', code: 'sampling_on', details: { input_rate: 5000, output_rate: 200, max_rate: 200 } });
  assert.equal(s.active, true);
  assert.equal(s.announced?.input, 5000);
  s.onFrame(frame({ represents: 3 }));
  assert.equal(s.active, true);
  s.onFrame(frame());
  assert.equal(s.active, false, 'a frame without `represents`: the stream no longer samples');
  s.onFrame(frame({ represents: 1 }));
  assert.equal(s.active, true, 'joined while sampling was on: frames tell');
  s.onLog({ ts: '', level: 'info', message: '', code: 'sampling_off' });
  assert.equal(s.active, false);
});

test('routes: agent at /, bridge dongle and group pages', () => {
  assert.deepEqual(parseRoute('/'), { kind: 'agent' });
  assert.deepEqual(parseRoute('/index.html'), { kind: 'agent' });
  assert.deepEqual(parseRoute('/console/dongles/gw-1.a_b'), { kind: 'dongle', id: 'gw-1.a_b' });
  assert.deepEqual(parseRoute('/console/groups/g1/'), { kind: 'group', id: 'g1' });
  assert.deepEqual(parseRoute('/console/groups/bad%20id'), { kind: 'agent' }, 'an id the bridge would refuse is not used');
});

test('fleet model: an offline dongle has no frame rate (its last bus_state is not now), also in the rate sort', async () => {
  const { FleetModel, framesPerSecond, visibleDongles } = await web<{
    FleetModel: new () => { apply(ev: { type: string; id: number; data: Record<string, unknown> }): void; dongles: Map<string, unknown> };
    framesPerSecond: (r: unknown) => number;
    visibleDongles: (m: unknown, filter: string, sort: string, desc: boolean) => { id: string }[];
  }>('state/fleet.js');
  const m = new FleetModel();
  const ts = new Date().toISOString();
  const busState = (dongle: string, rate: number) => ({ type: 'bus_state', id: 1, data: { ts, bus: 'can0', link: 'up', state: 'error-active', frame_rate: rate, dongle } });
  for (const [d, rate] of [
    ['gone', 500],
    ['here', 20],
  ] as const) {
    m.apply({ type: 'presence', id: 1, data: { ts, state: 'online', dongle: d } });
    m.apply(busState(d, rate));
  }
  m.apply({ type: 'presence', id: 2, data: { ts, state: 'offline', dongle: 'gone' } });
  assert.equal(framesPerSecond(m.dongles.get('gone')), 0, 'offline: no rate');
  assert.equal(framesPerSecond(m.dongles.get('here')), 20);
  assert.deepEqual(
    visibleDongles(m, '', 'rate', true).map((r) => r.id),
    ['here', 'gone'],
    'sorted by rate, the offline one last',
  );
});

test("send form's early statuses: held only while a POST is on its way; other commands' statuses cannot crowd out the page's own", async () => {
  const { EarlyStatuses } = await web<{
    EarlyStatuses: new () => { posted(): () => void; offer(d: { command_id: string; status: string }): void; take(id: string): { status: string }[] };
  }>('state/early-statuses.js');
  const e = new EarlyStatuses();
  const st = (id: string, status = 'delivered') => ({ command_id: id, status, type: 'send_frame', ts: 't' });
  for (let i = 0; i < 80; i++) e.offer(st(`other-${i}`)); // someone else's commands, no POST of ours on its way
  const answered = e.posted();
  e.offer(st('mine'));
  e.offer(st('mine', 'succeeded'));
  answered();
  assert.deepEqual(
    e.take('mine').map((x) => x.status),
    [],
    'once every POST answered, nothing is held (the page tracks the command by then)',
  );
  const again = e.posted();
  e.offer(st('mine2'));
  assert.deepEqual(
    e.take('mine2').map((x) => x.status),
    ['delivered'],
    'held while its POST is on its way, whatever came before',
  );
  again();
});

test('freshness: a periodic report is stale after three of its intervals without one, never before 15 s', async () => {
  const { Freshness } = await web<{ Freshness: new () => { seen(k: string, now: number): void; staleFor(k: string, now: number): number | null } }>('state/freshness.js');
  const f = new Freshness();
  assert.equal(f.staleFor('can0', 0), null, 'never reported: nothing to call stale');
  f.seen('can0', 0);
  f.seen('can0', 10_000); // every 10 s
  assert.equal(f.staleFor('can0', 39_000), null, 'within three intervals');
  assert.equal(f.staleFor('can0', 41_000), 31_000, 'three intervals without a report');
  f.seen('fast', 0);
  f.seen('fast', 1_000); // every second: still 15 s at least (a loaded page may miss a few)
  assert.equal(f.staleFor('fast', 14_000), null);
  assert.equal(f.staleFor('fast', 17_000), 16_000);
  f.seen('fast', 17_500);
  assert.equal(f.staleFor('fast', 18_000), null, 'a new report: current again');
});

test("an SSE message without an id of its own (a stream_reset, a snapshot) is an event without id, not the previous event's number", async () => {
  const { messageEvent } = await web<{ messageEvent: (m: SseMessage & { hasId: boolean }) => { id: number } | null }>('events.js');
  const parser = new SseParser();
  const msgs = parser.feed(
    'id: 41\nevent: log\ndata: {"ts":"2026-12-01T00:00:00Z","level":"info","message":"a"}\n\nevent: stream_reset\ndata: {"reason":"x","from_id":0}\n\n',
  ) as (SseMessage & {
    hasId: boolean;
  })[];
  assert.equal(msgs.length, 2);
  assert.equal(msgs[1]!.lastEventId, '41', 'SSE keeps the last id across an id-less message');
  assert.deepEqual(
    msgs.map((m) => messageEvent(m)?.id),
    [41, 0],
  );
});

test("chart labels: a signal's name alone, with its bus where names collide, and its dongle where that still collides (a group page's two sides)", async () => {
  const { chartLabels } = await web<{ chartLabels: (rows: ({ name: string; bus: string; dongle: string } | undefined)[], keys: string[]) => string[] }>('views/signal-chart.js');
  const row = (dongle: string, bus: string, name: string): { name: string; bus: string; dongle: string } => ({ dongle, bus, name });
  assert.deepEqual(chartLabels([row('', 'can0', 'RPM'), row('', 'can0', 'SPEED')], ['k1', 'k2']), ['RPM', 'SPEED']);
  assert.deepEqual(chartLabels([row('', 'can0', 'RPM'), row('', 'can1', 'RPM')], ['k1', 'k2']), ['can0 RPM', 'can1 RPM']);
  assert.deepEqual(chartLabels([row('gw-a', 'can0', 'RPM'), row('gw-b', 'can0', 'RPM'), row('gw-a', 'can0', 'SPEED')], ['k1', 'k2', 'k3']), [
    'gw-a can0 RPM',
    'gw-b can0 RPM',
    'SPEED',
  ]);
  assert.deepEqual(chartLabels([undefined], ['gw|can0|M|X']), ['gw|can0|M|X'], 'a row evicted meanwhile: its key');
});

test("signals chart window: its end is the newest time of the dongles' own clocks; one stepped back by more than the window restarts its own", async () => {
  const { SignalsModel } = await web<{ SignalsModel: new () => { newestMs: number; add(f: unknown, now: number): void } }>('state/signals.js');
  const m = new SignalsModel();
  const at = (dongle: string, ms: number): unknown => ({ ...frame({ ts: new Date(ms).toISOString() }), dongle, msg: 'M', signals: { S: 1 } });
  const base = Date.parse('2026-11-27T13:00:00Z');
  m.add(at('gw-a', base), 0);
  m.add(at('gw-b', base - 120_000), 0); // another gateway whose clock is two minutes behind
  assert.equal(m.newestMs, base, 'the newest of the two clocks');
  m.add(at('gw-a', base - 100_000), 1); // gw-a's clock stepped back 100 s
  assert.equal(m.newestMs, base - 100_000, 'gw-a restarted its own clock: the window follows it');
  m.add(at('gw-a', base - 100_000 - 5000), 2); // a frame a little older (reordering): the window stays
  assert.equal(m.newestMs, base - 100_000);
});
