/**
 * The agent's DBC files (agent/signals/dbc-files.ts) and what it sends the bridge of them
 * (core/uplink/dbc-transfer.ts): each file stands or falls alone, a file that is not a regular one is
 * refused before it is read, and a set too large for the bridge goes as "no DBC" instead of a link that
 * the bridge closes at every part.
 */
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { DbcFiles } from '../../../agent/signals/dbc-files.js';
import { parseDbc } from '../../../core/can/dbc-parse.js';
import { DbcAssembler, dbcChunks, MAX_DBC_PARTS, MAX_DBC_TOTAL_CHARS } from '../../../core/uplink/dbc-transfer.js';
import { tempDir } from '../../helpers/processes.js';

const GOOD = ['BO_ 256 ENGINE: 8 ECU', ' SG_ RPM : 0|16@1+ (1,0) [0|65535] "rpm" ECU', ''].join('\n');

test('a file that parses but cannot be compiled (multiplexers in a circle) is an error of its own; the other files decode', async () => {
  const dir = tempDir('canrelay-dbc-');
  writeFileSync(join(dir, 'good.dbc'), GOOD);
  writeFileSync(
    join(dir, 'bad.dbc'),
    ['BO_ 512 MUX: 8 ECU', ' SG_ A M : 0|8@1+ (1,0) [0|255] "" ECU', ' SG_ B m1M : 8|8@1+ (1,0) [0|255] "" ECU', 'SG_MUL_VAL_ 512 A B 1-1;', 'SG_MUL_VAL_ 512 B A 1-1;', ''].join(
      '\n',
    ),
  );
  const files = new DbcFiles([join(dir, 'good.dbc'), join(dir, 'bad.dbc')]);
  const r = await files.load();
  assert.ok(r.decoder !== undefined, `the good file decodes: ${r.errors.join('; ')}`);
  assert.equal(r.decoder.messageCount, 1);
  const bad = r.files.find((f) => f.file.endsWith('bad.dbc'))!;
  assert.match(String(bad.error), /bad\.dbc:\d+: multiplexers of MUX depend on each other in a circle/);
  assert.equal(r.files.find((f) => f.file.endsWith('good.dbc'))!.error, undefined);
  assert.deepEqual(
    files.inUse().map((f) => f.file),
    [join(dir, 'good.dbc')],
    'only the good file goes to the bridge',
  );
});

test('a Windows-1252 file reads as Windows-1252 (‰, €, –); a signal past byte 64 is skipped with a warning', async () => {
  const dir = tempDir('canrelay-dbc-');
  const file = join(dir, 'cp1252.dbc');
  const text = [
    'BO_ 256 ENGINE: 64 ECU',
    ' SG_ RATIO : 0|16@1+ (1,0) [0|65535] "\x89" ECU',
    ' SG_ PRICE : 16|16@1+ (1,0) [0|65535] "\x80/l" ECU',
    ' SG_ LAST : 511|16@1+ (1,0) [0|65535] "" ECU',
    'VAL_ 256 RATIO 0 "n/a \x96 sensor" ;',
    '',
  ].join('\n');
  writeFileSync(file, Buffer.from(text, 'latin1'));
  const files = new DbcFiles([file]);
  for (let i = 0; i < 3; i++) {
    const r = await files.load();
    const st = r.files[0]!;
    assert.equal(st.error, undefined);
    assert.equal(st.warnings.length, 1, st.warnings.join(' | '));
    assert.match(st.warnings[0]!, /signal LAST of ENGINE .* reaches past byte 64.*skipped/);
    const sigs = r.decoder!.lookup('can0', 256, false)!.signals.map((x) => x.def);
    assert.deepEqual(
      sigs.map((x) => [x.name, x.unit]),
      [
        ['RATIO', '‰'],
        ['PRICE', '€/l'],
      ],
    );
    assert.equal(sigs[0]!.values?.get('0'), 'n/a – sensor');
  }
});

test('a DBC path that is not a regular file (a FIFO, a device) is refused before it is read, never waited on', async () => {
  const dir = tempDir('canrelay-dbc-');
  const fifo = join(dir, 'pipe.dbc');
  execFileSync('mkfifo', [fifo]);
  const r = await new DbcFiles([fifo, '/dev/zero']).load();
  assert.equal(r.decoder, undefined);
  assert.match(String(r.files[0]!.error), /pipe\.dbc: is not a regular file/);
  assert.match(String(r.files[1]!.error), /\/dev\/zero: is not a regular file/);
});

