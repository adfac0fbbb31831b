/**
 * Full-rate recording on the agent, through the real CLI over loopback: a replayed log recorded frame
 * for frame (the unsampled counter and python-can's CanutilsLogReader agree), the bus and id filters (error
 * frames kept whatever the ids, standard and extended ids apart), the API and its auth (HEAD on a download:
 * the GET's status and headers, no body), the disk bound filled and held, gzip, and a full disk
 * (a small tmpfs) that stops the recording, not the agent.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync, createWriteStream, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { get as httpGet, type ClientRequest } from 'node:http';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { waitForValue as until } from '../helpers/until.js';
import { startAgentProcess, tempDir, writeCandumpLog, type StartedAgent } from '../helpers/processes.js';
import { getJson, metricValue } from '../helpers/sse-client.js';
import { skipOrFail } from '../helpers/skips.js';
import { assertHeadLikeGet } from '../helpers/head-request.js';

const running: StartedAgent[] = [];
const cleanups: (() => void)[] = [];
after(async () => {
  for (const a of running) await a.proc.stop('SIGKILL');
  for (const c of cleanups) c();
});
/** An agent for one test: stopped when the test ends (the machine is shared; idle agents still cost). */
async function agent(t: { after(fn: () => Promise<unknown>): void }, args: string[]): Promise<StartedAgent> {
  const a = await startAgentProcess(args);
  running.push(a);
  t.after(() => a.proc.stop('SIGKILL'));
  return a;
}

interface Rec {
  id: string;
  state: string;
  frames: number;
  frames_dropped: number;
  bytes: number;
  files: number;
  files_deleted: number;
  complete: boolean;
  problems: string[];
  error: string | null;
  gzip: boolean;
}
async function call(base: string, method: string, path: string, body?: unknown, token?: string): Promise<{ status: number; json: Record<string, unknown> }> {
  const headers: Record<string, string> = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, json: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}
