/** `canrelay bridge`: parse, validate, start, and stop cleanly on SIGTERM/SIGINT. */
import { Command } from 'commander';
import { fileURLToPath } from 'node:url';
import { createLogger } from '../core/log/logger.js';
import { addOptions, resolveCommandOptions } from '../core/cli/command.js';
import { runDaemon } from '../core/cli/daemon.js';
import { describeOptions } from '../core/cli/options.js';
import type { startBridge as Start } from './bridge.js';
import { limitHeapGrowth } from './heap-growth.js';
import { BRIDGE_OPTIONS, bridgeConfigFrom } from './options.js';

/** Where the web console page is built (dist/web/); served only if it exists. */
const WEB_ROOT = fileURLToPath(new URL('../web/', import.meta.url));

export function bridgeCommand(): Command {
  const cmd = new Command('bridge')
    .description('cloud bridge: agent uplinks, group relay, consoles, commands')
    .option('--check-config', 'validate the configuration, print it (secrets masked) and exit');
  addOptions(cmd, BRIDGE_OPTIONS);
  cmd.action(async () => {
    const resolved = resolveCommandOptions(cmd, BRIDGE_OPTIONS);
    const cfg = bridgeConfigFrom(resolved);
    if (cmd.opts<{ checkConfig?: boolean }>().checkConfig) {
      process.stdout.write(JSON.stringify(describeOptions(BRIDGE_OPTIONS, resolved), null, 2) + '\n');
      return;
    }
    const log = createLogger(cfg.logLevel, { service: 'bridge' });
    limitHeapGrowth();
    // Loaded here, not at the top: `canrelay agent` never loads the bridge's code and vice versa (memory on a gateway).
    const { startBridge } = (await import('./bridge.js')) as { startBridge: typeof Start };
    await runDaemon(
      'bridge',
      log,
      () => startBridge(cfg, log, { webRoot: WEB_ROOT }),
      (b) => `bridge listening on ${b.baseUrl}`,
    );
  });
  return cmd;
}
