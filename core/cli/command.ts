/**
 * Builds a commander subcommand from an option table, adds `--config <file>`, and resolves the effective
 * options (flags > file > environment > defaults). Usage errors print one line and exit with code 2.
 */
import { type Command, CommanderError, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { EXIT_USAGE } from './exit-codes.js';
import { OptionError, resolveOptions, type OptionSpec, type ResolvedOptions } from './options.js';

export function addOptions(cmd: Command, specs: readonly OptionSpec[]): Command {
  for (const s of specs) {
    const flags = s.arg ? `--${s.name} ${s.arg}` : `--${s.name}`;
    const shown = typeof s.default === 'function' || s.default === undefined || s.default === false ? '' : ` (default: ${String(s.default)})`;
    const opt = new Option(flags, s.description + shown);
    if (s.env) opt.env(s.env[0]!);
    if (s.repeatable) opt.argParser((v: string, prev: string[] | undefined) => [...(prev ?? []), v]);
    // Defaults are applied by resolveOptions, not commander, so a config file can still set them.
    cmd.addOption(opt);
  }
  cmd.option('--config <file>', 'JSON file whose keys are the long flag names (flags given here win)');
  return cmd;
}

/** Reads commander's values back by long flag name ("console-max-rate", not "consoleMaxRate"). */
function cliValues(cmd: Command, specs: readonly OptionSpec[]): Record<string, unknown> {
  const raw = cmd.opts<Record<string, unknown>>();
  const out: Record<string, unknown> = {};
  for (const s of specs) {
    const key = s.name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
    // Commander also reads opt.env(); leave the environment to resolveOptions for one precedence order.
    if (raw[key] !== undefined && cmd.getOptionValueSource(key) === 'cli') out[s.name] = raw[key];
  }
  return out;
}

export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new OptionError(`--config: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new OptionError(`--config: ${path} is not valid JSON: ${(err as Error).message}`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new OptionError(`--config: ${path} must hold a JSON object`);
  return json as Record<string, unknown>;
}

export function resolveCommandOptions(cmd: Command, specs: readonly OptionSpec[]): ResolvedOptions {
  const configPath = cmd.opts<{ config?: string }>().config;
  const file = configPath ? readConfigFile(configPath) : {};
  return resolveOptions(specs, cliValues(cmd, specs), file, process.env);
}

/** Prints a usage error as one line and exits 2; everything else is rethrown. */
export function exitOnUsageError(err: unknown, program: string): never {
  if (err instanceof OptionError) {
    process.stderr.write(`${program}: ${err.message}\n`);
    process.exit(EXIT_USAGE);
  }
  if (err instanceof CommanderError) {
    if (err.exitCode === 0) process.exit(0); // --help, --version
    process.stderr.write(`${program}: ${err.message.replace(/^error: /, '')}\n`);
    process.exit(EXIT_USAGE);
  }
  throw err;
}
