/**
 * Faults on the relay path (docs/reliability.md), with real agents and a real bridge on loopback:
 * - the bridge paused (SIGSTOP) for 5 s in a 2,000 frames/s relay: no frame is transmitted on B more
 *   than --relay-max-age-ms after A received it, every drop is counted, and the drops equal B's gaps;
 *   only frames A received before the pause ended are dropped, and every frame A received from 3 s after
 *   it is transmitted (the relay recovers);
 * - the same with the agents' clocks seconds off the bridge's (CANRELAY_TEST_CLOCK_OFFSET_MS, test-only);
 * - a batch with an absurd timestamp is refused with a close code, at the bridge and at the receiving
 *   agent, and none of its frames reaches a bus.
 * Ages are measured from outside: A's console shows when A received each frame (rx), B's when B
 * transmitted it (tx); the frames carry their index, and the known clock skews are taken out.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { WebSocketServer, type WebSocket } from 'ws';
import { encodeBatch, KIND_DOWN } from '../../core/uplink/frame-codec.js';
import { parseAgentMessage, PROTOCOL_VERSION, UPLINK_PATH } from '../../core/uplink/messages.js';
import { startBridgeProcess } from '../helpers/bridge-process.js';
import { FakeAgent, numberedFrame } from '../helpers/fake-agent.js';
import { startAgentProcess, tempDir, writeCandumpLog, type StartedAgent } from '../helpers/processes.js';
import { until } from '../helpers/until.js';
import { getJson, metricValue, SseClient, type SseEvent } from '../helpers/sse-client.js';

const cleanup: (() => Promise<unknown> | void)[] = [];
after(async () => {
  for (const c of cleanup.reverse()) await c();
});

const MAX_AGE_MS = 2000;

const metrics = async (base: string): Promise<string> => (await getJson(base + '/metrics')).text;
const uplink = async (a: StartedAgent, kind: string): Promise<number> => metricValue(await metrics(a.base), 'canrelay_uplink', { kind }) ?? 0;
/** A console `ts` ("2026-11-27T13:47:02.123456Z") in µs. */
const tsUs = (ts: unknown): number => {
  const m = /^(.*)\.(\d{6})Z$/.exec(String(ts));
  if (!m) throw new Error(`unexpected ts ${String(ts)}`);
  return Date.parse(m[1]! + 'Z') * 1000 + Number(m[2]);
};
const relayedTx = (c: SseClient): SseEvent[] => c.events.filter((e) => e.event === 'can_frame' && e.json.direction === 'tx' && e.json.id === '0x100');

/**
 * A replays `frames` at 2,000 frames/s; once B transmits, the bridge is stopped for 5 s, then continued.
 * Checks what a user would check afterwards; `note` reports the figures.
 */
