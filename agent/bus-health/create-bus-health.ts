/** Builds the agent's BusHealthMonitor from its config and source (kept out of agent.ts's wiring). */
import type { ConsoleStream } from '../../core/console/console-stream.js';
import type { FrameRouter } from '../frame-router.js';
import type { AgentConfig } from '../options.js';
import { canSetLinks } from '../sources/socketcan-probe.js';
import type { FrameSource } from '../sources/source.js';
import { BusHealthMonitor } from './bus-health-monitor.js';
import { monitorLinks } from './link-monitor.js';

/** At most one line a minute about the link monitor failing (it is started again each second). */
const MONITOR_FAILURE_LOG_MS = 60_000;

export function createBusHealth(cfg: AgentConfig, source: FrameSource, router: FrameRouter, console: ConsoleStream): BusHealthMonitor {
  return new BusHealthMonitor({
    buses: () => source.buses(),
    linkState: (bus) => router.busStates.get(bus),
    // Only real interfaces have a kernel view; the simulator and a replay report load and error frames.
    // ip-link.ts (and the zod schema of `ip -json`) loads only for them.
    // Each reading tells the source which controllers are one-shot, and each link notice that a queue may
    // have been emptied (what its count of frames held by the kernel follows: kernel-held-frames.ts).
    readLinks:
      source.kind === 'socketcan'
        ? async () => {
            const links = await (await import('./ip-link.js')).readIpLinks();
            for (const [bus, l] of links) source.controllerOneShot?.(bus, l.oneShot);
            return links;
          }
        : undefined,
    watchLinks:
      source.kind === 'socketcan'
        ? (changed) =>
            watchLinks((ifname) => {
              source.linkNotice?.(ifname);
              changed(ifname);
            }, router)
        : undefined,
    flagBitrates: cfg.bitrates,
    // A flush that cannot work (no CAP_NET_ADMIN for `ip`) leaves the advice in the warning.
    kernelHeld: cfg.source.kind === 'can' ? { max: cfg.source.txKernelFrames, flush: cfg.source.flushStale && canSetLinks('/proc') !== false } : undefined,
    intervalSeconds: cfg.busStateIntervalSeconds,
    publish: (data) => console.publish({ type: 'bus_state', data }),
    // Through the router's log: the process log and a console `log` event.
    log: (level, message, code, details) => router.log(level, message, code, details),
  });
}

/** The kernel's link notices (link-monitor.ts), its failures said through the router's log. Returns what stops it. */
function watchLinks(changed: (ifname: string) => void, router: FrameRouter): () => void {
  let loggedAt = Number.NEGATIVE_INFINITY;
  const m = monitorLinks(changed, (message) => {
    const now = performance.now();
    if (now - loggedAt < MONITOR_FAILURE_LOG_MS) return;
    loggedAt = now;
    router.log('warn', `${message}: a controller's mode is read again only when the interface is seen going down and up, and once a second`, 'link_monitor_failed', {});
  });
  return () => m.stop();
}