test('a value table of an environment variable (VAL_ <name> …) is read past, not a reason to refuse the file', () => {
  const db = parseDbc(
    [GOOD, 'EV_ EnvKl15 : 0 [0|1] "" 0 1 DUMMY_NODE_VECTOR0 Vector__XXX;', 'VAL_ EnvKl15 0 "off" 1 "on" ;', 'VAL_ 256 RPM 0 "stopped" ;', ''].join('\n'),
    'env.dbc',
  );
  assert.equal(db.messages[0]!.signals[0]!.values?.get('0'), 'stopped');
});

test('DBC text that hostile or broken files make slow is refused at once: a statement left open, a giant definition', () => {
  // A comment whose closing quote is missing swallows every line after it: refused once it passes 1 MiB.
  const open = ['CM_ SG_ 256 RPM "a comment that never ends', ...Array.from({ length: 80_000 }, (_, i) => `BO_ ${i} M${i}: 8 ECU`)].join('\n');
  assert.throws(() => parseDbc(open, 'open.dbc'), /open\.dbc:1: CM_ statement runs over 1048576 characters/);
  const giant = `${GOOD}BO_ 300 X: 8 ${'1'.repeat(200_000)} a\n`;
  assert.throws(() => parseDbc(giant, 'giant.dbc'), /giant\.dbc:3: BO_ statement of 200\d+ characters/);
  // Many signals in one message, and a long chain of multiplexers, load (each lookup by name, depths memoised).
  const many = ['BO_ 256 BIG: 64 ECU', ...Array.from({ length: 20_000 }, (_, i) => ` SG_ S${i} : ${i % 500}|1@1+ (1,0) [0|1] "" ECU`), ''].join('\n');
  assert.equal(parseDbc(many, 'many.dbc').messages[0]!.signals.length, 20_000);
});

test('a DBC set too large for the bridge is sent as "no DBC", with why; a set within the bound fits the parts the bridge accepts', () => {
  const big = [{ bus: null, file: 'big.dbc', text: 'x'.repeat(MAX_DBC_TOTAL_CHARS) }];
  const refused = dbcChunks(big, 7);
  assert.match(String(refused.refused), /over the bridge's 16777216/);
  assert.deepEqual(
    refused.messages.map((m) => [m.gen, m.part, m.parts, m.chunk]),
    [[7, 0, 1, '[]']],
  );
  // Just within: every part is one the bridge takes, and the set arrives whole.
  const fits = [{ bus: null, file: 'fits.dbc', text: 'y'.repeat(MAX_DBC_TOTAL_CHARS - 64) }];
  const sent = dbcChunks(fits, 8);
  assert.equal(sent.refused, undefined);
  assert.ok(sent.messages.length <= MAX_DBC_PARTS);
  const a = new DbcAssembler();
  let last: ReturnType<DbcAssembler['push']> | undefined;
  for (const m of sent.messages) last = a.push(m);
  assert.equal(last?.state, 'done');
});

test("a broken file's kept version does not gather the set's warnings again at every reload", async () => {
  const dir = tempDir('canrelay-dbc-');
  writeFileSync(join(dir, 'first.dbc'), GOOD);
  writeFileSync(join(dir, 'second.dbc'), GOOD.replace('ENGINE', 'ENGINE2')); // the same id: a collision warning
  const files = new DbcFiles([join(dir, 'first.dbc'), join(dir, 'second.dbc')]);
  const second = async (): Promise<{ warnings: string[]; error?: string }> => (await files.load()).files[1]!;
  assert.equal((await second()).warnings.length, 1);
  writeFileSync(join(dir, 'second.dbc'), 'BO_ 256 BROKEN\n'); // broken: its previous version stays in use
  for (let i = 0; i < 3; i++) {
    const st = await second();
    assert.match(String(st.error), /cannot read message definition/);
    assert.equal(st.warnings.length, 1, `reload ${i + 1}: ${st.warnings.join(' | ')}`);
  }
});
