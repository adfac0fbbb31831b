/**
 * The flags both daemons share, declared once: the HTTP address, the log level, the console's sampling
 * and history, and how a secret is read from a file. Each daemon adds its own defaults and wording where
 * they differ (its port, its history budget) through the arguments, never by restating a spec.
 */
import { readFileSync } from 'node:fs';
import { OptionError, parse, type OptionSpec, type ResolvedOptions } from './options.js';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const;

export function listenOption(description: string, defaultAddress: string): OptionSpec {
  return { name: 'listen', arg: '<host:port>', description: `${description} (port 0 picks a free one)`, parse: parse.hostPort(), default: defaultAddress };
}

export const LOG_LEVEL_OPTION: OptionSpec = { name: 'log-level', arg: '<level>', description: LOG_LEVELS.join(', '), parse: parse.oneOf(LOG_LEVELS), default: 'info' };

/**
 * The console flags; `perStream` says so in the help where a daemon serves many streams (the bridge).
 * `maxClientsPerAddress`: only where clients reach the daemon directly (the agent on its LAN); behind a
 * reverse proxy every client has the proxy's address.
 */
export function consoleOptions(d: {
  historyMemoryMb: number;
  perStream: boolean;
  maxClients: number;
  maxClientsPerAddress?: number;
  /** The HTTP server's connection cap, and what its connections are (in the help). */
  maxConnections: number;
  connections: string;
}): OptionSpec[] {
  const each = d.perStream ? ' per stream' : '';
  const perAddress: OptionSpec[] =
    d.maxClientsPerAddress === undefined
      ? []
      : [
          {
            name: 'console-max-clients-per-address',
            arg: '<n>',
            description: 'console clients of one address at once (IPv6 not on a network of this gateway: of one /64 prefix); beyond it a new one gets 503',
            parse: parse.int(1, 100_000),
            default: d.maxClientsPerAddress,
          },
        ];
  return [
    {
      name: 'console-max-clients',
      arg: '<n>',
      description: `console clients at once${d.perStream ? ', all streams' : ''} (each may hold --client-max-pending-kib); beyond it a new one gets 503`,
      parse: parse.int(1, 100_000),
      default: d.maxClients,
    },
    ...perAddress,
    {
      name: 'console-max-rate',
      arg: '<n>',
      description: `can_frame events per second${d.perStream ? ' per console stream' : ' on the console'} before sampling`,
      parse: parse.int(1, 1_000_000),
      default: 200,
    },
    { name: 'history-events', arg: '<n>', description: `console history kept for resume, in events${each}`, parse: parse.int(1, 10_000_000), default: 10_000 },
    { name: 'history-seconds', arg: '<s>', description: 'console history kept for resume, in seconds', parse: parse.int(1, 86_400), default: 60 },
    {
      name: 'history-memory-mb',
      arg: '<MiB>',
      description: 'memory for the console history of all streams together; the oldest is forgotten beyond',
      parse: parse.int(1, 65_536),
      default: d.historyMemoryMb,
    },
    { name: 'keepalive-seconds', arg: '<s>', description: 'SSE keep-alive comment interval', parse: parse.int(1, 3600), default: 15 },
    {
      name: 'max-connections',
      arg: '<n>',
      description: `HTTP connections at once (${d.connections}); beyond it a new one is closed at once, so that held connections cannot take the memory`,
      parse: parse.int(16, 1_000_000),
      default: d.maxConnections,
    },
    {
      name: 'client-max-pending-kib',
      arg: '<KiB>',
      description: 'unsent bytes a console client may fall behind before it is cut off',
      parse: parse.int(16, 1_048_576),
      default: 1024,
    },
  ];
}

export interface ConsoleConfig {
  consoleMaxClients: number;
  /** Undefined where the daemon has no such flag (the bridge). */
  consoleMaxClientsPerAddress: number | undefined;
  consoleMaxRate: number;
  historyEvents: number;
  historySeconds: number;
  historyMemoryBytes: number;
  keepAliveSeconds: number;
  clientMaxPendingBytes: number;
  maxConnections: number;
}

export function consoleConfigFrom(o: ResolvedOptions): ConsoleConfig {
  const num = (k: string): number => Number(o[k]);
  return {
    consoleMaxClients: num('console-max-clients'),
    consoleMaxClientsPerAddress: o['console-max-clients-per-address'] === undefined ? undefined : num('console-max-clients-per-address'),
    consoleMaxRate: num('console-max-rate'),
    historyEvents: num('history-events'),
    historySeconds: num('history-seconds'),
    historyMemoryBytes: num('history-memory-mb') * 1024 * 1024,
    keepAliveSeconds: num('keepalive-seconds'),
    clientMaxPendingBytes: num('client-max-pending-kib') * 1024,
    maxConnections: num('max-connections'),
  };
}

/**
 * A secret from a file named by `flag`: the whole file less one trailing line break (what `echo` and
 * editors add), and nothing else — a token is never silently trimmed of other characters. `rule` says what
 * the token must look like.
 */
export function readSecretFile(flag: string, path: string, rule: RegExp, ruleText: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new OptionError(`--${flag}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const token = text.replace(/\r?\n$/, '');
  if (!rule.test(token)) throw new OptionError(`--${flag}: ${path} must hold ${ruleText}`);
  return token;
}
