/**
 * The cloud bridge, wired: store → auth; consoles (StreamManager on the same SQLite) ← relay, commands,
 * agent server; admin API + consoles + uplink on one HTTP server. startBridge() returns once it listens;
 * stop() closes the agent links (1001), saves positions and counters, ends the consoles, closes the
 * server and the database.
 */
import { createHmac } from 'node:crypto';
import { existsSync } from 'node:fs';
import type { Logger } from 'pino';
import type { CommandStatusData } from '../core/console/events.js';
import { StreamManager } from '../core/console/stream-manager.js';
import { listen } from '../core/http/listen.js';
import { capConnections } from '../core/http/connection-cap.js';
import { StaticFiles } from '../core/http/static-files.js';
import { StateHealth } from '../core/state/state-health.js';
import { registerStateMetrics } from '../core/state/state-metrics.js';
import { UPLINK_PATH } from '../core/uplink/messages.js';
import { AdminApi } from './admin-api.js';
import type { AgentLink, LinkTimings } from './agent-link.js';
import { AgentServer, type AgentServerDeps } from './agent-server.js';
import { openBridgeState } from './bridge-state.js';
import { isPostgresUrl, redact } from './db-url.js';
import { endRevokedSessions } from './remote-revocations.js';
import { applyRemoteGroups } from './remote-groups.js';
import { forgetRemovedDongles } from './remote-dongles.js';
import { TAKEOVER_HEARTBEATS } from './link-arbiter.js';
import { Auth } from './auth.js';
import type { Cluster } from './cluster/cluster.js';
import { CommandCenter } from './commands.js';
import { DongleDbcs } from './dongle-dbc.js';
import { ClientLimit } from '../core/http/client-limit.js';
import { FLEET_STREAM, FleetFeed } from './fleet-feed.js';
import { BridgeConsoles } from './consoles.js';
import { GroupMembership } from './group-membership.js';
import { GroupRelay } from './group-relay.js';
import { CorsPolicy } from '../core/http/cors.js';
import { createBridgeServer } from './http-server.js';
import { DownloadTickets } from '../core/http/download-tickets.js';
import { BridgeStats, bridgeMetrics } from './metrics.js';
import type { BridgeConfig } from './options.js';
import { RetentionSweep, VIEWER_TOKEN_RETENTION_MS } from './retention.js';
import { SeqTracker } from './seq-tracker.js';
import { ViewerSessions } from './viewer-sessions.js';

export interface RunningBridge {
  readonly baseUrl: string;
  readonly port: number;
  stop(reason?: string): Promise<void>;
}

export interface BridgeExtras {
  /** Folder of the built web page (dist/web); served only when it exists. */
  webRoot?: string;
  /** Hello/heartbeat timings; default from the config (hello within 5 s, dead after 2.5 heartbeats). */
  timings?: LinkTimings;
}

