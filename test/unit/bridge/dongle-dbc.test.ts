/**
 * DongleDbcs (cloud-bridge/dongle-dbc.ts): a DBC set is parsed once per process, whoever sends it;
 * dongles that send the same files share one decoder; a set sent again keeps its decoder (not parsed
 * again); the last user gone, the set goes; distinct sets held at once are bounded by their text.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { pino } from 'pino';
import { DongleDbcs } from '../../../cloud-bridge/dongle-dbc.js';
import { dbcChunks, type DbcUpload } from '../../../core/uplink/dbc-transfer.js';
import { REPO } from '../../helpers/deploy.js';

const silent = pino({ level: 'silent' });
const fixture = (name: string): string => readFileSync(join(REPO, 'test/fixtures/dbc', name), 'utf8');

let gen = 0;
/** Sends `files` from a new link of `dongle` (as after a reconnect); the answer of the last part. */
function send(dbcs: DongleDbcs, dongle: string, files: DbcUpload[]): string | undefined {
  const link = {};
  let answer: string | undefined;
  for (const m of dbcChunks(files, ++gen).messages) answer = dbcs.accept(link, dongle, m);
  return answer;
}

test('dongles that send the same DBC files share one decoder; the set sent again is not parsed again; the last user gone, it goes', () => {
  const dbcs = new DongleDbcs(silent);
  const set: DbcUpload[] = [{ bus: null, file: 'features.dbc', text: fixture('features.dbc') }];
  assert.equal(send(dbcs, 'gw-1', set), undefined);
  const first = dbcs.decoderOf('gw-1');
  assert.ok(first && first.messageCount > 0);
  assert.equal(send(dbcs, 'gw-2', set), undefined);
  assert.equal(dbcs.decoderOf('gw-2'), first, 'the second dongle uses the same decoder');
  assert.equal(send(dbcs, 'gw-1', set), undefined, 'a reconnect sends it again');
  assert.equal(dbcs.decoderOf('gw-1'), first, 'kept, not parsed again');
  assert.equal(dbcs.held.sets, 1);
  // The same text bound to a bus is another set (it decodes other frames).
  send(dbcs, 'gw-2', [{ bus: 'can1', file: 'features.dbc', text: fixture('features.dbc') }]);
  assert.notEqual(dbcs.decoderOf('gw-2'), first);
  assert.equal(dbcs.held.sets, 2);
  dbcs.forget('gw-1');
  assert.equal(dbcs.held.sets, 1, 'the first set went with its last user');
  send(dbcs, 'gw-2', []);
  assert.equal(dbcs.decoderOf('gw-2'), undefined, 'an empty set: no DBC');
  assert.deepEqual(dbcs.held, { sets: 0, chars: 0 });
});

test('distinct sets are held up to their text budget; past it a new set is refused, saying so, and the dongle shows frames undecoded', () => {
  const a = fixture('features.dbc');
  const b = fixture('long-names.dbc');
  const c = fixture('exact-values.dbc');
  const dbcs = new DongleDbcs(silent, a.length + b.length + c.length - 1);
  assert.equal(send(dbcs, 'gw-a', [{ bus: null, file: 'a.dbc', text: a }]), undefined);
  assert.equal(send(dbcs, 'gw-b', [{ bus: null, file: 'b.dbc', text: b }]), undefined);
  const refused = send(dbcs, 'gw-c', [{ bus: null, file: 'c.dbc', text: c }]);
  assert.match(refused ?? '', /MiB more would pass its .* MiB: this dongle's frames show undecoded on the bridge/);
  assert.equal(dbcs.decoderOf('gw-c'), undefined);
  assert.equal(send(dbcs, 'gw-c', [{ bus: null, file: 'a.dbc', text: a }]), undefined, 'a set already held costs nothing more');
  // A dongle replacing its own set gives its text back first.
  assert.equal(send(dbcs, 'gw-b', [{ bus: null, file: 'c.dbc', text: c }]), undefined);
  assert.equal(dbcs.held.sets, 2);
});
