/**
 * The agent's socketcand server through real parts: the real CLI process, real TCP on loopback, Debian's
 * python-can 4.1 (interface="socketcand") as the technician's client, and a hand-written raw client for
 * every command and malformed input. Frame counts are exact: the replay reads frames the test writes to
 * a FIFO, so the test knows every frame that exists and writes them only once the client is in raw mode.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { SseClient } from '../helpers/sse-client.js';
import { runCli, startAgentProcess, tempDir, type StartedAgent } from '../helpers/processes.js';
import { skipOrFail } from '../helpers/skips.js';
import { candumpLine, ensurePythonCan, getJson, PythonScript, RawClient, sequenceLines, startReplayAgent, waitUntil, type ReplayAgent } from '../helpers/socketcand.js';

const running: { stop(): Promise<unknown> }[] = [];
after(async () => {
  for (const a of running) await a.stop();
});
before(() => ensurePythonCan());

async function replayAgent(extra: string[] = []): Promise<ReplayAgent> {
  const a = await startReplayAgent(extra);
  running.push(a);
  return a;
}

const T0 = 1_700_000_000_000_000;
const RX = { bus: 'can0', direction: 'rx' };
const TX = { bus: 'can0', direction: 'tx' };

/** Writes one frame so the replay knows can0 (a socketcand client can only open a bus the agent has). */
async function leadIn(a: ReplayAgent): Promise<void> {
  await a.write([candumpLine(T0, 'can0', 0x7ff, [0])]);
  await waitUntil(async () => (await a.metric('canrelay_can_frames_total', RX)) === 1, 10_000, 'the lead-in frame');
}

// The python-can side. Warnings of python-can's socketcand module (it logs what it cannot parse, e.g. an
// `< error >` reply) are collected rather than printed, and reported in the result.
const PY_PRELUDE = `
import json, logging, sys, time
import can
class Catch(logging.Handler):
    def __init__(self):
        super().__init__()
        self.msgs = []
    def emit(self, record):
        self.msgs.append(record.getMessage())
catch = Catch()
lg = logging.getLogger('can.interfaces.socketcand')
lg.addHandler(catch)
lg.setLevel(logging.WARNING)
lg.propagate = False
def until_marker(seconds):
    """Every message received up to and including the end marker (id 0x7FE), or until the deadline."""
    got, deadline = [], time.time() + seconds
    while time.time() < deadline:
        m = bus.recv(1.0)
        if m is not None:
            got.append(m)
            if m.arbitration_id == 0x7FE:
                break
    return got
bus = can.Bus(interface='socketcand', host=sys.argv[1], port=int(sys.argv[2]), channel='can0')
print('READY', flush=True)
`;

const PY_RECEIVE_THEN_SEND = `${PY_PRELUDE}
got = until_marker(120)
count, end_seen = len(got), bool(got) and got[-1].arbitration_id == 0x7FE
body = got[:-1] if end_seen else got
seqs = [int.from_bytes(bytes(m.data[:4]), 'big') for m in body]
ids_ok = all(m.arbitration_id == 0x100 + q % 16 and len(m.data) == 4 for m, q in zip(body, seqs))
bus.send(can.Message(arbitration_id=0x321, data=[1, 2, 3], is_extended_id=False))
refusal = None
deadline = time.time() + 20
while refusal is None and time.time() < deadline:
    bus.recv(0.2)
    refusal = next((w for w in catch.msgs if '< error' in w), None)
bus.shutdown()
print('RESULT ' + json.dumps({'count': count, 'end_seen': end_seen, 'ids_ok': ids_ok, 'first': seqs[0] if seqs else None,
    'last': seqs[-1] if seqs else None, 'contiguous': seqs == list(range(seqs[0], seqs[0] + len(seqs))) if seqs else False,
    'refusal': refusal}), flush=True)
`;

test("python-can receives every frame at 2,000 frames/s, exactly the agent's unsampled count; sending is refused when off", async (t) => {
  const a = await replayAgent(['--replay-speed', '1']);
  await leadIn(a);
  const py = new PythonScript(PY_RECEIVE_THEN_SEND, ['127.0.0.1', String(a.socketcandPort)]);
  running.push({ stop: async () => py.child.kill('SIGKILL') });
  await py.waitForLine((l) => l === 'READY', 20_000, 'READY');
  // 10,000 frames 500 µs apart (2,000 frames/s, 5 s), then the end marker.
  const N = 10_000;
  const body = sequenceLines(T0 + 1, N, 500);
  await a.write([...body, candumpLine(T0 + 1 + N * 500, 'can0', 0x7fe, [0xee])]);
  const line = await py.waitForLine((l) => l.startsWith('RESULT '), 180_000, 'the result');
  const r = JSON.parse(line.slice(7)) as Record<string, unknown>;
  assert.equal(r.end_seen, true, 'the end marker arrived');
  assert.equal(r.first, 0, 'the first frame written is the first received');
  assert.equal(r.last, N - 1);
  assert.equal(r.contiguous, true, 'every frame, in order, no gap or duplicate');
  assert.equal(r.ids_ok, true, 'ids and data intact');
  const rx = await a.metric('canrelay_can_frames_total', RX);
  assert.equal(rx, N + 2, 'the agent counted lead-in + body + marker');
  assert.equal(r.count, rx - 1, 'python-can got exactly what the agent counted after it connected (all but the lead-in)');
  assert.equal(await a.metric('canrelay_socketcand_frames_sent_total'), N + 1);
  // Listen-only: the send was answered with an error and nothing was transmitted.
  assert.match(String(r.refusal), /< error sending is off.*--socketcand-allow-send/);
  assert.equal(await a.metric('canrelay_can_frames_total', TX), 0, 'nothing transmitted');
  assert.equal(await a.metric('canrelay_socketcand_sends_refused_total'), 1);
  assert.equal(await py.wait(), 0, py.stderr);
  t.diagnostic(`python-can received ${String(r.count)} frames; agent rx counter ${rx}`);
});

