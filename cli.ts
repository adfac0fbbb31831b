#!/usr/bin/env node
/** canrelay — `canrelay agent …` on a gateway, `canrelay bridge …` in the cloud. */
import { Command } from 'commander';
import { agentCommand } from './agent/cli.js';
import { bridgeCommand } from './cloud-bridge/cli.js';
import { exitOnUsageError } from './core/cli/command.js';
import { applyTestClockOffset } from './core/cli/test-clock-offset.js';

applyTestClockOffset(); // test-only: a skewed clock for the fault tests; a no-op unless its variable is set

const program = new Command('canrelay')
  .description('watch and bridge a CAN bus through a Linux gateway')
  .exitOverride()
  .configureOutput({ writeErr: () => {} }) // usage errors are printed once, by exitOnUsageError
  .showHelpAfterError(false);

for (const sub of [agentCommand(), bridgeCommand()]) {
  sub.exitOverride();
  sub.configureOutput({ writeErr: () => {} });
  program.addCommand(sub);
}

program.parseAsync(process.argv).catch((err: unknown) => exitOnUsageError(err, 'canrelay'));