const list = async (base: string, token?: string): Promise<Rec[]> => (await call(base, 'GET', '/api/v1/recordings', undefined, token)).json.recordings as Rec[];
const download = async (base: string, id: string, token?: string): Promise<Buffer> => {
  const r = await fetch(`${base}/api/v1/recordings/${id}`, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
  assert.equal(r.status, 200);
  return Buffer.from(await r.arrayBuffer());
};
const rxFrames = async (base: string, bus: string): Promise<number> =>
  metricValue((await getJson(base + '/metrics')).text, 'canrelay_can_frames_total', { bus, direction: 'rx' }) ?? 0;
const CANDUMP_LINE = /^\(\d{10}\.\d{6}\) [A-Za-z0-9_.:-]+ [0-9A-F]{3,8}#[0-9A-FR#_]*( [TR])$/;

before(() => {
  execFileSync('bash', [fileURLToPath(new URL('../../../.ci/ensure-debs.sh', import.meta.url)), 'python3-can'], { stdio: 'inherit' });
});

test('a replayed log, recorded from the start: exactly the frames the unsampled counter saw, and python-can reads it', async (t) => {
  const dir = tempDir('canrelay-rec-');
  const N = 30_000;
  writeCandumpLog(join(dir, 'in.log'), N, { ids: [0x100, 0x7e8, 0x18daf110 & 0x7ff, 0x3ff] });
  const a = await agent(t, ['--replay', join(dir, 'in.log'), '--replay-speed', '0', '--record-on-start', '--console-max-rate', '50']);
  await a.proc.waitForLog((l) => l.code === 'replay_ended', 60_000);
  const [rec] = await list(a.base);
  assert.ok(rec, 'the --record-on-start recording is listed');
  const stopped = await call(a.base, 'POST', `/api/v1/recordings/${rec.id}/stop`);
  assert.equal(stopped.status, 200);
  assert.equal(stopped.json.state, 'stopped');
  const counted = metricValue((await getJson(a.base + '/metrics')).text, 'canrelay_can_frames_total', { bus: 'can0', direction: 'rx' });
  assert.equal(counted, N, 'the unsampled counter saw every frame');
  assert.equal(stopped.json.frames, N, 'the recording has every frame');
  assert.equal(stopped.json.frames_dropped, 0);
  assert.equal(stopped.json.complete, true);
  const sampledOut = metricValue((await getJson(a.base + '/metrics')).text, 'canrelay_console_frames_sampled_out_total') ?? 0;
  assert.ok(sampledOut > 0, 'the console was sampling meanwhile (the recording is not)');

  const file = await download(a.base, rec.id);
  const lines = file.toString('latin1').trimEnd().split('\n');
  assert.equal(lines.length, N);
  for (const l of lines) assert.match(l, CANDUMP_LINE);
  // Payloads carry the frame index: in order, none missing, none doubled.
  lines.forEach((l, i) => assert.equal(parseInt(l.split('#')[1]!.slice(0, 8), 16), i, `line ${i + 1}: ${l}`));
  const path = join(dir, 'out.log');
  writeFileSync(path, file);
  const py = spawnSync(
    '/usr/bin/python3',
    [
      '-c',
      `import can, sys
msgs = list(can.io.CanutilsLogReader(sys.argv[1]))
print(len(msgs), sum(1 for m in msgs if m.is_rx), int.from_bytes(msgs[-1].data, "big"), hex(msgs[1].arbitration_id), msgs[0].channel)`,
      path,
    ],
    { encoding: 'utf8' },
  );
  assert.equal(py.status, 0, py.stderr);
  assert.equal(py.stdout.trim(), `${N} ${N} ${N - 1} 0x7e8 can0`, 'python-can: every frame, all rx, the last payload, ids and channel');
});

test('the bus filter: a recording of can1 on a two-bus gateway holds every can1 frame and none of can0', async (t) => {
  const dir = tempDir('canrelay-rec-bus-');
  const log = join(dir, 'two-bus.log');
  // 4 s of frames at 1 ms, alternating can0 and can1.
  const lines: string[] = [];
  for (let i = 0; i < 4000; i++)
    lines.push(`(${1_700_000_000 + Math.floor(i / 1000)}.${String((i % 1000) * 1000).padStart(6, '0')}) can${i % 2} 1${i % 2}0#${i.toString(16).padStart(8, '0')}`);
  writeFileSync(log, lines.join('\n') + '\n');
  const a = await agent(t, ['--replay', log, '--replay-speed', '1', '--record-dir', join(dir, 'recs')]);
  // A replay knows a bus once it has read a frame of it (its second line here); a recording names only known buses.
  await until(
    () => rxFrames(a.base, 'can1'),
    (n) => n > 0,
    10_000,
    'the first can1 frame',
  );
  const started = await call(a.base, 'POST', '/api/v1/recordings', { buses: ['can1'], max_duration_s: 1 });
  assert.equal(started.status, 201, JSON.stringify(started.json));
  const id = String(started.json.id);
  const done = await until(
    async () => (await list(a.base)).find((r) => r.id === id)!,
    (r) => r.state === 'stopped',
    10_000,
    'max duration stop',
  );
  const text = (await download(a.base, id)).toString('latin1').trimEnd().split('\n');
  assert.ok(done.frames > 50 && text.length === done.frames, `frames recorded: ${done.frames}, lines: ${text.length}`);
  assert.ok(
    text.every((l) => / can1 110#/.test(l)),
    `only can1: ${text.find((l) => !/ can1 /.test(l))}`,
  );
});

/**
 * An agent replaying a FIFO the test writes: the test decides which frames exist and when (after a recording
 * started). The writer is opened before the agent starts: the replay's open of the FIFO waits for it.
 */
async function fifoAgent(t: { after(fn: () => Promise<unknown> | void): void }, args: string[]): Promise<StartedAgent & { write(lines: string[]): void }> {
  const dir = tempDir('canrelay-rec-fifo-');
  const fifo = join(dir, 'frames.fifo');
  assert.equal(spawnSync('mkfifo', [fifo]).status, 0, 'mkfifo');
  const input = createWriteStream(fifo);
  input.on('error', () => undefined);
  t.after(() => void input.end());
  const a = await agent(t, ['--replay', fifo, '--replay-speed', '0', '--record-dir', join(dir, 'recs'), ...args]);
  return { ...a, write: (lines) => void input.write(lines.join('\n') + '\n') };
}
/** A recording's lines without their timestamps: "can0 7E8#03 R". */
const recordedLines = async (base: string, id: string): Promise<string[]> =>
  (await download(base, id))
    .toString('latin1')
    .trimEnd()
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.replace(/^\(\d+\.\d{6}\) /, ''));

test('the id filter picks data and remote frames by CAN id; error frames (whose id is their error class) stay in every recording of their bus', async (t) => {
  const a = await fifoAgent(t, []);
  const at = (i: number, rest: string): string => `(1700000000.${String(i).padStart(6, '0')}) ${rest}`;
  const received = async (): Promise<number> => (await rxFrames(a.base, 'can0')) + (await rxFrames(a.base, 'can1'));
  // Both buses known to the agent first (frames no filter below takes).
  a.write([at(0, 'can0 7FF#00'), at(1, 'can1 7FF#00')]);
  await until(received, (n) => n === 2, 10_000, 'the lead-in frames');
  const filters = [{ ids: '004' }, { ids: '100-2FF' }, { buses: ['can0'], ids: '7E0-7EF' }, { ids: '!004' }];
  const ids: string[] = [];
  for (const f of filters) {
    const r = await call(a.base, 'POST', '/api/v1/recordings', f);
    assert.equal(r.status, 201, JSON.stringify(r.json));
    ids.push(String(r.json.id));
  }
  // Error frames of classes 0x004 (controller), 0x100 (restarted) and 0x200 (counters): ids in one filter
  // or another, as numbers. Data and remote frames at those ids and in 7E0-7EF.
  const ERR004 = '20000004#0000080000000000';
  const ERR100 = '20000100#0000000000000000';
  const ERR200 = '20000200#0000000000000000';
  const frames = [`can0 ${ERR004}`, 'can0 004#01', `can0 ${ERR100}`, 'can0 100#02', 'can0 7E8#03', 'can0 7E0#R', `can0 ${ERR200}`, `can1 ${ERR004}`, 'can1 7E8#04'];
  a.write(frames.map((f, i) => at(10 + i, f)));
  await until(received, (n) => n === 2 + frames.length, 10_000, 'the frames');
  for (const id of ids) assert.equal((await call(a.base, 'POST', `/api/v1/recordings/${id}/stop`)).status, 200);
  const got = await Promise.all(ids.map((id) => recordedLines(a.base, id)));
  const want = (...f: string[]): string[] => f.map((x) => `${x} R`);
  assert.deepEqual(got[0], want(`can0 ${ERR004}`, 'can0 004#01', `can0 ${ERR100}`, `can0 ${ERR200}`, `can1 ${ERR004}`), '"004": the data frame 004 and every error frame');
  assert.deepEqual(got[1], want(`can0 ${ERR004}`, `can0 ${ERR100}`, 'can0 100#02', `can0 ${ERR200}`, `can1 ${ERR004}`), '"100-2FF": the data frame 100 and every error frame');
  assert.deepEqual(
    got[2],
    want(`can0 ${ERR004}`, `can0 ${ERR100}`, 'can0 7E8#03', 'can0 7E0#R', `can0 ${ERR200}`),
    'can0 "7E0-7EF": 7E8, the remote 7E0 and the error frames of can0, none of can1',
  );
  assert.deepEqual(got[3], want(...frames.filter((f) => f !== 'can0 004#01')), '"!004": everything but the data frame 004');
});

test('the id filter tells a standard id from the extended one of the same number: "123" is 123#, "00000123" is 00000123#; a mixed range is refused', async (t) => {
  const a = await fifoAgent(t, []);
  const at = (i: number, rest: string): string => `(1700000000.${String(i).padStart(6, '0')}) ${rest}`;
  a.write([at(0, 'can0 7FF#00')]);
  await until(
    () => rxFrames(a.base, 'can0'),
    (n) => n === 1,
    10_000,
    'the lead-in frame',
  );
  const mixed = await call(a.base, 'POST', '/api/v1/recordings', { ids: '100-00000200' });
  assert.equal(mixed.status, 400, JSON.stringify(mixed.json));
  assert.match(JSON.stringify(mixed.json), /two entries: 100-200,00000100-00000200/, 'the refusal says what to write');
  const flags = await call(a.base, 'POST', '/api/v1/recordings', { ids: '80000123' });
  assert.equal(flags.status, 400, 'candump flag bits are refused');
  assert.match(JSON.stringify(flags.json), /candump's flags.*\(00000123\)/);
  // Four at once (the most that run together).
  const filters = ['123', '00000123', '!123', '100-200,00000100/1FFFFF00'];
  const ids: string[] = [];
  for (const f of filters) {
    const r = await call(a.base, 'POST', '/api/v1/recordings', { ids: f });
    assert.equal(r.status, 201, JSON.stringify(r.json));
    assert.equal(r.json.ids, f, 'the filter is kept as written');
    ids.push(String(r.json.id));
  }
  const frames = ['can0 123#01', 'can0 00000123#02', 'can0 18DAF110#03', 'can0 00000200#04', 'can0 200#05'];
  a.write(frames.map((f, i) => at(10 + i, f)));
  await until(
    () => rxFrames(a.base, 'can0'),
    (n) => n === 1 + frames.length,
    10_000,
    'the frames',
  );
  for (const id of ids) assert.equal((await call(a.base, 'POST', `/api/v1/recordings/${id}/stop`)).status, 200);
  const got = await Promise.all(ids.map((id) => recordedLines(a.base, id)));
  const want = (...f: string[]): string[] => f.map((x) => `${x} R`);
  assert.deepEqual(got[0], want('can0 123#01'), '"123": the standard frame only');
  assert.deepEqual(got[1], want('can0 00000123#02'), '"00000123": the extended frame only');
  assert.deepEqual(got[2], want('can0 00000123#02', 'can0 18DAF110#03', 'can0 00000200#04', 'can0 200#05'), '"!123" leaves the extended 0x123 in');
  assert.deepEqual(got[3], want('can0 123#01', 'can0 00000123#02', 'can0 200#05'), 'a standard range (123, 200) and an extended mask (00000123)');
});

test('the API: start with buses/ids/max duration, list, stop, download, delete; writes need the admin token', async (t) => {
  const dir = tempDir('canrelay-rec-');
  const tokens = join(dir, 'tokens');
  const ADMIN = 'rec-admin-0123456789abcdef';
  const READ = 'rec-read-0123456789abcdef';
  writeFileSync(tokens, `admin ${ADMIN}\nread ${READ}\n`);
  const a = await agent(t, ['--sim', '--sim-rate', '1000', '--local-token-file', tokens, '--record-dir', join(dir, 'recs')]);
  assert.equal((await call(a.base, 'POST', '/api/v1/recordings', {})).status, 401, 'no token');
  assert.equal((await call(a.base, 'POST', '/api/v1/recordings', {}, READ)).status, 403, 'read token');
  assert.equal((await call(a.base, 'POST', '/api/v1/recordings', { ids: '7E8-zz' }, ADMIN)).status, 400, 'bad id filter');
  assert.equal((await call(a.base, 'POST', '/api/v1/recordings', { buses: ['can0'], extra: 1 }, ADMIN)).status, 400, 'unknown field');
  // A bus this gateway does not have (the simulator's is can0): refused, naming the buses it has, and nothing started.
  const noBus = await call(a.base, 'POST', '/api/v1/recordings', { buses: ['can1'], ids: '7E8' }, ADMIN);
  assert.equal(noBus.status, 400, JSON.stringify(noBus.json));
  assert.equal(noBus.json.error, 'cannot record can1: this gateway has can0');
  assert.equal((await call(a.base, 'POST', '/api/v1/recordings', { buses: ['can0', 'vcan9'] }, ADMIN)).status, 400, 'one unknown bus of two');
  assert.deepEqual(await list(a.base), [], 'nothing was started');
  const started = await call(a.base, 'POST', '/api/v1/recordings', { buses: ['can0'], ids: '!1D0', max_duration_s: 1 }, ADMIN);
  assert.equal(started.status, 201, JSON.stringify(started.json));
  const id = String(started.json.id);
  assert.equal((await call(a.base, 'DELETE', `/api/v1/recordings/${id}`, undefined, ADMIN)).status, 409, 'running: stop it first');
  // The max duration stops it by itself.
  const done = await until(
    async () => (await list(a.base)).find((r) => r.id === id)!,
    (r) => r.state === 'stopped',
    10_000,
    'max duration stop',
  );
  assert.ok(done.frames > 100);
  const text = (await download(a.base, id)).toString('latin1');
  assert.equal(text.trimEnd().split('\n').length, done.frames);
  // The simulator sends 1D0 (wheel speeds) every 20 ms, so the filter had something to leave out.
  assert.ok(!/ 1D0#/.test(text), 'the id filter left 1D0 out');
  assert.ok(/ 1D6#/.test(text) && / 14A#/.test(text), 'the other ids are there');
  // HEAD: the download's status and headers (size, type, file name), no body; with a token where GET needs one.
  const viaHead = await assertHeadLikeGet(`${a.base}/api/v1/recordings/${id}`);
  assert.equal(viaHead.body.toString('latin1'), text);
  assert.equal(viaHead.headers.get('content-type'), 'text/plain; charset=us-ascii');
  assert.equal((await assertHeadLikeGet(`${a.base}/api/v1/recordings/20000101T000000Z-000000`)).status, 404, 'HEAD of no recording: 404 as GET');
  assert.equal((await call(a.base, 'DELETE', `/api/v1/recordings/${id}`, undefined, READ)).status, 403);
  // A file the agent cannot remove (immutable: not even root may): 503 naming it, and the recording stays listed.
  const file = readdirSync(join(dir, 'recs')).find((f) => f.endsWith('.log'))!;
  const lock = spawnSync('chattr', ['+i', join(dir, 'recs', file)], { encoding: 'utf8' });
  if (lock.status === 0) {
    const refused = await call(a.base, 'DELETE', `/api/v1/recordings/${id}`, undefined, ADMIN);
    spawnSync('chattr', ['-i', join(dir, 'recs', file)]);
    assert.equal(refused.status, 503, JSON.stringify(refused.json));
    assert.match(String(refused.json.error), new RegExp(`could not delete ${file}.*EPERM`));
    assert.deepEqual(
      (await list(a.base)).map((r) => r.id),
      [id],
      'still listed, its bytes still counted',
    );
  } else if (process.getuid?.() === 0) assert.fail(`chattr +i failed as root: ${lock.stderr}`);
  else skipOrFail(t, 'a recording whose file cannot be deleted (503): needs root for chattr +i');
  assert.equal((await call(a.base, 'DELETE', `/api/v1/recordings/${id}`, undefined, ADMIN)).status, 204);
  assert.equal((await list(a.base)).length, 0);
  assert.deepEqual(readdirSync(join(dir, 'recs')), [], 'its files are gone');
  assert.equal((await call(a.base, 'GET', `/api/v1/recordings/${id}`)).status, 404);
});

test('download tickets (--console-auth): asked for with a token, a ticket downloads one recording without the token in its URL', async (t) => {
  const dir = tempDir('canrelay-rec-');
  const tokens = join(dir, 'tokens');
  const ADMIN = 'tk-admin-0123456789abcdef';
  const READ = 'tk-read-0123456789abcdef';
  writeFileSync(tokens, `admin ${ADMIN}\nread ${READ}\n`);
  const a = await agent(t, ['--sim', '--sim-rate', '1000', '--local-token-file', tokens, '--console-auth', '--record-dir', join(dir, 'recs')]);
  const ids: string[] = [];
  for (let i = 0; i < 2; i++) {
    const started = await call(a.base, 'POST', '/api/v1/recordings', { max_duration_s: 1 }, ADMIN);
    assert.equal(started.status, 201, JSON.stringify(started.json));
    ids.push(String(started.json.id));
    await until(
      async () => (await list(a.base, READ)).find((r) => r.id === ids[i])!,
      (r) => r.state === 'stopped',
      10_000,
      'max duration stop',
    );
  }
  const [one, other] = ids as [string, string];
  assert.equal((await fetch(`${a.base}/api/v1/recordings/${one}`)).status, 401, 'a download needs a token or a ticket');
  assert.equal((await call(a.base, 'POST', `/api/v1/recordings/${one}/ticket`)).status, 401, 'a ticket needs a token');
  assert.equal((await call(a.base, 'POST', '/api/v1/recordings/nope/ticket', undefined, READ)).status, 404, 'no ticket for a recording that is not there');
  const issued = await call(a.base, 'POST', `/api/v1/recordings/${one}/ticket`, undefined, READ);
  assert.equal(issued.status, 201, JSON.stringify(issued.json));
  const url = String(issued.json.url);
  assert.equal(issued.json.expires_in_s, 60);
  assert.ok(url.startsWith(`/api/v1/recordings/${one}?ticket=`) && !url.includes(READ), url);
  const byTicket = await fetch(a.base + url);
  assert.equal(byTicket.status, 200);
  assert.ok(Buffer.from(await byTicket.arrayBuffer()).equals(await download(a.base, one, READ)), 'the same file as with the token');
  assert.equal((await fetch(a.base + url.replace(one, other))).status, 401, 'the ticket opens only its recording');
  assert.equal((await call(a.base, 'DELETE', url)).status, 401, 'nor any write');
  assert.equal((await fetch(`${a.base}/api/v1/recordings?ticket=${new URL(url, a.base).searchParams.get('ticket')}`)).status, 401, 'nor the list');
});

test('the disk bound: the oldest files go first (counted), the folder never exceeds --record-max-bytes', async (t) => {
  const dir = tempDir('canrelay-rec-');
  const recs = join(dir, 'recs');
  const MAX = 256 * 1024;
  const a = await agent(t, ['--sim', '--sim-rate', '20000', '--record-dir', recs, '--record-max-bytes', String(MAX), '--record-rotate-bytes', '16384']);
  const first = await call(a.base, 'POST', '/api/v1/recordings', {});
  const second = await call(a.base, 'POST', '/api/v1/recordings', { ids: '100-3FF' });
  assert.equal(first.status, 201);
  assert.equal(second.status, 201);
  // A file may be deleted between readdir and stat: it then holds nothing.
  const size = (f: string): number => statSync(join(recs, f), { throwIfNoEntry: false })?.size ?? 0;
  // Files cannot be read at one instant: a file read early may be deleted and its room written into a file read
  // later, which would count those bytes twice. So each recording's newest part (the only kind that grows) is
  // read first and the closed ones (which only shrink) after: the sum is then at most what was on disk when the
  // last growing file was read.
  const folderBytes = (): number => {
    const files = readdirSync(recs).filter((f) => f.endsWith('.log'));
    const newest = new Map<string, string>();
    for (const f of files.sort()) newest.set(f.split('.')[0]!, f); // <id>.<part, zero-padded>.log
    const growing = new Set(newest.values());
    return [...growing, ...files.filter((f) => !growing.has(f))].reduce((s, f) => s + size(f), 0);
  };
  let peak = 0;
  await until(
    async () => {
      peak = Math.max(peak, folderBytes());
      return metricValue((await getJson(a.base + '/metrics')).text, 'canrelay_recording_files_deleted_total') ?? 0;
    },
    (n) => n >= 20,
    60_000,
    '20 files deleted by the bound',
  );
  for (let i = 0; i < 20; i++) {
    peak = Math.max(peak, folderBytes());
    await new Promise((r) => setTimeout(r, 25));
  }
  // Read while both run: once stopped, the other one may delete the rest of the first (oldest first).
  const all = await list(a.base);
  const r1 = all.find((r) => r.id === first.json.id)!;
  assert.ok(r1, JSON.stringify(all) + JSON.stringify(a.proc.logs.filter((l) => String(l.code).startsWith('recording_') && l.code !== 'recording_file_deleted')));
  assert.equal(all[1]!.id, r1.id, 'listed newest first: the first recording is the older one');
  // What is left still downloads as whole lines (files are cut at line boundaries). Downloaded while both
  // run, too: once the second has stopped, the first's last writes may delete its files (the oldest across
  // recordings), and a recording with no file left is gone (404).
  const text = (await download(a.base, String(second.json.id))).toString('latin1');
  for (const l of text.trimEnd().split('\n').slice(0, 2000)) assert.match(l, CANDUMP_LINE);
  await Promise.all([first, second].map((s) => call(a.base, 'POST', `/api/v1/recordings/${s.json.id}/stop`)));
  assert.ok(peak <= MAX, `the folder held ${peak} bytes, over the bound ${MAX}`);
  assert.ok(folderBytes() > MAX / 2, 'the bound is used, not emptied');
  assert.ok(r1.files_deleted > 0);
  assert.equal(r1.complete, false);
  assert.match(r1.problems.join(' '), /record-max-bytes/);
  await a.proc.waitForLog((l) => l.code === 'recording_file_deleted'); // deletions are logged (the log is written asynchronously)
  assert.equal((await getJson(a.base + '/healthz')).status, 200);
});

test('the disk bound deletes the oldest files across recordings: a short recording made while a logger runs outlives the older files of the logger, not its newer ones', async (t) => {
  const dir = tempDir('canrelay-rec-');
  const MAX = 256 * 1024;
  const a = await agent(t, ['--sim', '--sim-rate', '3000', '--record-dir', join(dir, 'recs'), '--record-max-bytes', String(MAX), '--record-rotate-bytes', '16384']);
  const logger = String((await call(a.base, 'POST', '/api/v1/recordings', {})).json.id);
  const of = async (id: string) => (await list(a.base)).find((r) => r.id === id)!;
  await until(
    () => of(logger),
    (r) => r.files >= 4,
    30_000,
    'the logger has four files',
  );
  const short = String((await call(a.base, 'POST', '/api/v1/recordings', { ids: '100-3FF' })).json.id);
  await until(
    () => of(short),
    (r) => r.frames > 200,
    30_000,
    'the short recording has frames',
  );
  assert.equal((await call(a.base, 'POST', `/api/v1/recordings/${short}/stop`)).status, 200);
  // The logger goes on; once the bound reaches the short recording's file, the logger still holds the
  // files it wrote after it (oldest first). Before, it lost all but its current file first.
  let loggerFilesThen = -1;
  await until(
    async () => {
      const all = await list(a.base);
      const s = all.find((r) => r.id === short);
      if (s === undefined || s.files_deleted > 0) loggerFilesThen = all.find((r) => r.id === logger)!.files;
      return loggerFilesThen;
    },
    (n) => n >= 0,
    60_000,
    'the short recording reached by the bound',
  );
  assert.ok(loggerFilesThen >= 4, `the logger kept its newer files (it had ${loggerFilesThen} when the short recording lost its first)`);
});

test('after a crash: the interrupted recording ends on a whole line; files of unreadable metadata are named with their size', async (t) => {
  const dir = tempDir('canrelay-rec-');
  const recs = join(dir, 'recs');
  const a = await agent(t, ['--sim', '--sim-rate', '500', '--record-dir', recs]);
  const id = String((await call(a.base, 'POST', '/api/v1/recordings', {})).json.id);
  await until(
    () => list(a.base),
    (all) => (all[0]?.frames ?? 0) > 100,
    10_000,
    'frames recorded',
  );
  await a.proc.stop('SIGKILL');
  // A write cut short by the crash: half a line at the end of the file being written.
  const part = readdirSync(recs)
    .filter((f) => f.startsWith(`${id}.`) && f.endsWith('.log'))
    .sort()
    .at(-1)!;
  appendFileSync(join(recs, part), '(1764000000.123456) can0 12');
  // Another recording whose metadata is unreadable: its file is in no recording.
  writeFileSync(join(recs, '20260101T000000Z-abcdef.json'), '{ not json');
  writeFileSync(join(recs, '20260101T000000Z-abcdef.0001.log'), 'x'.repeat(1000));
  const b = await agent(t, ['--sim', '--sim-rate', '500', '--record-dir', recs]);
  const rec = (await list(b.base)).find((r) => r.id === id)!;
  assert.equal(rec.complete, false);
  assert.match(rec.problems.join(' '), /stopped without closing it/);
  const text = (await download(b.base, id)).toString('latin1');
  assert.ok(text.endsWith('\n'), 'the download ends with a whole line');
  for (const l of text.trimEnd().split('\n')) assert.match(l, CANDUMP_LINE);
  const warned = await b.proc.waitForLog((l) => l.code === 'recording_bad_metadata');
  assert.match(String(warned.msg), /its 1 files \(1000 bytes\) are outside --record-max-bytes/);
});

test('--record-gzip: the download is gzip, it decompresses to candump -L lines', async (t) => {
  const dir = tempDir('canrelay-rec-');
  const a = await agent(t, ['--sim', '--sim-rate', '2000', '--record-dir', join(dir, 'recs'), '--record-gzip', '--record-max-bytes', '1048576', '--record-rotate-bytes', '4096']);
  const s = await call(a.base, 'POST', '/api/v1/recordings', {});
  await until(
    async () => (await list(a.base))[0]!,
    (r) => r.files >= 3,
    20_000,
    'three rotated gzip files',
  );
  const stopped = await call(a.base, 'POST', `/api/v1/recordings/${s.json.id}/stop`);
  assert.equal((await assertHeadLikeGet(`${a.base}/api/v1/recordings/${s.json.id}`)).headers.get('content-type'), 'application/gzip', 'HEAD as GET');
  const r = await fetch(`${a.base}/api/v1/recordings/${s.json.id}`);
  assert.equal(r.headers.get('content-type'), 'application/gzip');
  assert.match(String(r.headers.get('content-disposition')), /\.log\.gz"/);
  const lines = gunzipSync(Buffer.from(await r.arrayBuffer()))
    .toString('latin1')
    .trimEnd()
    .split('\n');
  assert.equal(lines.length, stopped.json.frames);
  for (const l of lines) assert.match(l, CANDUMP_LINE);
});

test('a full disk stops the recording with a clear error, keeps what was written, and the agent runs on', async (t) => {
  if (process.getuid?.() !== 0) return skipOrFail(t, 'needs root to mount a small tmpfs');
  // Under a long path: the error names the file, and was refused (bridge: the link closed; agent: the
  // recording lost after a restart) once longer than the 300 characters a recording's error may have.
  const dir = join(tempDir('canrelay-rec-'), 'd'.repeat(200));
  const recs = join(dir, 'small');
  mkdirSync(recs, { recursive: true });
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=192k,huge=never', 'tmpfs', recs], { encoding: 'utf8' });
  if (m.status !== 0) return skipOrFail(t, `cannot mount a tmpfs here: ${m.stderr.trim()}`);
  cleanups.push(() => spawnSync('umount', ['-l', recs]));
  // Small files: writes of at most 16 KiB, so some land before the 192 KiB disk is full, however loaded the machine.
  const a = await agent(t, ['--sim', '--sim-rate', '20000', '--record-dir', recs, '--record-max-bytes', String(64 * 1024 * 1024), '--record-rotate-bytes', '16384']);
  const s = await call(a.base, 'POST', '/api/v1/recordings', {});
  assert.equal(
    s.status,
    201,
    JSON.stringify(s.json) + spawnSync('sh', ['-c', `df ${recs}; ls -la ${recs}; cat ${recs}/*.json`], { encoding: 'utf8' }).stdout + a.proc.stdout.slice(-3000) + a.proc.stderr,
  );
  const failed = await until(
    async () => (await list(a.base))[0]!,
    (r) => r.state === 'failed',
    30_000,
    'the recording to fail on the full disk',
  );
  assert.match(String(failed.error), /^disk full: recording stopped \(free space there.*; writing .*dddd/);
  assert.ok(String(failed.error).length <= 300, `the error within its bound: ${String(failed.error).length} characters`);
  assert.equal(failed.complete, false);
  assert.ok(failed.frames_dropped > 0, 'frames it could not write are counted');
  assert.ok(failed.frames > 0);
  const text = (await download(a.base, failed.id)).toString('latin1');
  const lines = text.trimEnd().split('\n');
  assert.equal(lines.length, failed.frames, 'every counted frame is in the file, and nothing half-written');
  for (const l of lines) assert.match(l, CANDUMP_LINE);
  await a.proc.waitForLog((l) => l.code === 'recording_failed'); // logged (asynchronously)
  assert.equal((await getJson(a.base + '/healthz')).status, 200, 'the agent runs on');
  assert.equal(metricValue((await getJson(a.base + '/metrics')).text, 'canrelay_recording_failures_total'), 1);
  assert.equal(a.proc.exitCode, null);

  // A restart on the still-full disk: the recordings are listed (not an empty list), and deleting one frees the space to record again.
  assert.equal(await a.proc.stop(), 0);
  const b = await agent(t, ['--sim', '--sim-rate', '200', '--record-dir', recs, '--record-max-bytes', String(64 * 1024 * 1024), '--record-rotate-bytes', '16384']);
  const listed = await call(b.base, 'GET', '/api/v1/recordings');
  assert.equal(listed.status, 200, JSON.stringify(listed.json));
  assert.deepEqual(
    (listed.json.recordings as Rec[]).map((r) => r.id),
    [failed.id],
    'the recording is listed after the restart',
  );
  assert.equal((await call(b.base, 'DELETE', `/api/v1/recordings/${failed.id}`)).status, 204, 'and can be deleted to free the disk');
  const again = await call(b.base, 'POST', '/api/v1/recordings', {});
  assert.equal(again.status, 201, JSON.stringify(again.json));
  assert.equal((await call(b.base, 'POST', `/api/v1/recordings/${String(again.json.id)}/stop`)).status, 200);
});

test('the record folder deleted while recording: the recording fails within seconds saying so, and its download is 410, not an empty file', async (t) => {
  const dir = tempDir('canrelay-rec-');
  const recs = join(dir, 'recs');
  const a = await agent(t, ['--sim', '--sim-rate', '500', '--record-dir', recs]);
  const s = await call(a.base, 'POST', '/api/v1/recordings', {});
  assert.equal(s.status, 201);
  await until(
    async () => (await list(a.base))[0]!,
    (r) => r.frames > 0,
    10_000,
    'frames written',
  );
  rmSync(recs, { recursive: true, force: true }); // a clean-up script, or a technician tidying the disk
  const failed = await until(
    async () => (await list(a.base))[0]!,
    (r) => r.state === 'failed',
    20_000,
    'the recording to fail',
  );
  assert.match(String(failed.error), /^its file was deleted while recording/);
  assert.equal(failed.complete, false);
  const r = await call(a.base, 'GET', `/api/v1/recordings/${failed.id}`);
  assert.equal(r.status, 410, JSON.stringify(r.json));
  assert.match(String(r.json.error), /no longer in .* \(deleted outside the agent\)/);
  assert.equal((await getJson(a.base + '/healthz')).status, 200, 'the agent runs on');
});

test('at most 4 downloads from one address and 8 in all: the next is 503 with Retry-After; a finished one frees its place', async (t) => {
  const dir = tempDir('canrelay-rec-');
  writeCandumpLog(join(dir, 'in.log'), 200_000, { ids: [0x100, 0x200] }); // ~9 MB: more than loopback's socket buffers hold
  const a = await agent(t, ['--replay', join(dir, 'in.log'), '--replay-speed', '0', '--record-on-start', '--console-max-rate', '50']);
  await a.proc.waitForLog((l) => l.code === 'replay_ended', 60_000);
  const [rec] = await list(a.base);
  assert.equal((await call(a.base, 'POST', `/api/v1/recordings/${rec!.id}/stop`)).status, 200);
  const url = new URL(`${a.base}/api/v1/recordings/${rec!.id}`);
  const open: ClientRequest[] = [];
  t.after(() => {
    for (const r of open) r.destroy();
  });
  /** A download that reads nothing after its head (it stays open); resolves with its status. */
  const stalled = (from: string): Promise<{ status: number; retryAfter?: string }> =>
    new Promise((resolve, reject) => {
      const r = httpGet({ host: url.hostname, port: url.port, path: url.pathname, localAddress: from }, (res) => {
        res.pause();
        resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'] as string | undefined });
      });
      r.on('error', reject);
      open.push(r);
    });
  for (let i = 0; i < 4; i++) assert.equal((await stalled('127.0.0.1')).status, 200, `download ${i + 1} from one address`);
  assert.deepEqual(await stalled('127.0.0.1'), { status: 503, retryAfter: '10' }, 'a fifth from the same address');
  for (let i = 0; i < 4; i++) assert.equal((await stalled('127.0.0.2')).status, 200, `download ${i + 1} from another address`);
  assert.equal((await stalled('127.0.0.3')).status, 503, 'a ninth in all');
  open[0]!.destroy(); // a client gives up: its place is free again
  await until(
    async () => (await stalled('127.0.0.3')).status,
    (s) => s === 200,
    10_000,
    'a download served again',
  );
});
