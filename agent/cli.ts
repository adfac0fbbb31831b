/** `canrelay agent`: parse, validate, start, and stop cleanly on SIGTERM/SIGINT. */
import { Command } from 'commander';
import { fileURLToPath } from 'node:url';
import { createLogger } from '../core/log/logger.js';
import { addOptions, resolveCommandOptions } from '../core/cli/command.js';
import { runDaemon } from '../core/cli/daemon.js';
import { describeOptions } from '../core/cli/options.js';
import type { startAgent as Start } from './agent.js';
import { AGENT_OPTIONS, agentConfigFrom } from './options.js';

const WEB_ROOT = fileURLToPath(new URL('../web/', import.meta.url));

export function agentCommand(): Command {
  const cmd = new Command('agent')
    .description('read a CAN bus, serve the local console, relay to the cloud bridge')
    .option('--check-config', 'validate the configuration, print it (secrets masked) and exit');
  addOptions(cmd, AGENT_OPTIONS);
  cmd.action(async () => {
    const resolved = resolveCommandOptions(cmd, AGENT_OPTIONS);
    const cfg = agentConfigFrom(resolved);
    if (cmd.opts<{ checkConfig?: boolean }>().checkConfig) {
      process.stdout.write(JSON.stringify(describeOptions(AGENT_OPTIONS, resolved), null, 2) + '\n');
      return;
    }
    const log = createLogger(cfg.logLevel, { dongle: cfg.id });
    // Loaded here, not at the top: `canrelay agent` never loads the bridge's code and vice versa (memory on a gateway).
    const { startAgent } = (await import('./agent.js')) as { startAgent: typeof Start };
    await runDaemon(
      'agent',
      log,
      () => startAgent(cfg, log, { webRoot: WEB_ROOT }),
      (a) => `console listening on ${a.consoleUrl}`,
    );
  });
  return cmd;
}
