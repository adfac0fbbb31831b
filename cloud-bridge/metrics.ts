/**
 * The bridge's Prometheus metrics (own Registry). Hot-path counts live in plain numbers and maps (here,
 * in the relay, the sequence tracker and the command center) and are copied into prom-client only when
 * /metrics is scraped, so counting a frame costs an increment.
 */
import type { Registry } from 'prom-client';
import { registerProcessMetrics } from '../core/metrics/process-metrics.js';
import { ScrapedRegistry, scrapedCounter as counter, scrapedGauge as gauge } from '../core/metrics/scraped.js';
import { COMMAND_STATES } from '../core/console/events.js';
import type { StreamManager } from '../core/console/stream-manager.js';
import type { CommandCenter } from './commands.js';
import type { ClientLimit } from '../core/http/client-limit.js';
import { DROP_REASONS, type GroupRelay } from './group-relay.js';
import { MAX_PENDING_STATUSES } from './pending-statuses.js';
import type { SeqTracker } from './seq-tracker.js';

/** Why a message or connection from an agent was refused (label values of the rejected counter). */
export type RejectReason =
  | 'unauthorized'
  | 'malformed'
  | 'too_large'
  | 'unknown_type'
  | 'out_of_place'
  | 'bad_batch'
  | 'bad_event'
  | 'bad_ack'
  | 'protocol_version'
  | 'wrong_dongle'
  | 'hello_timeout'
  | 'not_reading'
  | 'duplicate_agent'
  | 'internal';

export class BridgeStats {
  readonly rejected = new Map<RejectReason, number>();
  readonly framesReceived = new Map<string, number>();
  readonly duplicateBatches = new Map<string, number>();
  readonly duplicateEvents = new Map<string, number>();
  consoleClientsCut = 0;
  /** Recording bytes streamed to downloads (cloud-bridge/recording-proxy.ts). */
  recordingBytes = 0;
  /** Connections that took over from a link that had missed its heartbeats (link-arbiter.ts). */
  takeovers = 0;

  static inc<K>(m: Map<K, number>, key: K, n = 1): void {
    m.set(key, (m.get(key) ?? 0) + n);
  }

  reject(reason: RejectReason): void {
    BridgeStats.inc(this.rejected, reason);
  }

  /** A dongle was deleted: its series go away with it. */
  forgetDongle(id: string): void {
    this.framesReceived.delete(id);
    this.duplicateBatches.delete(id);
    this.duplicateEvents.delete(id);
  }
}

export interface BridgeMetricSources {
  stats: BridgeStats;
  relay: GroupRelay;
  seq: SeqTracker;
  commands: CommandCenter;
  streams: StreamManager;
  fleetClients: ClientLimit;
  consoleClients: ClientLimit;
  agentsConnected: () => number;
}

