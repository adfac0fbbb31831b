/** Every flag of `canrelay bridge`, as data (see core/cli/options.ts), and the typed config built from them. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { OptionError, parse, type OptionSpec, type ResolvedOptions } from '../core/cli/options.js';
import { CORS_ORIGIN_OPTION } from '../core/http/cors.js';
import { defaultStateDir } from '../core/state/paths.js';

/** Shortest admin token accepted: the admin API can register dongles and send frames onto real buses. */
const MIN_ADMIN_TOKEN = 16;

export const BRIDGE_OPTIONS: readonly OptionSpec[] = [
  { name: 'listen', arg: '<host:port>', description: 'HTTP + WebSocket address (port 0 picks a free one)', parse: parse.hostPort(), default: '0.0.0.0:8090' },
  { name: 'db', arg: '<file>', description: 'SQLite state file (default $STATE_DIRECTORY/bridge.sqlite or ~/.local/state/canrelay/bridge.sqlite)', parse: parse.string(/^.+$/, 'must be a file path'), default: () => join(defaultStateDir(), 'bridge.sqlite') },
  { name: 'admin-token', arg: '<token>', description: 'admin API token (better: CANRELAY_ADMIN_TOKEN or --admin-token-file)', parse: parse.string(/^\S+$/, 'must be a token without spaces'), env: ['CANRELAY_ADMIN_TOKEN'], secret: true },
  { name: 'admin-token-file', arg: '<path>', description: 'file holding the admin token (trailing newline ignored); wins over --admin-token', parse: parse.string(/^.+$/, 'must be a file path') },
  { name: 'history-events', arg: '<n>', description: 'console history kept for resume, in events, per stream', parse: parse.int(1, 10_000_000), default: 10_000 },
  { name: 'history-seconds', arg: '<s>', description: 'console history kept for resume, in seconds', parse: parse.int(1, 86_400), default: 60 },
  { name: 'history-memory-mb', arg: '<MiB>', description: 'memory for the console history of all streams together; the oldest is forgotten beyond', parse: parse.int(1, 65_536), default: 64 },
  { name: 'console-max-rate', arg: '<n>', description: 'can_frame events per second per console stream before sampling', parse: parse.int(1, 1_000_000), default: 200 },
  { name: 'backlog-max-frames', arg: '<n>', description: 'frames held per group side while it is offline or slow; the oldest are dropped beyond', parse: parse.int(1, 10_000_000), default: 10_000 },
  { name: 'backlog-max-age-ms', arg: '<ms>', description: 'frames older than this (bridge receive time) are dropped, never transmitted', parse: parse.int(1, 3_600_000), default: 2000 },
  { name: 'command-timeout', arg: '<s>', description: 'default command timeout, seconds (a command may set timeout_s)', parse: parse.int(1, 86_400), default: 30 },
  { name: 'max-queued-commands', arg: '<n>', description: 'unfinished commands per dongle; beyond it POST …/commands answers 429', parse: parse.int(1, 1_000_000), default: 1000 },
  { name: 'command-retention', arg: '<duration>', description: 'how long a finished command (and its history) is kept after its deadline: seconds, or e.g. 12h, 7d', parse: parse.seconds(1, 10 * 365 * 86_400), default: 7 * 86_400 },
  { name: 'group-state-interval', arg: '<s>', description: 'interval of the periodic group_state event', parse: parse.int(1, 3600), default: 5 },
  { name: 'uplink-heartbeat-seconds', arg: '<s>', description: 'ping agents this often; a link silent for 2.5 intervals is cut', parse: parse.number(0.1, 300), default: 10 },
  { name: 'keepalive-seconds', arg: '<s>', description: 'SSE keep-alive comment interval', parse: parse.int(1, 3600), default: 15 },
  { name: 'client-max-pending-kib', arg: '<KiB>', description: 'unsent bytes a console client may fall behind before it is cut off', parse: parse.int(16, 1_048_576), default: 1024 },
  { name: 'fleet-max-clients', arg: '<n>', description: 'concurrent fleet stream clients (each gets a snapshot of the whole fleet); beyond it GET /api/v1/streams/fleet answers 503', parse: parse.int(1, 100_000), default: 50 },
  CORS_ORIGIN_OPTION,
  { name: 'log-level', arg: '<level>', description: 'trace, debug, info, warn, error, fatal', parse: parse.oneOf(['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const), default: 'info' },
];

export interface BridgeConfig {
  listen: string;
  db: string;
  adminToken: string;
  historyEvents: number;
  historySeconds: number;
  historyMemoryBytes: number;
  consoleMaxRate: number;
  backlogMaxFrames: number;
  backlogMaxAgeMs: number;
  commandTimeoutSeconds: number;
  maxQueuedCommands: number;
  commandRetentionSeconds: number;
  groupStateIntervalSeconds: number;
  uplinkHeartbeatMs: number;
  keepAliveSeconds: number;
  clientMaxPendingBytes: number;
  fleetMaxClients: number;
  logLevel: string;
  /** --cors-origin, parsed: origins joined by commas; undefined: no CORS. */
  corsOrigins?: string;
}

function readTokenFile(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new OptionError(`--admin-token-file: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const token = text.replace(/\r?\n$/, '');
  if (!/^\S+$/.test(token)) throw new OptionError(`--admin-token-file: ${path} must hold one token without spaces`);
  return token;
}

/** Cross-flag rules and the typed config. Throws OptionError. */
export function bridgeConfigFrom(o: ResolvedOptions): BridgeConfig {
  const str = (k: string): string => String(o[k]);
  const num = (k: string): number => Number(o[k]);
  // The file, when named, wins: it is the explicit choice, while CANRELAY_ADMIN_TOKEN may linger in an environment.
  const adminToken = o['admin-token-file'] !== undefined ? readTokenFile(str('admin-token-file')) : o['admin-token'] !== undefined ? str('admin-token') : undefined;
  if (adminToken === undefined) throw new OptionError('an admin token is required: set CANRELAY_ADMIN_TOKEN, --admin-token-file <path> or --admin-token <token>');
  if (adminToken.length < MIN_ADMIN_TOKEN)
    throw new OptionError(`the admin token must be at least ${MIN_ADMIN_TOKEN} characters (e.g. the output of: openssl rand -base64 32)`);
  return {
    listen: str('listen'),
    db: str('db'),
    adminToken,
    historyEvents: num('history-events'),
    historySeconds: num('history-seconds'),
    historyMemoryBytes: num('history-memory-mb') * 1024 * 1024,
    consoleMaxRate: num('console-max-rate'),
    backlogMaxFrames: num('backlog-max-frames'),
    backlogMaxAgeMs: num('backlog-max-age-ms'),
    commandTimeoutSeconds: num('command-timeout'),
    maxQueuedCommands: num('max-queued-commands'),
    commandRetentionSeconds: num('command-retention'),
    groupStateIntervalSeconds: num('group-state-interval'),
    uplinkHeartbeatMs: Math.round(num('uplink-heartbeat-seconds') * 1000),
    keepAliveSeconds: num('keepalive-seconds'),
    clientMaxPendingBytes: num('client-max-pending-kib') * 1024,
    fleetMaxClients: num('fleet-max-clients'),
    logLevel: str('log-level'),
    corsOrigins: o['cors-origin'] as string | undefined,
  };
}
