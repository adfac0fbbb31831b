/**
 * The bridge's HTTP surface, routed in one place:
 *   GET  /healthz, /metrics                                  open (no dongle data beyond ids in labels)
 *   GET  /api/v1/streams/dongles/<id>/console                SSE, admin or viewer token
 *   GET  /api/v1/streams/groups/<gid>/console                SSE, admin or viewer token
 *   GET  /api/v1/streams/fleet                               SSE, admin or viewer token: snapshot, then changes (fleet-feed.ts)
 *   *    /api/v1/…                                           admin API (admin-api.ts)
 *   GET  /console/dongles/<id>, /console/groups/<gid>        the web console page, when dist/web exists
 *   GET  /, /console/                                        the fleet page (the same web app), when dist/web exists
 *   WebSocket upgrade on UPLINK_PATH                         agents (agent-server.ts); another Upgrade (h2c) is
 *                                                            served as a plain request (core/http/upgrade-requests.ts)
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';
import type { ConsoleStream } from '../core/console/console-stream.js';
import { resumeRequestFrom, serveConsole } from '../core/http/console-route.js';
import { createDaemonServer, sendJson, sendMetrics, sendUnavailable } from '../core/http/replies.js';
import type { CorsPolicy } from '../core/http/cors.js';
import type { SseOptions, SseWriter } from '../core/http/sse-writer.js';
import type { StaticFiles } from '../core/http/static-files.js';
import type { AdminApi } from './admin-api.js';
import { answerExpectContinue } from '../core/http/json-body.js';
import { ID_RULE } from '../core/names.js';
import type { AgentServer } from './agent-server.js';
import { bearerToken } from '../core/http/bearer-token.js';
import type { Auth } from './auth.js';
import type { BridgeConsoles } from './consoles.js';
import type { ClientLimit } from '../core/http/client-limit.js';
import type { GroupRelay } from './group-relay.js';
import { handleDongleRecordings, type RecordingProxyDeps } from './recording-proxy.js';
import type { DownloadTickets } from '../core/http/download-tickets.js';
import { listenForUpgrades } from '../core/http/upgrade-requests.js';
import type { BridgeStats } from './metrics.js';
import type { StateStore } from './state-store.js';
import type { ViewerSessions } from './viewer-sessions.js';

export interface BridgeHttpDeps {
  auth: Auth;
  admin: AdminApi;
  agents: AgentServer;
  consoles: BridgeConsoles;
  store: StateStore;
  relay: GroupRelay;
  stats: BridgeStats;
  metrics: Registry;
  health: () => Record<string, unknown>;
  sse: Omit<SseOptions, 'onClose'>;
  /**
   * The web console page (another issue builds it into dist/web/). When present, its index.html is served
   * for /console/dongles/<id> and /console/groups/<gid>, and its other files at their own paths.
   */
  web?: StaticFiles;
  /** Open console streams of viewer tokens (closed when the token is revoked or expires). */
  viewers: ViewerSessions;
  /** --cors-origin: pages of these origins may use the API from a browser. */
  cors: CorsPolicy;
  /** --fleet-max-clients: concurrent fleet stream clients. */
  fleetClients: ClientLimit;
  consoleClients: ClientLimit;
  /** Recording download tickets (recording-proxy.ts). */
  tickets: DownloadTickets;
  /** Cluster mode: recordings of a dongle whose link another node holds (recording-proxy.ts). */
  elsewhere?: RecordingProxyDeps['elsewhere'];
}

const CONSOLE_PATH = /^\/api\/v1\/streams\/(dongles|groups)\/([^/]+)\/console$/;
const PAGE_PATH = /^\/console\/(dongles|groups)\/[^/]+\/?$/;
const FLEET_PAGE_PATHS = new Set(['/', '/console', '/console/']);
const FLEET_STREAM_PATH = '/api/v1/streams/fleet';

