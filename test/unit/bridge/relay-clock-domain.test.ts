/**
 * The bridge's clock domain in clock replies (the "clock_domain" feature, core/uplink/clock.ts): a step of
 * the bridge's wall clock smaller than two of an agent's probe errors together contradicts none of its
 * samples. Without the domain, agent B kept its fix from a sample before the step while the bridge took
 * it as measured after (its last probe), and B's transmit deadline for a relayed frame came later than the
 * age rule's. With it, B restates its samples for the newest reply's domain; and an agent whose reply was
 * still on its way counts against its frames until its next probe (AgentLink's prior domain).
 *
 * The real AgentLink, GroupRelay, DownQueue, ClockEstimator and Downlink; the sockets and the bridge's
 * clocks are stand-ins, every agent's wall clock is exact. (Found by review, session 18.)
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { test } from 'node:test';
import { pino } from 'pino';
import WebSocket from 'ws';
import { AgentLink, type LinkHandler, type Welcome } from '../../../cloud-bridge/agent-link.js';
import type { BridgeConsoles } from '../../../cloud-bridge/consoles.js';
import { GroupRelay } from '../../../cloud-bridge/group-relay.js';
import { BridgeStats } from '../../../cloud-bridge/metrics.js';
import { RelayClock } from '../../../cloud-bridge/relay-clock.js';
import type { StateStore } from '../../../cloud-bridge/state-store.js';
import { Downlink } from '../../../agent/uplink/downlink.js';
import type { TxQueue } from '../../../agent/tx-queue.js';
import { ClockEstimator } from '../../../core/uplink/clock.js';
import { decodeBatch, encodeBatch, KIND_UP, type Batch } from '../../../core/uplink/frame-codec.js';
import { parseBridgeMessage, PROTOCOL_VERSION } from '../../../core/uplink/messages.js';
import { testFrame } from '../../helpers/can-frames.js';

class StandInSocket extends EventEmitter {
  readyState: number = WebSocket.OPEN;
  bufferedAmount = 0;
  readonly texts: string[] = [];
  readonly binaries: Buffer[] = [];
  ping(): void {}
  terminate(): void {
    this.readyState = WebSocket.CLOSED;
  }
  close(): void {
    this.terminate();
  }
  send(data: string | Buffer): void {
    if (typeof data === 'string') this.texts.push(data);
    else this.binaries.push(data);
  }
}

const MAX_AGE = 2000;

/**
 * The bridge's wall clock is stepped forward by `step` ms 40 s before R. B (a cellular gateway: 400-600 ms
 * round trips) probes before and after the step; A (LAN) probes after it — or, with `aReplyInFlight`, also
 * before it, and its UP batch arrives while the reply of its probe after the step is still on its way (A's
 * fix still the pre-step one). `domains`: the probes ask for the bridge's domain. Returns how late B's
 * transmit deadline is against the age rule's (≤ 0: in time).
 */
