/** Builds the source chosen on the command line. SocketCAN is loaded only when asked for: its native addon is optional for --sim/--replay. */
import type { AgentConfig } from '../options.js';
import type { FrameSource } from './source.js';

export async function createSource(cfg: AgentConfig['source']): Promise<FrameSource> {
  switch (cfg.kind) {
    case 'sim': {
      const { SimSource } = await import('./sim.js');
      return new SimSource({ rate: cfg.rate });
    }
    case 'replay': {
      const { ReplaySource } = await import('./replay.js');
      return new ReplaySource({ file: cfg.file, speed: cfg.speed, loop: cfg.loop });
    }
    case 'can': {
      const { SocketCanSource } = await import('./socketcan.js');
      return new SocketCanSource({ interfaces: cfg.interfaces, txKernelFrames: cfg.txKernelFrames, flushStale: cfg.flushStale });
    }
  }
}
