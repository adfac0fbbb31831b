/**
 * make bench-fanout's Node peer: a minimal better-sse server (npm better-sse, installed for the bench only
 * into build/bench-deps, never a dependency of the package). GET /sub subscribes an EventSource client to
 * one channel; POST /pub broadcasts the request body (already JSON text) to it as a `can_frame` event.
 * The serializer passes the text through, so better-sse does no JSON work the other servers do not.
 * Plain JavaScript on purpose: it runs from the source tree and is not compiled with the project.
 */
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';

const require = createRequire(join(resolve(process.env.BETTER_SSE_PREFIX), 'node_modules', 'x.js'));
const { createChannel, createSession } = require('better-sse');

const channel = createChannel();
let n = 0;
const server = createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/sub') {
    createSession(req, res, { serializer: (d) => d, keepAlive: 15_000 }).then(
      (s) => channel.register(s),
      () => res.destroy(),
    );
    return;
  }
  if (req.method === 'POST' && req.url === '/pub') {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      channel.broadcast(body, 'can_frame', { eventId: String(++n) });
      res.writeHead(204).end();
    });
    return;
  }
  res.writeHead(404).end();
});
server.listen(0, '127.0.0.1', () => process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n'));
process.on('SIGTERM', () => process.exit(0));