const PY_SEND_THEN_RECEIVE = `${PY_PRELUDE}
bus.send(can.Message(arbitration_id=0x321, data=[1, 2, 3], is_extended_id=False))
bus.send(can.Message(arbitration_id=0x18DAF110, data=[0x02, 0x10, 0x03], is_extended_id=True))
print('SENT', flush=True)
got = until_marker(60)
bus.shutdown()
print('RESULT ' + json.dumps({'count': len(got), 'ids': sorted(set(m.arbitration_id for m in got)), 'warnings': catch.msgs[:5]}), flush=True)
`;

test('with --socketcand-allow-send a python-can frame is transmitted: tx on the console, counted, never echoed back as rx', async () => {
  const a = await replayAgent(['--socketcand-allow-send', '--console-max-rate', '100000']);
  await leadIn(a);
  const consoleClient = await SseClient.connect(`${a.base}/api/v1/streams/dongles/sc-gw/console`);
  const py = new PythonScript(PY_SEND_THEN_RECEIVE, ['127.0.0.1', String(a.socketcandPort)]);
  running.push({ stop: async () => py.child.kill('SIGKILL') });
  await py.waitForLine((l) => l === 'SENT', 20_000, 'SENT');
  await consoleClient.waitFor((ev) => ev.filter((e) => e.event === 'can_frame' && e.json.direction === 'tx').length >= 2, 10_000, 'two tx frames on the console');
  const tx = consoleClient.ofType('can_frame').filter((e) => e.json.direction === 'tx');
  assert.deepEqual(
    tx.map((e) => [e.json.bus, e.json.id, e.json.is_extended, e.json.data_hex]),
    [
      ['can0', '0x321', false, '01 02 03'],
      ['can0', '0x18DAF110', true, '02 10 03'],
    ],
  );
  // Frames after the transmit: python-can must see these, and not its own frames.
  await a.write([...sequenceLines(T0 + 1, 100, 500), candumpLine(T0 + 100_000, 'can0', 0x7fe, [0xee])]);
  const r = JSON.parse((await py.waitForLine((l) => l.startsWith('RESULT '), 60_000, 'the result')).slice(7)) as { count: number; ids: number[] };
  assert.equal(r.count, 101);
  assert.ok(!r.ids.includes(0x321) && !r.ids.includes(0x18daf110), `own transmits are not looped back as rx: ${JSON.stringify(r.ids)}`);
  assert.equal(await a.metric('canrelay_can_frames_total', TX), 2);
  assert.equal(await a.metric('canrelay_can_frames_total', RX), 102, 'transmits are not counted as received');
  assert.equal(await a.metric('canrelay_socketcand_frames_transmitted_total'), 2);
  consoleClient.close();
});

test("frames the gateway transmits reach the other socketcand clients of the bus, never their sender (socketcand's loopback without its own messages)", async () => {
  const a = await replayAgent(['--socketcand-allow-send']);
  await leadIn(a);
  const clients: RawClient[] = [];
  for (let i = 0; i < 3; i++) {
    const c = await RawClient.connect(a.socketcandPort);
    clients.push(c);
    await waitUntil(() => c.messages.length > 0, 5000, '< hi >');
    assert.equal(await c.request('< open can0 >'), '< ok >');
  }
  const [sender, raw, bcm] = clients as [RawClient, RawClient, RawClient];
  assert.equal(await sender.request('< rawmode >'), '< ok >');
  assert.equal(await raw.request('< rawmode >'), '< ok >');
  bcm.send('< subscribe 0 0 321 >');
  assert.equal(await bcm.request('< echo >'), '< echo >');
  sender.send('< send 321 2 CA FE >');
  await waitUntil(() => raw.frames().some((f) => f.startsWith('< frame 321 ')), 10_000, 'the sent frame at the other raw client');
  await waitUntil(() => bcm.frames().some((f) => f.startsWith('< frame 321 ')), 10_000, 'and at the BCM subscriber of its id');
  assert.match(raw.frames().find((f) => f.startsWith('< frame 321 '))!, /^< frame 321 \d+\.\d{6} CAFE >$/);
  assert.equal(await sender.request('< echo >'), '< echo >');
  assert.deepEqual(
    sender.frames().filter((f) => f.startsWith('< frame 321 ')),
    [],
    'never back to its sender',
  );
  for (const c of clients) c.close();
});

// python-can's own read loop (SocketCanDaemonBus._recv_internal) on a stream fed in given pieces: a fake
// socket whose recv() returns the next piece. For each piece size given, and for 100 runs of random piece
// sizes (seeded: the same for every stream), how many frames python-can parsed.
const PY_SPLITS = `
import collections, json, logging, random, sys
from can.interfaces.socketcand import socketcand as sc
logging.disable(logging.CRITICAL)
stream = sys.stdin.read()
sizes = json.loads(sys.argv[1])
sc.select.select = lambda r, w, x, t: (r, [], [])
class Sock:
    def __init__(self, pieces): self.pieces = pieces
    def recv(self, n): return self.pieces.pop(0).encode('ascii')
def parse(lengths):
    pieces, i, j = [], 0, 0
    while i < len(stream):
        k = lengths[j % len(lengths)]
        pieces.append(stream[i:i + k]); i += k; j += 1
    bus = sc.SocketCanDaemonBus.__new__(sc.SocketCanDaemonBus)
    bus._SocketCanDaemonBus__socket = Sock(pieces)
    bus._SocketCanDaemonBus__receive_buffer = ''
    bus._SocketCanDaemonBus__message_buffer = collections.deque()
    got = 0
    while pieces or bus._SocketCanDaemonBus__message_buffer:
        m, _ = bus._recv_internal(0)
        if m is not None: got += 1
    return got
fixed = {k: parse([k]) for k in sizes}
random.seed(1)
runs = [parse([random.randint(1, 1024) for _ in range(3000)]) for _ in range(100)]
print('RESULT ' + json.dumps({'fixed': fixed, 'random': runs}), flush=True)
`;