async function pausedRelay(tag: string, skewA: number, skewB: number, note: (msg: string) => void): Promise<void> {
  const bridge = await startBridgeProcess();
  cleanup.push(() => bridge.proc.stop('SIGKILL'));
  const ta = await bridge.admin.register(`${tag}-a`);
  const tb = await bridge.admin.register(`${tag}-b`);
  await bridge.admin.group(tag, `${tag}-a`, `${tag}-b`);
  const consoleFlags = ['--console-max-rate', '1000000', '--history-events', '200000', '--history-seconds', '600'];
  const b = await startAgentProcess(['--sim', '--sim-rate', '1', '--bridge', bridge.base, '--token', tb, ...consoleFlags], {
    id: `${tag}-b`,
    env: { CANRELAY_TEST_CLOCK_OFFSET_MS: String(skewB) },
  });
  cleanup.push(() => b.proc.stop('SIGKILL'));
  await b.proc.waitForLog((l) => l.msg === 'uplink connected');
  const bc = await SseClient.connect(b.url + '?backlog=200000');
  cleanup.push(() => bc.close());

  // 16 s at 2,000 frames/s, each carrying its index: seconds of frames after the pause and the settling
  // time below even when B starts transmitting late on a loaded machine.
  const frames = 32_000;
  const log = join(tempDir('canrelay-faults-'), 'a.log');
  writeCandumpLog(log, frames, { ids: [0x100], stepUs: 500 });
  const a = await startAgentProcess(['--replay', log, '--replay-speed', '1', '--bridge', bridge.base, '--token', ta, ...consoleFlags], {
    id: `${tag}-a`,
    env: { CANRELAY_TEST_CLOCK_OFFSET_MS: String(skewA) },
  });
  cleanup.push(() => a.proc.stop('SIGKILL'));
  const ac = await SseClient.connect(a.url + '?backlog=200000');
  cleanup.push(() => ac.close());

  await bc.waitFor(() => relayedTx(bc).length >= 2000, 30_000, 'B transmitting relayed frames');
  bridge.proc.child.kill('SIGSTOP');
  await new Promise((r) => setTimeout(r, 5000)); // the fault: a bridge that does nothing for 5 s
  bridge.proc.child.kill('SIGCONT');
  // Taken after the signal is sent: no frame can be judged by the bridge before this moment.
  const continuedUs = Date.now() * 1000;

  // Settled: every frame A received is transmitted on B, or dropped for its age and counted (at A, the
  // bridge or B) — nothing else happens to a frame.
  const account = async (): Promise<{ tx: number; tooOld: number; gaps: number; bridgeDrops: number; aDrops: number }> => {
    const bm = await metrics(bridge.base);
    const bridgeDrops = ['too_old', 'backlog_full', 'group_changed'].reduce(
      (n, reason) => n + (metricValue(bm, 'canrelay_bridge_frames_dropped_total', { group: tag, side: 'b', reason }) ?? 0),
      0,
    );
    return {
      tx: relayedTx(bc).length,
      tooOld: await uplink(b, 'tx_dropped_too_old'),
      gaps: await uplink(b, 'relay_seq_gaps'),
      bridgeDrops,
      aDrops: (await uplink(a, 'frames_dropped_too_old')) + (await uplink(a, 'frames_dropped_buffer_full')),
    };
  };
  await until(
    async () => {
      const c = await account();
      return c.tx + c.tooOld + c.bridgeDrops + c.aDrops === frames;
    },
    90_000,
    'every frame of A transmitted at B or counted as dropped',
  );
  const c = await account();
  const { bridgeDrops, aDrops } = c;
  assert.equal(await uplink(a, 'relay_seq_duplicates'), 0);
  assert.equal(await uplink(b, 'relay_seq_duplicates'), 0, 'nothing transmitted twice');
  assert.equal(await uplink(b, 'relay_seq_reordered'), 0);
  assert.ok(bridgeDrops + c.tooOld + aDrops > 0, `the pause made frames too old somewhere (bridge ${bridgeDrops}, B ${c.tooOld}, A ${aDrops})`);
  assert.equal(c.gaps, bridgeDrops + aDrops, "B's sequence gaps are exactly the frames dropped (and counted) upstream");

  // From outside: when A received each frame and when B transmitted it, with the known skews taken out.
  const rxAt = new Map<string, number>();
  for (const e of ac.events) if (e.event === 'can_frame' && e.json.direction === 'rx') rxAt.set(String(e.json.data_hex), tsUs(e.json.ts) - skewA * 1000);
  let oldest = 0;
  for (const e of relayedTx(bc)) {
    const rx = rxAt.get(String(e.json.data_hex));
    assert.ok(rx !== undefined, `B transmitted ${String(e.json.data_hex)}, which A's console never showed`);
    const ageMs = (tsUs(e.json.ts) - skewB * 1000 - rx) / 1000;
    oldest = Math.max(oldest, ageMs);
  }
  note(`${frames} frames: ${c.tx} transmitted on B, oldest ${oldest.toFixed(1)} ms; dropped too old: bridge ${bridgeDrops}, B ${c.tooOld}, A ${aDrops}; B gaps ${c.gaps}`);
  assert.ok(oldest < MAX_AGE_MS, `the oldest frame transmitted on B was ${oldest.toFixed(1)} ms old; the limit is ${MAX_AGE_MS} ms`);

  // Not only nothing too old: nothing young dropped. A frame is dropped for its age only if it could have
  // aged past the limit during the pause, so every frame not transmitted on B was received by A before
  // the SIGCONT. And the relay recovers: every frame A received more than SETTLE_MS after the SIGCONT is
  // transmitted. 3 s, not less: such a frame is dropped only if it reaches B's bus more than 2 s (the
  // limit) after A received it, i.e. if the relay is still over 2 s behind 3 s after the pause ended, with
  // only the pause's ~10,000 frames (milliseconds of work) to catch up on — a relay that does not recover,
  // not a slow machine, whose scheduling delays are far below that.
  const SETTLE_MS = 3000;
  await ac.waitFor((ev) => ev.filter((e) => e.event === 'can_frame' && e.json.direction === 'rx').length >= frames, 10_000, "every frame A received on A's console");
  for (const e of ac.events) if (e.event === 'can_frame' && e.json.direction === 'rx') rxAt.set(String(e.json.data_hex), tsUs(e.json.ts) - skewA * 1000);
  assert.equal(rxAt.size, frames, "A's console shows every frame of the file once");
  const transmitted = new Set(relayedTx(bc).map((e) => String(e.json.data_hex)));
  const notTransmitted = [...rxAt].filter(([data]) => !transmitted.has(data));
  assert.equal(notTransmitted.length, bridgeDrops + c.tooOld + aDrops, 'the frames missing on B are the frames counted as dropped');
  const droppedLate = notTransmitted.filter(([, rx]) => rx >= continuedUs);
  assert.deepEqual(
    droppedLate.slice(0, 5).map(([data, rx]) => `${data} received ${((rx - continuedUs) / 1000).toFixed(1)} ms after the SIGCONT`),
    [],
    `${droppedLate.length} frames A received after the pause were dropped as too old`,
  );
  const late = [...rxAt].filter(([, rx]) => rx > continuedUs + SETTLE_MS * 1000);
  assert.ok(late.length >= 1000, `frames A received more than ${SETTLE_MS} ms after the SIGCONT: ${late.length} (the file must outlast the settling time)`);
  const lost = late.filter(([data]) => !transmitted.has(data));
  assert.equal(lost.length, 0, `of the ${late.length} frames A received more than ${SETTLE_MS} ms after the SIGCONT, ${lost.length} never reached B's bus`);
  note(`frames received after the SIGCONT + ${SETTLE_MS} ms: ${late.length}, all transmitted; every one of the ${notTransmitted.length} dropped received before the SIGCONT`);

  // Each agent's clock estimate holds the truth within its stated error (bridge = agent + offset).
  for (const [x, skew] of [
    [a, skewA],
    [b, skewB],
  ] as const) {
    const off = await uplink(x, 'clock_offset_ms');
    const err = await uplink(x, 'clock_error_ms');
    assert.ok(err > 0 && Math.abs(off + skew) <= err, `clock offset ${off} ± ${err} ms, true ${-skew} ms`);
  }
  await a.proc.stop();
  await b.proc.stop();
  await bridge.proc.stop();
}