export function bridgeMetrics(src: BridgeMetricSources): Registry {
  const r = new ScrapedRegistry();
  registerProcessMetrics(r, 'canrelay_bridge_');
  const { stats } = src;

  gauge(r, 'canrelay_bridge_agents_connected', 'Agents connected (welcomed) on the uplink', [], (g) => g.set(src.agentsConnected()));
  counter(r, 'canrelay_bridge_frames_received_total', 'CAN frames received from agents (UP batches, duplicates excluded)', ['dongle'], (c) => {
    for (const [dongle, n] of stats.framesReceived) c.inc({ dongle }, n);
  });
  counter(r, 'canrelay_bridge_duplicate_batches_total', 'UP batches received again after a reconnect and skipped', ['dongle'], (c) => {
    for (const [dongle, n] of stats.duplicateBatches) c.inc({ dongle }, n);
  });
  counter(r, 'canrelay_bridge_duplicate_events_total', 'Mirrored console events received again and not republished', ['dongle'], (c) => {
    for (const [dongle, n] of stats.duplicateEvents) c.inc({ dongle }, n);
  });

  const groups = (): ReturnType<GroupRelay['metrics']> => src.relay.metrics();
  counter(r, 'canrelay_bridge_frames_relayed_total', 'Frames sent to the peer side of a group', ['group', 'direction'], (c) => {
    for (const g of groups()) {
      c.inc({ group: g.group, direction: 'a_to_b' }, g.relayed.a_to_b);
      c.inc({ group: g.group, direction: 'b_to_a' }, g.relayed.b_to_a);
    }
  });
  gauge(r, 'canrelay_bridge_backlog_frames', 'Frames owed to a group side and not yet acknowledged by it (waiting + in flight)', ['group', 'side'], (g) => {
    for (const x of groups()) for (const s of x.sides) g.set({ group: x.group, side: s.side }, s.backlog);
  });
  gauge(r, 'canrelay_bridge_in_flight_frames', 'Frames sent to a group side, waiting for its ack', ['group', 'side'], (g) => {
    for (const x of groups()) for (const s of x.sides) g.set({ group: x.group, side: s.side }, s.inFlight);
  });
  counter(
    r,
    'canrelay_bridge_frames_dropped_total',
    "Frames for a group side not sent, never transmitted: lost (backlog_full, too_old, group_changed, bridge_stopped, internal_error) or on a bus the group's bus map leaves out (not_mapped)",
    ['group', 'side', 'reason'],
    (c) => {
      for (const x of groups()) for (const s of x.sides) for (const reason of DROP_REASONS) c.inc({ group: x.group, side: s.side, reason }, s.dropped[reason]);
    },
  );
  counter(
    r,
    'canrelay_bridge_relay_internal_errors_total',
    "Internal errors caught in the group relay (a bug, logged as relay_internal_error); the side's held frames are dropped as internal_error",
    [],
    (c) => c.inc(src.relay.internalErrors),
  );
  counter(r, 'canrelay_bridge_frames_loop_guarded_total', 'Frames that arrived as tx (already transmitted) and were not relayed', [], (c) => c.inc(src.relay.loopGuarded));

  for (const [kind, help] of [
    ['gaps', 'Frames missing in the end-to-end per-bus sequence numbers (frames lost: gaps minus reordered)'],
    ['duplicates', 'Frames whose per-bus sequence number was seen before'],
    ['reordered', 'Frames that arrived after a later sequence number (they also counted as a gap)'],
  ] as const) {
    counter(r, `canrelay_bridge_seq_${kind}_total`, help, ['dongle', 'bus'], (c) => {
      for (const [dongle, bus, counts] of src.seq.entries()) c.inc({ dongle, bus }, counts[kind]);
    });
  }

  gauge(r, 'canrelay_bridge_console_clients', 'Console (SSE) clients connected, all streams', [], (g) => g.set(src.streams.subscriberCount()));
  gauge(r, 'canrelay_bridge_console_streams', 'Console streams open (dongles and groups)', [], (g) => g.set([...src.streams.all()].length));
  gauge(r, 'canrelay_bridge_console_history_bytes', 'Memory held for console history, all streams (bounded by --history-memory-mb)', [], (g) => g.set(src.streams.history.bytes));
  counter(
    r,
    'canrelay_bridge_console_history_evicted_segments_total',
    'History segments forgotten to stay within --history-memory-mb (a resume from there gets stream_reset)',
    [],
    (c) => c.inc(src.streams.history.counters.segmentsEvicted),
  );
  counter(r, 'canrelay_bridge_recording_bytes_total', 'Recording bytes streamed from agents to downloads (one chunk at a time, at the pace of the HTTP client)', [], (c) =>
    c.inc(stats.recordingBytes),
  );
  counter(r, 'canrelay_bridge_console_clients_refused_total', 'Console and fleet stream clients refused with 503 because --console-max-clients were connected', [], (c) =>
    c.inc(src.consoleClients.refused),
  );
  gauge(r, 'canrelay_bridge_fleet_clients', 'Fleet stream (GET /api/v1/streams/fleet) clients connected (at most --fleet-max-clients)', [], (g) => g.set(src.fleetClients.count));
  counter(r, 'canrelay_bridge_fleet_clients_refused_total', 'Fleet stream clients refused with 503 because --fleet-max-clients were connected', [], (c) =>
    c.inc(src.fleetClients.refused),
  );
  counter(r, 'canrelay_bridge_console_clients_cut_total', 'Console clients disconnected because they fell too far behind', [], (c) => c.inc(stats.consoleClientsCut));
  counter(r, 'canrelay_bridge_console_frames_sampled_out_total', 'can_frame events left out of consoles by sampling (relay is never sampled)', [], (c) => {
    let n = 0;
    for (const s of src.streams.all()) n += s.counters.sampledOut;
    c.inc(n);
  });
  counter(r, 'canrelay_bridge_command_status_total', 'Command status transitions since start, by status', ['status'], (c) => {
    for (const s of COMMAND_STATES) c.inc({ status: s }, src.commands.transitions.get(s) ?? 0);
  });
  counter(r, 'canrelay_bridge_agent_takeovers_total', 'New agent connections accepted in place of a link that had missed its heartbeats', [], (c) => c.inc(stats.takeovers));
  counter(r, 'canrelay_bridge_commands_refused_total', 'Commands refused with 429: the dongle had --max-queued-commands unfinished', [], (c) => c.inc(src.commands.refusedFull));
  counter(
    r,
    'canrelay_bridge_command_statuses_dropped_total',
    `Command status changes dropped while the database refused writes (past the ${MAX_PENDING_STATUSES} held in memory): missing from their commands' history`,
    [],
    (c) => c.inc(src.commands.statusesDropped),
  );
  counter(r, 'canrelay_bridge_commands_pruned_total', 'Finished commands deleted after --command-retention', [], (c) => c.inc(src.commands.pruned));
  counter(r, 'canrelay_bridge_rejected_messages_total', 'Uplink messages and connections refused, by reason', ['reason'], (c) => {
    for (const [reason, n] of stats.rejected) c.inc({ reason }, n);
  });
  return r;
}
