/** core/http/backpressure.ts: a large body written with backpressure; a client that takes nothing is cut. */
import assert from 'node:assert/strict';
import { createServer, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { test } from 'node:test';
import { writeWithBackpressure } from '../../../core/http/backpressure.js';

/** 64 MiB: more than loopback socket buffers hold, so a client that reads nothing stalls the writer. */
const CHUNKS = 1024;

test('a download whose client reads nothing is cut after the stall time; a reading client gets every byte', async (t) => {
  let written = 0;
  let outcome: 'done' | 'cut' | undefined;
  const server = createServer((_req, res: ServerResponse) => {
    void (async () => {
      const chunk = Buffer.alloc(64 * 1024, 0x41);
      res.writeHead(200, { 'Content-Length': 64 * 1024 * CHUNKS });
      for (let i = 0; i < CHUNKS && !res.destroyed; i++) {
        await writeWithBackpressure(res, chunk, 300);
        written++;
      }
      outcome = res.destroyed ? 'cut' : 'done';
      if (!res.destroyed) res.end();
    })();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.after(() => server.close());
  const port = (server.address() as { port: number }).port;

  // A client that sends its request and never reads: the socket fills, no drain comes.
  const stalled = connect(port, '127.0.0.1');
  stalled.on('error', () => undefined);
  stalled.pause();
  stalled.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  for (const deadline = Date.now() + 10_000; outcome === undefined; await new Promise((r) => setTimeout(r, 20))) assert.ok(Date.now() < deadline, 'the download ended');
  assert.equal(outcome, 'cut');
  assert.ok(written < CHUNKS, `cut before the end (${written} of ${CHUNKS} chunks)`);
  stalled.destroy();

  // A client that reads gets it all.
  outcome = undefined;
  const res = await fetch(`http://127.0.0.1:${port}/`);
  const body = await res.arrayBuffer();
  assert.equal(body.byteLength, 64 * 1024 * CHUNKS);
  assert.equal(outcome, 'done');
});
