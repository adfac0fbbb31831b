/**
 * What both daemons do around their own start: report a failed start as one line and exit with a code
 * that says what kind of failure it was (core/cli/exit-codes.ts), tell systemd when they are ready
 * (Type=notify), on SIGTERM/SIGINT stop cleanly — or hard, if something holds them past the deadline —
 * never die of a SIGHUP, and survive a promise rejection nothing handled (logged).
 */
import { writeSync } from 'node:fs';
import type { Logger } from 'pino';
import { drainLogs } from '../log/logger.js';
import { createServiceNotifier } from '../service/sd-notify.js';
import { EXIT_START_FAILED, StartupError } from './exit-codes.js';
import { OptionError } from './options.js';

export interface Daemon {
  stop(reason: string): Promise<void>;
}

/**
 * Exit deadline after a stop signal: systemd's TimeoutStopSec= (10 s in the agent units, 15 s in the
 * bridge's) is longer; the promise is "exits within 5 s". Nothing in the exit path waits on stdout
 * (core/log/logger.ts), so the timer cannot be held up by a dead or stuck log reader.
 */
export const HARD_STOP_MS = 4500;
/** How long a clean stop waits for the last log lines to reach stdout before it exits. */
const LOG_DRAIN_MS = 500;

/** One line on stderr; a closed stderr must not turn a clean report into a crash. */
function printLine(text: string): void {
  try {
    writeSync(2, text + '\n');
  } catch {
    /* nobody is listening */
  }
}

export async function runDaemon<D extends Daemon>(name: string, log: Logger, start: () => Promise<D>, readyStatus: (d: D) => string): Promise<void> {
  // systemd Type=notify: ready once the daemon listens; watchdog pings when WatchdogSec= is set.
  const notifier = createServiceNotifier({ log });
  let daemon: D | undefined;
  let signalled: string | undefined;
  const shutdown = (signal: string): void => {
    signalled = signal;
    notifier.stopping(`stopping (${signal})`);
    setTimeout(() => process.exit(0), HARD_STOP_MS).unref();
    // A signal during start is acted on once start() returns (the "listening" line may already be out).
    if (daemon === undefined) return;
    daemon.stop(`received ${signal}`).then(
      () => drainLogs(LOG_DRAIN_MS).then(() => process.exit(0)),
      (err: unknown) => {
        log.error({ err }, 'error while stopping');
        void drainLogs(LOG_DRAIN_MS).then(() => process.exit(1));
      },
    );
  };
  // A promise that failed with nobody awaiting it is a bug in one operation, not a broken process: logged
  // with its stack, and the daemon goes on. Node's default would exit, and a gateway would stop relaying
  // (and a bridge drop every agent) until systemd restarted it. A thrown exception still exits: it can
  // leave state half-changed, and a fresh process is the safe answer to that.
  process.on('unhandledRejection', (reason) => {
    log.error({ err: reason }, 'internal error: an operation failed and nothing handled it (a bug: please report it with this line); the daemon goes on');
  });
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
  // SIGHUP's default would kill the daemon (a logrotate habit, `kill -HUP`), and no stop would run. A part
  // of the daemon that acts on it registers its own listener (the agent's DBC reload,
  // agent/signals/agent-signals.ts); otherwise — the bridge, or a daemon still starting — it is said and ignored.
  process.on('SIGHUP', () => {
    if (process.listenerCount('SIGHUP') > 1) return;
    log.info(
      { signal: 'SIGHUP' },
      `SIGHUP: nothing to reload (the configuration is read at start: restart the ${name} to apply a change; logs go to stdout, with no file to reopen); going on`,
    );
  });
  try {
    daemon = await start();
  } catch (err) {
    if (err instanceof OptionError) throw err;
    const message = (err as Error).message;
    log.fatal(message);
    printLine(`canrelay ${name}: ${message}`);
    await drainLogs(LOG_DRAIN_MS);
    process.exit(err instanceof StartupError ? err.exitCode : EXIT_START_FAILED);
  }
  if (signalled !== undefined) return shutdown(signalled);
  notifier.ready(readyStatus(daemon));
}
