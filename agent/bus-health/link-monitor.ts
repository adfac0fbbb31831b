/**
 * The kernel's notices of link changes (`ip -o monitor link`: one line per RTM_NEWLINK/RTM_DELLINK), for
 * bus health to read a controller's mode again at once. A mode is set while the interface is down, and a
 * script does `ip link set can0 down; ip link set can0 type can listen-only on; ip link set can0 up` in
 * milliseconds: between two looks of the source's sysfs poll (500 ms) it was never seen down, and sends
 * went by the reading before it — to a controller that drops them. The notice comes within milliseconds.
 * A long-lived child: started again a second after it ends (ip missing, killed), never fatal; its lines
 * are read by name only (`3: can0: <NOARP,UP,LOWER_UP,ECHO> …`, `Deleted 3: can0: …`), a line past 4 KiB
 * is cut.
 */
import { spawn, type ChildProcess } from 'node:child_process';

/** The interface a monitor line is about, or undefined for another line (the link/can continuation is on the same line with -o). */
export function linkOfMonitorLine(line: string): string | undefined {
  return /^(?:Deleted )?\d+: ([^\s:@]+)(?:@\S+)?: </.exec(line)?.[1];
}

const RESTART_MS = 1000;
const MAX_LINE = 4096;

export interface LinkMonitor {
  stop(): void;
}

/**
 * Calls `changed(ifname)` for every link notice. `failed(message)` is told when the monitor cannot run or
 * ends (it is started again); the caller rate-limits what it logs.
 */
export function monitorLinks(changed: (ifname: string) => void, failed: (message: string) => void, ipBinary = 'ip'): LinkMonitor {
  let child: ChildProcess | undefined;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const start = (): void => {
    if (stopped) return;
    let part = '';
    const c = spawn(ipBinary, ['-o', 'monitor', 'link'], { stdio: ['ignore', 'pipe', 'ignore'] });
    child = c;
    c.stdout!.setEncoding('utf8');
    c.stdout!.on('data', (chunk: string) => {
      const lines = (part + chunk).split('\n');
      part = lines.pop()!.slice(0, MAX_LINE);
      for (const l of lines) {
        const name = linkOfMonitorLine(l);
        if (name !== undefined) changed(name);
      }
    });
    c.on('error', (err) => failed(`ip -o monitor link: ${err.message}`));
    c.on('close', (code, signal) => {
      if (child === c) child = undefined;
      if (stopped) return;
      failed(`ip -o monitor link ended (${signal ?? `exit ${code}`}); starting it again`);
      timer = setTimeout(start, RESTART_MS);
      timer.unref();
    });
  };
  start();
  return {
    stop: () => {
      stopped = true;
      clearTimeout(timer);
      child?.kill();
    },
  };
}
