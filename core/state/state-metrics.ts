/** The state stores' Prometheus series, the same on agent and bridge (filled at scrape time). */
import type { Registry } from 'prom-client';
import { scrapedCounter, scrapedGauge } from '../metrics/scraped.js';
import type { StateHealth } from './state-health.js';

/** `withheld`: console events not published because no event id was provably unused (core/console/id-store.ts). */
export function registerStateMetrics(r: Registry, health: StateHealth, withheld: () => number): void {
  scrapedCounter(r, 'canrelay_state_write_errors_total', 'SQLite state writes that failed (disk full, I/O error, read-only), by store', ['store'], (c) => {
    for (const s of health.writeErrors()) c.inc({ store: s.store }, s.errors);
  });
  scrapedGauge(r, 'canrelay_state_degraded', '1 while a state store cannot write (see /healthz state_reason)', ['store'], (g) => {
    for (const s of health.writeErrors()) g.set({ store: s.store }, s.degraded ? 1 : 0);
  });
  scrapedCounter(r, 'canrelay_console_events_withheld_total', 'Console events not published while their ids could not be persisted nor proven unused', [], (c) =>
    c.inc(withheld()),
  );
}
