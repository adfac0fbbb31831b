/**
 * Recordings through the bridge: the list and the download of a connected dongle's recording, streamed
 * over the uplink chunk by chunk, byte-identical to the file on the gateway (real bridge and agent
 * processes on loopback).
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { startBridgeProcess } from './helpers/bridge-process.js';
import { waitForValue as until } from './helpers/wait-for.js';
import { startAgentProcess, tempDir, writeCandumpLog } from './helpers/processes.js';

const procs: { proc: { stop(s?: NodeJS.Signals): Promise<unknown> } }[] = [];
after(async () => {
  for (const p of procs) await p.proc.stop('SIGKILL');
});
const track = <T extends { proc: { stop(s?: NodeJS.Signals): Promise<unknown> } }>(p: T): T => (procs.push(p), p);


test('list and download through the bridge: byte-identical to the gateway file, tx frames marked T', async () => {
  const bridge = track(await startBridgeProcess());
  const token = await bridge.admin.register('rec-gw');
  const viewer = String((await bridge.admin.post('/api/v1/viewer-tokens')).body.token);
  const dir = tempDir('canrelay-recb-');
  const N = 40_000; // about 1.6 MB: some 50 chunks over the uplink
  writeCandumpLog(join(dir, 'in.log'), N, { ids: [0x100, 0x200, 0x7e8] });
  const recs = join(dir, 'recs');
  const a = track(
    await startAgentProcess(['--replay', join(dir, 'in.log'), '--replay-speed', '0', '--record-on-start', '--record-dir', recs, '--bridge', bridge.base, '--token', token], { id: 'rec-gw' }),
  );
  await a.proc.waitForLog((l) => l.msg === 'uplink connected');
  await a.proc.waitForLog((l) => l.code === 'replay_ended', 60_000);
  // A frame transmitted on the gateway (a command through the bridge) is recorded as tx.
  const cmd = await bridge.admin.post('/api/v1/dongles/rec-gw/commands', { type: 'send_frame', bus: 'can0', id: '0x321', data_hex: 'CA FE' });
  assert.equal(cmd.status, 202);
  await until(async () => (await bridge.admin.get(`/api/v1/commands/${cmd.body.command_id}`)).body.status, (s) => s === 'succeeded', 15_000, 'the command');

  const listed = await until(
    async () => (await bridge.admin.withToken(viewer).get('/api/v1/dongles/rec-gw/recordings')).body,
    (b) => Array.isArray(b.recordings) && b.recordings.length === 1,
    10_000,
    'the list through the bridge',
  );
  const id = String((listed.recordings as { id: string }[])[0]!.id);
  const stopped = await fetch(`${a.base}/api/v1/recordings/${id}/stop`, { method: 'POST' });
  assert.equal(stopped.status, 200);
  const info = (await stopped.json()) as { frames: number; bytes: number };
  assert.equal(info.frames, N + 1);

  assert.equal((await fetch(`${bridge.base}/api/v1/dongles/rec-gw/recordings/${id}`)).status, 401, 'no token');
  const r = await fetch(`${bridge.base}/api/v1/dongles/rec-gw/recordings/${id}?access_token=${viewer}`);
  assert.equal(r.status, 200);
  assert.match(String(r.headers.get('content-disposition')), new RegExp(`rec-gw-${id}\\.log"`));
  const viaBridge = Buffer.from(await r.arrayBuffer());
  const onDisk = Buffer.concat(readdirSync(recs).filter((f) => f.endsWith('.log')).sort().map((f) => readFileSync(join(recs, f))));
  assert.equal(viaBridge.length, info.bytes);
  assert.ok(viaBridge.equals(onDisk), 'the bridge download is byte-identical to the file on the gateway');
  const local = Buffer.from(await (await fetch(`${a.base}/api/v1/recordings/${id}`)).arrayBuffer());
  assert.ok(local.equals(onDisk), 'and so is the local download');
  assert.match(viaBridge.toString('latin1'), /can0 321#CAFE T\n/);

  assert.equal((await bridge.admin.withToken(viewer).get('/api/v1/dongles/rec-gw/recordings/20000101T000000Z-000000')).status, 404, 'unknown recording');
  await a.proc.stop();
  const offline = await until(async () => (await bridge.admin.get('/api/v1/dongles/rec-gw/recordings')).status, (s) => s === 503, 10_000, 'offline answer');
  assert.equal(offline, 503);
});
