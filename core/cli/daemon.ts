/**
 * What both daemons do around their own start: report a failed start as one line and exit 1, tell
 * systemd when they are ready (Type=notify), and on SIGTERM/SIGINT stop cleanly — or hard, if something
 * holds them past systemd's patience.
 */
import type { Logger } from 'pino';
import { createServiceNotifier } from '../service/sd-notify.js';
import { OptionError } from './options.js';

export interface Daemon {
  stop(reason: string): Promise<void>;
}

/** Exit deadline after a stop signal: systemd's default TimeoutStopSec is far longer, the brief asks 5 s. */
const HARD_STOP_MS = 4500;

export async function runDaemon<D extends Daemon>(
  name: string,
  log: Logger,
  start: () => Promise<D>,
  readyStatus: (d: D) => string,
): Promise<void> {
  let daemon: D;
  try {
    daemon = await start();
  } catch (err) {
    if (err instanceof OptionError) throw err;
    log.fatal((err as Error).message);
    process.stderr.write(`canrelay ${name}: ${(err as Error).message}\n`);
    process.exit(1);
  }
  // systemd Type=notify: ready once the daemon listens; watchdog pings when WatchdogSec= is set.
  const notifier = createServiceNotifier({ log });
  notifier.ready(readyStatus(daemon));
  const shutdown = (signal: string): void => {
    notifier.stopping(`stopping (${signal})`);
    setTimeout(() => process.exit(0), HARD_STOP_MS).unref();
    daemon.stop(`received ${signal}`).then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'error while stopping');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}
