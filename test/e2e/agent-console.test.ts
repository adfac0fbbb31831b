/** The agent's console through the real CLI process, over real HTTP on loopback. */
import assert from 'node:assert/strict';
import { get as httpGet, type IncomingMessage } from 'node:http';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { getJson, metricValue, SseClient } from '../helpers/sse-client.js';
import { until } from '../helpers/until.js';
import { runCli, startAgentProcess, tempDir, writeCandumpLog, type StartedAgent } from '../helpers/processes.js';
import { skipOrFail } from '../helpers/skips.js';

const running: StartedAgent[] = [];
after(async () => {
  for (const a of running) await a.proc.stop('SIGKILL');
});
async function agent(args: string[], opts: Parameters<typeof startAgentProcess>[1] = {}): Promise<StartedAgent> {
  const a = await startAgentProcess(args, opts);
  running.push(a);
  return a;
}
const ids = (c: SseClient): number[] => c.events.filter((e) => e.id !== undefined).map((e) => Number(e.id));
function assertIncreasing(list: number[]): void {
  for (let i = 1; i < list.length; i++) assert.ok(list[i]! > list[i - 1]!, `ids increase: ${list[i - 1]} then ${list[i]}`);
}

test('console: SSE headers, opening comment, retry, presence first, frames with increasing ids', async () => {
  const a = await agent(['--sim', '--sim-rate', '100']);
  // A browser asks for compression; the stream must still come uncompressed (a gzip stream buffers).
  const c = await SseClient.connect(a.url, { 'Accept-Encoding': 'gzip, deflate, br' }, {});
  assert.equal(c.status, 200);
  assert.equal(c.headers['content-type'], 'text/event-stream; charset=utf-8');
  assert.equal(c.headers['cache-control'], 'no-cache, no-store, no-transform');
  assert.equal(c.headers['x-accel-buffering'], 'no');
  assert.equal(c.headers['content-encoding'], undefined);
  await c.waitFor((ev) => ev.filter((e) => e.event === 'can_frame').length >= 30, 5000, '30 frames');
  assert.ok(
    c.comments.some((x) => x.startsWith('canrelay console')),
    'opening comment',
  );
  assert.equal(c.retry, 2000);
  const f = c.ofType('can_frame')[0]!.json;
  assert.equal(f.direction, 'rx');
  assert.equal(f.bus, 'can0');
  assert.match(String(f.id), /^0x[0-9A-F]{3}([0-9A-F]{5})?$/);
  assert.equal(typeof f.is_extended, 'boolean');
  assert.match(String(f.data_hex), /^([0-9A-F]{2}( [0-9A-F]{2})*)?$/);
  assert.match(String(f.ts), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
  assert.equal(f.represents, undefined, 'no sampling at 100 frames/s');
  assertIncreasing(ids(c));

  // A late client's replayed events and the live ones after them are one run of the stream: the same ids,
  // in order, that the client connected all along saw (c stays open, so however slow the machine, no
  // event is published unseen by it).
  const late = await SseClient.connect(a.url + '?backlog=5');
  await late.waitFor((ev) => ev.length >= 10, 10_000, '10 events on the late client');
  const lateIds = ids(late).slice(0, 10);
  await c.waitFor(() => ids(c).includes(lateIds.at(-1)!), 10_000, 'the first client up to the late one');
  const at = ids(c).indexOf(lateIds[0]!);
  assert.ok(at >= 0, '?backlog replays events the stream published before');
  assert.deepEqual(ids(c).slice(at, at + 10), lateIds, 'replay and live continue without a gap or a repeat');
  late.close();
  c.close();

  // Exactly the last 5: on a stream that has gone quiet (a replay that ended, no periodic events), the
  // replayed events are the last 5 a live client saw — not 4, not 6.
  const dir = tempDir('canrelay-backlog-');
  writeCandumpLog(join(dir, 'q.log'), 20);
  const q = await agent(['--replay', join(dir, 'q.log'), '--replay-speed', '0', '--presence-interval', '86400', '--bus-state-interval', '3600']);
  const live = await SseClient.connect(q.url + '?backlog=1000');
  // The replay's end is its last event (log replay_ended, after the 20 frames): then the stream is quiet.
  await live.waitFor((ev) => ev.some((e) => e.event === 'log' && e.json.code === 'replay_ended'), 20_000, 'the end of the replay');
  assert.equal(live.ofType('can_frame').length, 20);
  const seen = ids(live);
  assert.ok(seen.length >= 6, `more than 5 events in the history (${seen.length})`);
  const five = await SseClient.connect(q.url + '?backlog=5');
  await five.waitFor((ev) => ev.length >= 5, 10_000, '5 replayed events');
  assert.deepEqual(ids(five).slice(0, 5), seen.slice(-5), '?backlog=5 replays exactly the last 5 events');
  five.close();
  live.close();

  const other = await getJson(a.base + '/api/v1/streams/dongles/not-me/console');
  assert.equal(other.status, 404);
  assert.match(String(other.body.error), /not-me|test-gw/);
});

test('resume with Last-Event-ID: no gap, no duplicate; ?lastEventId= works too', async () => {
  const a = await agent(['--sim', '--sim-rate', '300']);
  const c1 = await SseClient.connect(a.url);
  await c1.waitFor((ev) => ev.length >= 20);
  c1.close();
  const last = Number(c1.events.at(-1)!.id);
  await new Promise((r) => setTimeout(r, 300)); // events flow while we are away
  const c2 = await SseClient.connect(a.url, { 'Last-Event-ID': String(last) });
  await c2.waitFor((ev) => ev.length >= 40);
  const got = ids(c2);
  assert.equal(got[0], last + 1, 'first replayed event follows the last one seen');
  for (let i = 1; i < got.length; i++) assert.equal(got[i], got[i - 1]! + 1, 'contiguous, no gap or duplicate');
  assert.equal(c2.ofType('stream_reset').length, 0);
  c2.close();

  const c3 = await SseClient.connect(`${a.url}?lastEventId=${last}`);
  await c3.waitFor((ev) => ev.length >= 5);
  assert.equal(Number(c3.events[0]!.id), last + 1);
  c3.close();
});

test('?ids= and ?buses= select the frames a client is sent, live and replayed; other events pass; a bad one is 400', async () => {
  // Live: the simulator's ids; a client asking for one id gets only that id's frames, with stream ids.
  const a = await agent(['--sim', '--sim-rate', '300']);
  const all = await SseClient.connect(a.url);
  await all.waitFor((ev) => new Set(ev.filter((e) => e.event === 'can_frame').map((e) => e.json.id)).size >= 3, 10_000, 'three ids');
  const wanted = String(all.ofType('can_frame')[0]!.json.id);
  all.close();
  const one = await SseClient.connect(`${a.url}?backlog=1000&ids=${wanted.slice(2)}`);
  await one.waitFor((ev) => ev.filter((e) => e.event === 'can_frame').length >= 5, 10_000, `5 frames of ${wanted}`);
  const fromHistory = one.ofType('can_frame').length;
  await one.waitFor((ev) => ev.filter((e) => e.event === 'can_frame').length >= fromHistory + 3, 10_000, `3 live frames of ${wanted}`);
  assert.deepEqual([...new Set(one.ofType('can_frame').map((e) => e.json.id))], [wanted], 'only the id asked for');
  assert.ok(one.ofType('presence').length >= 1, 'other events pass');
  assertIncreasing(ids(one));
  one.close();
  const none = await SseClient.connect(`${a.url}?backlog=1000&buses=can9`);
  await none.waitFor((ev) => ev.some((e) => e.event === 'presence'), 5000, 'presence');
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(none.ofType('can_frame').length, 0, 'no frame of a bus the client did not ask for');
  none.close();
  for (const bad of ['ids=7G8', 'ids=7EF-7E0', 'buses=can%200']) {
    const r = await getJson(`${a.url}?${bad}`);
    assert.equal(r.status, 400, bad);
    assert.match(String(r.body.error), /^(ids|buses): /, bad);
  }

  // Replayed (?backlog): two buses, standard and extended ids and an error frame, from the history.
  const dir = tempDir('canrelay-select-');
  const lines: string[] = [];
  for (let i = 0; i < 10; i++) {
    const ts = `(1700000000.${String(i * 1000).padStart(6, '0')})`;
    lines.push(`${ts} can0 7E8#0${i % 10}`, `${ts} can0 7E0#0${i % 10}`, `${ts} can1 100#0${i % 10}`, `${ts} can0 18DAF110#0${i % 10}`);
    if (i < 5) lines.push(`${ts} can0 123#0${i}`, `${ts} can0 00000123#0${i}`); // one number, two frames: standard and extended
  }
  lines.push('(1700000001.000000) can0 20000004#0000080000000000'); // an error frame (controller problem)
  writeFileSync(join(dir, 'two.log'), `${lines.join('\n')}\n`);
  const q = await agent(['--replay', join(dir, 'two.log'), '--replay-speed', '0', '--console-max-rate', '100000']);
  const live = await SseClient.connect(`${q.url}?backlog=1000`);
  await live.waitFor((ev) => ev.some((e) => e.event === 'log' && e.json.code === 'replay_ended'), 20_000, 'the end of the replay');
  assert.equal(live.ofType('can_frame').length, 51);
  live.close();
  const replayed = async (query: string): Promise<string[]> => {
    const c = await SseClient.connect(`${q.url}?backlog=1000&${query}`);
    await c.waitFor((ev) => ev.some((e) => e.event === 'log' && e.json.code === 'replay_ended'), 10_000, `the history with ${query}`);
    c.close();
    return c.ofType('can_frame').map((e) => `${String(e.json.bus)} ${String(e.json.id)}${e.json.is_error ? ' error' : ''}`);
  };
  const count = (list: string[]): Record<string, number> => Object.fromEntries([...new Set(list)].map((k) => [k, list.filter((x) => x === k).length]));
  assert.deepEqual(count(await replayed('ids=7E8')), { 'can0 0x7E8': 10, 'can0 0x00000004 error': 1 }, 'one id; the error frame passes');
  assert.deepEqual(count(await replayed('ids=7E0-7EF,!7E0')), { 'can0 0x7E8': 10, 'can0 0x00000004 error': 1 });
  assert.deepEqual(count(await replayed('buses=can1')), { 'can1 0x100': 10 });
  assert.deepEqual(count(await replayed('buses=can0&ids=18DAF110')), { 'can0 0x18DAF110': 10, 'can0 0x00000004 error': 1 });
  assert.deepEqual(count(await replayed('ids=123')), { 'can0 0x123': 5, 'can0 0x00000004 error': 1 }, 'the standard 0x123 only');
  assert.deepEqual(count(await replayed('ids=00000123')), { 'can0 0x00000123': 5, 'can0 0x00000004 error': 1 }, 'the extended 0x00000123 only');
});

test('stream_reset for too-old, garbage and future ids, then live', async () => {
  // 200 frames/s fills the 50-event ring in well under a second and stays light for a loaded test process
  // (a client that falls 1 MiB behind is cut, which would end the stream before the assertion).
  const a = await agent(['--sim', '--sim-rate', '200', '--history-events', '50', '--console-max-rate', '100000']);
  const c1 = await SseClient.connect(a.url);
  await c1.waitFor((ev) => ev.length >= 5);
  const early = Number(c1.events[0]!.id);
  // 100 events later the early id has left the 50-event ring (waited for: a loaded machine is slow).
  await c1.waitFor((ev) => ev.length >= 105, 30_000, '100 more events');
  c1.close();

  for (const [sent, reason] of [
    [String(early), 'too_old'],
    ['banana', 'invalid'],
    ['999999999999999', 'future'], // the largest id accepted; ids start near 100 × Unix ms (id-store.ts)
  ] as const) {
    const c = await SseClient.connect(a.url, { 'Last-Event-ID': sent });
    await c.waitFor((ev) => ev.length >= 3, 5000, `reset for ${sent}`);
    const first = c.events[0]!;
    assert.equal(first.event, 'stream_reset', `first event for ${sent}`);
    assert.equal(first.json.reason, reason);
    assert.equal(first.id, String(first.json.latest), "the reset's id: is the latest id (a position a reconnect resumes from cleanly)");
    assert.equal(typeof first.json.latest, 'number');
    assert.ok('oldest_available' in first.json && 'requested' in first.json);
    assert.equal(c.ofType('stream_reset').length, 1);
    // Live after the reset, continuing right after `latest`: never a quiet replay from the oldest event.
    // (the current presence follows the reset without an id: a notice, not an event of the stream)
    assert.equal(Number(c.events.slice(1).find((e) => e.id !== undefined)!.id), Number(first.json.latest) + 1);
    c.close();
  }
});

test('ids are never reused across a restart; an id from the previous run resets', async () => {
  const stateDir = tempDir('canrelay-restart-');
  const a1 = await agent(['--sim', '--sim-rate', '200'], { stateDir });
  const c1 = await SseClient.connect(a1.url);
  await c1.waitFor((ev) => ev.length >= 10);
  c1.close();
  assert.equal(await a1.proc.stop('SIGTERM'), 0);
  const maxFirstRun = Math.max(...ids(c1));

  const a2 = await agent(['--sim', '--sim-rate', '200'], { stateDir });
  const c2 = await SseClient.connect(a2.url, { 'Last-Event-ID': String(maxFirstRun) });
  await c2.waitFor((ev) => ev.length >= 5);
  assert.equal(c2.events[0]!.event, 'stream_reset');
  assert.equal(c2.events[0]!.json.reason, 'previous_run');
  assert.equal(c2.events[0]!.id, String(c2.events[0]!.json.latest), "the reset's id: is the latest id");
  // The reset jumps past the new run's `online`: the current presence follows it at once (no id).
  const presence = c2.events[1]!;
  assert.equal(presence.event, 'presence', `after the reset: ${JSON.stringify(c2.events.slice(0, 3))}`);
  assert.equal(presence.id, undefined);
  assert.equal(presence.json.state, 'online');
  assert.deepEqual(presence.json.buses, { can0: 'up' });
  for (const id of ids(c2).slice(1)) assert.ok(id > maxFirstRun, `id ${id} is above every id of the first run (${maxFirstRun})`);
  c2.close();

  // A SIGKILL (no clean shutdown) must not lead to reuse either.
  const c3 = await SseClient.connect(a2.url);
  await c3.waitFor((ev) => ev.length >= 5);
  c3.close();
  await a2.proc.stop('SIGKILL');
  const maxSecondRun = Math.max(...ids(c3));
  const a3 = await agent(['--sim', '--sim-rate', '200'], { stateDir });
  const c4 = await SseClient.connect(a3.url);
  await c4.waitFor((ev) => ev.length >= 3);
  assert.ok(Math.min(...ids(c4)) > maxSecondRun);
  c4.close();
});

test('sampling: switches on and off with log events, a 1 Hz id survives a flood, frame counts stay exact', async () => {
  // 2.5 s of a 4 kHz flooding id plus a 1 Hz id, then 3 s of calm: replayed at recorded speed.
  const dir = tempDir('canrelay-sampling-');
  const file = join(dir, 'flood.log');
  const lines: string[] = [];
  const t0 = 1_700_000_000;
  let n = 0;
  const at = (us: number, id: string, data: string): void => {
    const t = t0 * 1e6 + us;
    lines.push(`(${Math.floor(t / 1e6)}.${String(t % 1e6).padStart(6, '0')}) can0 ${id}#${data}`);
    n++;
  };
  for (let us = 0; us < 2_500_000; us += 250) at(us, '0C9', (us / 250).toString(16).padStart(8, '0').toUpperCase());
  for (let s = 0; s < 3; s++) at(s * 1_000_000 + 125, '3E1', `0${s}`);
  for (let us = 2_500_000; us < 5_500_000; us += 100_000) at(us, '1A0', '00');
  lines.sort((x, y) => Number(x.slice(1, 18)) - Number(y.slice(1, 18)));
  const { writeFileSync } = await import('node:fs');
  writeFileSync(file, lines.join('\n') + '\n');

  const a = await agent(['--replay', file, '--replay-speed', '1', '--console-max-rate', '200']);
  // The replay starts before the console listens: take the buffered start too.
  const c = await SseClient.connect(a.url + '?backlog=10000');
  await c.waitFor((ev) => ev.some((e) => e.event === 'log' && e.json.code === 'sampling_off'), 15_000, 'sampling_off');
  await c.waitFor((ev) => ev.some((e) => e.event === 'log' && e.json.code === 'replay_ended'), 10_000, 'end of replay');
  const logs = c.ofType('log').map((e) => e.json);
  const on = logs.find((l) => l.code === 'sampling_on')!;
  assert.ok(on, 'a log event announces sampling on');
  const details = on.details as Record<string, number>;
  assert.ok(details.input_rate > 200 && details.output_rate === 200, JSON.stringify(details));
  assert.ok(logs.findIndex((l) => l.code === 'sampling_on') < logs.findIndex((l) => l.code === 'sampling_off'));

  const frames = c.ofType('can_frame').map((e) => e.json);
  assert.equal(frames.filter((f) => f.id === '0x3E1').length, 3, 'the 1 Hz id appears every time');
  const flood = frames.filter((f) => f.id === '0x0C9');
  assert.ok(flood.length < 10_000 / 3, `flood thinned (${flood.length} of 10000 shown)`);
  assert.ok(
    flood.some((f) => Number(f.represents) > 1),
    'sampled frames say how many they stand for',
  );
  const represented = flood.reduce((s, f) => s + Number(f.represents ?? 1), 0);
  assert.ok(represented > 10_000 * 0.9 && represented <= 10_000, `represents adds up (${represented})`);

  const m = await getJson(a.base + '/metrics');
  assert.equal(metricValue(m.text, 'canrelay_can_frames_total', { bus: 'can0', direction: 'rx' }), n, 'every frame counted, unsampled');
  assert.ok(metricValue(m.text, 'canrelay_console_frames_sampled_out_total')! > 5000);
  c.close();
});

test('a client that connects while sampling is on is told so at once (the sampling_on event, without an id); a clean resume is not told twice', async () => {
  const a = await agent(['--sim', '--sim-rate', '2000', '--console-max-rate', '50']);
  await until(async () => metricValue((await getJson(a.base + '/metrics')).text, 'canrelay_console_sampling') === 1, 20_000, 'the console samples');
  const c = await SseClient.connect(a.url);
  await c.waitFor((ev) => ev.length >= 5, 10_000, 'the first events');
  const first = c.events[0]!;
  assert.equal(first.event, 'log', `the first event: ${JSON.stringify(first)}`);
  assert.equal(first.json.code, 'sampling_on');
  assert.equal(first.id, undefined, 'no id: it is a notice of the current state, not a new event');
  assert.equal(first.json.level, 'info');
  assert.match(String(first.json.message), /^sampling on: \d+ frames\/s in, showing about 50 frames\/s/);
  const details = first.json.details as Record<string, number>;
  assert.ok(details.input_rate > 50 && details.output_rate === 50 && details.max_rate === 50, JSON.stringify(details));
  assert.match(String(first.json.ts), /^\d{4}-\d\d-\d\dT/);
  const last = c.events.filter((e) => e.id !== undefined).at(-1)!.id!;
  c.close();
  const resumed = await SseClient.connect(a.url, { 'Last-Event-ID': last });
  await resumed.waitFor((ev) => ev.length >= 5, 10_000, 'resumed events');
  assert.ok(!resumed.events.some((e) => e.json.code === 'sampling_on'), 'a clean resume already knows');
  resumed.close();
});

test('a client that stops reading is cut off; another keeps receiving', async () => {
  // 3,000 events/s unsampled: a stuck client passes its 1 MiB bound (plus the kernel's socket buffers)
  // within seconds; the bound leaves a reading client seconds of slack on a loaded machine (128 KiB,
  // a fraction of a second, cut the reader too under load).
  const a = await agent(['--sim', '--sim-rate', '3000', '--console-max-rate', '100000', '--client-max-pending-kib', '1024']);
  const stuck = await SseClient.connect(a.url, {}, { paused: true });
  const live = await SseClient.connect(a.url);
  const deadline = Date.now() + 90_000;
  let cut = 0;
  while (Date.now() < deadline) {
    const m = await getJson(a.base + '/metrics');
    cut = metricValue(m.text, 'canrelay_console_clients_cut_total') ?? 0;
    if (cut >= 1) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.equal(cut, 1, 'the stuck client was cut off');
  const before = live.events.length;
  await live.waitFor((ev) => ev.length > before + 500, 5000, 'the reading client goes on');
  const m = await getJson(a.base + '/metrics');
  assert.equal(metricValue(m.text, 'canrelay_console_clients'), 1);
  const h = await getJson(a.base + '/healthz');
  assert.equal(h.body.status, 'ok');
  stuck.close();
  live.close();
});

test('a console client that stops reading never slows the CAN intake: 200,000 frames taken in while it hangs on', async () => {
  // Replay flat out and looped, every frame an event (no sampling), a client that reads nothing: the
  // intake goes on at the source's pace, not the client's; the client, once it is further behind than
  // the 10,000-event ring, is cut off (it can resume and gets stream_reset) — never waited for.
  const dir = tempDir('canrelay-stuck-intake-');
  writeCandumpLog(join(dir, 'loop.log'), 10_000);
  const a = await agent([
    '--replay',
    join(dir, 'loop.log'),
    '--replay-speed',
    '0',
    '--replay-loop',
    '--console-max-rate',
    '1000000',
    '--history-events',
    '10000',
    '--client-max-pending-kib',
    '262144',
  ]);
  const rx = async (): Promise<number> => metricValue((await getJson(a.base + '/metrics')).text, 'canrelay_can_frames_total', { bus: 'can0', direction: 'rx' }) ?? 0;
  const stuck = await SseClient.connect(a.url, {}, { paused: true });
  const start = await rx();
  const deadline = Date.now() + 120_000;
  while ((await rx()) < start + 200_000 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  const m = (await getJson(a.base + '/metrics')).text;
  assert.ok((await rx()) >= start + 200_000, `intake went on: ${(await rx()) - start} frames while the client hung on`);
  assert.equal(metricValue(m, 'canrelay_console_clients_cut_total'), 1, 'the stuck client was cut off, not waited for');
  assert.equal(metricValue(m, 'canrelay_console_clients'), 0);
  stuck.close();
});

test('console clients are capped, in all and per address: past either cap a new one gets 503 saying which, and a place frees when a client leaves', async () => {
  const a = await agent(['--sim', '--sim-rate', '50', '--console-max-clients', '3', '--console-max-clients-per-address', '2']);
  const u = new URL(a.url);
  const open = (from: string): Promise<{ status: number; body: string; retryAfter?: string; res: IncomingMessage }> =>
    new Promise((resolve, reject) => {
      const req = httpGet({ host: u.hostname, port: Number(u.port), path: u.pathname, localAddress: from }, (res) => {
        if (res.statusCode === 200) return resolve({ status: 200, body: '', res });
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, retryAfter: res.headers['retry-after'] as string | undefined, res }));
      });
      req.on('error', reject);
    });
  const held: IncomingMessage[] = [];
  try {
    for (const from of ['127.0.0.1', '127.0.0.1']) {
      const r = await open(from);
      assert.equal(r.status, 200);
      held.push(r.res);
    }
    const third = await open('127.0.0.1');
    assert.equal(third.status, 503, 'a third client of one address');
    assert.match(third.body, /too many clients from 127\.0\.0\.1: 2 are connected \(the agent's --console-max-clients-per-address\)/);
    assert.equal(third.retryAfter, '10');
    const other = await open('127.0.0.2');
    assert.equal(other.status, 200, 'another address still gets in');
    held.push(other.res);
    const full = await open('127.0.0.3');
    assert.equal(full.status, 503, 'past the cap of all clients');
    assert.match(full.body, /the console is full: 3 clients are connected \(the agent's --console-max-clients\)/);
    held.shift()!.destroy();
    await until(async () => metricValue((await getJson(a.base + '/metrics')).text, 'canrelay_console_clients') === 2, 5000, 'the agent saw the client leave');
    const again = await open('127.0.0.1');
    assert.equal(again.status, 200, 'its place is free again');
    held.push(again.res);
    assert.equal(metricValue((await getJson(a.base + '/metrics')).text, 'canrelay_console_clients_refused_total'), 2);
  } finally {
    for (const r of held) r.destroy();
  }
});

test('SIGTERM: a final offline presence, streams closed, exit 0', async () => {
  const a = await agent(['--sim', '--sim-rate', '50']);
  const c = await SseClient.connect(a.url);
  await c.waitFor((ev) => ev.length >= 3);
  const t = Date.now();
  assert.equal(await a.proc.stop('SIGTERM'), 0);
  assert.ok(Date.now() - t < 5000);
  await c.waitClosed();
  const last = c.events.at(-1)!;
  assert.equal(last.event, 'presence');
  assert.equal(last.json.state, 'offline');
});

test('bad flags: one clear line and exit code 2', async () => {
  const cases: [string[], RegExp][] = [
    [['agent', '--sim', '--bogus'], /unknown option.*--bogus/],
    [['agent', '--sim', '--console-max-rate', 'abc'], /--console-max-rate.*integer/],
    [['agent', '--sim', '--id', 'bad id!'], /--id/],
    [['agent', '--sim', '--replay', 'x.log'], /one CAN source/],
    [['agent'], /choose a CAN source/],
    [['agent', '--sim', '--listen', 'nope'], /--listen.*host:port/],
  ];
  for (const [args, msg] of cases) {
    const p = runCli(args);
    assert.equal(await p.wait(), 2, `${args.join(' ')} exits 2 (stderr: ${p.stderr})`);
    assert.match(p.stderr, msg);
    assert.equal(p.stderr.trim().split('\n').length, 1, `one line: ${p.stderr}`);
  }
});

test("a Python client with httpx-sse's dispatch rule never sees an empty event: retry comes with the first event, comments are lines", async () => {
  const { spawn } = await import('node:child_process');
  const { fileURLToPath } = await import('node:url');
  const script = fileURLToPath(new URL('../../../test/helpers/sse-python-client.py', import.meta.url));
  const a = await agent(['--sim', '--sim-rate', '2', '--keepalive-seconds', '1']);
  // Enough events to span several keep-alives (one a second; two frames a second).
  const py = spawn('/usr/bin/python3', [script, a.url, '8'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  py.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
  py.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
  const code = await new Promise<number | null>((resolve) => py.on('exit', resolve));
  assert.equal(code, 0, `python client: ${err}`);
  const events = out
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { event: string; data: string; id: string; retry: number | null });
  assert.equal(events.length, 8);
  for (const e of events) {
    assert.notEqual(e.data, '', `an empty ${e.event} event: ${JSON.stringify(events)}`);
    assert.notEqual(e.event, 'message', `an event without a type: ${JSON.stringify(e)}`);
    JSON.parse(e.data);
  }
  assert.equal(events[0]!.retry, 2000, 'the reconnect delay arrives with the first event');
  assert.ok(
    events.slice(1).every((e) => e.retry === null),
    'and only once',
  );
});

test('a replay file that does not exist: an error naming it, exit 1', async () => {
  const p = runCli(['agent', '--replay', '/nonexistent/x.log', '--listen', '127.0.0.1:0', '--state-dir', tempDir('canrelay-')]);
  assert.equal(await p.wait(), 1);
  assert.match(p.stderr, /\/nonexistent\/x\.log/);
});

test('a replay file in another format (a PEAK .trc): refused at start, saying what it is, exit 2, never "delivered"', async () => {
  const { writeFileSync } = await import('node:fs');
  const dir = tempDir('canrelay-');
  const file = join(dir, 'drive.trc');
  writeFileSync(file, ';$FILEVERSION=1.1\n;$STARTTIME=44166.6169953704\n     1)         0.0  Rx         0123  8  01 02 03 04 05 06 07 08\n');
  const p = runCli(['agent', '--replay', file, '--listen', '127.0.0.1:0', '--state-dir', join(dir, 'state')]);
  assert.equal(await p.wait(), 2, `exit 2 (stderr: ${p.stderr})`);
  assert.match(p.stderr, /drive\.trc" is not a candump -L log: it is a PEAK PCAN trace/);
  assert.doesNotMatch(p.stdout, /replay finished/);
  assert.doesNotMatch(p.stdout, /console listening/);
});

test('--can on a kernel without SocketCAN: an error that says so and names the interface, exit 1', async (t) => {
  const { readFileSync } = await import('node:fs');
  if (/^CAN_RAW/m.test(readFileSync('/proc/net/protocols', 'utf8'))) return skipOrFail(t, 'this kernel has SocketCAN (the qemu suite covers --can)', { evenUnderCi: true });
  const p = runCli(['agent', '--can', 'vcan0', '--listen', '127.0.0.1:0', '--state-dir', tempDir('canrelay-')]);
  assert.equal(await p.wait(), 1);
  assert.match(p.stderr, /vcan0/);
  assert.match(p.stderr, /no SocketCAN/);
});

void writeCandumpLog;
