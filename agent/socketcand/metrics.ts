/** The socketcand server's Prometheus series (canrelay_socketcand_*), read from its plain counters at scrape time. */
import type { Registry } from 'prom-client';
import { scrapedCounter as counter, scrapedGauge as gauge } from '../../core/metrics/scraped.js';
import type { SocketcandStats } from './session.js';

export function registerSocketcandMetrics(r: Registry, stats: SocketcandStats): void {
  gauge(r, 'canrelay_socketcand_clients', 'socketcand clients connected', [], (g) => g.set(stats.clients));
  counter(
    r,
    'canrelay_socketcand_frames_sent_total',
    'CAN frames of the bus (received, and transmitted by the gateway) written to socketcand clients (one per frame per client)',
    [],
    (c) => c.inc(stats.framesSent),
  );
  counter(r, 'canrelay_socketcand_clients_cut_total', 'socketcand clients disconnected because they fell too far behind', [], (c) => c.inc(stats.clientsCut));
  counter(
    r,
    'canrelay_socketcand_connections_refused_total',
    'socketcand connections refused (address not in --socketcand-allow, too many clients, or text before any command)',
    [],
    (c) => c.inc(stats.connectionsRefused),
  );
  counter(r, 'canrelay_socketcand_frames_transmitted_total', 'Frames socketcand clients sent that the bus accepted (--socketcand-allow-send)', [], (c) =>
    c.inc(stats.framesTransmitted),
  );
  counter(
    r,
    'canrelay_socketcand_sends_refused_total',
    'socketcand send commands refused: sending is off, or the connection has too many frames waiting to be transmitted',
    [],
    (c) => c.inc(stats.sendsRefused),
  );
  counter(r, 'canrelay_socketcand_errors_total', '< error > replies sent to socketcand clients (bad or unsupported commands, failed transmits)', [], (c) =>
    c.inc(stats.errorsSent),
  );
}