test("bridge paused 5 s mid-relay: nothing transmitted past its age, drops counted and equal to B's gaps", async (t) => {
  await pausedRelay('pause', 0, 0, (m) => t.diagnostic(m));
});

test('the same with agent clocks seconds off the bridge (A +3 s, B -2.5 s): the age rule still holds', async (t) => {
  await pausedRelay('skew', 3000, -2500, (m) => t.diagnostic(m));
});

test('a batch with a 1e300 timestamp is refused at the bridge with a close code; none of its frames reaches B', async () => {
  const bridge = await startBridgeProcess();
  cleanup.push(() => bridge.proc.stop('SIGKILL'));
  const ta = await bridge.admin.register('ts-a');
  const tb = await bridge.admin.register('ts-b');
  await bridge.admin.group('ts', 'ts-a', 'ts-b');
  const b = await FakeAgent.connect(bridge.base, { dongle: 'ts-b', token: tb });
  const a = await FakeAgent.connect(bridge.base, { dongle: 'ts-a', token: ta });
  cleanup.push(
    () => a.close(),
    () => b.close(),
  );
  a.sendFrames([0, 1, 2].map((n) => numberedFrame('can0', 0x10, n)));
  await b.waitFor(() => b.applied.length === 3, 5000, 'the good batch at B');

  const bad = numberedFrame('can0', 0x10, 1001);
  bad.tsUs = 1e300;
  a.sendFrames([numberedFrame('can0', 0x10, 1000), bad, numberedFrame('can0', 0x10, 1002)]);
  assert.equal(await a.closed(), 4400, 'refused with the protocol close code');
  const err = a.ofType('error')[0];
  assert.equal(err?.code, 'bad_batch');
  assert.match(err.message, /timestamp/);

  // The bridge lives on; a good batch after the refusal arrives, and nothing of the bad one came before it.
  const a2 = await a.reconnect();
  cleanup.push(() => a2.close());
  a2.sendFrames([numberedFrame('can0', 0x10, 2000)]);
  await b.waitFor(() => b.applied.length >= 4, 5000, 'the next good batch at B');
  assert.deepEqual(
    b.applied.map((f) => new DataView(f.frame.data.buffer, f.frame.data.byteOffset).getUint32(0)),
    [0, 1, 2, 2000],
  );
  const m = await metrics(bridge.base);
  assert.ok((metricValue(m, 'canrelay_bridge_rejected_messages_total', { reason: 'bad_batch' }) ?? 0) >= 1, 'counted');
  await bridge.proc.stop();
});

/**
 * A protocol-level fake bridge for one agent: answers clock probes, and on each connection's hello calls
 * `onHello(ws, n)` (n counts connections from 1). Records each close code and reason.
 */
