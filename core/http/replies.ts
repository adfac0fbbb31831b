/**
 * The HTTP replies and the server skeleton both daemons share: JSON bodies (never cached), /metrics from a
 * prom-client registry, and one request handler per server whose failures answer 500 (or cut a response
 * already under way) instead of leaving a client hanging or an unhandled rejection behind.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Registry } from 'prom-client';

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    'Cache-Control': 'no-store',
    ...headers,
  });
  res.end(text);
}

export async function sendMetrics(res: ServerResponse, registry: Registry): Promise<void> {
  const body = await registry.metrics();
  res.writeHead(200, { 'Content-Type': registry.contentType });
  res.end(body);
}

export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => Promise<void>;

/** An HTTP server (HTTPS with `tls`) around one async handler. Throws a plain error for an unusable certificate. */
export function createDaemonServer(handle: RequestHandler, tls?: { cert: string; key: string }): Server {
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { error: `internal error: ${(err as Error).message}` });
      else res.destroy();
    });
  };
  if (!tls) return createServer(onRequest);
  try {
    // An https.Server is an http.Server for everything the daemons do with it (listen, close, requests).
    return createHttpsServer({ cert: tls.cert, key: tls.key }, onRequest) as unknown as Server;
  } catch (err) {
    throw new Error(`cannot serve HTTPS with --tls-cert/--tls-key: ${(err as Error).message} (are they a PEM certificate and its key?)`);
  }
}
