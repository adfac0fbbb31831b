/**
 * The HTTP replies and the server skeleton both daemons share: JSON bodies (never cached), /metrics from a
 * prom-client registry, and one request handler per server whose failures answer 500 (or cut a response
 * already under way) instead of leaving a client hanging or an unhandled rejection behind. Every 503 goes
 * out with Retry-After (RETRY_AFTER_S unless the caller gives its own): sendJson adds it, and the one
 * reply written by hand (a refused uplink upgrade) takes its headers from unavailableHeaders().
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Registry } from 'prom-client';

/**
 * Seconds a client told 503 (a cap reached, a store or a dongle away, a shutdown) is asked to wait before
 * it tries again: one value for every 503 of both daemons.
 */
export const RETRY_AFTER_S = 10;

/** The headers a 503 carries besides its body's: Retry-After (RETRY_AFTER_S) unless `headers` has one. */
export function unavailableHeaders(headers: Record<string, string> = {}): Record<string, string> {
  const has = Object.keys(headers).some((k) => k.toLowerCase() === 'retry-after');
  return has ? headers : { ...headers, 'Retry-After': String(RETRY_AFTER_S) };
}

/** A JSON reply. A 503 always carries Retry-After (unavailableHeaders), whoever chose the status. */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    'Cache-Control': 'no-store',
    ...(status === 503 ? unavailableHeaders(headers) : headers),
  });
  res.end(text);
}

/** 503 with `error` and Retry-After: what cannot be done now but can be asked again (RETRY_AFTER_S). */
export function sendUnavailable(res: ServerResponse, error: string): void {
  sendJson(res, 503, { error }, unavailableHeaders());
}

export async function sendMetrics(res: ServerResponse, registry: Registry): Promise<void> {
  const body = await registry.metrics();
  res.writeHead(200, { 'Content-Type': registry.contentType });
  res.end(body);
}

/** `url`: the request target, already read (a target that is not one got 400 before the handler). */
export type RequestHandler = (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<void>;

/**
 * The request's target as a URL, or undefined when it cannot be read as one (`GET //[`: a broken or hostile
 * client), or when reading it changes its path. The URL parser takes `\` for `/` and resolves `..` and
 * `%2e%2e`: `/x/..\metrics` reads as `/metrics`, while a proxy in front (nginx) matched the raw path
 * against its own rules (`location = /metrics`, loopback only) and passed it on — so a path the proxy
 * saw is the only path served.
 */
export function requestUrl(req: IncomingMessage): URL | undefined {
  const raw = req.url ?? '/';
  let url: URL;
  try {
    url = new URL(raw, 'http://localhost');
  } catch {
    return undefined;
  }
  const q = raw.indexOf('?');
  let path = q < 0 ? raw : raw.slice(0, q);
  // The absolute form (`GET http://gw:8080/metrics`, which HTTP/1.1 servers must take): its path part.
  const absolute = /^https?:\/\/[^/?#]*/i.exec(path);
  if (absolute !== null) path = path.slice(absolute[0].length) || '/';
  return path === url.pathname ? url : undefined;
}

export const BAD_TARGET = 'bad request target: the path cannot be read as a URL, or is not in its plain form (no "..", "\\" or "%2e" segments)';

/**
 * How long an idle kept-alive connection is kept (Node's default: 5 s). Node checks this timer before it
 * reads the sockets when an event-loop turn ends: after a turn longer than the timeout (seen under qemu
 * emulation in a transmit-queue-full burst), a request a client sent on its kept-alive connection
 * meanwhile is still unread, the connection is closed with it, and the kernel answers the unread bytes
 * with a reset — the client gets ECONNRESET for a request the daemon never saw. At 65 s a stall long
 * enough for that is far past the uplink's own dead-link bound (2.5 heartbeats), and above the 60 s idle
 * of common proxies and load balancers, so they close first. headersTimeout stays above it.
 */
export const KEEP_ALIVE_TIMEOUT_MS = 65_000;

/** An HTTP server (HTTPS with `tls`) around one async handler. Throws a plain error for an unusable certificate. */
export function createDaemonServer(handle: RequestHandler, tls?: { cert: string; key: string }): Server {
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const url = requestUrl(req);
    if (url === undefined) return sendJson(res, 400, { error: BAD_TARGET });
    handle(req, res, url).catch((err: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { error: `internal error: ${(err as Error).message}` });
      else res.destroy();
    });
  };
  let server: Server;
  try {
    // An https.Server is an http.Server for everything the daemons do with it (listen, close, requests).
    server = tls ? (createHttpsServer({ cert: tls.cert, key: tls.key }, onRequest) as unknown as Server) : createServer(onRequest);
  } catch (err) {
    throw new Error(`cannot serve HTTPS with --tls-cert/--tls-key: ${(err as Error).message} (are they a PEM certificate and its key?)`);
  }
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
  server.headersTimeout = KEEP_ALIVE_TIMEOUT_MS + 1000;
  return server;
}
