/** Every flag of `canrelay agent`, as data (see core/cli/options.ts). */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { OptionError, parse, type OptionSpec, type ResolvedOptions } from '../core/cli/options.js';
import { BUS_BITRATE_LIST_RULE, BUS_PREFIXED_PATH_RULE, ID_RULE, ID_RULE_TEXT, IFNAME_LIST_RULE } from '../core/names.js';
import { CORS_ORIGIN_OPTION } from '../core/http/cors.js';
import { consoleConfigFrom, consoleOptions, LOG_LEVEL_OPTION, listenOption, readSecretFile, type ConsoleConfig } from '../core/cli/daemon-options.js';
import { defaultStateDir } from '../core/state/paths.js';
import { readLocalTokenFile, type LocalToken } from './local-auth.js';
import { BRIDGE_OPTION, bridgeUrlsOf } from './uplink/bridge-urls.js';
import { SOCKETCAND_OPTIONS, socketcandConfigFrom, type SocketcandConfig } from './socketcand/options.js';

/** An agent token as the bridge issues it (and as --token, CANRELAY_TOKEN or --token-file give it). */
const AGENT_TOKEN_RULE = /^\S{16,512}$/;

export function defaultDongleId(): string {
  const cleaned = hostname()
    .replace(/[^A-Za-z0-9._-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 64);
  return cleaned === '' ? 'gateway' : cleaned;
}

export const AGENT_OPTIONS: readonly OptionSpec[] = [
  {
    name: 'id',
    arg: '<dongle-id>',
    description: 'dongle id: letters, digits, . _ -, 1-64 chars (default: host name)',
    parse: parse.string(ID_RULE, `must be ${ID_RULE_TEXT}`),
    default: defaultDongleId,
  },
  {
    name: 'can',
    arg: '<if[,if…]>',
    description: 'read real SocketCAN interfaces, e.g. can0,can1',
    parse: parse.string(IFNAME_LIST_RULE, 'must be interface names separated by commas, e.g. can0,can1'),
  },
  { name: 'replay', arg: '<file>', description: 'replay a candump -L log file', parse: parse.string(/^.+$/, 'must be a file path') },
  { name: 'replay-speed', arg: '<x>', description: 'replay speed: 1 = recorded timing, 0 = as fast as possible', parse: parse.number(0, 1000), default: 1 },
  { name: 'replay-loop', description: 'start the replay over at its end', parse: parse.bool(), default: false },
  { name: 'sim', description: 'use the built-in simulated vehicle bus (can0)', parse: parse.bool(), default: false },
  { name: 'sim-rate', arg: '<frames/s>', description: 'total frame rate of the simulated bus', parse: parse.int(1, 1_000_000), default: 2000 },
  listenOption('console HTTP address', '0.0.0.0:8080'),
  {
    name: 'state-dir',
    arg: '<dir>',
    description: 'state directory (SQLite); default $STATE_DIRECTORY, else $XDG_STATE_HOME/canrelay, else ~/.local/state/canrelay',
    parse: parse.string(/^.+$/, 'must be a directory path'),
    default: () => defaultStateDir(),
  },
  // 1,024 held connections cost ~22 MB (Node keeps up to 16 KiB of unfinished headers each): the unit's MemoryMax is 192M.
  ...consoleOptions({ historyMemoryMb: 16, perStream: false, maxClients: 64, maxClientsPerAddress: 16, maxConnections: 1024, connections: 'consoles, downloads, API calls' }),
  { name: 'presence-interval', arg: '<s>', description: 'interval of the periodic presence "seen" event', parse: parse.int(1, 86_400), default: 30 },
  BRIDGE_OPTION,
  {
    name: 'token',
    arg: '<token>',
    description: 'agent token for --bridge (prefer CANRELAY_TOKEN or --token-file)',
    parse: parse.string(AGENT_TOKEN_RULE, 'must be the token the bridge issued'),
    env: ['CANRELAY_TOKEN'],
    secret: true,
  },
  { name: 'token-file', arg: '<path>', description: 'read the agent token from this file', parse: parse.string(/^.+$/, 'must be a file path') },
  {
    name: 'uplink-buffer-frames',
    arg: '<n>',
    description: 'received frames held for the bridge while it is unreachable or slow',
    parse: parse.int(1000, 10_000_000),
    default: 100_000,
  },
  {
    name: 'uplink-batch-ms',
    arg: '<ms>',
    description:
      'longest a received frame waits for others before it is sent to the bridge (0: at once, a message per burst); fewer, larger messages cost the bridge and the gateway less per frame and add up to this much latency to the relay',
    parse: parse.int(0, 50),
    default: 0,
  },
  {
    name: 'relay-max-age-ms',
    arg: '<ms>',
    description:
      'age limit of relayed frames: older ones are not sent up after an outage, and frames relayed here are transmitted only if their origin received them less than this ago (a stale frame is dangerous on a bus)',
    parse: parse.int(1, 3_600_000),
    default: 2000,
  },
  {
    name: 'uplink-heartbeat-seconds',
    arg: '<s>',
    description:
      "ping the bridge this often; a link with no answer for 2.5 intervals is cut and the agent reconnects (the next --bridge URL, or another node through the balancer): how long a frozen bridge node holds this gateway's frames",
    parse: parse.number(0.1, 300),
    default: 10,
  },
  {
    name: 'tx-kernel-frames',
    arg: '<n>',
    description:
      "SocketCAN: frames of this agent an interface's kernel transmit queue may hold at once (0: no limit but the kernel's txqueuelen); the others wait in the agent, where their deadline applies: a frame the kernel took goes out however late (docs/bus-health.md)",
    parse: parse.int(0, 100_000),
    default: 8,
  },
  {
    name: 'tx-flush-stale',
    description:
      "SocketCAN: when frames of this agent pass their deadline still in an interface's kernel queue (no node acknowledging), set the interface down and up, which drops them (needs CAP_NET_ADMIN)",
    parse: parse.bool(),
    default: false,
  },
  { name: 'tx-retry-ms', arg: '<ms>', description: 'how long a frame is retried while the local transmit queue is full', parse: parse.int(0, 60_000), default: 100 },
  { name: 'outbox-max-events', arg: '<n>', description: 'console events kept for the bridge while it is unreachable', parse: parse.int(100, 10_000_000), default: 50_000 },
  { name: 'record-dir', arg: '<dir>', description: 'where recordings are kept (default: <state-dir>/recordings)', parse: parse.string(/^.+$/, 'must be a directory path') },
  {
    name: 'record-max-bytes',
    arg: '<n>',
    description: 'all recording files together stay within this many bytes; the oldest files go first',
    parse: parse.int(65_536, Number.MAX_SAFE_INTEGER),
    default: 512 * 1024 * 1024,
  },
  {
    name: 'record-rotate-bytes',
    arg: '<n>',
    description: 'a recording file is closed and the next begun past this size (default: 1/8 of --record-max-bytes, at most 32 MiB)',
    parse: parse.int(4096, Number.MAX_SAFE_INTEGER),
  },
  { name: 'record-gzip', description: 'gzip-compress recording files (.log.gz)', parse: parse.bool(), default: false },
  { name: 'record-on-start', description: 'start recording every bus when the agent starts (before the first frame)', parse: parse.bool(), default: false },
  {
    name: 'local-token-file',
    arg: '<path>',
    description: 'tokens for the local API, one per line: "admin <token>" or "read <token>"; every write then needs an admin token',
    parse: parse.string(/^.+$/, 'must be a file path'),
  },
  { name: 'console-auth', description: 'reads (console, recordings, info, metrics) need a token from --local-token-file too', parse: parse.bool(), default: false },
  {
    name: 'tls-cert',
    arg: '<path>',
    description: 'serve the local API over HTTPS with this PEM certificate (chain); needs --tls-key',
    parse: parse.string(/^.+$/, 'must be a file path'),
  },
  { name: 'tls-key', arg: '<path>', description: 'the PEM private key of --tls-cert', parse: parse.string(/^.+$/, 'must be a file path') },
  {
    name: 'dbc',
    arg: '<[bus=]file>',
    description: 'decode signals with this DBC file (repeatable; bus=file binds it to one bus)',
    parse: parse.list(parse.string(BUS_PREFIXED_PATH_RULE, 'must be a DBC file path, or <bus>=<file> for one bus')),
    repeatable: true,
  },
  {
    name: 'bitrate',
    arg: '<bus>=<bps>[,…]',
    description: 'nominal bitrate of buses whose kernel reports none (replay, sim, vcan), for bus load, e.g. can0=500000',
    parse: parse.string(BUS_BITRATE_LIST_RULE, 'must be bus=bitrate pairs separated by commas, e.g. can0=500000,can1=250000'),
  },
  { name: 'bus-state-interval', arg: '<s>', description: 'interval of the periodic bus_state event (also sent on every change)', parse: parse.int(1, 3600), default: 5 },
  CORS_ORIGIN_OPTION,
  ...SOCKETCAND_OPTIONS,
  LOG_LEVEL_OPTION,
];

export interface AgentConfig extends ConsoleConfig {
  id: string;
  source:
    | { kind: 'can'; interfaces: string[]; txKernelFrames: number; flushStale: boolean }
    | { kind: 'replay'; file: string; speed: number; loop: boolean }
    | { kind: 'sim'; rate: number };
  listen: string;
  stateDir: string;
  presenceIntervalSeconds: number;
  logLevel: string;
  uplink?: { bridges: string[]; token: string; bufferFrames: number; batchMs: number; maxAgeMs: number; heartbeatMs: number; outboxMax: number };
  txRetryMs: number;
  record: { dir: string; maxBytes: number; rotateBytes: number; gzip: boolean; onStart: boolean };
  /** Tokens of the local API (--local-token-file); undefined: the API is open. */
  localTokens?: LocalToken[];
  consoleAuth: boolean;
  /** --cors-origin, parsed: origins joined by commas; undefined: no CORS. */
  corsOrigins?: string;
  tls?: { cert: string; key: string };
  /** --dbc values as given: "file" or "bus=file". */
  dbc: string[];
  /** --bitrate: nominal bitrate per bus where the kernel has none. */
  bitrates: Map<string, number>;
  busStateIntervalSeconds: number;
  /** --socketcand-listen and friends; undefined: no socketcand server. */
  socketcand?: SocketcandConfig;
}

/** Cross-flag rules and the typed config. Throws OptionError. */
export function agentConfigFrom(o: ResolvedOptions): AgentConfig {
  const sources = (['can', 'replay', 'sim'] as const).filter((k) => o[k] !== undefined && o[k] !== false);
  if (sources.length === 0) throw new OptionError('choose a CAN source: --can <if>, --replay <file> or --sim');
  if (sources.length > 1) throw new OptionError(`choose one CAN source, not ${sources.map((s) => '--' + s).join(' and ')}`);
  const str = (k: string): string => String(o[k]);
  const num = (k: string): number => Number(o[k]);
  const source: AgentConfig['source'] =
    sources[0] === 'can'
      ? { kind: 'can', interfaces: [...new Set(str('can').split(','))], txKernelFrames: num('tx-kernel-frames'), flushStale: o['tx-flush-stale'] === true }
      : sources[0] === 'replay'
        ? { kind: 'replay', file: str('replay'), speed: num('replay-speed'), loop: o['replay-loop'] === true }
        : { kind: 'sim', rate: num('sim-rate') };
  return {
    id: str('id'),
    source,
    listen: str('listen'),
    stateDir: str('state-dir'),
    ...consoleConfigFrom(o),
    presenceIntervalSeconds: num('presence-interval'),
    logLevel: str('log-level'),
    uplink: uplinkFrom(o),
    txRetryMs: num('tx-retry-ms'),
    record: recordFrom(o),
    ...localApiFrom(o),
    corsOrigins: o['cors-origin'] as string | undefined,
    dbc: (o.dbc as string[] | undefined) ?? [],
    bitrates: bitratesFrom(o.bitrate as string | undefined),
    busStateIntervalSeconds: num('bus-state-interval'),
    socketcand: socketcandConfigFrom(o),
  };
}

function recordFrom(o: ResolvedOptions): AgentConfig['record'] {
  const maxBytes = Number(o['record-max-bytes']);
  const rotate = o['record-rotate-bytes'] === undefined ? undefined : Number(o['record-rotate-bytes']);
  // At least four files fit the bound, so deleting the oldest always leaves room for the one being written.
  if (rotate !== undefined && rotate > maxBytes / 4)
    throw new OptionError(`--record-rotate-bytes ${rotate} must be at most a quarter of --record-max-bytes (${Math.floor(maxBytes / 4)})`);
  return {
    dir: o['record-dir'] === undefined ? join(String(o['state-dir']), 'recordings') : String(o['record-dir']),
    maxBytes,
    rotateBytes: rotate ?? Math.min(32 * 1024 * 1024, Math.floor(maxBytes / 8)),
    gzip: o['record-gzip'] === true,
    onStart: o['record-on-start'] === true,
  };
}

function localApiFrom(o: ResolvedOptions): Pick<AgentConfig, 'localTokens' | 'consoleAuth' | 'tls'> {
  const tokenFile = o['local-token-file'] as string | undefined;
  const consoleAuth = o['console-auth'] === true;
  if (consoleAuth && tokenFile === undefined) throw new OptionError('--console-auth needs --local-token-file (the tokens readers present)');
  let localTokens: LocalToken[] | undefined;
  if (tokenFile !== undefined) {
    try {
      localTokens = readLocalTokenFile(tokenFile);
    } catch (err) {
      throw new OptionError(`--local-token-file: ${(err as Error).message}`);
    }
  }
  const cert = o['tls-cert'] as string | undefined;
  const key = o['tls-key'] as string | undefined;
  if ((cert === undefined) !== (key === undefined)) throw new OptionError('HTTPS needs both --tls-cert and --tls-key');
  const pem = (flag: string, path: string): string => {
    try {
      return readFileSync(path, 'utf8');
    } catch (err) {
      throw new OptionError(`--${flag}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  };
  const tls = cert !== undefined && key !== undefined ? { cert: pem('tls-cert', cert), key: pem('tls-key', key) } : undefined;
  return { localTokens, consoleAuth, tls };
}

function bitratesFrom(list: string | undefined): Map<string, number> {
  const m = new Map<string, number>();
  for (const pair of list ? list.split(',') : []) {
    const [bus, bps] = pair.split('=') as [string, string];
    const v = Number(bps);
    if (v < 1000 || v > 20_000_000) throw new OptionError(`--bitrate: ${bus}=${bps} is outside 1000-20000000 bit/s`);
    if (m.has(bus)) throw new OptionError(`--bitrate: ${bus} is given twice`);
    m.set(bus, v);
  }
  return m;
}

function uplinkFrom(o: ResolvedOptions): AgentConfig['uplink'] {
  let token = o.token as string | undefined;
  const file = o['token-file'] as string | undefined;
  if (file !== undefined) {
    if (token !== undefined) throw new OptionError('give the agent token once: --token (or CANRELAY_TOKEN) or --token-file, not both');
    token = readSecretFile('token-file', file, AGENT_TOKEN_RULE, 'one agent token (the one the bridge issued) and nothing else');
  }
  if (o.bridge === undefined) {
    if (token !== undefined && o.token !== undefined && process.env.CANRELAY_TOKEN === undefined) throw new OptionError('--token needs --bridge');
    return undefined;
  }
  if (token === undefined) throw new OptionError('--bridge needs an agent token: --token-file <path>, CANRELAY_TOKEN, or --token');
  return {
    bridges: bridgeUrlsOf(String(o.bridge)),
    token,
    bufferFrames: Number(o['uplink-buffer-frames']),
    batchMs: Number(o['uplink-batch-ms']),
    maxAgeMs: Number(o['relay-max-age-ms']),
    heartbeatMs: Math.round(Number(o['uplink-heartbeat-seconds']) * 1000),
    outboxMax: Number(o['outbox-max-events']),
  };
}
