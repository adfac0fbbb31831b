/**
 * A cluster message handler that throws (a bug) costs its message, never the node's NATS connection
 * (NatsLink.subscribe, cloud-bridge/cluster/nats-connection.ts), against a real nats-server: the messages
 * after it are handled, the throw is counted and logged with the subject. nats.js calls subscription
 * callbacks from its socket reader; unguarded, a throw ends the reader ("reader closed"), nothing more is
 * read, and the connection is dropped at the next ping-out. Work after a reconnect that throws is counted
 * the same way (NatsLink.guarded), and the next reconnect is still acted on.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { connect, type NatsConnection } from 'nats';
import { pino } from 'pino';
import { NatsLink } from '../../cloud-bridge/cluster/nats-connection.js';
import { ensureNatsServer, NatsServer } from '../helpers/nats.js';
import { until } from '../helpers/until.js';

let server: NatsServer;
before(async () => {
  ensureNatsServer();
  server = await NatsServer.start();
});
after(async () => {
  await server?.stop();
});

test('a subscription handler that throws: the later messages are still handled, the throw is counted and logged with its subject', async () => {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write: (c: Buffer, _e, done) => {
      for (const l of c.toString('utf8').split('\n')) if (l !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  const link = await NatsLink.open([server.url], 'h1', pino({ level: 'debug' }, sink));
  let sender: NatsConnection | undefined;
  try {
    const handled: string[] = [];
    link.subscribe('canrelay.test.handler', (m) => {
      const text = new TextDecoder().decode(m.data);
      if (text === 'boom') throw new Error('a bug in a handler');
      handled.push(text);
    });
    await link.nc.flush(); // the subscription is registered at the server
    sender = await connect({ servers: server.url });
    for (const text of ['one', 'boom', 'two', 'three']) sender.publish('canrelay.test.handler', text);
    await sender.flush();
    await until(() => handled.length >= 3, 5000, 'the messages after the throw handled');
    assert.deepEqual(handled, ['one', 'two', 'three']);
    assert.equal(link.stats.failedOps, 1, 'the throw is counted');
    const line = lines.find((l) => l.subject === 'canrelay.test.handler');
    assert.equal(line?.level, 50, 'logged as an error, with the subject');
    // The connection still reads: a PING answered by the server's PONG.
    const pong = await Promise.race([link.nc.flush().then(() => true), new Promise<false>((r) => setTimeout(() => r(false), 3000))]);
    assert.equal(pong, true, 'the connection still reads what the server sends');
    assert.equal(link.connected, true);
  } finally {
    await sender?.close();
    await link.close();
  }
});

test('work after a NATS reconnect that throws: counted and logged, and the next reconnect is still acted on (the status loop went on)', async () => {
  const link = await NatsLink.open([server.url], 'h2', pino({ level: 'silent' }));
  try {
    let calls = 0;
    link.onReconnect(() => {
      calls++;
      throw new Error('a bug in reconnect work');
    });
    for (let round = 1; round <= 2; round++) {
      await server.restart();
      await until(() => calls >= round && link.connected, 30_000, `reconnect ${round} acted on`);
    }
    assert.equal(calls, 2);
    assert.equal(link.stats.reconnects, 2);
    assert.ok(link.stats.failedOps >= 2, 'each throw counted');
  } finally {
    await link.close();
  }
});
