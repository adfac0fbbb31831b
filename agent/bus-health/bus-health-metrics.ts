/**
 * The bus health metrics, filled at scrape time from the monitor's snapshot. Names and labels are fixed
 * (checked from outside): canrelay_bus_load_ratio{bus}, canrelay_bus_state{bus,state},
 * canrelay_bus_error_counter{bus,direction}, canrelay_bus_bitrate_bps{bus}, canrelay_bus_errors_total{bus,class}.
 */
import type { Registry } from 'prom-client';
import { ERROR_CLASSES } from '../../core/can/error-frame.js';
import { CONTROLLER_STATES } from '../../core/console/events.js';
import { scrapedCounter, scrapedGauge } from '../../core/metrics/scraped.js';
import type { BusHealthMonitor } from './bus-health-monitor.js';

export function registerBusHealthMetrics(r: Registry, health: () => BusHealthMonitor | undefined): void {
  const buses = () => health()?.snapshot() ?? [];
  scrapedGauge(
    r,
    'canrelay_bus_load_ratio',
    "Share of the bitrate used on the bus in the last closed second of the frames' own timestamps (exact bit counts of every frame)",
    ['bus'],
    (g) => {
      for (const b of buses()) if (b.load !== null) g.set({ bus: b.bus }, b.load);
    },
  );
  scrapedGauge(r, 'canrelay_bus_state', 'Controller state: 1 for the current state, 0 for the others (interfaces with a controller)', ['bus', 'state'], (g) => {
    for (const b of buses()) if (b.state !== null) for (const s of CONTROLLER_STATES) g.set({ bus: b.bus, state: s }, b.state === s ? 1 : 0);
  });
  scrapedGauge(r, 'canrelay_bus_error_counter', "The controller's transmit (tx) and receive (rx) error counters", ['bus', 'direction'], (g) => {
    for (const b of buses()) {
      if (b.tec !== null) g.set({ bus: b.bus, direction: 'tx' }, b.tec);
      if (b.rec !== null) g.set({ bus: b.bus, direction: 'rx' }, b.rec);
    }
  });
  scrapedGauge(r, 'canrelay_bus_bitrate_bps', 'Nominal bitrate of the bus (from the kernel, or --bitrate)', ['bus'], (g) => {
    for (const b of buses()) if (b.bitrate !== null) g.set({ bus: b.bus }, b.bitrate);
  });
  scrapedCounter(r, 'canrelay_bus_errors_total', 'Error frames received, by error class (linux/can/error.h)', ['bus', 'class'], (c) => {
    const h = health();
    for (const b of buses()) {
      const counts = h?.errorCounts(b.bus);
      for (const cls of ERROR_CLASSES) c.inc({ bus: b.bus, class: cls }, counts?.get(cls) ?? 0);
    }
  });
}
