/** The agent's socketcand flags, as data (see core/cli/options.ts), and the typed config they make. */
import { OptionError, parse, type OptionSpec, type ResolvedOptions } from '../../core/cli/options.js';
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
  return {
    listen,
    allowSend: o['socketcand-allow-send'] === true,
    allow,
    beacon: o['socketcand-beacon'] === true,
    maxPendingBytes: Number(o['socketcand-client-max-pending-kib']) * 1024,
  };
}
