/**
 * AgentServer (cloud-bridge/agent-server.ts) keeps each dongle's UP position (the last batch taken of its
 * agent run) and writes the positions together once a second. Here without sockets: fake links and a fake
 * store, the LinkHandler calls an AgentLink makes.
 */
import assert from 'node:assert/strict';
import { mock, test } from 'node:test';
import { pino } from 'pino';
import type { AgentLink, HelloMessage, Welcome } from '../../../cloud-bridge/agent-link.js';
import { AgentServer } from '../../../cloud-bridge/agent-server.js';
import type { Auth } from '../../../cloud-bridge/auth.js';
import type { CommandCenter } from '../../../cloud-bridge/commands.js';
import type { BridgeConsoles } from '../../../cloud-bridge/consoles.js';
import type { GroupRelay } from '../../../cloud-bridge/group-relay.js';
import { BridgeStats } from '../../../cloud-bridge/metrics.js';
import { SeqTracker } from '../../../cloud-bridge/seq-tracker.js';
import type { StateStore } from '../../../cloud-bridge/state-store.js';
import { PROTOCOL_VERSION } from '../../../core/uplink/messages.js';

test('agent server: a replaced link closing late does not overwrite the new run’s unsaved UP position with its own', (t) => {
  mock.timers.enable({ apis: ['setInterval'] });
  t.after(() => mock.timers.reset());
  const writes: { dongle: string; stream: string; batch: number }[][] = [];
  const store = {
    dongle: () => ({ up_run: null, up_batch: null, outbox_id: null, event_seq: 0 }),
    setUpPositions: (rows: { dongle: string; stream: string; batch: number }[]) => writes.push(rows.map((r) => ({ ...r }))),
    setLastSeen: () => undefined,
  } as unknown as StateStore;
  const server = new AgentServer({
    links: new Map(),
    store,
    auth: {} as Auth,
    consoles: { dongleEvent: () => undefined } as unknown as BridgeConsoles,
    relay: { groupOf: () => undefined, epoch: 'epoch-1', detach: () => undefined } as unknown as GroupRelay,
    commands: {} as CommandCenter,
    seq: new SeqTracker(),
    stats: new BridgeStats(),
    log: pino({ level: 'silent' }),
    timings: { helloTimeoutMs: 5000, pingMs: 1000, deadAfterMs: 2500 },
  });
  const link = (silentMs: number) => ({ dongle: 'gw', silentMs, hello: undefined, close: () => undefined, terminate: () => undefined }) as unknown as AgentLink;
  const hello = (run: string): HelloMessage => ({ t: 'hello', protocol: PROTOCOL_VERSION, dongle: 'gw', run, version: 'test', buses: ['can0'] });

  // Run 1 takes batches up to 5; its position is saved.
  const old = link(Infinity); // silent for ever: a newcomer takes over
  const w1 = server.hello(old, hello('run-0000001')) as Welcome;
  w1.position.batch = 5;
  server.savePosition(old, w1.position);
  mock.timers.tick(1000);
  assert.deepEqual(writes.at(-1), [{ dongle: 'gw', stream: 'run-0000001', batch: 5 }]);

  // The agent restarted (run 2) while its old connection hung: run 2 takes over, takes batch 3 and asks for
  // its position to be saved; then the old link's close comes, saving run 1's position as it ended.
  const fresh = link(0);
  const w2 = server.hello(fresh, hello('run-0000002')) as Welcome;
  assert.equal(w2.position.stream, 'run-0000002');
  w2.position.batch = 3;
  server.savePosition(fresh, w2.position);
  server.savePosition(old, w1.position); // AgentLink.onClose of the replaced link
  server.closed(old, 4410, 'replaced');
  mock.timers.tick(1000);
  assert.deepEqual(writes.at(-1), [{ dongle: 'gw', stream: 'run-0000002', batch: 3 }], "the current run's position is what is written");

  // The same run reconnecting shares its position: a late save of its old link is the same position.
  Object.assign(fresh, { silentMs: Infinity }); // its link went silent: taken over by the same run
  const again = link(0);
  const w3 = server.hello(again, hello('run-0000002')) as Welcome;
  assert.equal(w3.position, w2.position, 'one position per run');
});
