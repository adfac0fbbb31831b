/**
 * The agent's Prometheus metrics. Hot-path counts live in plain objects (FrameCounters, stream counters)
 * and are copied into prom-client only when /metrics is scraped, so counting a frame costs an increment.
 */
import type { Registry } from 'prom-client';
import type { ConsoleStream } from '../core/console/console-stream.js';
import { registerProcessMetrics } from '../core/metrics/process-metrics.js';
import { ScrapedRegistry, scrapedCounter as counter, scrapedGauge as gauge } from '../core/metrics/scraped.js';
import { registerBusHealthMetrics } from './bus-health/bus-health-metrics.js';
import type { BusHealthMonitor } from './bus-health/bus-health-monitor.js';
import type { FrameCounters } from './frame-counters.js';

export interface AgentMetricSources {
  counters: FrameCounters;
  console: ConsoleStream;
  clientsCut: () => number;
  consoleClientsRefused: () => number;
  replayRejected: () => number;
  /** Set once the uplink exists; reads its counters at scrape time. */
  uplink?: () => Record<string, number>;
  health?: () => BusHealthMonitor | undefined;
  recording?: () => { framesWritten: number; framesDropped: number; filesDeleted: number; failed: number; running: number; bytes: number };
}

export function agentMetrics(src: AgentMetricSources): Registry {
  const r = new ScrapedRegistry();
  registerProcessMetrics(r, 'canrelay_');
  counter(r, 'canrelay_can_frames_total', 'CAN frames received (rx) and transmitted (tx), every frame, never sampled', ['bus', 'direction'], (c) => {
    for (const [bus, n] of src.counters.entries()) {
      c.inc({ bus, direction: 'rx' }, n.rx);
      c.inc({ bus, direction: 'tx' }, n.tx);
    }
  });
  gauge(r, 'canrelay_console_clients', 'Console (SSE) clients connected', [], (g) => g.set(src.console.subscriberCount));
  counter(r, 'canrelay_console_events_total', 'Events published on the console stream (after sampling)', [], (c) => c.inc(src.console.counters.published));
  counter(r, 'canrelay_console_frames_sampled_out_total', 'can_frame events left out of the console by sampling (the frames themselves are all counted and relayed)', [], (c) =>
    c.inc(src.console.counters.sampledOut),
  );
  gauge(r, 'canrelay_console_sampling', '1 while the console is sampling can_frame events', [], (g) => g.set(src.console.sampling ? 1 : 0));
  counter(r, 'canrelay_console_clients_cut_total', 'Console clients disconnected because they fell too far behind', [], (c) => c.inc(src.clientsCut()));
  counter(r, 'canrelay_console_clients_refused_total', 'Console clients refused with 503: --console-max-clients (or as many of one address) were connected', [], (c) =>
    c.inc(src.consoleClientsRefused()),
  );
  gauge(r, 'canrelay_console_buffered_events', 'Events held in the console history ring', [], (g) => g.set(src.console.buffered));
  counter(r, 'canrelay_replay_lines_rejected_total', 'Malformed candump lines skipped by --replay', [], (c) => c.inc(src.replayRejected()));
  gauge(
    r,
    'canrelay_uplink',
    'Data plane figures by kind: uplink (connected, frames_sent, frames_acked, frames_dropped_*, outbox_*), relay from the peer (relay_seq_*, relay_latency_*), transmit (tx_*)',
    ['kind'],
    (g) => {
      const u = src.uplink?.();
      if (u) for (const [kind, v] of Object.entries(u)) g.set({ kind }, v);
    },
  );
  registerBusHealthMetrics(r, src.health ?? (() => undefined));
  const rec = (): ReturnType<NonNullable<AgentMetricSources['recording']>> | undefined => src.recording?.();
  counter(r, 'canrelay_recording_frames_total', 'Frames for recordings: written to files, or dropped (the disk could not keep up, or a write failed)', ['outcome'], (c) => {
    const f = rec();
    if (f) {
      c.inc({ outcome: 'written' }, f.framesWritten);
      c.inc({ outcome: 'dropped' }, f.framesDropped);
    }
  });
  counter(r, 'canrelay_recording_files_deleted_total', 'Oldest recording files deleted to stay within --record-max-bytes', [], (c) => c.inc(rec()?.filesDeleted ?? 0));
  counter(r, 'canrelay_recording_failures_total', 'Recordings stopped by a write error (a full disk)', [], (c) => c.inc(rec()?.failed ?? 0));
  gauge(r, 'canrelay_recordings_running', 'Recordings running now', [], (g) => g.set(rec()?.running ?? 0));
  gauge(r, 'canrelay_recording_bytes', 'Bytes of recording files on disk (bounded by --record-max-bytes)', [], (g) => g.set(rec()?.bytes ?? 0));
  return r;
}
