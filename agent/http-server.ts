/**
 * The agent's local HTTP(S) surface: the console stream, health, metrics, a small info document, and the
 * technicians' web page. Reads are guarded by LocalAuth only with --console-auth; writes always go
 * through LocalAuth (agent/local-auth.ts). `/healthz` and the page itself stay open (the page asks
 * for the token).
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';
import type { ConsoleStream } from '../core/console/console-stream.js';
import type { ClientLimit } from '../core/http/client-limit.js';
import { serveConsole } from '../core/http/console-route.js';
import { createDaemonServer, sendJson, sendMetrics, sendUnavailable } from '../core/http/replies.js';
import type { SseCloseReason, SseWriter } from '../core/http/sse-writer.js';
import type { CorsPolicy } from '../core/http/cors.js';
import type { StaticFiles } from '../core/http/static-files.js';
import type { LocalAuth } from './local-auth.js';
import { handleSignalsRoute, type SignalsRouteDeps } from './signals/signals-routes.js';
import { handleRecordings, type RecordingRouteDeps } from './recording/recording-routes.js';

export interface AgentHttpDeps {
  dongleId: string;
  console: ConsoleStream;
  metrics: Registry;
  /** `full`: with what /api/v1/info tells (buses, bus health, counts); false: only whether it is ok. */
  health: (full: boolean) => Record<string, unknown>;
  info: () => Record<string, unknown>;
  web?: StaticFiles;
  sse: { keepAliveMs: number; retryMs: number; maxPendingBytes: number };
  onClientClosed: (reason: SseCloseReason) => void;
  /** --console-max-clients and its per-address cap. */
  consoleClients: ClientLimit;
  auth: LocalAuth;
  /** The recordings API (agent/recording/recording-routes.ts). */
  recordings?: RecordingRouteDeps;
  /** PEM certificate and key: serve HTTPS. */
  tls?: { cert: string; key: string };
  signals: Omit<SignalsRouteDeps, 'auth'>;
  /** --cors-origin: pages of these origins may use the API from a browser. */
  cors: CorsPolicy;
}

export function createAgentServer(deps: AgentHttpDeps): { server: Server; writers: Set<SseWriter> } {
  const writers = new Set<SseWriter>();
  const consolePath = `/api/v1/streams/dongles/${deps.dongleId}/console`;

  const handle = async (req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> => {
    // A name another site made resolve here is refused everywhere but the probes (health checks and
    // Prometheus address gateways by whatever name they have; neither shows the bus).
    if (url.pathname !== '/healthz' && url.pathname !== '/metrics') {
      const foreign = deps.auth.foreignHost(req);
      if (foreign !== undefined) return sendJson(res, 403, { error: foreign });
    }
    if (deps.cors.handle(req, res)) return;
    if (await handleSignalsRoute(req, res, url.pathname, { ...deps.signals, auth: deps.auth })) return;
    if (deps.recordings && (await handleRecordings(deps.recordings, req, res, url.pathname))) return;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      sendJson(res, 405, { error: `${req.method} is not supported here; this path takes no writes` }, { Allow: 'GET, HEAD' });
      return;
    }
    const path = url.pathname;
    if (path === consolePath) {
      // HEAD would get its headers held by Node until a body write, which a stream never makes for HEAD.
      if (req.method !== 'GET') return sendJson(res, 405, { error: `the console is an event stream: ${req.method} is not supported, use GET` }, { Allow: 'GET' });
      if (!deps.auth.guard(req, res, 'read')) return;
      const address = req.socket.remoteAddress ?? '';
      const refusal = deps.consoleClients.tryAdd(address);
      if (refusal !== undefined) return sendUnavailable(res, refusal);
      // Declared first: onClose may run before serveConsole returns (a start that failed).
      let w: SseWriter | undefined;
      w = serveConsole(req, res, url, deps.console, {
        ...deps.sse,
        onClose: (reason) => {
          deps.consoleClients.release(address);
          if (w) writers.delete(w);
          deps.onClientClosed(reason);
        },
      });
      if (w) writers.add(w);
      else deps.consoleClients.release(address); // refused (a bad Last-Event-ID): its place is free again
      return;
    }
    // Under --console-auth the dongle id is told only to a reader (as /healthz does).
    const told = deps.auth.mayRead(req);
    if (path.startsWith('/api/v1/streams/dongles/') && path.endsWith('/console')) {
      sendJson(res, 404, { error: told ? `no such dongle here: this agent is "${deps.dongleId}" (console at ${consolePath})` : 'no such dongle here' });
      return;
    }
    // Open to probes without a token, but under --console-auth it tells no more than "ok" without one.
    if (path === '/healthz') return sendJson(res, 200, deps.health(told));
    if (path === '/api/v1/info') {
      if (!deps.auth.guard(req, res, 'read')) return;
      return sendJson(res, 200, { ...deps.info(), local_auth: { writes: deps.auth.enabled, reads: deps.auth.readsGuarded } });
    }
    if (path === '/metrics') {
      if (!deps.auth.guard(req, res, 'read')) return;
      return sendMetrics(res, deps.metrics);
    }
    if (deps.web && (await deps.web.serve(req, res, path === '/' ? '/index.html' : path))) return;
    sendJson(res, 404, told ? { error: `no route for ${path}`, console: consolePath } : { error: `no route for ${path}` });
  };

  return { server: createDaemonServer(handle, deps.tls), writers };
}
