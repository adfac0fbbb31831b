/**
 * Agent B's real uplink pieces (UplinkClient, Downlink, TxQueue) against a protocol-level fake bridge on
 * loopback, with a bus that stays busy so relayed frames wait in the transmit queue: when what they were
 * relayed under ends — the group changes (a `group` message, or another group or relay revision in the
 * next welcome), or the bridge refuses the agent (4401, or HTTP 401 at a reconnect: token rotated or
 * revoked, dongle removed) — none of them reaches the bus afterwards, and the count says how many were
 * dropped. Also what arrives after the bridge said the agent is in no group, the agent's heartbeat
 * across a step of its wall clock, and acknowledgements of what was never sent.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { after, test } from 'node:test';
import pino, { type Logger } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import type { CanFrame } from '../../core/can/frame.js';
import { ConsoleStream } from '../../core/console/console-stream.js';
import { presenceData } from '../../core/console/normalize.js';
import { HistoryStore } from '../../core/console/history-store.js';
import { MemoryIdStore } from '../../core/console/id-store.js';
import { openStateDb } from '../../core/state/sqlite.js';
import { StateHealth } from '../../core/state/state-health.js';
import { encodeBatch, KIND_DOWN } from '../../core/uplink/frame-codec.js';
import { parseAgentMessage, PROTOCOL_VERSION, UPLINK_PATH } from '../../core/uplink/messages.js';
import { CommandLedger } from '../../agent/command-ledger.js';
import { CommandRunner } from '../../agent/command-runner.js';
import type { SendResult } from '../../agent/sources/source.js';
import { TxQueue } from '../../agent/tx-queue.js';
import { Downlink } from '../../agent/uplink/downlink.js';
import { FrameUploader } from '../../agent/uplink/frame-uploader.js';
import { Outbox } from '../../agent/uplink/outbox.js';
import { UplinkClient } from '../../agent/uplink/uplink-client.js';
import { testFrame } from '../helpers/can-frames.js';
import { tempDir } from '../helpers/processes.js';
import { until } from '../helpers/until.js';

const cleanup: (() => Promise<unknown> | void)[] = [];
after(async () => {
  for (const c of cleanup.reverse()) await c();
});

const DONGLE = 'gw-b';

interface FakeBridge {
  port: number;
  /** The current connection (after its hello). */
  ws: () => WebSocket | undefined;
  acks: number[];
  /** Mirrored events received, by seq. */
  events: number[];
  hellos: number;
  /** While true, upgrades are refused with HTTP 401 (the token revoked while the link was down). */
  refuse: boolean;
}

/**
 * Answers clock probes; on each hello, welcomes the agent into the group `groupOf(n)` under the relay
 * revision `revOf(n)` (n counts hellos from 1).
 */
