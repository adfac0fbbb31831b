/**
 * Prometheus series filled at scrape time. The hot paths count in plain numbers and maps; these helpers
 * copy them into prom-client only when /metrics is read, so counting a frame costs an increment.
 */
import { Counter, Gauge, type Registry } from 'prom-client';

export function scrapedCounter(registry: Registry, name: string, help: string, labelNames: string[], fill: (c: Counter) => void): void {
  new Counter({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      fill(this);
    },
  });
}

export function scrapedGauge(registry: Registry, name: string, help: string, labelNames: string[], fill: (g: Gauge) => void): void {
  new Gauge({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      fill(this);
    },
  });
}
