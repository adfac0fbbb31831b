/** The agent's socketcand flags, as data (see core/cli/options.ts), and the typed config they make. */
import { OptionError, parse, splitHostPort, type OptionSpec, type ResolvedOptions } from '../../core/cli/options.js';
import { AllowList } from '../../core/net/allow-list.js';

export const SOCKETCAND_OPTIONS: readonly OptionSpec[] = [
  {
    name: 'socketcand-listen',
    arg: '<host:port>',
    description: 'serve the socketcand protocol (python-can, SavvyCAN, Kayak) on this TCP address; its usual port is 29536. No authentication: trusted LAN or SSH tunnel only',
    parse: parse.hostPort(),
  },
  { name: 'socketcand-allow-send', description: 'let socketcand clients transmit (< send >); off: listen-only', parse: parse.bool(), default: false },
  {
    name: 'socketcand-allow',
    arg: '<cidr,…>',
    description: 'only these client addresses may connect, e.g. 192.168.1.0/24,10.0.0.5',
    parse: parse.string(/^.+$/, 'must be addresses or CIDR blocks separated by commas'),
  },
  { name: 'socketcand-beacon', description: 'announce the socketcand server by UDP broadcast (CANBeacon, port 42000) every 3 s', parse: parse.bool(), default: false },
  {
    name: 'socketcand-client-max-pending-kib',
    arg: '<KiB>',
    description: 'unsent bytes a socketcand client may fall behind before it is cut off',
    parse: parse.int(16, 1_048_576),
    default: 1024,
  },
];

export interface SocketcandConfig {
  listen: string;
  allowSend: boolean;
  allow: AllowList | undefined;
  beacon: boolean;
  maxPendingBytes: number;
}

/** undefined when --socketcand-listen is not given; the other socketcand flags then are a mistake. Throws OptionError. */
export function socketcandConfigFrom(o: ResolvedOptions): SocketcandConfig | undefined {
  const listen = o['socketcand-listen'] as string | undefined;
  if (listen === undefined) {
    for (const k of ['socketcand-allow-send', 'socketcand-allow', 'socketcand-beacon'])
      if (o[k] !== undefined && o[k] !== false) throw new OptionError(`--${k} needs --socketcand-listen <host:port>`);
    return undefined;
  }
  let allow: AllowList | undefined;
  if (o['socketcand-allow'] !== undefined) {
    try {
      allow = AllowList.parse(String(o['socketcand-allow']));
    } catch (err) {
      throw new OptionError(`--socketcand-allow: ${(err as Error).message}`);
    }
  }
  // socketcand has no authentication: an operator who made the local API need tokens must not find the bus
  // open (reads) or writable (sends) on another port. Loopback (reached through an SSH tunnel) or an
  // allow-list of client addresses is the socketcand way; anything else stops the start.
  const allowSend = o['socketcand-allow-send'] === true;
  if (allow === undefined && !isLoopbackHost(splitHostPort(listen).host)) {
    if (allowSend && o['local-token-file'] !== undefined)
      throw new OptionError(
        `--socketcand-allow-send on ${listen} lets anyone who reaches it transmit without a token, past --local-token-file (socketcand has no authentication): listen on 127.0.0.1 and reach it through an SSH tunnel, or name the clients with --socketcand-allow`,
      );
    if (o['console-auth'] === true)
      throw new OptionError(
        `--console-auth makes reads need a token, but socketcand on ${listen} serves the whole bus to anyone who reaches it: listen on 127.0.0.1 and reach it through an SSH tunnel, or name the clients with --socketcand-allow`,
      );
  }
  return {
    listen,
    allowSend,
    allow,
    beacon: o['socketcand-beacon'] === true,
    maxPendingBytes: Number(o['socketcand-client-max-pending-kib']) * 1024,
  };
}

/** A listen host only this machine reaches (127.0.0.0/8, ::1, localhost). */
function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\./.test(h);
}
