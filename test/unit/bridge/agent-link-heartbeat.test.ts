/**
 * cloud-bridge/agent-link.ts's heartbeat judges silence on the monotonic clock: a step of the bridge's wall
 * clock neither cuts a live link (stepped forward: every agent of the fleet reconnecting at once) nor keeps
 * a dead one (stepped back). The link's socket is a stand-in that answers pings while told to.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { test } from 'node:test';
import { pino } from 'pino';
import WebSocket from 'ws';
import { AgentLink, type LinkHandler } from '../../../cloud-bridge/agent-link.js';
import { BridgeStats } from '../../../cloud-bridge/metrics.js';

class StandInSocket extends EventEmitter {
  readyState: number = WebSocket.OPEN;
  answering = true;
  terminated = false;
  ping(): void {
    if (this.answering) setImmediate(() => this.emit('pong'));
  }
  terminate(): void {
    if (this.terminated) return;
    this.terminated = true;
    this.readyState = WebSocket.CLOSED;
    setImmediate(() => this.emit('close', 1006, Buffer.alloc(0)));
  }
  close(): void {
    this.terminate();
  }
  send(): void {}
}

test('a live link survives the wall clock stepped forward by a minute; a silent one is cut after 2.5 heartbeats whatever the wall clock says', async (t) => {
  const realNow = Date.now;
  t.after(() => (Date.now = realNow));
  const ws = new StandInSocket();
  const link = new AgentLink(
    ws as unknown as WebSocket,
    'gw',
    { closed: () => undefined, savePosition: () => undefined } as unknown as LinkHandler,
    new BridgeStats(),
    pino({ level: 'silent' }),
    {
      helloTimeoutMs: 60_000,
      pingMs: 40,
      deadAfterMs: 100,
    },
  );
  t.after(() => link.terminate());
  await new Promise((r) => setTimeout(r, 150));
  Date.now = () => realNow() + 60_000; // NTP steps the bridge's clock
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(ws.terminated, false, 'answering its pings: kept');
  Date.now = () => realNow() - 60_000; // and back past where it was
  ws.answering = false; // the agent's link went dead (a half-open TCP connection)
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(ws.terminated, true, 'silent for 2.5 heartbeats: cut');
});