test("the agent's raw-mode output survives python-can's parser (it drops a character per read): none lost when a frame comes in two reads, far fewer than with one separator in any split", async (t) => {
  const a = await replayAgent();
  await leadIn(a);
  const c = await RawClient.connect(a.socketcandPort);
  await waitUntil(() => c.messages.length > 0, 5000, '< hi >');
  assert.equal(await c.request('< open can0 >'), '< ok >');
  assert.equal(await c.request('< rawmode >'), '< ok >');
  const from = c.received.length;
  const N = 300;
  await a.write(sequenceLines(T0 + 1, N, 100)); // ids 0x100…0x10F, four data bytes each
  await waitUntil(() => c.frames().length >= N, 20_000, 'the frames');
  const stream = c.received.slice(from);
  const longest = Math.max(...stream.split('>').map((u) => u.length + 1));
  // Piece sizes from the longest frame (with what precedes it) up: no frame spans more than two reads.
  const sizes = Array.from({ length: 64 }, (_, i) => longest + i);
  const run = async (text: string): Promise<{ fixed: Record<string, number>; random: number[] }> => {
    const py = new PythonScript(PY_SPLITS, [JSON.stringify(sizes)]);
    running.push({ stop: async () => py.child.kill('SIGKILL') });
    py.child.stdin!.end(text);
    return JSON.parse((await py.waitForLine((l) => l.startsWith('RESULT '), 120_000, 'the counts')).slice(7)) as { fixed: Record<string, number>; random: number[] };
  };
  const lost = (r: { random: number[] }): number => r.random.reduce((a, n) => a + (N - n), 0);
  const agent = await run(stream);
  assert.deepEqual(
    Object.entries(agent.fixed).filter(([, n]) => n !== N),
    [],
    `a frame in two reads is never lost (all ${N} frames in every such split)`,
  );
  // Random read sizes (1…1,024 bytes: a frame may come in three reads or more) lose a few with any
  // separator; one newline (what the agent sent before) loses several times more, none (socketcand's own
  // output) most.
  const single = await run(stream.replaceAll('\n\n<', '\n<'));
  const none = await run(stream.replaceAll('\n\n<', '<'));
  t.diagnostic(`frames lost in 100 runs of ${N} with random read sizes: two newlines ${lost(agent)}, one ${lost(single)}, none ${lost(none)}`);
  assert.ok(lost(agent) * 4 <= lost(single), `two newlines lose ${lost(agent)}, one newline ${lost(single)} (100 runs of ${N} frames)`);
  assert.ok(lost(single) < lost(none), `one newline ${lost(single)}, none ${lost(none)}`);
  c.close();
});

