/**
 * A cluster console mirror catching up (cloud-bridge/cluster/console-sync.ts) over a real nats-server,
 * against a scripted numbering node: while its history request is answered, live events are held only up
 * to a bound per mirror (HELD_MAX) and per node (HELD_BYTES_MAX); what was not held is asked for again
 * from the numbering node's history, so the mirror ends complete, without a reset.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, test } from 'node:test';
import { connect, type NatsConnection } from 'nats';
import { pino } from 'pino';
import { MemoryIdStore } from '../../core/console/id-store.js';
import { logData } from '../../core/console/normalize.js';
import { StreamManager } from '../../core/console/stream-manager.js';
import { ConsoleSync } from '../../cloud-bridge/cluster/console-sync.js';
import { encodeWithJson, HISTORY_REPLY_BYTES } from '../../cloud-bridge/cluster/console-wire.js';
import { NatsLink, SUBJECTS } from '../../cloud-bridge/cluster/nats-connection.js';
import { ensureNatsServer, NatsServer } from '../helpers/nats.js';
import { until } from '../helpers/until.js';

/** The scripted numbering node's run: its ids start here. */
const RUN = 7_000_000;
const log = pino({ level: 'silent' });

let nats: NatsServer;
/** What the running test opened (each test has its own nodes: another test's n1 would answer too). */
let closers: (() => Promise<unknown> | void)[] = [];
before(async () => {
  ensureNatsServer();
  nats = await NatsServer.start();
});
afterEach(async () => {
  for (const c of closers.reverse()) await c();
  closers = [];
});
after(async () => {
  await nats?.stop();
});

/**
 * Node "n1" as the mirror sees it: numbers events for its streams, publishes them live, and answers
 * history requests from what it had numbered when the request arrived — the replies to requests made
 * before release() held back until then, as a loaded node or a slow link would.
 */
class NumberingNode {
  readonly events = new Map<string, { id: number; json: string }[]>();
  readonly requests: { stream: string; after: number | null }[] = [];
  /** Replies to requests that arrive while true wait for release(). */
  private held = true;
  private releaseAll!: () => void;
  private readonly released = new Promise<void>((r) => (this.releaseAll = r));

  private constructor(readonly nc: NatsConnection) {
    nc.subscribe(SUBJECTS.consoleHistory('n1'), {
      callback: (_e, msg) => {
        const q = JSON.parse(Buffer.from(msg.data).toString('utf8')) as { stream: string; after: number | null };
        this.requests.push(q);
        const all = this.events.get(q.stream) ?? [];
        // What it keeps after `after`, in pages like the bridge's (console-sync.ts answerHistory).
        const page: [number, 'log', string][] = [];
        let bytes = 0;
        for (const e of all) {
          if (q.after !== null && e.id <= q.after) continue;
          if (bytes >= HISTORY_REPLY_BYTES) break;
          page.push([e.id, 'log', e.json]);
          bytes += e.json.length + 32;
        }
        const latest = all.at(-1)?.id ?? RUN - 1;
        const reply = JSON.stringify({ run: RUN, latest, events: page, more: page.length > 0 && page.at(-1)![0] < latest });
        if (this.held) void this.released.then(() => msg.respond(reply));
        else msg.respond(reply);
      },
    });
  }

  static async start(url: string): Promise<NumberingNode> {
    const nc = await connect({ servers: url });
    closers.push(() => nc.close());
    const n = new NumberingNode(nc);
    await nc.flush();
    return n;
  }

  /** Numbers `count` events of about `size` bytes of JSON each; published live unless `quiet`. */
  number(stream: string, count: number, size: number, quiet = false): void {
    const list = this.events.get(stream) ?? [];
    this.events.set(stream, list);
    for (let i = 0; i < count; i++) {
      const id = RUN + list.length;
      const json = JSON.stringify(logData('info', `event ${id} `.padEnd(size, 'x')));
      list.push({ id, json });
      if (!quiet) this.nc.publish(SUBJECTS.consoleEvents(stream), encodeWithJson({ n: 'n1', r: RUN, i: id, t: 'log' }, json));
    }
  }

  release(): void {
    this.held = false;
    this.releaseAll();
  }
}

/** Node "n2": a ConsoleSync whose streams are all numbered by n1. */
async function mirrorNode(): Promise<{ link: NatsLink; streams: StreamManager; sync: ConsoleSync }> {
  const link = await NatsLink.open([nats.url], 'n2', log);
  const streams = new StreamManager({ historyEvents: 50_000, historySeconds: 3600, historyMemoryBytes: 128 << 20, maxRate: 1000, ids: new MemoryIdStore() });
  const sync = new ConsoleSync({
    nats: link,
    node: 'n2',
    streams,
    ownerOf: () => 'n1',
    holderInStore: async () => 'n1',
    sidesOf: () => undefined,
    streamOf: (name) => streams.get(name),
    isDongle: () => true,
    log,
    // The scripted node holds its history answers while the test numbers live events: on a loaded machine
    // that takes longer than the bridge's 1 s, and a request that timed out ends the holding under test.
    historyTimeoutMs: 60_000,
  });
  closers.push(async () => {
    sync.stop();
    await link.nc.close();
  });
  return { link, streams, sync };
}

