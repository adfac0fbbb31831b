/**
 * Recordings through the bridge: the list and the download of a connected dongle's recording, streamed
 * over the uplink chunk by chunk, byte-identical to the file on the gateway (HEAD: the GET's status and
 * headers, no body); a client that stops reading
 * stalls the download (the bridge does not pull the file into memory) while frames keep flowing (real
 * bridge and agent processes on loopback). A viewer's tickets and downloads end with its token.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { get as httpGet, request as httpRequest, type IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { test } from 'node:test';
import { cleanupAfter } from '../helpers/cleanup.js';
import { ADMIN_TOKEN, startBridgeProcess } from '../helpers/bridge-process.js';
import { FakeAgent } from '../helpers/fake-agent.js';
import { waitForValue as until } from '../helpers/until.js';
import { startAgentProcess, tempDir, writeCandumpLog } from '../helpers/processes.js';
import { getJson, metricValue } from '../helpers/sse-client.js';
import { assertHeadLikeGet } from '../helpers/head-request.js';

const { track } = cleanupAfter();

test('list and download through the bridge: byte-identical to the gateway file, tx frames marked T', async () => {
  const bridge = track(await startBridgeProcess());
  const token = await bridge.admin.register('rec-gw');
  const viewer = String((await bridge.admin.post('/api/v1/viewer-tokens')).body.token);
  const dir = tempDir('canrelay-recb-');
  const N = 40_000; // about 1.6 MB: some 50 chunks over the uplink
  writeCandumpLog(join(dir, 'in.log'), N, { ids: [0x100, 0x200, 0x7e8] });
  const recs = join(dir, 'recs');
  const a = track(
    await startAgentProcess(['--replay', join(dir, 'in.log'), '--replay-speed', '0', '--record-on-start', '--record-dir', recs, '--bridge', bridge.base, '--token', token], {
      id: 'rec-gw',
    }),
  );
  await a.proc.waitForLog((l) => l.msg === 'uplink connected');
  await a.proc.waitForLog((l) => l.code === 'replay_ended', 60_000);
  // A frame transmitted on the gateway (a command through the bridge) is recorded as tx.
  const cmd = await bridge.admin.post('/api/v1/dongles/rec-gw/commands', { type: 'send_frame', bus: 'can0', id: '0x321', data_hex: 'CA FE' });
  assert.equal(cmd.status, 202);
  await until(
    async () => (await bridge.admin.get(`/api/v1/commands/${cmd.body.command_id}`)).body.status,
    (s) => s === 'succeeded',
    15_000,
    'the command',
  );

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
  const onDisk = Buffer.concat(
    readdirSync(recs)
      .filter((f) => f.endsWith('.log'))
      .sort()
      .map((f) => readFileSync(join(recs, f))),
  );
  assert.equal(viaBridge.length, info.bytes);
  assert.ok(viaBridge.equals(onDisk), 'the bridge download is byte-identical to the file on the gateway');
  const local = Buffer.from(await (await fetch(`${a.base}/api/v1/recordings/${id}`)).arrayBuffer());
  assert.ok(local.equals(onDisk), 'and so is the local download');
  assert.match(viaBridge.toString('latin1'), /can0 321#CAFE T\n/);
  // HEAD: the status and headers of the GET (size, type, file name), without the body, by token in the query or the header.
  const fileUrl = `${bridge.base}/api/v1/dongles/rec-gw/recordings/${id}`;
  assert.ok((await assertHeadLikeGet(`${fileUrl}?access_token=${viewer}`)).body.equals(onDisk), 'HEAD as GET, ?access_token=');
  assert.equal((await assertHeadLikeGet(fileUrl, { Authorization: `Bearer ${viewer}` })).status, 200, 'HEAD as GET, Authorization');
  assert.equal((await assertHeadLikeGet(fileUrl)).status, 401, 'HEAD without a token: 401 as GET');
  assert.equal((await assertHeadLikeGet(`${bridge.base}/api/v1/dongles/rec-gw/recordings?access_token=${viewer}`)).status, 200, 'HEAD on the list as GET');
  assert.equal(
    (await assertHeadLikeGet(`${bridge.base}/api/v1/dongles/rec-gw/recordings/20000101T000000Z-000000?access_token=${viewer}`)).status,
    404,
    'HEAD of no recording: 404 as GET',
  );
  assert.equal((await fetch(`${fileUrl}?access_token=${viewer}`, { method: 'POST' })).headers.get('allow'), 'GET, HEAD');

  assert.equal((await bridge.admin.withToken(viewer).get('/api/v1/dongles/rec-gw/recordings/20000101T000000Z-000000')).status, 404, 'unknown recording');

  // A download ticket (what the page uses): asked for with the viewer token, downloaded without it.
  const ticketPath = `/api/v1/dongles/rec-gw/recordings/${id}/ticket`;
  assert.equal((await fetch(bridge.base + ticketPath, { method: 'POST' })).status, 401, 'a ticket needs a token');
  assert.equal((await fetch(bridge.base + ticketPath)).status, 405, 'a ticket is asked for with POST');
  const issued = await bridge.admin.withToken(viewer).post(ticketPath);
  assert.equal(issued.status, 201, JSON.stringify(issued.body));
  const url = String(issued.body.url);
  assert.ok(url.startsWith(`/api/v1/dongles/rec-gw/recordings/${id}?ticket=`) && !url.includes(viewer), url);
  assert.equal((await assertHeadLikeGet(bridge.base + url)).status, 200, 'HEAD with a ticket, as GET');
  const byTicket = await fetch(bridge.base + url);
  assert.equal(byTicket.status, 200);
  assert.ok(Buffer.from(await byTicket.arrayBuffer()).equals(onDisk), 'the ticket downloads the same file');
  const ticket = new URL(url, bridge.base).searchParams.get('ticket');
  assert.equal((await fetch(`${bridge.base}/api/v1/dongles/rec-gw/recordings/20000101T000000Z-000000?ticket=${ticket}`)).status, 401, 'only its own recording');
  assert.equal((await fetch(`${bridge.base}/api/v1/dongles/rec-gw/recordings?ticket=${ticket}`)).status, 401, 'not the list');
  // A ticket dies with the token that asked for it: revoked, the viewer's unused ticket is refused at once.
  const unused = String((await bridge.admin.withToken(viewer).post(ticketPath)).body.url);
  const byAdmin = String((await bridge.admin.post(ticketPath)).body.url);
  const viewerId = String(((await bridge.admin.get('/api/v1/viewer-tokens')).body.viewer_tokens as { id: string }[])[0]!.id);
  assert.equal((await bridge.admin.del(`/api/v1/viewer-tokens/${viewerId}`)).status, 200);
  const refused = await fetch(bridge.base + unused);
  assert.equal(refused.status, 401, "a revoked viewer token's ticket");
  assert.match(String(((await refused.json()) as { error: string }).error), /revoked or expired/);
  const adminTicket = await fetch(bridge.base + byAdmin);
  assert.equal(adminTicket.status, 200, "the admin's ticket is not touched");
  assert.ok(Buffer.from(await adminTicket.arrayBuffer()).equals(onDisk));
  await a.proc.stop();
  const offline = await until(
    async () => (await bridge.admin.get('/api/v1/dongles/rec-gw/recordings')).status,
    (s) => s === 503,
    10_000,
    'offline answer',
  );
  assert.equal(offline, 503);
});

test('a download whose client stops reading stalls at the bridge (backpressure) while the data plane flows; then completes byte-identical', async (t) => {
  const bridge = track(await startBridgeProcess());
  const token = await bridge.admin.register('bp-gw');
  const viewer = String((await bridge.admin.post('/api/v1/viewer-tokens')).body.token);
  // A 24 MB recording in two files, written as the agent writes them (it reads the folder at start).
  const recs = join(tempDir('canrelay-recbp-'), 'recs');
  mkdirSync(recs);
  const id = '20261129T000000Z-abcdef';
  const part = (n: number, from: number, count: number): { name: string; bytes: number; text: string } => {
    const lines: string[] = [];
    for (let i = from; i < from + count; i++) lines.push(`(1700000000.${String(i % 1e6).padStart(6, '0')}) can0 123#${i.toString(16).toUpperCase().padStart(16, '0')} R\n`);
    const text = lines.join('');
    return { name: `${id}.000${n}.log`, bytes: text.length, text };
  };
  const parts = [part(1, 0, 250_000), part(2, 250_000, 250_000)];
  for (const p of parts) writeFileSync(join(recs, p.name), p.text);
  const size = parts[0]!.bytes + parts[1]!.bytes;
  writeFileSync(
    join(recs, `${id}.json`),
    JSON.stringify({
      v: 1,
      id,
      state: 'stopped',
      started_at: '2026-11-29T00:00:00.000Z',
      stopped_at: '2026-11-29T00:01:00.000Z',
      buses: null,
      ids: null,
      max_duration_s: null,
      frames: 500_000,
      frames_dropped: 0,
      files_deleted: 0,
      gzip: false,
      problems: [],
      stop_reason: 'stopped by request',
      error: null,
      parts: [
        { name: parts[0]!.name, offset: 0, bytes: parts[0]!.bytes },
        { name: parts[1]!.name, offset: parts[0]!.bytes, bytes: parts[1]!.bytes },
      ],
      next_part: 3,
    }),
  );
  const a = track(await startAgentProcess(['--sim', '--sim-rate', '1000', '--record-dir', recs, '--bridge', bridge.base, '--token', token], { id: 'bp-gw' }));
  await a.proc.waitForLog((l) => l.msg === 'uplink connected');
  const metric = async (name: string, labels: Record<string, string> = {}): Promise<number> => metricValue((await getJson(bridge.base + '/metrics')).text, name, labels) ?? 0;

  const res = await new Promise<IncomingMessage>((resolve, reject) =>
    httpGet(`${bridge.base}/api/v1/dongles/bp-gw/recordings/${id}?access_token=${viewer}`, resolve).on('error', reject),
  );
  assert.equal(res.statusCode, 200);
  assert.equal(Number(res.headers['content-length']), size);
  res.pause(); // the client stops reading
  let last = -1;
  const stalled = await until(
    async () => {
      const prev = last;
      last = await metric('canrelay_bridge_recording_bytes_total');
      await new Promise((r) => setTimeout(r, 300));
      return { prev, now: last };
    },
    (v) => v.now > 0 && v.now === v.prev,
    30_000,
    'the download to stall',
  );
  assert.ok(stalled.now < size / 2, `the bridge stopped pulling at ${stalled.now} of ${size} bytes while the client did not read`);
  t.diagnostic(`stalled at ${stalled.now} of ${size} bytes`);
  const f0 = await metric('canrelay_bridge_frames_received_total', { dongle: 'bp-gw' });
  await until(
    () => metric('canrelay_bridge_frames_received_total', { dongle: 'bp-gw' }),
    (f) => f > f0 + 500,
    15_000,
    'frames to keep arriving during the stalled download',
  );

  // Another viewer's download, stalled as well, ends when its token is revoked; the first one goes on.
  const viewer2 = (await bridge.admin.post('/api/v1/viewer-tokens')).body as { id: string; token: string };
  const res2 = await new Promise<IncomingMessage>((resolve, reject) =>
    httpGet(`${bridge.base}/api/v1/dongles/bp-gw/recordings/${id}?access_token=${viewer2.token}`, resolve).on('error', reject),
  );
  assert.equal(res2.statusCode, 200);
  res2.pause();
  const ended = new Promise<boolean>((resolve) => res2.on('close', () => resolve(res2.complete)));
  const revoked = await bridge.admin.del(`/api/v1/viewer-tokens/${viewer2.id}`);
  assert.equal(revoked.body.streams_closed, 1, 'the revocation counts the download it ended');
  res2.resume();
  assert.equal(await ended, false, "the revoked viewer's download was cut short");

  const chunks: Buffer[] = [];
  res.on('data', (c: Buffer) => chunks.push(c));
  await new Promise<void>((resolve, reject) => {
    res.on('end', resolve);
    res.on('error', reject);
    res.resume();
  });
  const body = Buffer.concat(chunks);
  assert.equal(body.length, size);
  assert.ok(body.equals(Buffer.from(parts[0]!.text + parts[1]!.text, 'latin1')), 'byte-identical after the stall');
});

test("an agent's chunk whose byte range no file can have (or of another recording) is a 502 for HEAD and GET, never a response sized by it", async () => {
  const bridge = track(await startBridgeProcess());
  const token = await bridge.admin.register('bad-range-gw');
  const rid = '20250101T000000Z-abcdef';
  const answers: Record<string, unknown>[] = [
    { id: rid, offset: 100, start: 0, end: 10, data: '' }, // offset past the end: Content-Length -90 before
    { id: rid, offset: 5, start: 10, end: 20, data: '' }, // offset before the start
    { id: rid, offset: 0, start: 0, end: 2, data: 'AAAAAA==' }, // 4 bytes in a range of 2
    { id: '20250101T000000Z-000000', offset: 0, start: 0, end: 3, data: 'AAAA' }, // another recording's bytes
  ];
  let answer: Record<string, unknown> = {};
  const agent = await FakeAgent.connect(bridge.base, { token, dongle: 'bad-range-gw' });
  agent.ws.on('message', (data: Buffer, isBinary: boolean) => {
    if (isBinary) return;
    const m = JSON.parse(data.toString('utf8')) as { t: string; req: number };
    if (m.t === 'rec_read') agent.sendJson({ t: 'rec_chunk', req: m.req, ...answer });
  });
  const url = `${bridge.base}/api/v1/dongles/bad-range-gw/recordings/${rid}`;
  for (const a of answers) {
    answer = a;
    for (const method of ['GET', 'HEAD']) {
      const got = await new Promise<string>((resolve) => {
        httpRequest(url, { method, headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } }, (res) => {
          res.resume();
          resolve(`${res.statusCode} content-length ${res.headers['content-length']}`);
        })
          .on('error', (e: NodeJS.ErrnoException) => resolve(`client error ${e.code}`))
          .end();
      });
      assert.match(got, /^502 /, `${method} with ${JSON.stringify(a)}: ${got}`);
    }
  }
  await agent.close();
});
