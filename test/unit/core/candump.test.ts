import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { frameProblem, type CanFrame } from '../../../core/can/frame.js';
import { CandumpReader, formatCandumpLine, parseCandumpLine, type CandumpRecord } from '../../../core/can/candump.js';

function parse(line: string): CanFrame {
  const r = parseCandumpLine(line);
  if (!r.ok) assert.fail(`expected ${JSON.stringify(line)} to parse, got: ${r.error}`);
  return r.frame;
}

function parseError(line: string): string {
  const r = parseCandumpLine(line);
  if (r.ok) assert.fail(`expected ${JSON.stringify(line)} to be rejected, got a frame`);
  return r.error;
}

const hex = (d: Uint8Array): string => Buffer.from(d).toString('hex').toUpperCase();

// Each line as can-utils writes it, with the frame it must parse to. format(parse(line)) must give it back.
const CASES: Array<{ line: string; direction?: boolean; expect: Partial<CanFrame> & { hex?: string } }> = [
  { line: '(1436509052.249713) can0 123#DEADBEEF', expect: { id: 0x123, ext: false, dlc: 4, hex: 'DEADBEEF', tsUs: 1436509052249713 } },
  { line: '(1436509052.000001) can0 7FF#', expect: { id: 0x7ff, dlc: 0, hex: '', tsUs: 1436509052000001 } },
  { line: '(1436509052.249713) vcan1 1F334455#0102030405060708', expect: { bus: 'vcan1', id: 0x1f334455, ext: true, dlc: 8 } },
  { line: '(1436509052.249713) can0 00000123#11', expect: { id: 0x123, ext: true, dlc: 1, hex: '11' } },
  { line: '(1436509052.249713) can0 123#R', expect: { id: 0x123, rtr: true, dlc: 0, hex: '' } },
  { line: '(1436509052.249713) can0 123#R3', expect: { id: 0x123, rtr: true, dlc: 3, hex: '' } },
  { line: '(1436509052.249713) can0 1F334455#R8_C', expect: { id: 0x1f334455, ext: true, rtr: true, dlc: 12 } },
  { line: '(1436509052.249713) can0 123#1122334455667788_E', expect: { dlc: 14, hex: '1122334455667788' } },
  { line: '(1436509052.249713) can0 123##4', expect: { fd: true, brs: false, esi: false, dlc: 0, hex: '' } },
  { line: '(1436509052.249713) can0 123##5112233', expect: { fd: true, brs: true, esi: false, dlc: 3, hex: '112233' } },
  { line: '(1436509052.249713) can0 123##6AABBCCDDEEFF001122334455', expect: { fd: true, brs: false, esi: true, dlc: 12 } },
  { line: `(1436509052.249713) can0 18DAF110##7${'AB'.repeat(64)}`, expect: { fd: true, brs: true, esi: true, ext: true, dlc: 64 } },
  { line: '(1436509052.249713) can0 20000080#0000000000000000', expect: { err: true, ext: false, id: 0x80, dlc: 8 } },
  { line: '(1436509052.249713) can0 20000004#0004000000000000', expect: { err: true, id: 0x04, hex: '0004000000000000' } },
  { line: '(1436509052.249713) can0 123#DEADBEEF T', direction: true, expect: { direction: 'tx' } },
  { line: '(1436509052.249713) can0 123#DEADBEEF R', direction: true, expect: { direction: 'rx' } },
  { line: '(0000000001.000000) can0 123#R R', direction: true, expect: { rtr: true, direction: 'rx', tsUs: 1_000_000 } },
];

test('parse and format round-trip every frame kind', () => {
  for (const c of CASES) {
    const f = parse(c.line);
    assert.equal(frameProblem(f), null, `${c.line}: ${frameProblem(f)}`);
    const { hex: wantHex, ...fields } = c.expect;
    for (const [k, v] of Object.entries(fields)) assert.equal(f[k as keyof CanFrame], v, `${c.line}: ${k}`);
    if (wantHex !== undefined) assert.equal(hex(f.data), wantHex, `${c.line}: data`);
    if (!c.line.endsWith(' T')) assert.equal(f.direction, 'rx', `${c.line}: default direction`);
    assert.equal(formatCandumpLine(f, { direction: c.direction }), c.line);
  }
});