test('raw protocol: every command, mode switches, and malformed input get < ok > or < error >, never a crash', async () => {
  const started: StartedAgent = await startAgentProcess(['--sim', '--sim-rate', '500', '--socketcand-listen', '127.0.0.1:0', '--socketcand-allow-send']);
  running.push({ stop: () => started.proc.stop('SIGKILL') });
  const line = await started.proc.waitForLog((l) => l.msg === 'socketcand listening');
  const port = Number(String(line.listen).split(':').pop());

  // A refused open ends the connection, as socketcand does.
  const bad = await RawClient.connect(port);
  await waitUntil(() => bad.messages.length > 0, 5000, '< hi >');
  assert.equal(bad.messages[0], '< hi >');
  assert.match(await bad.request('< open nosuch >'), /^< error could not open bus nosuch: this gateway has can0 >$/);
  await waitUntil(() => bad.closed, 5000, 'the connection to end after a refused open');

  // A web page's cross-origin POST (or text/plain form) to this port: HTTP first, socketcand in the body.
  // Not a socketcand client: closed before its body is read, nothing transmitted (the tx count below is 5,
  // the five sends of the real client).
  const page = await RawClient.connect(port);
  const body = '< open can0 >< send 7DF 8 02 01 0D 00 00 00 00 00 >';
  page.send(`POST / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nOrigin: http://evil.example\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
  await waitUntil(() => page.closed, 5000, 'the HTTP request to be closed');
  assert.deepEqual(page.replies().slice(1), [
    '< error text before any command: this port speaks socketcand (open a bus first: "open can0" in angle brackets); connection closed >',
  ]);

  const c = await RawClient.connect(port);
  await waitUntil(() => c.messages.length > 0, 5000, '< hi >');
  assert.match(await c.request('< rawmode >'), /^< error open a bus first/);
  assert.match(await c.request('< send 123 0 >'), /^< error open a bus first/);
  assert.equal(await c.request('< echo >'), '< echo >');
  assert.equal(await c.request('< open can0 >'), '< ok >');
  assert.match(await c.request('< open can0 >'), /^< error bus can0 is already open/);

  // BCM mode: subscribe to one id of the simulated car, get only that id (each byte followed by a space).
  assert.equal(await c.request('< echo >'), '< echo >');
  c.send('< subscribe 0 0 1DD >');
  await waitUntil(() => c.frames().length >= 3, 10_000, 'subscribed frames');
  for (const f of c.frames()) assert.match(f, /^< frame 1DD \d+\.\d{6} ([0-9A-F]{2} ){8} >$/);
  c.send('< unsubscribe 1DD >'); // no reply when it works, as socketcand
  assert.equal(await c.request('< echo >'), '< echo >');
  assert.match(await c.request('< unsubscribe 1DD >'), /^< error there is no subscription/);
  assert.match(await c.request('< add 1 0 123 8 11 22 33 44 55 66 77 88 >'), /^< error cyclic transmit jobs .* not supported/);
  assert.match(await c.request('< filter 0 0 123 1 FF >'), /^< error content filters are not supported/);
  assert.match(await c.request('< controlmode >'), /^< error control mode/);
  assert.match(await c.request('< subscribe 0 0 >'), /^< error subscribe takes/);

  // Raw mode: every frame, hex data in one run, 3-digit standard ids.
  const framesBefore = c.frames().length;
  assert.equal(await c.request('< rawmode >'), '< ok >');
  await waitUntil(() => c.frames().length >= framesBefore + 50, 10_000, 'raw frames');
  for (const f of c.frames().slice(framesBefore)) assert.match(f, /^< frame ([0-9A-F]{3}|[0-9A-F]{8}) \d+\.\d{6} ([0-9A-F]{2})* >$/);
  assert.match(await c.request('< subscribe 0 0 123 >'), /^< error subscribe works in BCM mode/);

  // Sends that are carried out: standard, extended (8 digits, or CAN_EFF_FLAG as SavvyCAN writes), RTR, CAN FD.
  const metrics = async (name: string, labels: Record<string, string> = {}): Promise<number> => {
    const { metricValue } = await import('../helpers/sse-client.js');
    return metricValue((await getJson(started.base + '/metrics')).text, name, labels) ?? 0;
  };
  c.send('< send 123 2 1 F1 >< send 1AAAAAAA 2 01 f1 >< send 80000456 0 >< sendrtr 7DF 8 >< fdsend 124 1 12 0 1 2 3 4 5 6 7 8 9 a b >');
  await waitUntil(async () => (await metrics('canrelay_socketcand_frames_transmitted_total')) === 5, 10_000, 'five transmitted frames');
  assert.equal(await metrics('canrelay_can_frames_total', TX), 5);

  // Malformed: each gets its own < error >; the connection goes on.
  const malformed: [string | Buffer, RegExp][] = [
    ['< send XYZ 1 00 >', /CAN id "XYZ" is not 1-8 hex digits/],
    ['< send 123456789 0 >', /is not 1-8 hex digits/],
    ['< send E0000000 0 >', /remote or error flag bits/],
    ['< send 123 9 1 2 3 4 5 6 7 8 9 >', /dlc 9 is above 8/],
    ['< send 123 2 1 >', /dlc says 2 data bytes but 1 follow/],
    ['< send 123 1 100 >', /data byte "100" is not 1-2 hex digits/],
    ['< send 123 >', /dlc "" is not a decimal number/],
    ['< fdsend 123 1 13 0 0 0 0 0 0 0 0 0 0 0 0 0 >', /13 bytes is not a CAN FD length/],
    ['< sendrtr 123 9 >', /dlc 9 is above 8/],
    ['<>', /empty command/],
    ['< frob >', /unknown command "frob"/],
    ['hello world', /text outside a command was ignored/],
    [Buffer.from([0x3c, 0x20, 0x6f, 0x70, 0x65, 0x6e, 0x20, 0xff, 0x20, 0x3e]), /printable ASCII/],
    ['< can0 B 500000 875 0 0 0 0 0 0 >', /bus configuration .* not supported/],
  ];
  for (const [cmd, want] of malformed) {
    assert.match(await c.request(cmd), new RegExp('^< error .*' + want.source), `reply to ${String(cmd)}`);
  }
  // A 1 MB line: one error, nothing stored, and the session still answers afterwards.
  assert.match(await c.request('<' + 'A'.repeat(1024 * 1024)), /^< error a command longer than 1024 bytes was discarded >$/);
  c.send('>');
  assert.equal(await c.request('< echo >'), '< echo >');
  assert.equal(await c.request('< bcmmode >'), '< ok >');
  assert.equal(await c.request('< echo >'), '< echo >');
  assert.equal(c.closed, false);
  assert.equal((await getJson(started.base + '/healthz')).status, 200, 'the agent is alive');
  assert.equal(await metrics('canrelay_socketcand_clients'), 1);
  assert.ok((await metrics('canrelay_socketcand_errors_total')) >= malformed.length + 8);
  c.close();
  await waitUntil(async () => (await metrics('canrelay_socketcand_clients')) === 0, 5000, 'the client count to drop');
});

test('tabs and runs of spaces between the words of a command are taken as socketcand takes them; every field is still checked', async () => {
  const started: StartedAgent = await startAgentProcess(['--sim', '--sim-rate', '500', '--socketcand-listen', '127.0.0.1:0', '--socketcand-allow-send']);
  running.push({ stop: () => started.proc.stop('SIGKILL') });
  const line = await started.proc.waitForLog((l) => l.msg === 'socketcand listening');
  const c = await RawClient.connect(Number(String(line.listen).split(':').pop()));
  await waitUntil(() => c.messages.length > 0, 5000, '< hi >');
  assert.equal(await c.request('<\topen\t\tcan0 \t>'), '< ok >');
  assert.equal(await c.request('<  echo\t>'), '< echo >');
  // A subscription and a send written with tabs and several spaces are carried out.
  c.send('< subscribe\t0   0\t1DD >');
  await waitUntil(() => c.frames().length >= 2, 10_000, 'frames of the subscription');
  for (const f of c.frames()) assert.match(f, /^< frame 1DD /);
  c.send('< send\t123  2\t01 \t F1\t>');
  const metrics = async (name: string, labels: Record<string, string> = {}): Promise<number> => {
    const { metricValue } = await import('../helpers/sse-client.js');
    return metricValue((await getJson(started.base + '/metrics')).text, name, labels) ?? 0;
  };
  await waitUntil(async () => (await metrics('canrelay_socketcand_frames_transmitted_total')) === 1, 10_000, 'the tab-separated send to be transmitted');
  assert.equal(await c.request('<\trawmode\t>'), '< ok >');
  // What is not a gap is still refused: other control characters, and every field as before.
  const refused: [string, RegExp][] = [
    ['< send 123\n1 00 >', /printable ASCII/],
    ['< send 123\r1 00 >', /printable ASCII/],
    ['< send\t123\t2\t01 >', /dlc says 2 data bytes but 1 follow/],
    ['< send\t12G\t0 >', /CAN id "12G" is not 1-8 hex digits/],
    ['< echo\tx >', /echo takes no arguments/],
    ['<\t\t>', /empty command/],
  ];
  for (const [cmd, want] of refused) assert.match(await c.request(cmd), new RegExp('^< error .*' + want.source), `reply to ${JSON.stringify(cmd)}`);
  assert.equal(await metrics('canrelay_socketcand_frames_transmitted_total'), 1);
  assert.equal(c.closed, false);
  c.close();
});

test('--socketcand-allow refuses other addresses; bad socketcand flags stop the start with exit 2', async () => {
  const tokenFile = join(tempDir('canrelay-sc-tokens-'), 'tokens');
  writeFileSync(tokenFile, 'admin ' + 'a'.repeat(32) + '\n');
  const a = await replayAgent(['--socketcand-allow', '10.0.0.0/8,fd00::/8']);
  const c = await RawClient.connect(a.socketcandPort);
  await waitUntil(() => c.closed, 5000, 'the refused connection to close');
  assert.deepEqual(c.messages, ['< error address 127.0.0.1 is not allowed on this gateway (--socketcand-allow) >']);
  assert.equal(await a.metric('canrelay_socketcand_connections_refused_total'), 1);

  const ok = await replayAgent(['--socketcand-allow', '192.168.0.0/16,127.0.0.0/8']);
  const c2 = await RawClient.connect(ok.socketcandPort);
  await waitUntil(() => c2.messages.length > 0, 5000, '< hi >');
  assert.equal(c2.messages[0], '< hi >');
  c2.close();

  for (const [args, want] of [
    [['--sim', '--socketcand-allow-send'], /--socketcand-allow-send needs --socketcand-listen/],
    [['--sim', '--socketcand-listen', '127.0.0.1:0', '--socketcand-allow', '10.0.0.0/33'], /--socketcand-allow: "10.0.0.0\/33" is not an IPv4 or IPv6 address/],
    [['--sim', '--socketcand-listen', 'nohost'], /--socketcand-listen: must be host:port/],
    // The local API needs tokens, and socketcand (no authentication) would be open on the LAN past them.
    [
      ['--sim', '--local-token-file', tokenFile, '--socketcand-listen', '0.0.0.0:0', '--socketcand-allow-send'],
      /--socketcand-allow-send on 0\.0\.0\.0:0 lets anyone who reaches it transmit without a token, past --local-token-file/,
    ],
    [
      ['--sim', '--local-token-file', tokenFile, '--console-auth', '--socketcand-listen', '0.0.0.0:0'],
      /--console-auth makes reads need a token, but socketcand on 0\.0\.0\.0:0 serves/,
    ],
  ] as [string[], RegExp][]) {
    const p = runCli(['agent', '--state-dir', '/tmp/canrelay-sc-unused', ...args]);
    assert.equal(await p.wait(), 2, `exit 2 for ${args.join(' ')}`);
    assert.match(p.stderr, want);
  }
});

const PY_SLOW = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: the agent's buffer fills fast
s.connect((sys.argv[1], int(sys.argv[2])))
def expect(msg):
    got = s.recv(256).decode('ascii')
    assert got == msg, got
expect('< hi >')
s.sendall(b'< open can0 >')
expect('< ok >')
s.sendall(b'< rawmode >')
expect('< ok >')
print('READY', flush=True)
sys.stdin.readline()  # stop reading until the test says go
n = 0
try:
    while True:
        b = s.recv(65536)
        if not b:
            break
        n += len(b)
    print('CLOSED', n, flush=True)
except OSError as e:
    print('CLOSED', n, type(e).__name__, flush=True)
`;

test('a client that stops reading is cut and counted; other clients, the console and the counters go on', async (t) => {
  // 1 MiB of slack (the default): the fast client is this test process, which a busy machine (another
  // test file beside it) can stall for a moment; with 64 KiB it was cut too, and the run waited for a
  // count of exactly one cut that could no longer come.
  const a = await replayAgent(['--replay-speed', '1', '--socketcand-client-max-pending-kib', '1024', '--console-max-rate', '200']);
  await leadIn(a);
  const slow = new PythonScript(PY_SLOW, ['127.0.0.1', String(a.socketcandPort)]);
  running.push({ stop: async () => slow.child.kill('SIGKILL') });
  await slow.waitForLine((l) => l === 'READY', 20_000, 'READY');
  const fast = await RawClient.connect(a.socketcandPort);
  await waitUntil(() => fast.messages.length > 0, 5000, '< hi >');
  assert.equal(await fast.request('< open can0 >'), '< ok >');
  assert.equal(await fast.request('< rawmode >'), '< ok >');
  const consoleClient = await SseClient.connect(`${a.base}/api/v1/streams/dongles/sc-gw/console`);

  // Frames at 20,000 frames/s, 100,000 at a time (5 s of recorded time), until the slow client is cut
  // (the kernel's TCP buffers take a few MB first) — at most 400,000 — then the end marker.
  const BATCH = 100_000;
  let N = 0;
  const startedAt = Date.now();
  const rx0 = await a.metric('canrelay_can_frames_total', RX);
  const cut = async (): Promise<boolean> => (await a.metric('canrelay_socketcand_clients_cut_total')) >= 1;
  while (N < 400_000 && !(await cut())) {
    const batch = sequenceLines(T0 + 1, N + BATCH, 50).slice(N);
    await a.write(batch);
    N += BATCH;
    await waitUntil(async () => (await cut()) || (await a.metric('canrelay_can_frames_total', RX)) === N + 1, 120_000, 'the batch to pass');
  }
  await a.write([candumpLine(T0 + 1 + N * 50, 'can0', 0x7fe, [0xee])]);
  await waitUntil(cut, 60_000, 'the slow client to be cut');
  await waitUntil(() => fast.frames().some((f) => f.startsWith('< frame 7FE ')), 120_000, 'the fast client to get the end marker');
  const seconds = (Date.now() - startedAt) / 1000;

  const frames = fast.frames().filter((f) => !f.startsWith('< frame 7FE '));
  assert.equal(frames.length, N, 'the fast client got every frame');
  for (let i = 0; i < N; i++) {
    const data = frames[i]!.split(' ')[4]!;
    if (parseInt(data, 16) !== i) assert.fail(`frame ${i} out of order or missing: ${frames[i]}`);
  }
  const rx = await a.metric('canrelay_can_frames_total', RX);
  assert.equal(rx, N + 2, 'the agent counted every frame');
  assert.equal(await a.metric('canrelay_socketcand_clients_cut_total'), 1, 'the slow client alone was cut');
  assert.equal(await a.metric('canrelay_socketcand_clients'), 1, 'only the fast client is left');
  assert.equal(consoleClient.closed, false, 'the console stream goes on');
  assert.ok(consoleClient.ofType('can_frame').length > 0);
  slow.go();
  const closed = await slow.waitForLine((l) => l.startsWith('CLOSED'), 30_000, 'the slow client to see its connection end');
  assert.match(closed, /^CLOSED \d+/);
  assert.ok(
    a.proc.logs.some((l) => String(l.msg).startsWith('socketcand client cut off')),
    'the cut is logged',
  );
  t.diagnostic(`agent rx ${rx - rx0} frames in ${seconds.toFixed(1)} s (${Math.round((rx - rx0) / seconds)} frames/s; recorded rate 20,000/s; loaded shared machine); ${closed}`);
  consoleClient.close();
  fast.close();
});

const PY_BEACON = `
import json, socket, sys, time, urllib.parse, xml.etree.ElementTree as ET
# What python-can 4.2+'s detect_beacon does: bind UDP 42000, parse the CANBeacon XML.
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('', 42000))
    print('READY', flush=True)
    s.settimeout(10)
    while True:  # other agents on this machine may beacon too: wait for ours
        root = ET.fromstring(s.recv(1024).decode('utf-8'))
        if root.attrib.get('name') == sys.argv[1]:
            break
url = urllib.parse.urlparse(root.find('URL').text)
print('RESULT ' + json.dumps({'tag': root.tag, 'name': root.attrib.get('name'), 'type': root.attrib.get('type'),
    'host': url.hostname, 'port': url.port, 'buses': [b.attrib['name'] for b in root.findall('Bus')]}), flush=True)
`;

test("--socketcand-beacon broadcasts a CANBeacon that python-can's discovery parses", async () => {
  const name = `beacon-${process.pid}`;
  const py = new PythonScript(PY_BEACON, [name]);
  running.push({ stop: async () => py.child.kill('SIGKILL') });
  await py.waitForLine((l) => l === 'READY', 20_000, 'READY');
  const a = await startAgentProcess(['--sim', '--sim-rate', '10', '--socketcand-listen', '127.0.0.1:0', '--socketcand-beacon'], { id: name });
  running.push({ stop: () => a.proc.stop('SIGKILL') });
  const port = Number(
    String((await a.proc.waitForLog((l) => l.msg === 'socketcand listening')).listen)
      .split(':')
      .pop(),
  );
  const r = JSON.parse((await py.waitForLine((l) => l.startsWith('RESULT '), 20_000, 'a beacon')).slice(7)) as Record<string, unknown>;
  assert.deepEqual(r, { tag: 'CANBeacon', name, type: 'SocketCAN', host: '127.0.0.1', port, buses: ['can0'] });
});

test('frames a socketcand client transmits never go up the uplink: the bridge receives only the received frames', async () => {
  const { startBridgeProcess } = await import('../helpers/bridge-process.js');
  const bridge = await startBridgeProcess();
  running.push({ stop: () => bridge.proc.stop('SIGKILL') });
  const token = await bridge.admin.register('sc-gw');
  const a = await replayAgent(['--socketcand-allow-send', '--bridge', bridge.base, '--token', token]);
  await leadIn(a);
  const c = await RawClient.connect(a.socketcandPort);
  await waitUntil(() => c.messages.length > 0, 5000, '< hi >');
  assert.equal(await c.request('< open can0 >'), '< ok >');
  c.send('< send 321 3 1 2 3 >< send 18DAF110 2 02 10 >');
  await waitUntil(async () => (await a.metric('canrelay_socketcand_frames_transmitted_total')) === 2, 10_000, 'two transmitted frames');
  // A received frame after the transmits: once the bridge has it, anything sent up before it has arrived too.
  await a.write([candumpLine(T0 + 1000, 'can0', 0x7fe, [0xee])]);
  const bridgeReceived = async (): Promise<number> => {
    const { metricValue } = await import('../helpers/sse-client.js');
    return metricValue((await getJson(bridge.base + '/metrics')).text, 'canrelay_bridge_frames_received_total', { dongle: 'sc-gw' }) ?? 0;
  };
  await waitUntil(async () => (await bridgeReceived()) >= 2, 30_000, 'the bridge to receive the lead-in and the marker');
  assert.equal(await bridgeReceived(), 2, 'the bridge got the two received frames and neither transmitted one');
  assert.equal(await a.metric('canrelay_can_frames_total', TX), 2);
  c.close();
});

test('at most 16 clients of one address and 64 in all: the next one is refused with < error > and counted; a freed place is taken again', async () => {
  const a = await replayAgent();
  const clients: RawClient[] = [];
  // Four hosts (loopback addresses) of 16 clients each.
  for (let i = 0; i < 64; i++) {
    const c = await RawClient.connect(a.socketcandPort, `127.0.0.${1 + Math.floor(i / 16)}`);
    clients.push(c);
    await waitUntil(() => c.messages.length > 0, 5000, `< hi > for client ${i + 1}`);
  }
  const extra = await RawClient.connect(a.socketcandPort, '127.0.0.5');
  await waitUntil(() => extra.closed, 5000, 'the 65th connection to be closed');
  assert.deepEqual(extra.messages, ['< error too many clients (64); try again later >']);
  assert.equal(await a.metric('canrelay_socketcand_connections_refused_total'), 1);
  clients.pop()!.close(); // one of 127.0.0.4
  await waitUntil(async () => (await a.metric('canrelay_socketcand_clients')) === 63, 5000, 'a place to free up');
  // A 17th client of 127.0.0.1 does not take it: one host cannot hold every place.
  const greedy = await RawClient.connect(a.socketcandPort, '127.0.0.1');
  await waitUntil(() => greedy.closed, 5000, "127.0.0.1's 17th connection to be closed");
  assert.deepEqual(greedy.messages, ['< error too many clients from 127.0.0.1 (16); close one first >']);
  assert.equal(await a.metric('canrelay_socketcand_connections_refused_total'), 2);
  const again = await RawClient.connect(a.socketcandPort, '127.0.0.5');
  await waitUntil(() => again.messages.length > 0, 5000, '< hi >');
  assert.equal(again.messages[0], '< hi >');
  for (const c of [...clients, again]) c.close();
});

// Clients from many addresses of one IPv6 /64 and of IPv4 (plain and mapped on the dual-stack listener):
// each connection's first message, and the console's status line for SSE requests. Sockets stay open to the end.
const PY_PER_ADDRESS = `
import json, socket, sys
sc_port, http_port, dongle = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
held = []
def connect(src, port):
    fam = socket.AF_INET6 if ':' in src else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(10)
    s.bind((src, 0))
    s.connect(('fd00:0:0:9::1' if fam == socket.AF_INET6 else '127.0.0.1', port))
    held.append(s)
    return s
def first_message(src):
    s, buf = connect(src, sc_port), b''
    while b'>' not in buf:
        c = s.recv(1024)
        if not c:
            break
        buf += c
    return buf.decode('latin1').strip()
def console_status(src):
    s, buf = connect(src, http_port), b''
    s.sendall(('GET /api/v1/streams/dongles/%s/console HTTP/1.1\\r\\nHost: [fd00:0:0:9::1]\\r\\n\\r\\n' % dongle).encode())
    while b'\\r\\n\\r\\n' not in buf:
        c = s.recv(4096)
        if not c:
            break
        buf += c
    head, _, body = buf.partition(b'\\r\\n\\r\\n')
    if b' 503 ' in head.split(b'\\r\\n')[0]:
        while b'}' not in body:
            c = s.recv(4096)
            if not c:
                break
            body += c
    return head.split(b'\\r\\n')[0].decode() + ' ' + body.decode('latin1', 'replace')[:300]
r = {}
r['v6'] = [first_message('fd00:0:0:1::%x' % i) for i in range(1, 18)]
r['v6_other'] = first_message('fd00:0:0:2::1')
r['v4'] = [first_message('127.0.0.1') for i in range(17)]
r['v4_other'] = first_message('127.0.0.2')
r['console'] = [console_status('fd00:0:0:3::%x' % i) for i in range(1, 18)]
print('RESULT ' + json.dumps(r), flush=True)
sys.stdin.readline()
`;

test('one IPv6 /64 is one address for the per-address caps (a host with privacy addresses gets 16 places, not 2^64); IPv4, plain or mapped, counts per address', async (t) => {
  // Many IPv6 addresses need a network namespace of the test's own (root), so the machine's is untouched.
  if (process.getuid?.() !== 0) return skipOrFail(t, 'not root: cannot give the agent a network namespace with IPv6 addresses of its own (unshare -n)');
  const addresses = ['fd00:0:0:9::1', 'fd00:0:0:2::1'];
  for (let i = 1; i <= 17; i++) addresses.push(`fd00:0:0:1::${i.toString(16)}`, `fd00:0:0:3::${i.toString(16)}`);
  const setup = `ip link set lo up && for a in ${addresses.join(' ')}; do ip -6 addr add "$a/128" dev lo nodad || exit 9; done && exec "$@"`;
  const dir = tempDir('canrelay-sc-v6-');
  const agent = runCli(
    ['agent', '--id', 'v6-gw', '--sim', '--sim-rate', '10', '--listen', '[::]:0', '--state-dir', dir, '--socketcand-listen', '[::]:0'],
    {},
    {
      wrap: ['unshare', '-n', 'sh', '-c', setup, 'sh'],
    },
  );
  running.push({ stop: () => agent.stop('SIGKILL') });
  const sc = await agent.waitForLog((l) => l.msg === 'socketcand listening');
  const con = await agent.waitForLog((l) => l.msg === 'console listening');
  const ports = [String(sc.listen).split(':').pop()!, new URL(String(con.url)).port];
  assert.equal(sc.url, `can://[::]:${ports[0]}`, 'an IPv6 address in brackets in the URL logged');
  const py = new PythonScript(PY_PER_ADDRESS, [...ports, 'v6-gw'], ['nsenter', `--net=/proc/${agent.child.pid}/ns/net`]);
  running.push({ stop: async () => py.child.kill('SIGKILL') });
  const r = JSON.parse((await py.waitForLine((l) => l.startsWith('RESULT '), 60_000, 'the result')).slice(7)) as Record<string, string | string[]>;
  const v6 = r.v6 as string[];
  assert.deepEqual(v6.slice(0, 16), new Array(16).fill('< hi >'), '16 clients of the /64, each from another address');
  assert.equal(v6[16], '< error too many clients from fd00:0:0:1::/64 (16); close one first >', 'the 17th address of the /64 is the same host');
  assert.equal(r.v6_other, '< hi >', 'another /64 is another host');
  const v4 = r.v4 as string[];
  assert.deepEqual(v4.slice(0, 16), new Array(16).fill('< hi >'));
  assert.equal(v4[16], '< error too many clients from 127.0.0.1 (16); close one first >', 'an IPv4 client of the dual-stack listener is named and counted as IPv4');
  assert.equal(r.v4_other, '< hi >', 'IPv4 counts per address');
  const consoleReplies = r.console as string[];
  for (const c of consoleReplies.slice(0, 16)) assert.match(c, /^HTTP\/1\.1 200 /);
  assert.match(consoleReplies[16]!, /^HTTP\/1\.1 503 .*too many clients from fd00:0:0:3::\/64: 16 are connected \(the agent's --console-max-clients-per-address\)/);
  py.go();
  assert.equal(await py.wait(), 0, py.stderr);
});

test('BCM subscribe with an interval: the first frame at once, then the latest of the interval when it ends', async () => {
  const a = await replayAgent(['--replay-speed', '0']);
  await leadIn(a);
  const c = await RawClient.connect(a.socketcandPort);
  await waitUntil(() => c.messages.length > 0, 5000, '< hi >');
  assert.equal(await c.request('< open can0 >'), '< ok >');
  c.send('< subscribe 5 0 100 >'); // one frame per 5 s at most
  assert.equal(await c.request('< echo >'), '< echo >');
  // 1,600 frames as fast as the replay goes; every 16th has id 0x100 (data = its sequence number).
  await a.write(sequenceLines(T0 + 1, 1600, 10));
  await waitUntil(async () => (await a.metric('canrelay_can_frames_total', RX)) === 1601, 20_000, 'the burst');
  await waitUntil(() => c.frames().length >= 2, 20_000, 'the throttled frame at the end of the interval');
  assert.equal(await c.request('< echo >'), '< echo >');
  assert.deepEqual(
    c.frames().map((f) => f.split(' ').slice(4, 8).join('')),
    ['00000000', (1600 - 16).toString(16).toUpperCase().padStart(8, '0')],
    'the first 0x100 frame, then the last one of the burst; the 98 between are throttled away',
  );
  c.close();
});

test('BCM subscriptions get classic data frames of their id only: never error frames (their class is no id), remote or CAN FD frames; raw mode gets them all', async () => {
  const a = await replayAgent(['--replay-speed', '0']);
  await leadIn(a);
  const c = await RawClient.connect(a.socketcandPort);
  await waitUntil(() => c.messages.length > 0, 5000, '< hi >');
  assert.equal(await c.request('< open can0 >'), '< ok >');
  // 004 is also the error class of the error frame below (controller problem, TX warning); 456 also has remote frames.
  c.send('< subscribe 0 0 004 >< subscribe 0 0 456 >');
  assert.equal(await c.request('< echo >'), '< echo >');
  const at = (i: number, frame: string): string => `(${Math.floor(T0 / 1e6)}.${String(10 + i).padStart(6, '0')}) can0 ${frame}`;
  const mix = (n: number): string[] =>
    ['20000004#0000080000000000', '456#R', '456#R3', '456#1122', '456##1AABB', '004#33', '20000004#0000080000000000', '456#R', '456#FF'].map((f, i) => at(n + i, f));
  await a.write(mix(0));
  await waitUntil(async () => (await a.metric('canrelay_can_frames_total', RX)) === 10, 10_000, 'the mixed frames');
  await waitUntil(() => c.frames().some((f) => f.startsWith('< frame 456 ') && f.includes(' FF ')), 10_000, 'the last data frame of 0x456');
  assert.equal(await c.request('< echo >'), '< echo >');
  const frameMessages = c.messages.filter((m) => !['< hi >', '< ok >', '< echo >'].includes(m));
  assert.deepEqual(
    frameMessages.map((m) => m.replace(/ \d+\.\d{6} /, ' T ')),
    ['< frame 456 T 11 22  >', '< frame 004 T 33  >', '< frame 456 T FF  >'],
    'only the classic data frames of the subscribed ids: no < error 004 >, no < rtr 456 >, no FD frame',
  );

  // Raw mode is not the BCM: it gets every frame, error, remote and FD frames included.
  assert.equal(await c.request('< rawmode >'), '< ok >');
  const before = c.messages.length;
  await a.write(mix(100));
  await waitUntil(() => c.messages.slice(before).some((m) => /^< frame 456 \S+ FF >$/.test(m)), 10_000, 'the raw frames');
  assert.deepEqual(
    c.messages.slice(before).map((m) => m.replace(/ \d+\.\d{6}/, ' T')),
    [
      '< error 004 T >',
      '< rtr 456 T 0 >',
      '< rtr 456 T 3 >',
      '< frame 456 T 1122 >',
      '< fdframe 456 05 T AABB >',
      '< frame 004 T 33 >',
      '< error 004 T >',
      '< rtr 456 T 0 >',
      '< frame 456 T FF >',
    ],
  );
  c.close();
});