async function fakeBridge(
  groupOf: (n: number) => string | null,
  revOf: (n: number) => string = () => 'rev-1',
  eventAckOf: (n: number) => number = () => 0,
  welcomes: (n: number) => boolean = () => true,
): Promise<FakeBridge> {
  const server = createServer();
  const fb: FakeBridge = { port: 0, ws: () => undefined, acks: [], events: [], hellos: 0, refuse: false };
  const wss = new WebSocketServer({ server, path: UPLINK_PATH, verifyClient: (_info, cb) => (fb.refuse ? cb(false, 401) : cb(true)) });
  const sockets: WebSocket[] = [];
  let current: WebSocket | undefined;
  fb.ws = () => current;
  wss.on('connection', (ws) => {
    sockets.push(ws);
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      const p = parseAgentMessage(data.toString('utf8'));
      if (!p.ok) return;
      if (p.msg.t === 'clock_probe') ws.send(JSON.stringify({ t: 'clock_reply', t0: p.msg.t0, bridge_ms: Date.now() }));
      if (p.msg.t === 'data_ack') fb.acks.push(p.msg.batch);
      if (p.msg.t === 'event') fb.events.push(p.msg.seq);
      if (p.msg.t === 'hello') {
        const n = ++fb.hellos;
        if (!welcomes(n)) return; // a bridge whose decision hangs
        ws.send(
          JSON.stringify({ t: 'welcome', protocol: PROTOCOL_VERSION, dongle: DONGLE, event_ack: eventAckOf(n), group: groupOf(n), relay_rev: revOf(n), relay_epoch: 'epoch-1' }),
        );
        current = ws;
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  cleanup.push(() => {
    for (const s of sockets) s.terminate();
    wss.close();
    server.close();
  });
  fb.port = (server.address() as { port: number }).port;
  return fb;
}

interface AgentB {
  tx: TxQueue;
  /** Frames that reached a bus, as "bus:n". */
  sent: string[];
  busy: Set<string>;
  logs: Record<string, unknown>[];
  uplink: UplinkClient;
  downlink: Downlink;
  outbox: Outbox;
}

/** Agent B's uplink with its real parts, its transmit path a fake bus that can be made busy. */
function agentB(port: number, welcomeTimeoutMs?: number): AgentB {
  const sent: string[] = [];
  const busy = new Set<string>();
  const tx = new TxQueue(
    (f): SendResult => (busy.has(f.bus) ? { ok: false, busy: true, error: 'ENOBUFS' } : (sent.push(`${f.bus}:${f.data[0]}`), { ok: true, tsUs: Date.now() * 1000 })),
    {
      retryMs: 60_000,
      maxQueued: 10_000,
    },
  );
  const logs: Record<string, unknown>[] = [];
  const log: Logger = pino({ level: 'info' }, { write: (s: string) => void logs.push(JSON.parse(s) as Record<string, unknown>) });
  const file = join(tempDir('canrelay-relay-ends-'), 'agent.sqlite');
  const db = openStateDb(file);
  const console = new ConsoleStream(`dongles/${DONGLE}`, { historyEvents: 1000, historySeconds: 60, maxRate: 1000, ids: new MemoryIdStore(), history: new HistoryStore(1 << 20) });
  const downlink = new Downlink(tx, 60_000);
  const outbox = new Outbox(db, 1000, () => {}, new StateHealth(log).store('outbox', file));
  const uplink = new UplinkClient(
    {
      bridgeUrls: [`http://127.0.0.1:${port}`],
      token: 'fake-bridge-token-0123456789',
      dongle: DONGLE,
      version: 'test',
      buses: () => ['can0', 'can1'],
      heartbeatMs: 1000,
      maxBackoffMs: 300,
      welcomeTimeoutMs,
    },
    outbox,
    new FrameUploader({ maxBufferedFrames: 1000, maxAgeMs: 2000 }),
    downlink,
    new CommandRunner(console, tx, new CommandLedger(db)),
    log,
  );
  uplink.start();
  cleanup.push(async () => {
    tx.stop();
    await uplink.stop();
    db.close();
  });
  return { tx, sent, busy, logs, uplink, downlink, outbox };
}

const frame = (bus: string, n: number): CanFrame => testFrame({ bus, data: Uint8Array.of(n) });

/** Sends DOWN batch `batch` with one frame per bus named, numbered from `seq0`. */
function relay(ws: WebSocket, batch: number, buses: string[], seq0: number): void {
  ws.send(
    encodeBatch({ kind: KIND_DOWN, batch, origin: 'gw-a', clock: { offsetMs: 0, errorMs: 2 }, frames: buses.map((bus, i) => ({ frame: frame(bus, seq0 + i), seq: seq0 + i })) }),
  );
}

const dropLog = (b: AgentB): Record<string, unknown> | undefined => b.logs.find((l) => typeof l.msg === 'string' && l.msg.startsWith('relayed frames waiting for the bus dropped'));

test('the group changes (a group message) while relayed frames wait on a busy bus: none of them is transmitted afterwards, counted and logged', async () => {
  const fb = await fakeBridge(() => 'line-3');
  const b = agentB(fb.port);
  b.busy.add('can0'); // no ACK on can0: its frames wait
  await until(() => b.uplink.connected, 10_000, 'agent B welcomed');
  relay(fb.ws()!, 1, ['can0', 'can0', 'can0', 'can1'], 1);
  relay(fb.ws()!, 2, ['can0', 'can0'], 5);
  await until(() => b.tx.length === 5, 5000, 'five frames waiting for can0');
  assert.deepEqual(b.sent, ['can1:4'], 'can1 keeps up');
  // The group is edited (a new bus map, say, or it ended): the bridge says so on the link.
  fb.ws()!.send(JSON.stringify({ t: 'group', group: null }));
  await until(() => b.tx.stats.droppedGroupChanged > 0, 5000, 'the waiting frames dropped');
  assert.equal(b.tx.stats.droppedGroupChanged, 5, 'the count says how many');
  assert.equal(b.tx.length, 0);
  const line = dropLog(b);
  assert.ok(line, 'a log line says so');
  assert.equal(line.frames, 5);
  assert.equal(line.from, 'line-3');
  assert.equal(line.to, null);
  b.busy.clear(); // can0 takes frames again
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(b.sent, ['can1:4'], 'nothing relayed under the old group reached a bus');
  await until(() => fb.acks.includes(2), 5000, 'the dropped batches acknowledged (every frame counted)');
});

test('no group: DOWN batches still on their way after the bridge said the agent is in no group (a cluster node lagging) are acknowledged and counted, never transmitted', async () => {
  const fb = await fakeBridge(() => 'line-3');
  const b = agentB(fb.port);
  await until(() => b.uplink.connected, 10_000, 'agent B welcomed');
  relay(fb.ws()!, 1, ['can0'], 1);
  await until(() => b.sent.length === 1, 5000, 'the frame relayed in the group transmitted');
  fb.ws()!.send(JSON.stringify({ t: 'group', group: null }));
  relay(fb.ws()!, 2, ['can0', 'can1'], 2);
  await until(() => fb.acks.includes(2), 5000, 'the batch acknowledged');
  assert.deepEqual(b.sent, ['can0:1'], 'nothing of it reached a bus');
  assert.equal(b.downlink.stats.noGroupFrames, 2, 'counted (relay_no_group_frames)');
});

test('the same group announced again (how a changed bus map would be announced) drops what waits too', async () => {
  const fb = await fakeBridge(() => 'line-4');
  const b = agentB(fb.port);
  b.busy.add('can0');
  await until(() => b.uplink.connected, 10_000, 'agent B welcomed');
  relay(fb.ws()!, 1, ['can0', 'can0'], 1);
  await until(() => b.tx.length === 2, 5000, 'two frames waiting');
  fb.ws()!.send(JSON.stringify({ t: 'group', group: 'line-4' }));
  await until(() => b.tx.stats.droppedGroupChanged === 2, 5000, 'both dropped');
  b.busy.clear();
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(b.sent, []);
});

test('the group changed while the link was down (the next welcome names another): what waits is dropped', async () => {
  const fb = await fakeBridge((n) => (n === 1 ? 'line-5' : 'line-6'));
  const b = agentB(fb.port);
  b.busy.add('can0');
  await until(() => b.uplink.connected, 10_000, 'agent B welcomed');
  relay(fb.ws()!, 1, ['can0', 'can0', 'can0'], 1);
  await until(() => b.tx.length === 3, 5000, 'three frames waiting');
  fb.ws()!.terminate(); // the link lost; the group is changed meanwhile
  await until(() => fb.hellos === 2 && b.uplink.connected, 10_000, 'agent B back, welcomed into line-6');
  await until(() => b.tx.stats.droppedGroupChanged === 3, 5000, 'the three dropped');
  assert.equal(dropLog(b)?.to, 'line-6');
  b.busy.clear();
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(b.sent, []);
});

test("the group's bus map or sides changed while the link was down (the next welcome names the same group under another relay revision): what waits is dropped", async () => {
  const fb = await fakeBridge(
    () => 'line-8',
    (n) => (n === 1 ? 'rev-a' : 'rev-b'),
  );
  const b = agentB(fb.port);
  b.busy.add('can0');
  await until(() => b.uplink.connected, 10_000, 'agent B welcomed');
  relay(fb.ws()!, 1, ['can0', 'can0', 'can0'], 1);
  await until(() => b.tx.length === 3, 5000, 'three frames waiting');
  fb.ws()!.terminate(); // the link lost; the group's bus map is changed meanwhile
  await until(() => fb.hellos === 2 && b.uplink.connected, 10_000, 'agent B back, welcomed into line-8 under rev-b');
  await until(() => b.tx.stats.droppedGroupChanged === 3, 5000, 'the three dropped');
  assert.equal(dropLog(b)?.to, 'line-8');
  b.busy.clear();
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(b.sent, []);
});

test("the bridge refuses the agent (4401: dongle removed, token rotated): relayed frames and commands' frames still waiting are dropped, counted and logged; a reconnect into the same group keeps them", async () => {
  const fb = await fakeBridge(() => 'line-7');
  const b = agentB(fb.port);
  b.busy.add('can0');
  await until(() => b.uplink.connected, 10_000, 'agent B welcomed');
  relay(fb.ws()!, 1, ['can0', 'can0'], 1);
  const command = { type: 'send_frame', bus: 'can0', id: '0x123', data_hex: '09' };
  fb.ws()!.send(JSON.stringify({ t: 'command', command_id: 'cmd-1', expires_at: new Date(Date.now() + 600_000).toISOString(), command }));
  await until(() => b.tx.length === 3, 5000, 'two relayed frames and a command waiting');
  // Control within the test: a link lost for another reason (same group, same revision after it) keeps them.
  fb.ws()!.terminate();
  await until(() => fb.hellos === 2 && b.uplink.connected, 10_000, 'agent B back');
  assert.equal(b.tx.length, 3, 'a lost link alone drops nothing: the age rule and the expiry decide');
  fb.ws()!.close(4401, 'dongle removed from the bridge');
  await until(() => b.tx.stats.droppedUnauthorized === 3, 5000, 'the three dropped');
  assert.equal(b.tx.length, 0);
  assert.equal(dropLog(b)?.frames, 2);
  b.busy.clear();
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(b.sent, []);
});

test('the token revoked while the link was down (the reconnect refused with HTTP 401 at the upgrade): relayed frames still waiting are dropped, counted and logged', async () => {
  const fb = await fakeBridge(() => 'line-9');
  const b = agentB(fb.port);
  b.busy.add('can0');
  await until(() => b.uplink.connected, 10_000, 'agent B welcomed');
  relay(fb.ws()!, 1, ['can0', 'can0'], 1);
  await until(() => b.tx.length === 2, 5000, 'two frames waiting');
  fb.refuse = true; // the token is revoked meanwhile
  fb.ws()!.terminate();
  await until(() => b.tx.stats.droppedUnauthorized === 2, 5000, 'the two dropped at the refused reconnect');
  assert.equal(b.tx.length, 0);
  assert.equal(dropLog(b)?.frames, 2);
  b.busy.clear();
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(b.sent, []);
});

test("the agent's heartbeat judges the bridge's silence on the monotonic clock: its wall clock stepped forward a minute does not cut a live link", async (t) => {
  const fb = await fakeBridge(() => 'line-3');
  const b = agentB(fb.port); // heartbeat every second: a link silent for 2.5 s is cut
  await until(() => b.uplink.connected, 10_000, 'agent B welcomed');
  const realNow = Date.now;
  t.after(() => (Date.now = realNow));
  Date.now = () => realNow() + 60_000; // NTP steps the gateway's clock
  await new Promise((r) => setTimeout(r, 3500));
  Date.now = realNow;
  assert.equal(b.uplink.stats.disconnects, 0, 'the bridge answered every ping: the link is kept');
  assert.equal(fb.hellos, 1);
});

test('a bridge that acknowledges what the agent never sent — a welcome past any number it handed out, an event_ack or a data_ack beyond what was sent — is refused: the link ends and the agent reconnects, nothing freed', async () => {
  // The first welcome names a stored event at 2^53 - 1 (past it, numbers are not exact: every later event collided).
  const fb = await fakeBridge(
    () => null,
    () => 'rev-1',
    (n) => (n === 1 ? Number.MAX_SAFE_INTEGER : 0),
  );
  const b = agentB(fb.port);
  const rejected = (): number => b.uplink.stats.rejectedMessages;
  await until(() => fb.hellos >= 2 && fb.ws() !== undefined, 10_000, 'reconnected after the refused welcome');
  assert.equal(rejected(), 1);
  assert.match(String(b.logs.find((l) => l.msg === 'rejected a message from the bridge; reconnecting')?.why), /stored event 9007199254740991/);
  // Nothing was ever sent as a data batch, and the agent has sent no event past what it has.
  await new Promise((r) => setTimeout(r, 200));
  fb.ws()!.send(JSON.stringify({ t: 'event_ack', seq: 1_000_000 }));
  await until(() => fb.hellos >= 3, 10_000, 'reconnected after the event_ack');
  assert.equal(rejected(), 2);
  await until(() => fb.ws() !== undefined && b.uplink.stats.connects >= 2, 10_000, 'welcomed again');
  fb.ws()!.send(JSON.stringify({ t: 'data_ack', batch: 5 }));
  await until(() => fb.hellos >= 4, 10_000, 'reconnected after the data_ack');
  assert.equal(rejected(), 3);
});

test('a hello the bridge never welcomes (its decision hung: a stalled database or NATS) is given up after the welcome timeout: the agent connects again and is welcomed', async () => {
  const fb = await fakeBridge(
    () => null,
    () => 'rev-1',
    () => 0,
    (n) => n >= 2,
  );
  const b = agentB(fb.port, 500);
  await until(() => b.uplink.stats.connects >= 1, 15_000, 'welcomed on a later connection');
  assert.equal(fb.hellos, 2, 'the first hello was given up, the second welcomed');
  assert.ok(b.logs.some((l) => typeof l.msg === 'string' && l.msg.startsWith('the bridge did not welcome this agent within 0.5 s of its hello')));
});

test("an event whose outbox read failed (a disk's passing I/O error) goes at the next heartbeat, with no other event or ack to ask again", async () => {
  const fb = await fakeBridge(() => null);
  const b = agentB(fb.port);
  await until(() => b.uplink.connected, 10_000, 'agent B welcomed');
  const stmt = (b.outbox as unknown as { after: { all: (...a: unknown[]) => unknown } }).after;
  const realAll = stmt.all.bind(stmt);
  let failed = 0;
  stmt.all = () => {
    failed++;
    throw Object.assign(new Error('disk I/O error'), { code: 'SQLITE_IOERR_READ' });
  };
  const seq = b.outbox.append({ type: 'presence', data: presenceData('seen', {}) });
  b.uplink.eventQueued();
  assert.ok(failed >= 1, 'the read was tried and failed');
  stmt.all = realAll; // the disk reads again; nothing else happens on this quiet gateway
  await until(() => fb.events.includes(seq), 5000, 'the event reached the bridge (heartbeat: 1 s)');
});
