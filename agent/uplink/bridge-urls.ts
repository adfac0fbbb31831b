/**
 * The agent's `--bridge` option: one or more bridge URLs (comma-separated, the flag repeated, a config
 * file's array or string, or CANRELAY_BRIDGE), each checked alone, and the order the uplink tries them in.
 * Several URLs name the nodes of a bridge cluster (docs/cluster.md): when the one in use fails, the agent
 * tries the next, so a node's loss needs no load balancer in front of the nodes.
 */
import { OptionError, parse, type OptionSpec } from '../../core/cli/options.js';

const oneUrl = parse.url(['http:', 'https:']);

/** Every URL of `raw` (a string with commas, or a list of them), each validated; throws naming the bad one. */
export function parseBridgeUrls(raw: unknown): string[] {
  const items = (Array.isArray(raw) ? raw : [raw]).flatMap((x) => String(x).split(','));
  const urls: string[] = [];
  items.forEach((item, i) => {
    const s = item.trim();
    const which = items.length > 1 ? `URL ${i + 1} of ${items.length}` : 'the URL';
    if (s === '') throw new OptionError(`${which} is empty (a stray comma?); give http(s)://host:port[,http(s)://host2:port…]`);
    let u: string;
    try {
      u = oneUrl(s);
    } catch (err) {
      throw new OptionError(`${which} ${JSON.stringify(s.slice(0, 80))}: ${(err as Error).message}`);
    }
    if (urls.includes(u)) throw new OptionError(`${JSON.stringify(u.slice(0, 80))} is given twice`);
    urls.push(u);
  });
  return urls;
}

export const BRIDGE_OPTION: OptionSpec = {
  name: 'bridge',
  arg: '<url[,url…]>',
  description:
    'cloud bridge to connect to, http(s)://host:port (TLS with https); several (comma-separated or repeated): the nodes of a bridge cluster, tried in order, the next one when the current fails',
  // Kept as one comma-joined string (what --check-config prints: one URL shows as given); bridgeUrlsOf splits it.
  parse: (raw: unknown): string => parseBridgeUrls(raw).join(','),
  env: ['CANRELAY_BRIDGE'],
  repeatable: true,
};

/** The URLs of a resolved `bridge` option. */
export const bridgeUrlsOf = (value: string): string[] => value.split(',');

/** Round robin over the URLs: the connection after a failed or lost one goes to the next URL. */
export class BridgeRotation {
  private i = 0;
  constructor(readonly urls: readonly string[]) {
    if (urls.length === 0) throw new Error('no bridge URL');
  }
  get current(): string {
    return this.urls[this.i]!;
  }
  /** The last connection failed or was lost: the next attempt goes to the next URL (the same one when alone). */
  next(): void {
    this.i = (this.i + 1) % this.urls.length;
  }
}
