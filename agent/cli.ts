/** `canrelay agent`: parse, validate, start, and stop cleanly on SIGTERM/SIGINT. */
import { Command } from 'commander';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { addOptions, resolveCommandOptions } from '../core/cli/command.js';
import { describeOptions, OptionError } from '../core/cli/options.js';
import { startAgent } from './agent.js';
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
    const log = pino({ level: cfg.logLevel, base: { dongle: cfg.id } });
    let agent;
    try {
      agent = await startAgent(cfg, log, { webRoot: WEB_ROOT });
    } catch (err) {
      if (err instanceof OptionError) throw err;
      log.fatal((err as Error).message);
      process.stderr.write(`canrelay agent: ${(err as Error).message}\n`);
      process.exit(1);
    }
    const shutdown = (signal: string): void => {
      // Hard stop if a stuck client or device holds us: systemd expects us gone within its timeout.
      setTimeout(() => process.exit(0), 4500).unref();
      agent.stop(`received ${signal}`).then(
        () => process.exit(0),
        (err: unknown) => {
          log.error({ err }, 'error while stopping');
          process.exit(1);
        },
      );
    };
    process.once('SIGTERM', () => shutdown('SIGTERM'));
    process.once('SIGINT', () => shutdown('SIGINT'));
  });
  return cmd;
}