/** Every id the stream keeps, in order. */
const idsIn = (streams: StreamManager, name: string): number[] =>
  streams
    .get(name)
    .textAfter(-1, 1 << 30)
    .map((e) => e.id);
const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

test('more live events than one mirror may hold during its catch-up: the rest come from history, no reset', async () => {
  const n1 = await NumberingNode.start(nats.url);
  const { link, streams, sync } = await mirrorNode();
  n1.number('dongles/m1', 100, 1, true); // numbered before anyone read it on n2
  const ready = sync.beforeRead(streams.get('dongles/m1'), undefined);
  assert.ok(ready, 'a reader on n2 waits for the mirror');
  await until(() => n1.requests.length === 1, 30_000, 'n2 asks n1 for the history');
  n1.number('dongles/m1', 12_000, 1); // live while the history reply is on its way: 10,000 may be held (small: the rest fit one history page)
  await n1.nc.flush();
  await link.nc.flush(); // everything n1 published has reached n2's subscriptions
  assert.equal(sync.stats.heldDropped, 2_000, 'events beyond 10,000 were not held');
  n1.release();
  await ready;
  assert.deepEqual(idsIn(streams, 'dongles/m1'), range(RUN, RUN + 12_099), 'every event, in order, no hole');
  assert.deepEqual(
    n1.requests.map((r) => r.after),
    [null, RUN + 10_099],
    'a second round asked for what followed the held events',
  );
  assert.equal(sync.stats.restarts, 1, 'only the mirror starting at the run (no stream_reset after)');
});

test('mirrors of one node together hold at most HELD_BYTES_MAX: each completes from history, no reset', async () => {
  const n1 = await NumberingNode.start(nats.url);
  const { link, streams, sync } = await mirrorNode();
  const names = ['dongles/b1', 'dongles/b2'];
  const readies = names.map((name) => {
    n1.number(name, 10, 1000, true);
    return sync.beforeRead(streams.get(name), undefined);
  });
  await until(() => n1.requests.length === 2, 30_000, 'n2 asks n1 for both histories');
  // 9,000 events of ~1 KB each: under 10,000 per mirror, ~20 MB for both — over the node's 16 MiB.
  for (const name of names) n1.number(name, 9_000, 1000);
  await n1.nc.flush();
  await link.nc.flush();
  // The flushes say NATS delivered them; the mirrors' handlers may still be working through them (a loaded machine).
  await until(() => sync.stats.heldDropped > 0, 60_000, 'the node-wide bound left events unheld');
  n1.release();
  await Promise.all(readies);
  assert.ok(sync.stats.heldDropped < 9_000, 'while one mirror alone could hold all of its own');
  for (const name of names) assert.deepEqual(idsIn(streams, name), range(RUN, RUN + 9_009), `${name}: every event, in order`);
  assert.equal(sync.stats.restarts, 2, 'each mirror started once, no stream_reset after');
});

test('an event a peer sends that is not a valid event of its type is refused and counted, never shown', async () => {
  const n1 = await NumberingNode.start(nats.url);
  const { link, streams, sync } = await mirrorNode();
  n1.number('dongles/v1', 5, 40, true);
  const ready = sync.beforeRead(streams.get('dongles/v1'), undefined);
  n1.release();
  await ready;
  assert.deepEqual(idsIn(streams, 'dongles/v1'), range(RUN, RUN + 4));
  const publish = (t: 'can_frame' | 'stream_reset', json: object): void =>
    n1.nc.publish(SUBJECTS.consoleEvents('dongles/v1'), encodeWithJson({ n: 'n1', r: RUN, i: RUN + 5, t }, JSON.stringify(json)));
  // One JSON object on one line, but markup where the id goes: a page would have drawn it.
  publish('can_frame', { ts: '2026-11-30T00:00:00.000000Z', direction: 'rx', bus: 'can0', id: '<img src=x onerror=alert(1)>', is_extended: false, dlc: 0, data_hex: '' });
  // stream_reset is made per reader, never numbered.
  publish('stream_reset', { reason: 'too_old', requested: 1, oldest_available: null, latest: 1 });
  // Forwarded (an event this node would number): a log event without its level.
  link.nc.publish(SUBJECTS.consoleIn('n2'), encodeWithJson({ s: 'dongles/v1', t: 'log', h: 0 }, JSON.stringify({ ts: '2026-11-30T00:00:00.000000Z', message: 'x' })));
  await n1.nc.flush();
  await link.nc.flush();
  await until(() => link.stats.badMessages === 3, 5_000, 'three refused');
  assert.equal(sync.stats.forwardedIn, 0, 'the forwarded one was not taken');
  n1.number('dongles/v1', 1, 40); // the real RUN + 5
  await until(() => idsIn(streams, 'dongles/v1').length === 6, 5_000, 'the next valid event adopted');
  const kept = streams.get('dongles/v1').textAfter(RUN + 4, 1 << 20);
  assert.deepEqual(
    kept.map((e) => [e.id, e.type]),
    [[RUN + 5, 'log']],
    'only the valid event is in the stream',
  );
});