export function createBridgeServer(deps: BridgeHttpDeps): { server: Server; writers: Set<SseWriter> } {
  const writers = new Set<SseWriter>();

  /** `kind`/`id` name a dongle's or group's console; kind "fleet" is the fleet stream. */
  const serveStream = (req: IncomingMessage, res: ServerResponse, url: URL, kind: string, id: string): void => {
    if (req.method !== 'GET') return sendJson(res, 405, { error: `${req.method} is not supported on a console; use GET` }, { Allow: 'GET' });
    const caller = deps.auth.identify(bearerToken(req, url));
    if (caller === undefined)
      return sendJson(res, 401, { error: 'missing or wrong token: send Authorization: Bearer <viewer or admin token>, or ?access_token=' }, { 'WWW-Authenticate': 'Bearer' });
    if (caller.kind === 'agent') return sendJson(res, 403, { error: 'agent tokens cannot read consoles; use a viewer token (POST /api/v1/viewer-tokens)' });
    let stream: ConsoleStream;
    const fleet = kind === 'fleet';
    if (fleet) {
      stream = deps.consoles.fleet.stream;
    } else if (!ID_RULE.test(id)) return sendJson(res, 400, { error: `bad ${kind === 'dongles' ? 'dongle' : 'group'} id ${JSON.stringify(id.slice(0, 80))}` });
    else if (kind === 'dongles') {
      if (!deps.store.dongle(id)) return sendJson(res, 404, { error: `dongle "${id}" is not registered on this bridge` });
      stream = deps.consoles.dongleStream(id);
    } else {
      if (!deps.relay.has(id)) return sendJson(res, 404, { error: `no group "${id}" on this bridge` });
      stream = deps.consoles.groupStream(id);
    }
    const start = (): void => {
      // Every client counts against the console cap; the fleet's (a snapshot each) against their own too.
      const taken: ClientLimit[] = [];
      for (const limit of fleet ? [deps.consoleClients, deps.fleetClients] : [deps.consoleClients]) {
        const refusal = limit.tryAdd();
        if (refusal !== undefined) {
          for (const t of taken) t.release();
          return sendUnavailable(res, refusal);
        }
        taken.push(limit);
      }
      const release = (): void => {
        for (const t of taken) t.release();
      };
      // Declared first: onClose may run before serveConsole returns (a snapshot that could not be built).
      let w: SseWriter | undefined;
      w = serveConsole(req, res, url, stream, {
        ...deps.sse,
        ...(fleet ? { snapshot: () => deps.consoles.fleet.snapshot(deps.relay.states()) } : {}),
        onClose: (reason) => {
          release();
          if (w) {
            writers.delete(w);
            deps.viewers.remove(w);
          }
          if (reason === 'slow_client') deps.stats.consoleClientsCut++;
        },
      });
      if (w) writers.add(w);
      else release(); // refused (a bad Last-Event-ID): its places are free again
      // A viewer's stream lasts only as long as its token: revoked or expired, the stream is closed.
      if (w && caller.kind === 'viewer') deps.viewers.add(w, caller.tokenId, caller.expiresAt);
    };
    // Cluster mode: another node may number this stream; its history reaches this node's mirror first.
    const resume = resumeRequestFrom(req, url);
    const ready = deps.consoles.beforeRead?.(stream, 'lastEventId' in resume ? resume.lastEventId : undefined);
    if (ready === undefined) return start();
    // The wait can take seconds (a lease lookup, history pages): what was checked before it is checked again.
    const startIfOpen = (): void => {
      if (res.destroyed || res.headersSent) return;
      const now = deps.auth.identify(bearerToken(req, url));
      if (now === undefined || now.kind === 'agent')
        return sendJson(res, 401, { error: 'the token was revoked or expired while the console was being prepared' }, { 'WWW-Authenticate': 'Bearer' });
      if (stream.isClosed) return sendJson(res, 404, { error: `${kind === 'dongles' ? 'dongle' : 'group'} "${id}" was deleted while the console was being prepared` });
      start();
    };
    void ready.then(startIfOpen, startIfOpen);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> => {
    if (deps.cors.handle(req, res)) return;
    const path = url.pathname;
    const c = CONSOLE_PATH.exec(path);
    if (c) return serveStream(req, res, url, c[1]!, c[2]!);
    if (path === FLEET_STREAM_PATH) return serveStream(req, res, url, 'fleet', '');
    if (await handleDongleRecordings(deps, req, res, url)) return;
    if (path.startsWith('/api/')) return deps.admin.handle(req, res, path, deps.auth.identify(bearerToken(req)));

    const readOnly = req.method === 'GET' || req.method === 'HEAD';
    if (path === '/healthz' || path === '/metrics') {
      if (!readOnly) return sendJson(res, 405, { error: `${req.method} is not supported on ${path}; use GET` }, { Allow: 'GET, HEAD' });
      if (path === '/healthz') return sendJson(res, 200, deps.health());
      return sendMetrics(res, deps.metrics);
    }
    // Hook for the web console page (built by another issue into dist/web/).
    if (deps.web && readOnly) {
      if (PAGE_PATH.test(path) && (await deps.web.serve(req, res, '/index.html'))) return;
      if (FLEET_PAGE_PATHS.has(path) && (await deps.web.serve(req, res, '/fleet.html'))) return;
      if (path !== '/' && (await deps.web.serve(req, res, path))) return;
    }
    sendJson(res, 404, { error: `no route for ${path}; the API lives under /api/v1/ (see /healthz)` });
  };

  const server = createDaemonServer(handle);
  // Expect: 100-continue: an admin body over the cap is refused before it is sent.
  server.on('checkContinue', (req, res) => answerExpectContinue(req, res, (q, r) => server.emit('request', q, r)));
  // WebSocket upgrades are agents' uplinks; any other Upgrade (h2c) is served as the plain request it also is.
  listenForUpgrades(server, (req, socket, head) => deps.agents.handleUpgrade(req, socket, head));
  return { server, writers };
}
