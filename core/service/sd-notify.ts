/**
 * systemd readiness and watchdog (sd_notify protocol) for `Type=notify` units.
 *
 * Node cannot send AF_UNIX datagrams, so each message goes through Debian's own `systemd-notify`
 * (package systemd, always there when systemd runs the service). Since systemd 246 `systemd-notify`
 * follows every message with a BARRIER=1 datagram and waits until the manager has processed both; the
 * sender therefore stays alive while PID 1 attributes the message to the unit by its cgroup, which
 * closes the well-known race (a helper that exits before PID 1 reads its datagram is ignored). The unit
 * must say `NotifyAccess=all`, since the sender is a child of the main process.
 *
 * Without $NOTIFY_SOCKET (not started by systemd, or Type=simple) every call is a no-op. With
 * $WATCHDOG_USEC (unit `WatchdogSec=`) a `WATCHDOG=1` ping goes out every half period from the event
 * loop: a process whose loop hangs stops pinging and systemd restarts it.
 */
import { spawn } from 'node:child_process';

export interface NotifyLogger {
  warn(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

export interface ServiceNotifier {
  /** True when $NOTIFY_SOCKET is set, i.e. a service manager listens. */
  readonly enabled: boolean;
  /** Watchdog ping interval in ms, 0 when no watchdog is asked for. */
  readonly watchdogIntervalMs: number;
  /** READY=1 (+ STATUS=), then starts the watchdog pings if asked for. */
  ready(status?: string): void;
  status(text: string): void;
  /** STOPPING=1 and stops the watchdog pings. */
  stopping(status?: string): void;
  /** Resolves when every message sent so far has been handed over (or failed). Tests and shutdown use it. */
  flush(): Promise<void>;
}

export interface NotifierOptions {
  env?: NodeJS.ProcessEnv;
  log?: NotifyLogger;
  /** The helper program; default $CANRELAY_SYSTEMD_NOTIFY or `systemd-notify` on $PATH. */
  command?: string;
}

/** Status text must stay one line: the protocol is newline separated. */
function oneLine(s: string): string {
  return s.replace(/[\r\n\0]+/g, ' ').slice(0, 200);
}

export function watchdogIntervalMs(env: NodeJS.ProcessEnv, pid = process.pid): number {
  const usec = Number(env.WATCHDOG_USEC);
  if (!Number.isFinite(usec) || usec <= 0) return 0;
  // sd_watchdog_enabled(): WATCHDOG_PID, when set, names the process meant to ping.
  if (env.WATCHDOG_PID !== undefined && env.WATCHDOG_PID !== '' && Number(env.WATCHDOG_PID) !== pid) return 0;
  return Math.max(100, Math.floor(usec / 1000 / 2));
}

export function createServiceNotifier(opts: NotifierOptions = {}): ServiceNotifier {
  const env = opts.env ?? process.env;
  const socket = env.NOTIFY_SOCKET;
  const enabled = socket !== undefined && socket !== '';
  const command = opts.command ?? (env.CANRELAY_SYSTEMD_NOTIFY || 'systemd-notify');
  const interval = enabled ? watchdogIntervalMs(env) : 0;
  let timer: NodeJS.Timeout | undefined;
  let pending: Promise<void> = Promise.resolve();
  let warned = false;
  let pingInFlight = false;

  const send = (assignments: string[]): Promise<void> => {
    if (!enabled) return Promise.resolve();
    const done = new Promise<void>((resolve) => {
      let child;
      try {
        // Only NOTIFY_SOCKET matters to the helper; keep the rest of the environment (PATH, locale).
        child = spawn(command, assignments, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...env } });
      } catch (err) {
        fail(err as Error, '');
        resolve();
        return;
      }
      let stderr = '';
      child.stderr!.setEncoding('utf8');
      child.stderr!.on('data', (c: string) => (stderr += c.length + stderr.length < 2000 ? c : ''));
      child.once('error', (err) => {
        fail(err, stderr);
        resolve();
      });
      child.once('close', (code) => {
        if (code !== 0) fail(new Error(`${command} exited with ${code}`), stderr);
        else opts.log?.debug({ sd_notify: assignments }, 'service manager notified');
        resolve();
      });
    });
    pending = pending.then(() => done);
    return done;
  };

  const fail = (err: Error, stderr: string): void => {
    if (warned) return;
    warned = true; // once: a missing helper must not flood the journal every watchdog period
    opts.log?.warn({ err: err.message, stderr: stderr.trim() || undefined, notify_socket: socket }, 'cannot notify the service manager (is systemd-notify installed?)');
  };

  const startWatchdog = (): void => {
    if (interval === 0 || timer) return;
    timer = setInterval(() => {
      if (pingInFlight) return; // never pile helpers up if one hangs
      pingInFlight = true;
      void send(['WATCHDOG=1']).finally(() => (pingInFlight = false));
    }, interval);
    timer.unref();
  };

  return {
    enabled,
    watchdogIntervalMs: interval,
    ready(status) {
      void send(['READY=1', ...(status ? [`STATUS=${oneLine(status)}`] : []), `MAINPID=${process.pid}`]);
      startWatchdog();
    },
    status(text) {
      void send([`STATUS=${oneLine(text)}`]);
    },
    stopping(status) {
      if (timer) clearInterval(timer);
      timer = undefined;
      void send(['STOPPING=1', ...(status ? [`STATUS=${oneLine(status)}`] : [])]);
    },
    flush() {
      return pending;
    },
  };
}
