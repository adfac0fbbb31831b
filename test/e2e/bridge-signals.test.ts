/**
 * Decoded signals on the bridge's consoles: the agent sends its DBC files up (core/uplink/dbc-transfer.ts)
 * and the bridge decodes the frames its dongle and group consoles show with them — real bridge and agent
 * processes on loopback. After a reload on the agent the bridge uses the new files.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { cleanupAfter } from '../helpers/cleanup.js';
import { startBridgeProcess } from '../helpers/bridge-process.js';
import { startAgentProcess, tempDir } from '../helpers/processes.js';
import { SseClient } from '../helpers/sse-client.js';

const FEATURES = fileURLToPath(new URL('../../../test/fixtures/dbc/features.dbc', import.meta.url));
const { track } = cleanupAfter();

test("bridge dongle and group consoles carry msg and signals decoded with the agent's DBC", async () => {
  const bridge = track(await startBridgeProcess());
  const token = await bridge.admin.register('sig-a');
  await bridge.admin.register('sig-b');
  await bridge.admin.group('gs', 'sig-a', 'sig-b');
  const dir = tempDir('canrelay-bsig-');
  const log = join(dir, 'loop.log');
  // GEAR = D; BE_ACROSS_3 = 715.5 deg; and an id no DBC knows. Looped at 1 ms per frame: frames keep coming.
  writeFileSync(log, ['(1.000000) can0 101#0000000000000030', '(1.001000) can0 100#05ABFF3800000000', '(1.002000) can0 555#01'].join('\n') + '\n');
  const dbc = join(dir, 'car.dbc');
  writeFileSync(dbc, readFileSync(FEATURES, 'utf8'));
  const a = track(await startAgentProcess(['--replay', log, '--replay-loop', '--dbc', dbc, '--bridge', bridge.base, '--token', token], { id: 'sig-a' }));
  await a.proc.waitForLog((l) => l.msg === 'uplink connected');

  const auth = `access_token=${bridge.admin.token}`;
  const dc = await SseClient.connect(`${bridge.base}/api/v1/streams/dongles/sig-a/console?${auth}`);
  const gc = await SseClient.connect(`${bridge.base}/api/v1/streams/groups/gs/console?${auth}`);
  const decoded = (c: SseClient, msg: string) => c.ofType('can_frame').find((e) => e.json.msg === msg)?.json;
  for (const c of [dc, gc]) {
    // All three frames of the log, the undescribed 0x555 too (it may arrive a little after the others).
    await c.waitFor(
      () => decoded(c, 'LITTLE_ENDIAN_MIX') !== undefined && decoded(c, 'BIG_ENDIAN_MIX') !== undefined && c.ofType('can_frame').some((e) => e.json.id === '0x555'),
      15_000,
      'decoded frames and the plain one on the bridge',
    );
    assert.equal((decoded(c, 'LITTLE_ENDIAN_MIX')!.signals as Record<string, unknown>).GEAR, 'D');
    const be = decoded(c, 'BIG_ENDIAN_MIX')!;
    assert.deepEqual(be.signals, { BE_ACROSS_3: 715.5, BE_SIGNED_16: -20, BE_ODD_5: 0, BE_SIGNED_11: 0 });
    assert.deepEqual(be.units, { BE_ACROSS_3: 'deg', BE_SIGNED_16: 'Nm' });
    assert.equal(be.dongle, 'sig-a');
    const plain = c.ofType('can_frame').find((e) => e.json.id === '0x555')!.json;
    assert.equal(plain.msg, undefined);
  }

  // Rename a message on the agent and reload: the bridge's console follows.
  writeFileSync(dbc, readFileSync(FEATURES, 'utf8').replace('BO_ 257 LITTLE_ENDIAN_MIX:', 'BO_ 257 RENAMED_MESSAGE:'));
  a.proc.child.kill('SIGHUP');
  await dc.waitFor(() => decoded(dc, 'RENAMED_MESSAGE') !== undefined, 15_000, 'the reloaded DBC on the bridge');
  dc.close();
  gc.close();
});
