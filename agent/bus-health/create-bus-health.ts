/** Builds the agent's BusHealthMonitor from its config and source (kept out of agent.ts's wiring). */
import type { ConsoleStream } from '../../core/console/console-stream.js';
import type { FrameRouter } from '../frame-router.js';
import type { AgentConfig } from '../options.js';
import type { FrameSource } from '../sources/source.js';
import { BusHealthMonitor } from './bus-health-monitor.js';

export function createBusHealth(cfg: AgentConfig, source: FrameSource, router: FrameRouter, console: ConsoleStream): BusHealthMonitor {
  return new BusHealthMonitor({
    buses: () => source.buses(),
    linkState: (bus) => router.busStates.get(bus),
    // Only real interfaces have a kernel view; the simulator and a replay report load and error frames.
    // ip-link.ts (and the zod schema of `ip -json`) loads only for them.
    readLinks: source.kind === 'socketcan' ? async () => (await import('./ip-link.js')).readIpLinks() : undefined,
    flagBitrates: cfg.bitrates,
    intervalSeconds: cfg.busStateIntervalSeconds,
    publish: (data) => console.publish({ type: 'bus_state', data }),
    // Through the router's log: the process log and a console `log` event.
    log: (level, message, code, details) => router.log(level, message, code, details),
  });
}