async function scenario(t: { after: (fn: () => void) => void }, step: number, opts: { domains: boolean; aReplyInFlight?: boolean }): Promise<number> {
  const R = Date.now();
  const W0 = 1_000_000; // the bridge's wall − monotonic before its step
  let trueNow = R - 120_000;
  const clock = new RelayClock(
    () => trueNow + (trueNow >= R - 40_000 ? step : 0),
    () => trueNow - W0,
  );
  const rows = [{ id: 'g', side_a: 'a1', side_b: 'b1', bus_map: '{}', created_at: 't', updated_at: 't', dropped: 0, relayed_total: 0 }];
  const store = { groups: () => rows, saveGroupCounters: () => undefined, saveAllGroupCounters: () => undefined } as unknown as StateStore;
  const consoles = { groupLog: () => undefined, groupState: () => undefined, downFrames: () => undefined } as unknown as BridgeConsoles;
  const relay = new GroupRelay({ backlogMaxFrames: 1000, backlogMaxAgeMs: 60_000, groupStateIntervalMs: 3_600_000, clock }, store, consoles, pino({ level: 'silent' }));
  relay.load();
  t.after(() => relay.stop());
  // What agent-server.ts does with a link's frames.
  const handler = {
    hello: (): Welcome => ({ eventAck: 0, group: 'g', relayEpoch: 'epoch', position: { stream: 'run-00000001', batch: -1 } }),
    welcomed: () => undefined,
    frames: (l: AgentLink, b: Batch) => relay.relay(l.dongle, b.frames, b.clock, l.originClockDomainMs),
    peerBehind: () => false,
    downAck: () => true,
    savePosition: () => undefined,
    closed: () => undefined,
  } as unknown as LinkHandler;
  const timings = { helloTimeoutMs: 600_000, pingMs: 600_000, deadAfterMs: 6_000_000 };
  const wsA = new StandInSocket();
  const wsB = new StandInSocket();
  const linkA = new AgentLink(wsA as unknown as WebSocket, 'a1', handler, new BridgeStats(), pino({ level: 'silent' }), timings, clock);
  const linkB = new AgentLink(wsB as unknown as WebSocket, 'b1', handler, new BridgeStats(), pino({ level: 'silent' }), timings, clock);
  t.after(() => {
    linkA.terminate();
    linkB.terminate();
  });
  /** A probe sent at true time `t0`, answered now (`trueNow`): the reply as the agent reads it. */
  const probe = (ws: StandInSocket, t0: number): { bridgeMs: number; bwm: number | undefined } => {
    ws.emit('message', Buffer.from(JSON.stringify(opts.domains ? { t: 'clock_probe', t0, domain: true } : { t: 'clock_probe', t0 })), false);
    const p = parseBridgeMessage(ws.texts.at(-1)!);
    assert.ok(p.ok && p.msg.t === 'clock_reply', ws.texts.at(-1));
    return { bridgeMs: p.msg.bridge_ms, bwm: p.msg.bridge_wm };
  };
  const measure = (est: ClockEstimator, ws: StandInSocket, t0: number, rtt: number): void => {
    trueNow = t0 + rtt / 2;
    const r = probe(ws, t0);
    assert.ok(est.add(t0, r.bridgeMs, t0 + rtt, 0, r.bwm));
  };

  // B on a cellular link, or (where A is what is looked at) on a LAN, where its error hides nothing.
  const [rtt1, rtt2] = opts.aReplyInFlight ? [4, 6] : [400, 600];
  const estB = new ClockEstimator();
  measure(estB, wsB, R - 60_100, rtt1);
  measure(estB, wsB, R - 20_300, rtt2);
  // And once more (a worse round trip): the probe after the step is no longer B's newest.
  measure(estB, wsB, R - 15_300, rtt2);
  const estA = new ClockEstimator();
  if (opts.aReplyInFlight) {
    measure(estA, wsA, R - 60_001, 2);
    // A's probe after the step: answered, but the reply has not reached A when its batch leaves.
    trueNow = R - 10_000;
    probe(wsA, R - 10_001);
  } else measure(estA, wsA, R - 10_001, 2);

  const hello = (ws: StandInSocket, dongle: string): void =>
    void ws.emit('message', Buffer.from(JSON.stringify({ t: 'hello', protocol: PROTOCOL_VERSION, dongle, run: 'run-00000001', version: 'test', buses: ['can0'] })), false);
  hello(wsA, 'a1');
  hello(wsB, 'b1');
  assert.equal(linkA.ready && linkB.ready, true, [...wsA.texts, ...wsB.texts].join(' | '));
  const welcome = parseBridgeMessage(wsA.texts.find((x) => x.includes('"welcome"'))!);
  assert.ok(welcome.ok && welcome.msg.t === 'welcome' && welcome.msg.features?.includes('clock_domain'), 'the welcome lists "clock_domain"');
  relay.attach('b1', linkB);

  // A receives a frame at R − 400 (true time); its UP batch reaches the bridge at R − 350.
  const receivedAt = R - 400;
  trueNow = R - 350;
  wsA.emit('message', encodeBatch({ kind: KIND_UP, batch: 1, clock: estA.fix!, frames: [{ seq: 1, frame: testFrame({ tsUs: receivedAt * 1000 }) }] }), true);
  await new Promise((r) => setImmediate(r));
  assert.equal(wsB.binaries.length, 1, 'relayed to B');
  // B applies it with its fix, as uplink-client.ts does.
  const deadlines: number[] = [];
  const tx = { stopped: false, enqueueRelayed: (_f: unknown, _d: unknown, notAfterMs: number) => void deadlines.push(notAfterMs) } as unknown as TxQueue;
  assert.equal(new Downlink(tx, MAX_AGE, undefined).apply(decodeBatch(wsB.binaries[0]!), estB.fix), undefined);
  assert.equal(deadlines.length, 1);
  return deadlines[0]! - (receivedAt + MAX_AGE);
}

test("a bridge clock step (500 ms forward) below two of B's probe errors: with the bridge's domain in the replies, B's deadline keeps the age rule", async (t) => {
  assert.ok((await scenario(t, 500, { domains: true })) <= 0);
});

test('the same 500 ms step back: in time too', async (t) => {
  assert.ok((await scenario(t, -500, { domains: true })) <= 0);
});

test("A's batch leaves before the reply of its probe after the step reaches it: its frames count as the older of the two domains", async (t) => {
  for (const step of [500, -500]) {
    const late = await scenario(t, step, { domains: true, aReplyInFlight: true });
    assert.ok(late <= 0, `step ${step}: late by ${late} ms`);
  }
});

test('without the domain (an older agent or bridge) the 500 ms step makes B late: what the feature is for', async (t) => {
  const late = await scenario(t, 500, { domains: false });
  assert.ok(late > 0, `late by ${late} ms`);
  assert.ok((await scenario(t, 0, { domains: false })) <= 0, 'and without a step it is in time');
});

test('a probe that does not ask gets the reply older agents parse (no bridge_wm); one that asks gets the domain', () => {
  const ws = new StandInSocket();
  const link = new AgentLink(ws as unknown as WebSocket, 'x1', {} as LinkHandler, new BridgeStats(), pino({ level: 'silent' }), {
    helloTimeoutMs: 600_000,
    pingMs: 600_000,
    deadAfterMs: 6_000_000,
  });
  ws.emit('message', Buffer.from(JSON.stringify({ t: 'clock_probe', t0: 1 })), false);
  assert.deepEqual(Object.keys(JSON.parse(ws.texts.at(-1)!) as object).sort(), ['bridge_ms', 't', 't0']);
  ws.emit('message', Buffer.from(JSON.stringify({ t: 'clock_probe', t0: 2, domain: true })), false);
  assert.equal(typeof (JSON.parse(ws.texts.at(-1)!) as { bridge_wm?: number }).bridge_wm, 'number');
  link.terminate();
});
