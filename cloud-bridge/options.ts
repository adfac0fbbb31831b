/** Every flag of `canrelay bridge`, as data (see core/cli/options.ts), and the typed config built from them. */
import { join } from 'node:path';
import { OptionError, parse, type OptionSpec, type ResolvedOptions } from '../core/cli/options.js';
import { CORS_ORIGIN_OPTION } from '../core/http/cors.js';
import { consoleConfigFrom, consoleOptions, LOG_LEVEL_OPTION, listenOption, readSecretFile, type ConsoleConfig } from '../core/cli/daemon-options.js';
import { defaultStateDir } from '../core/state/paths.js';
import { CLUSTER_OPTIONS, clusterConfigFrom, type ClusterConfig } from './cluster/cluster-options.js';

/** Shortest admin token accepted: the admin API can register dongles and send frames onto real buses. */
const MIN_ADMIN_TOKEN = 16;

export const BRIDGE_OPTIONS: readonly OptionSpec[] = [
  listenOption('HTTP + WebSocket address', '0.0.0.0:8090'),
  {
    name: 'db',
    arg: '<file|url>',
    description:
      'SQLite state file (default bridge.sqlite in $STATE_DIRECTORY, else in $XDG_STATE_HOME/canrelay, else in ~/.local/state/canrelay), or postgres://user@host:port/database for cluster mode (docs/cluster.md)',
    parse: parse.string(/^.+$/, 'must be a file path or a postgres:// URL'),
    default: () => join(defaultStateDir(), 'bridge.sqlite'),
  },
  {
    name: 'admin-token',
    arg: '<token>',
    description: 'admin API token (better: CANRELAY_ADMIN_TOKEN or --admin-token-file)',
    parse: parse.string(/^\S+$/, 'must be a token without spaces'),
    env: ['CANRELAY_ADMIN_TOKEN'],
    secret: true,
  },
  {
    name: 'admin-token-file',
    arg: '<path>',
    description: 'file holding the admin token (trailing newline ignored); wins over --admin-token',
    parse: parse.string(/^.+$/, 'must be a file path'),
  },
  // Agents' uplinks count: 20,000 held connections cost ~440 MB, within the unit's MemoryMax=1G; a node for more dongles raises it.
  ...consoleOptions({ historyMemoryMb: 64, perStream: true, maxClients: 1000, maxConnections: 20_000, connections: "agents' uplinks, consoles, API calls" }),
  {
    name: 'backlog-max-frames',
    arg: '<n>',
    description: 'frames held per group side while it is offline or slow; the oldest are dropped beyond',
    parse: parse.int(1, 10_000_000),
    default: 10_000,
  },
  {
    name: 'backlog-max-age-ms',
    arg: '<ms>',
    description:
      "frames received by their origin agent longer ago than this (its clock converted to the bridge's, uncertainty counted against the frame) are dropped, never transmitted",
    parse: parse.int(1, 3_600_000),
    default: 2000,
  },
  { name: 'command-timeout', arg: '<s>', description: 'default command timeout, seconds (a command may set timeout_s)', parse: parse.int(1, 86_400), default: 30 },
  { name: 'max-queued-commands', arg: '<n>', description: 'unfinished commands per dongle; beyond it POST …/commands answers 429', parse: parse.int(1, 1_000_000), default: 1000 },
  {
    name: 'command-retention',
    arg: '<duration>',
    description: 'how long a finished command (and its history) is kept after its deadline: seconds, or e.g. 12h, 7d',
    parse: parse.seconds(1, 10 * 365 * 86_400),
    default: 7 * 86_400,
  },
  { name: 'group-state-interval', arg: '<s>', description: 'interval of the periodic group_state event', parse: parse.int(1, 3600), default: 5 },
  { name: 'uplink-heartbeat-seconds', arg: '<s>', description: 'ping agents this often; a link silent for 2.5 intervals is cut', parse: parse.number(0.1, 300), default: 10 },
  {
    name: 'fleet-max-clients',
    arg: '<n>',
    description: 'concurrent fleet stream clients (each gets a snapshot of the whole fleet); beyond it GET /api/v1/streams/fleet answers 503',
    parse: parse.int(1, 100_000),
    default: 50,
  },
  CORS_ORIGIN_OPTION,
  ...CLUSTER_OPTIONS,
  LOG_LEVEL_OPTION,
];

export interface BridgeConfig extends ConsoleConfig {
  listen: string;
  db: string;
  adminToken: string;
  backlogMaxFrames: number;
  backlogMaxAgeMs: number;
  commandTimeoutSeconds: number;
  maxQueuedCommands: number;
  commandRetentionSeconds: number;
  groupStateIntervalSeconds: number;
  uplinkHeartbeatMs: number;
  fleetMaxClients: number;
  logLevel: string;
  /** --cors-origin, parsed: origins joined by commas; undefined: no CORS. */
  corsOrigins?: string;
  /** --cluster/--node-id; undefined: the single process of old. */
  cluster?: ClusterConfig;
}

/** Cross-flag rules and the typed config. Throws OptionError. */
export function bridgeConfigFrom(o: ResolvedOptions): BridgeConfig {
  const str = (k: string): string => String(o[k]);
  const num = (k: string): number => Number(o[k]);
  // The file, when named, wins: it is the explicit choice, while CANRELAY_ADMIN_TOKEN may linger in an environment.
  const adminToken =
    o['admin-token-file'] !== undefined
      ? readSecretFile('admin-token-file', str('admin-token-file'), /^\S+$/, 'one token without spaces')
      : o['admin-token'] !== undefined
        ? str('admin-token')
        : undefined;
  if (adminToken === undefined) throw new OptionError('an admin token is required: set CANRELAY_ADMIN_TOKEN, --admin-token-file <path> or --admin-token <token>');
  if (adminToken.length < MIN_ADMIN_TOKEN) throw new OptionError(`the admin token must be at least ${MIN_ADMIN_TOKEN} characters (e.g. the output of: openssl rand -base64 32)`);
  return {
    listen: str('listen'),
    db: str('db'),
    adminToken,
    ...consoleConfigFrom(o),
    backlogMaxFrames: num('backlog-max-frames'),
    backlogMaxAgeMs: num('backlog-max-age-ms'),
    commandTimeoutSeconds: num('command-timeout'),
    maxQueuedCommands: num('max-queued-commands'),
    commandRetentionSeconds: num('command-retention'),
    groupStateIntervalSeconds: num('group-state-interval'),
    uplinkHeartbeatMs: Math.round(num('uplink-heartbeat-seconds') * 1000),
    fleetMaxClients: num('fleet-max-clients'),
    logLevel: str('log-level'),
    corsOrigins: o['cors-origin'] as string | undefined,
    cluster: clusterConfigFrom(o),
  };
}
