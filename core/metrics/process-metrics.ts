/**
 * The process's own Prometheus series (CPU, memory, event loop, handles) under a prefix, shaped so that
 * `promtool check metrics` passes: prom-client's `nodejs_active_{handles,requests,resources}_total` are
 * gauges with a counter's `_total` suffix, so they are left out; their per-type siblings
 * (`nodejs_active_handles{type}` …) carry the same figures (`sum(...)` gives the total).
 */
import { collectDefaultMetrics, type Registry } from 'prom-client';

const GAUGES_NAMED_LIKE_COUNTERS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

export function registerProcessMetrics(registry: Registry, prefix: string): void {
  collectDefaultMetrics({ register: registry, prefix });
  for (const name of GAUGES_NAMED_LIKE_COUNTERS) registry.removeSingleMetric(prefix + name);
}
