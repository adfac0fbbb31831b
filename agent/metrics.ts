/**
 * The agent's Prometheus metrics. Hot-path counts live in plain objects (FrameCounters, stream counters)
 * and are copied into prom-client only when /metrics is scraped, so counting a frame costs an increment.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { ConsoleStream } from '../core/console/console-stream.js';
import type { FrameCounters } from './frame-counters.js';

export interface AgentMetricSources {
  counters: FrameCounters;
  console: ConsoleStream;
  clientsCut: () => number;
  replayRejected: () => number;
  /** Set once the uplink exists; reads its counters at scrape time. */
  uplink?: () => Record<string, number>;
}

export function agentMetrics(src: AgentMetricSources): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'canrelay_' });

  new Counter({
    name: 'canrelay_can_frames_total',
    help: 'CAN frames received (rx) and transmitted (tx), every frame, never sampled',
    labelNames: ['bus', 'direction'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [bus, c] of src.counters.entries()) {
        this.inc({ bus, direction: 'rx' }, c.rx);
        this.inc({ bus, direction: 'tx' }, c.tx);
      }
    },
  });
  new Gauge({
    name: 'canrelay_console_clients',
    help: 'Console (SSE) clients connected',
    registers: [registry],
    collect() {
      this.set(src.console.subscriberCount);
    },
  });
  new Counter({
    name: 'canrelay_console_events_total',
    help: 'Events published on the console stream (after sampling)',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(src.console.counters.published);
    },
  });
  new Counter({
    name: 'canrelay_console_frames_sampled_out_total',
    help: 'can_frame events left out of the console by sampling (the frames themselves are all counted and relayed)',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(src.console.counters.sampledOut);
    },
  });
  new Gauge({
    name: 'canrelay_console_sampling',
    help: '1 while the console is sampling can_frame events',
    registers: [registry],
    collect() {
      this.set(src.console.sampling ? 1 : 0);
    },
  });
  new Counter({
    name: 'canrelay_console_clients_cut_total',
    help: 'Console clients disconnected because they fell too far behind',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(src.clientsCut());
    },
  });
  new Gauge({
    name: 'canrelay_console_buffered_events',
    help: 'Events held in the console history ring',
    registers: [registry],
    collect() {
      this.set(src.console.buffered);
    },
  });
  new Counter({
    name: 'canrelay_replay_lines_rejected_total',
    help: 'Malformed candump lines skipped by --replay',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(src.replayRejected());
    },
  });
  new Gauge({
    name: 'canrelay_uplink',
    help: 'Data-plane uplink figures by kind (connected, frames_sent, frames_acked, frames_dropped, buffered, outbox)',
    labelNames: ['kind'],
    registers: [registry],
    collect() {
      this.reset();
      const u = src.uplink?.();
      if (u) for (const [kind, v] of Object.entries(u)) this.set({ kind }, v);
    },
  });
  return registry;
}
