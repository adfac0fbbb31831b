/**
 * The relay's clocks (cloud-bridge/relay-clock.ts): the wall clock's domain follows a step but not the
 * millisecond jitter of Date.now(); GroupRelay ages frames on the monotonic clock from the domain their
 * origin measured in, and restates their fix for the domain their receiver measured in.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import type { BridgeConsoles } from '../../../cloud-bridge/consoles.js';
import { GroupRelay, type RelayLink } from '../../../cloud-bridge/group-relay.js';
import { RELAY_CLOCK, RelayClock, RESTATE_ERROR_MS, restated } from '../../../cloud-bridge/relay-clock.js';
import type { StateStore } from '../../../cloud-bridge/state-store.js';
import { decodeBatch, type Batch } from '../../../core/uplink/frame-codec.js';
import { testFrame } from '../../helpers/can-frames.js';

test('relay clock: the domain (wall − monotonic) ignores Date.now()’s millisecond, follows a step', () => {
  let wall = 1_800_000_000_000;
  let mono = 1000.25;
  const c = new RelayClock(
    () => wall,
    () => mono,
  );
  const d0 = c.now().wallMinusMonoMs;
  assert.equal(d0, wall - mono);
  // Time passes; the whole-millisecond wall clock reads up to 1 ms behind the monotonic one's fraction.
  mono += 5.9;
  wall += 5;
  assert.equal(c.now().wallMinusMonoMs, d0, 'jitter under a millisecond: the same domain');
  mono += 100;
  wall += 100;
  assert.equal(c.now().wallMinusMonoMs, d0);
  wall -= 10_000; // stepped back
  const t = c.now();
  assert.equal(t.wallMinusMonoMs, d0 - 10_000 - 0.9);
  assert.equal(t.wallMs, wall);
  assert.equal(RELAY_CLOCK.now().monoMs > 0, true);
  // Restated: the same object when the domains agree; else moved and its error grown.
  const fix = { offsetMs: 5, errorMs: 2 };
  assert.equal(restated(fix, 7, 7), fix);
  assert.deepEqual(restated(fix, 7, 7 - 10_000), { offsetMs: 5 - 10_000, errorMs: 2 + RESTATE_ERROR_MS });
});

class FakeLink implements RelayLink {
  ready = true;
  readonly batches: Batch[] = [];
  constructor(readonly clockDomainMs?: number) {}
  canSend(): boolean {
    return true;
  }
  sendBinary(buf: Buffer): void {
    this.batches.push(decodeBatch(buf));
  }
  notifyGroup(): void {}
}

test('group relay: an origin that measured before the bridge’s clock was stepped forward is not aged by the step; its receiver gets the fix for the clock it measured', async () => {
  let wall = 1_800_000_000_000;
  let mono = 1000;
  const clock = new RelayClock(
    () => wall,
    () => mono,
  );
  const w0 = clock.now().wallMinusMonoMs;
  const rows = [{ id: 'g', side_a: 'a1', side_b: 'b1', bus_map: '{}', created_at: 't', updated_at: 't', dropped: 0, relayed_total: 0 }];
  const store = { groups: () => rows, saveGroupCounters: () => undefined, saveAllGroupCounters: () => undefined } as unknown as StateStore;
  const consoles = { groupLog: () => undefined, groupState: () => undefined, downFrames: () => undefined } as unknown as BridgeConsoles;
  const relay = new GroupRelay({ backlogMaxFrames: 1000, backlogMaxAgeMs: 2000, groupStateIntervalMs: 3_600_000, clock }, store, consoles, pino({ level: 'silent' }));
  relay.load();
  // The bridge's wall clock jumps 10 s ahead. A last probed before (domain w0): its fix still says the old
  // wall clock, and its frame, received 100 ms ago, converts to 100 ms before now on that clock.
  wall += 10_000 + 50;
  mono += 50;
  const w1 = clock.now().wallMinusMonoMs;
  const b = new FakeLink(w1); // B probed after the step
  relay.attach('b1', b);
  const fix = { offsetMs: 0, errorMs: 2 };
  relay.relay('a1', [{ seq: 1, frame: testFrame({ tsUs: (mono + w0 - 100) * 1000 }) }], fix, w0);
  await new Promise((r) => setImmediate(r));
  assert.equal(b.batches.length, 1, 'not dropped as 10 s old');
  assert.deepEqual(b.batches[0]!.clock, restated(fix, w0, w1), 'the fix on the clock B measured');
  assert.equal(b.batches[0]!.clock!.offsetMs, 10_000);
  const m = relay.metrics()[0]!.sides.find((s) => s.side === 'b')!;
  assert.equal(m.dropped.too_old, 0);
  relay.stop();
});