test('format writes the direction only when asked, and tx as T', () => {
  const f = parse('(1436509052.249713) can0 123#01 T');
  assert.equal(formatCandumpLine(f), '(1436509052.249713) can0 123#01');
  assert.equal(formatCandumpLine(f, { direction: true }), '(1436509052.249713) can0 123#01 T');
  assert.equal(formatCandumpLine({ ...f, direction: 'rx' }, { direction: true }), '(1436509052.249713) can0 123#01 R');
});

test('format pads seconds and microseconds like candump', () => {
  const f = parse('(1436509052.249713) can0 123#01');
  assert.equal(formatCandumpLine({ ...f, tsUs: 5_000_007 }), '(0000000005.000007) can0 123#01');
});

test('legacy FD flags without the FDF bit parse the same; fdf:false writes them back', () => {
  const old = parse('(1436509052.249713) can0 123##1AABB');
  assert.equal(old.fd, true);
  assert.equal(old.brs, true);
  assert.equal(formatCandumpLine(old), '(1436509052.249713) can0 123##5AABB');
  assert.equal(formatCandumpLine(old, { fdf: false }), '(1436509052.249713) can0 123##1AABB');
});

test('accepts what can-utils parse_canframe accepts: "." separators, lower case, r, padded names, CRLF', () => {
  assert.equal(hex(parse('(1.000000) can0 123#11.22.33').data), '112233');
  assert.equal(hex(parse('(1.000000) can0 123#.11.22.').data), '1122');
  assert.equal(hex(parse('(1.000000) can0 123##1.11.22').data), '1122');
  const lower = parse('(1.000000) can0 1f334455#deadbeef');
  assert.equal(lower.id, 0x1f334455);
  assert.equal(hex(lower.data), 'DEADBEEF');
  assert.equal(parse('(1.000000) can0 123#r').rtr, true);
  assert.equal(parse('(1.000000)  can0 123#01\r\n').bus, 'can0');
  // Fractions other than 6 digits are decimal fractions, scaled to microseconds.
  assert.equal(parse('(1.5) can0 123#').tsUs, 1_500_000);
  assert.equal(parse('(1.1234567) can0 123#').tsUs, 1_123_456);
});

test('rejects malformed lines with a reason', () => {
  const cases: Array<[string, RegExp]> = [
    ['can0 123#00', /timestamp/],
    ['(1436509052) can0 123#00', /timestamp/],
    ['(1436509052.2497x3) can0 123#00', /timestamp/],
    ['(1436509052.249713)', /interface name/],
    ['(1436509052.249713) can0', /missing frame/],
    ['(1436509052.249713) can0 123DEADBEEF', /3-digit .* or 8-digit/],
    ['(1436509052.249713) can0 12G#00', /not hexadecimal/],
    ['(1436509052.249713) can0 800#00', /exceeds 0x7FF/],
    ['(1436509052.249713) can0 4FFFFFFF#00', /29 bits/],
    ['(1436509052.249713) can0 123#DEADBEE', /data has odd number of hex digits/],
    ['(1436509052.249713) can0 123#DE.A', /odd number of hex digits/],
    ['(1436509052.249713) can0 123#DEADBEEG', /non-hex "G"/],
    ['(1436509052.249713) can0 123#112233445566778899', /more than 8 data bytes/],
    ['(1436509052.249713) can0 123#11_9', /only valid after exactly 8 data bytes/],
    ['(1436509052.249713) can0 123#1122334455667788_7', /_9 to _F/],
    ['(1436509052.249713) can0 123#R9', /0-8/],
    ['(1436509052.249713) can0 123#R3x', /unexpected/],
    ['(1436509052.249713) can0 123##', /flags digit/],
    ['(1436509052.249713) can0 123##0112233445566778899', /9 data bytes; FD lengths/],
    ['(1436509052.249713) can0 20000080#R', /error frames cannot be remote/],
    ['(1436509052.249713) can0 12345#00:00:11223344#00', /CAN XL/],
    ['(1436509052.249713) can0 123#00 X', /after the frame/],
    ['(1436509052.249713) can0 123#00 T extra', /after the frame/],
    ['(1436509052.249713) can/0 123#00', /interface name contains/],
    ["DROPCOUNT: dropped 3 CAN frames on 'can0' socket (total drops 3)", /DROPCOUNT/],
  ];
  for (const [line, re] of cases) assert.match(parseError(line), re, line);
});