export async function startBridge(cfg: BridgeConfig, log: Logger, extras: BridgeExtras = {}): Promise<RunningBridge> {
  const state = new StateHealth(log);
  // SQLite file or PostgreSQL (cluster mode), by the form of --db (cloud-bridge/bridge-state.ts).
  const durable = await openBridgeState(cfg.db, log, state);
  const store = durable.store;
  const auth = new Auth(store, cfg.adminToken);
  const streams = new StreamManager(
    { historyEvents: cfg.historyEvents, historySeconds: cfg.historySeconds, historyMemoryBytes: cfg.historyMemoryBytes, maxRate: cfg.consoleMaxRate, ids: durable.ids },
    (stream, t) => log.debug({ stream, sampling: t.state, input_rate: t.inputRate, output_rate: t.outputRate }, `console sampling ${t.state}`),
  );
  // Which group and side each dongle is in: the relay keeps it as it applies groups; the consoles (a
  // dongle's events also go to its group's console), the admin API and the uplink read it.
  const membership = new GroupMembership();
  // The welcomed link of each dongle: the agent server keeps it; the fleet and the commands read it.
  const links = new Map<string, AgentLink>();
  const fleet = new FleetFeed(streams.get(FLEET_STREAM), { dongles: () => store.dongles(), connected: (d) => links.has(d) });
  const consoles = new BridgeConsoles(streams, (d) => membership.of(d)?.group, new DongleDbcs(log), fleet);
  const relay = new GroupRelay(
    { backlogMaxFrames: cfg.backlogMaxFrames, backlogMaxAgeMs: cfg.backlogMaxAgeMs, groupStateIntervalMs: cfg.groupStateIntervalSeconds * 1000, epoch: cfg.cluster && 'cluster' },
    store,
    consoles,
    log,
    membership,
  );
  relay.load();
  const stats = new BridgeStats();
  const seq = new SeqTracker();
  const commands = new CommandCenter(store, consoles, (d) => links.get(d), cfg.commandTimeoutSeconds, log, {
    maxQueued: cfg.maxQueuedCommands,
    retentionS: cfg.commandRetentionSeconds,
  });
  const timings = extras.timings ?? { helloTimeoutMs: 5000, pingMs: cfg.uplinkHeartbeatMs, deadAfterMs: cfg.uplinkHeartbeatMs * 2.5 };
  const agentDeps: AgentServerDeps = { links, store, auth, consoles, relay, commands, seq, stats, log, timings };
  const agents = new AgentServer(agentDeps);
  commands.load();
  // Expired viewer tokens stay listed for a day, then are deleted (retention.ts); swept now and hourly.
  const viewerTokens = new RetentionSweep(
    VIEWER_TOKEN_RETENTION_MS,
    (before, limit) => store.pruneExpiredViewerTokens(before, limit),
    (n) => log.info({ deleted: n }, 'viewer tokens expired for more than a day deleted'),
  );
  viewerTokens.run();
  let cluster: Cluster | undefined;
  if (cfg.cluster) {
    const c = cfg.cluster;
    const takeoverAfterMs = timings.pingMs * TAKEOVER_HEARTBEATS;
    try {
      // Loaded only in cluster mode: NATS is ~4 MB of RSS a single bridge never uses.
      const { Cluster } = await import('./cluster/cluster.js');
      cluster = agentDeps.cluster = await Cluster.start({ servers: c.servers, auth: c.auth, node: c.nodeId, takeoverAfterMs, pingMs: timings.pingMs }, relay, agents, log);
    } catch (err) {
      relay.stop();
      commands.stop();
      viewerTokens.stop();
      fleet.stop();
      streams.close();
      await durable.close();
      throw err;
    }
  }

  if (cluster) {
    // Consoles readable on every node, one id sequence per stream (cluster/console-sync.ts).
    consoles.beforeRead = cluster.shareConsoles(
      streams,
      (gid) => {
        const g = store.group(gid);
        return g && [g.side_a, g.side_b];
      },
      (name) => consoles.byName(name, { dongle: (id) => store.dongle(id), group: (id) => relay.has(id) || undefined }),
      (id) => store.dongle(id) !== undefined,
      log,
      // A command's statuses stay in order on its console (CommandCenter.admitForwardedStatus); JSON checked by its schema.
      (type, json) => type !== 'command_status' || commands.admitForwardedStatus(JSON.parse(json) as CommandStatusData),
    );
  }
  const fleetClients = new ClientLimit({ full: 'the fleet stream is full', daemon: 'bridge', flag: 'fleet-max-clients', max: cfg.fleetMaxClients });
  const consoleClients = new ClientLimit({ full: 'the consoles are full', daemon: 'bridge', flag: 'console-max-clients', max: cfg.consoleMaxClients });
  const metrics = bridgeMetrics({ stats, relay, seq, commands, streams, fleetClients, consoleClients, agentsConnected: () => agents.connectedCount });
  cluster?.registerMetrics(metrics);
  registerStateMetrics(metrics, state, () => {
    let n = 0;
    for (const st of streams.all()) n += st.withheld;
    return n;
  });
  durable.registerMetrics(metrics);
  const viewers = new ViewerSessions();
  durable.onChange(endRevokedSessions(viewers, agents));
  durable.onChange(applyRemoteGroups(store, relay, consoles));
  durable.onChange(forgetRemovedDongles(store, { agents, relay, consoles, stats }));
  // A command posted on any node reaches the node its dongle is connected to through the shared store.
  if (cluster) durable.onChange((c) => c.kind === 'command' && commands.storedElsewhere(c.id));
  const admin = new AdminApi({ store, relay, consoles, commands, agents, stats, viewers, log });
  const web = extras.webRoot && existsSync(extras.webRoot) ? new StaticFiles(extras.webRoot) : undefined;
  const startedAt = Date.now();
  const { server, writers } = createBridgeServer({
    auth,
    cors: new CorsPolicy(cfg.corsOrigins),
    admin,
    agents,
    consoles,
    store,
    relay,
    stats,
    metrics,
    health: () => ({
      status: cluster?.natsReachable === false ? 'degraded' : 'ok',
      ...state.status(),
      ...durable.health(),
      ...(cluster ? { cluster: cluster.health() } : {}),
      agents_connected: agents.connectedCount,
      dongles: store.dongles().length,
      groups: store.groups().length,
      console_clients: streams.subscriberCount(),
      uptime_s: Math.round((Date.now() - startedAt) / 1000),
    }),
    sse: { keepAliveMs: cfg.keepAliveSeconds * 1000, retryMs: 2000, maxPendingBytes: cfg.clientMaxPendingBytes },
    web,
    viewers,
    // Signed with a key every node of a cluster derives from the admin token they share: a ticket issued
    // by one node is admitted by the node the download reaches.
    tickets: new DownloadTickets(createHmac('sha256', cfg.adminToken).update('canrelay download tickets').digest()),
    elsewhere: cluster ? (d, q) => cluster.askRecording(d, q) : undefined,
    fleetClients,
    consoleClients,
  });

  capConnections(server, cfg.maxConnections, log);

  let addr;
  try {
    addr = await listen(server, cfg.listen);
  } catch (err) {
    relay.stop();
    commands.stop();
    viewerTokens.stop();
    fleet.stop();
    streams.close();
    await cluster?.stop();
    await durable.close();
    throw err;
  }
  const uplink = addr.baseUrl.replace(/^http/, 'ws') + UPLINK_PATH;
  log.info({ url: addr.baseUrl, uplink, listen: `${addr.host}:${addr.port}`, db: isPostgresUrl(cfg.db) ? redact(cfg.db) : cfg.db, web: web !== undefined }, 'bridge listening');

  let stopping: Promise<void> | undefined;
  const stop = (reason = 'bridge stopping'): Promise<void> =>
    (stopping ??= (async () => {
      relay.flushNow(); // frames already taken go out before the links' close frames
      relay.dropHeldAtStop(); // what is still held dies with the process: counted, logged
      await agents.stop();
      // Counters saved (the bridge_stopped drops just counted among them) and timers stopped before the
      // cluster's connection is closed: that waits on NATS, bounded (NatsLink.close), and a frozen
      // nats-server must cost the stop nothing it promises.
      relay.stop();
      commands.stop();
      viewerTokens.stop();
      fleet.stop();
      viewers.stop();
      await cluster?.stop();
      streams.close();
      for (const w of writers) w.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      state.close();
      await durable.close();
      log.info({ reason }, 'bridge stopped');
    })());

  return { baseUrl: addr.baseUrl, port: addr.port, stop };
}