async function fakeBridge(onHello: (ws: WebSocket, n: number) => void): Promise<{ port: number; closes: { code: number; reason: string }[] }> {
  const server = createServer();
  const wss = new WebSocketServer({ server, path: UPLINK_PATH });
  const closes: { code: number; reason: string }[] = [];
  const sockets: WebSocket[] = [];
  let connected = 0;
  wss.on('connection', (ws) => {
    sockets.push(ws);
    const n = ++connected;
    ws.on('close', (code, reason) => closes.push({ code, reason: reason.toString('utf8') }));
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      const p = parseAgentMessage(data.toString('utf8'));
      if (!p.ok) return;
      if (p.msg.t === 'clock_probe') ws.send(JSON.stringify({ t: 'clock_reply', t0: p.msg.t0, bridge_ms: Date.now() }));
      if (p.msg.t === 'hello') onHello(ws, n);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  cleanup.push(() => {
    for (const s of sockets) s.terminate();
    wss.close();
    server.close();
  });
  return { port: (server.address() as { port: number }).port, closes };
}

const welcome = (dongle: string): string => JSON.stringify({ t: 'welcome', protocol: PROTOCOL_VERSION, dongle, event_ack: 0, group: 'g', relay_epoch: 'epoch-1' });

test('at the receiving agent: a DOWN batch with a 1e300 timestamp is refused whole, an old frame is dropped and counted', async () => {
  const { port, closes } = await fakeBridge((ws, n) => {
    if (n > 1) return;
    ws.send(welcome('rx-b'));
    const f = (i: number, ageMs = 0): ReturnType<typeof numberedFrame> => ({ ...numberedFrame('can0', 0x321, i), tsUs: (Date.now() - ageMs) * 1000 });
    ws.send(encodeBatch({ kind: KIND_DOWN, batch: 1, origin: 'rx-a', frames: [{ frame: f(1), seq: 1 }] }));
    ws.send(encodeBatch({ kind: KIND_DOWN, batch: 2, origin: 'rx-a', frames: [{ frame: f(2, 3 * MAX_AGE_MS), seq: 2 }] }));
    const bad = f(3);
    bad.tsUs = 1e300;
    ws.send(
      encodeBatch({
        kind: KIND_DOWN,
        batch: 3,
        origin: 'rx-a',
        frames: [
          { frame: f(4), seq: 3 },
          { frame: bad, seq: 4 },
        ],
      }),
    );
  });
  const b = await startAgentProcess(['--sim', '--sim-rate', '1', '--bridge', `http://127.0.0.1:${port}`, '--token', 'fake-bridge-token-0123456789'], { id: 'rx-b' });
  cleanup.push(() => b.proc.stop('SIGKILL'));
  await until(() => closes.some((c) => c.code === 4400), 10_000, 'the agent closing the link with 4400');
  await until(async () => (await uplink(b, 'tx_sent')) >= 1, 5000, 'the good frame transmitted');
  const m = await metrics(b.base);
  assert.equal(metricValue(m, 'canrelay_can_frames_total', { bus: 'can0', direction: 'tx' }), 1, 'only the good, fresh frame reached the bus');
  assert.equal(metricValue(m, 'canrelay_uplink', { kind: 'tx_dropped_too_old' }), 1, 'the old frame was dropped and counted');
  assert.ok((metricValue(m, 'canrelay_uplink', { kind: 'rejected_messages' }) ?? 0) >= 1);
  assert.equal((await getJson(b.base + '/healthz')).status, 200, 'the agent lives on');
});

test('at the receiving agent: a refusal quoting 200 bytes of a bad bus name, and a second welcome, each cost the connection, not the agent', async () => {
  // The close reason quotes the bad name: over the protocol's 123 bytes, `ws` threw inside the message
  // handler and the agent process died.
  const longName = 'é'.repeat(100); // 200 bytes of UTF-8; not a valid bus name
  const { port, closes } = await fakeBridge((ws, n) => {
    ws.send(welcome('rx-c'));
    if (n === 1) ws.send(encodeBatch({ kind: KIND_DOWN, batch: 1, origin: 'rx-a', frames: [{ frame: { ...numberedFrame('can0', 0x321, 1), bus: longName }, seq: 1 }] }));
    if (n === 2) ws.send(welcome('rx-c'));
  });
  const c = await startAgentProcess(['--sim', '--sim-rate', '1', '--bridge', `http://127.0.0.1:${port}`, '--token', 'fake-bridge-token-0123456789'], { id: 'rx-c' });
  cleanup.push(() => c.proc.stop('SIGKILL'));
  await until(() => closes.length >= 2, 20_000, 'two connections closed by the agent');
  assert.equal(closes[0]!.code, 4400);
  assert.match(closes[0]!.reason, /^bad bus name "é+…$/, 'the reason, cut to fit');
  assert.ok(Buffer.byteLength(closes[0]!.reason) <= 123);
  assert.equal(closes[1]!.code, 4400);
  assert.equal(closes[1]!.reason, 'a second welcome on one connection');
  assert.equal(c.proc.exitCode, null, 'the agent process lives');
  assert.equal((await getJson(c.base + '/healthz')).status, 200, 'and answers');
  assert.equal(await uplink(c, 'rejected_messages'), 2);
});
