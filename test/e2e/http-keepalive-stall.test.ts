/**
 * The daemons' HTTP skeleton (core/http/replies.ts createDaemonServer, both /metrics servers) after a long
 * event-loop turn: a client (its own process, Node's fetch) sends its next request on a kept-alive
 * connection while the server's loop is stalled for longer than Node's default keep-alive timeout (5 s).
 * Node runs its timers before it reads the sockets, so with the default the connection is closed with the
 * request unread and the kernel resets it: the client gets ECONNRESET (the reset seen on the agent's
 * /metrics in the qemu guest's queue-full burst). The negative control is a plain node:http server with
 * the defaults under the same stall; the daemon's server must answer.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { test } from 'node:test';
import { createDaemonServer } from '../../core/http/replies.js';

/** Longer than Node's default keep-alive (5 s, +1 s of buffer in newer Node versions). */
const STALL_MS = 8000;

const CLIENT = `
const base = process.argv[1];
(async () => {
  await (await fetch(base + '/first')).text();
  await new Promise((r) => setTimeout(r, 1000));
  const sentAt = Date.now();
  try {
    await (await fetch(base + '/second')).text();
    process.send({ ok: true, sentAt });
  } catch (err) {
    process.send({ ok: false, sentAt, error: err.message + ': ' + (err.cause && (err.cause.code || err.cause.message)) });
  }
})();
`;

interface Outcome {
  ok: boolean;
  error?: string;
  /** The second request was sent while the server's loop was stalled (the fault really happened). */
  duringStall: boolean;
}

/** One run: after answering /first the server stalls its loop (a synchronous turn, not a timer); the client asks again 1 s later. */
async function stalledRequest(make: (onRequest: (path: string) => void) => Server): Promise<Outcome> {
  let stall = { from: 0, to: 0 };
  const server = make((path) => {
    if (path !== '/first') return;
    // After the response went out, in the check phase: the next turn starts with the timers.
    setTimeout(
      () =>
        setImmediate(() => {
          const from = Date.now();
          while (Date.now() < from + STALL_MS);
          stall = { from, to: Date.now() };
        }),
      200,
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  const child = spawn(process.execPath, ['-e', CLIENT, base], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const msg = await new Promise<{ ok: boolean; sentAt: number; error?: string }>((resolve, reject) => {
    child.once('message', (m) => resolve(m as { ok: boolean; sentAt: number; error?: string }));
    child.once('exit', (code) => reject(new Error(`the client exited (${code}) without a word`)));
  });
  child.kill();
  server.close();
  server.closeAllConnections();
  return { ok: msg.ok, ...(msg.error ? { error: msg.error } : {}), duringStall: stall.from < msg.sentAt && msg.sentAt < stall.to };
}

/** Runs until the request really went out during the stall (a loaded machine may delay the client); bounded. */
async function underStall(make: (onRequest: (path: string) => void) => Server): Promise<Outcome> {
  for (let attempt = 1; attempt <= 3; attempt++) {
    const o = await stalledRequest(make);
    if (o.duringStall) return o;
  }
  throw new Error('in 3 attempts the client never sent its request while the server was stalled: the fault under test did not happen');
}

const handler = (onRequest: (path: string) => void) => (req: { url?: string }, res: { end(s: string): void }) => {
  res.end('x'.repeat(1000));
  onRequest(req.url ?? '/');
};

test("negative control: a node:http server with Node's defaults resets a kept-alive request sent during an 8 s stall", { timeout: 120_000 }, async () => {
  const o = await underStall((on) => createServer(handler(on)));
  assert.equal(o.ok, false, 'the default server answered: the stall did not reproduce the reset, so the next test proves nothing');
  assert.match(String(o.error), /ECONNRESET|other side closed|socket/i);
});

test("the daemons' HTTP server answers a kept-alive request sent during an 8 s stall (no reset)", { timeout: 120_000 }, async () => {
  const o = await underStall((on) => createDaemonServer(async (req, res) => handler(on)(req, res)));
  assert.equal(o.ok, true, `the request was reset: ${o.error}`);
});