function readAll(text: string | Buffer, chunk: number): CandumpRecord[] {
  const reader = new CandumpReader();
  const buf = typeof text === 'string' ? Buffer.from(text, 'latin1') : text;
  const out: CandumpRecord[] = [];
  for (let off = 0; off < buf.length; off += chunk) out.push(...reader.push(buf.subarray(off, off + chunk)));
  out.push(...reader.end());
  return out;
}

test('reader: bad lines are reported with their 1-based line number and do not stop the rest', () => {
  const log = [
    '(1.000001) can0 100#01', // 1
    '', // 2: blank, ignored
    '# a comment', // 3: ignored
    '(1.000002) can0 101#0', // 4: odd digits
    '   ', // 5: blank
    'garbage here', // 6
    '(1.000003) can0 102#03 T', // 7
    '(1.000004) can0 103#04', // 8: last line without newline
  ].join('\n');
  // Every chunk size, including 1 byte, so lines split across chunks are exercised.
  for (const chunk of [1, 2, 3, 7, 16, 1024]) {
    const recs = readAll(log, chunk);
    const summary = recs.map((r) => (r.ok ? `${r.line}:${r.frame.id.toString(16)}` : `${r.line}:ERR`));
    assert.deepEqual(summary, ['1:100', '4:ERR', '6:ERR', '7:102', '8:103'], `chunk ${chunk}`);
    const bad = recs.filter((r) => !r.ok);
    assert.match(bad[0]!.ok ? '' : bad[0]!.error, /odd number of hex digits/);
    assert.equal(bad[1]!.ok ? '' : bad[1]!.text, 'garbage here');
    const tx = recs.find((r) => r.ok && r.frame.id === 0x102);
    assert.equal(tx?.ok && tx.frame.direction, 'tx');
  }
});

test('reader: CRLF line endings and an over-long line', () => {
  const long = '(1.000000) can0 123#' + '0'.repeat(10_000);
  const recs = readAll(`(1.000001) can0 100#01\r\n${long}\r\n(1.000002) can0 101#02\r\n`, 4096);
  assert.deepEqual(
    recs.map((r) => (r.ok ? r.frame.id : r.error)),
    [0x100, 'line is longer than 4096 characters', 0x101],
  );
  assert.equal(recs[1]!.line, 2);
});

test('reader: every line of a generated log of all kinds comes back identical', () => {
  const lines = CASES.map((c) => c.line);
  const recs = readAll(lines.join('\n') + '\n', 37);
  assert.equal(recs.length, lines.length);
  recs.forEach((r, k) => {
    assert.ok(r.ok, `line ${k + 1}`);
    assert.equal(r.line, k + 1);
    assert.equal(formatCandumpLine(r.frame, { direction: CASES[k]!.direction }), lines[k]);
  });
});

// Correctness of a large log; its speed is printed, not judged (lines/s belong in benchmarks).
test('reader: a 100,000-line log parses completely', (t) => {
  const ids = ['094', '112', '130', '1D0', '324', '18DAF110'];
  const parts: string[] = [];
  for (let i = 0; i < 100_000; i++) {
    const ts = 1674148739_000000 + i * 600;
    parts.push(`(${Math.floor(ts / 1e6)}.${String(ts % 1e6).padStart(6, '0')}) can0 ${ids[i % ids.length]}#8064880A06000CC1`);
  }
  const buf = Buffer.from(parts.join('\n') + '\n', 'latin1');
  const t0 = process.hrtime.bigint();
  const recs = readAll(buf, 256 * 1024);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  assert.equal(recs.length, 100_000);
  assert.ok(recs.every((r) => r.ok));
  t.diagnostic(`parsed ${Math.round(100_000 / seconds)} lines/s`);
});
