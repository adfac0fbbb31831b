/**
 * Where a client comes from, for the per-address caps (the agent's --console-max-clients-per-address,
 * socketcand's clients of one address, recording downloads of one address): which clients count as one
 * host, and their counts. One rule for every cap:
 *
 * - IPv4, and IPv4-mapped IPv6 (an IPv4 client of a dual-stack listener, "::ffff:a.b.c.d"): per address.
 * - IPv6 from a network of the gateway's own (the /64 of one of its addresses with a prefix of /64 or
 *   wider: the LAN, whose hosts all share it under SLAAC) and link-local addresses (fe80::/10, with their
 *   zone: every host of the link shares fe80::/64): per address — by prefix, the whole LAN would share
 *   one host's places.
 * - Other IPv6 (through a router: a VPN, a site network): per /64 prefix. A site gives a host a whole /64
 *   and, with privacy or temporary addresses (RFC 8981), it takes new addresses in it at will: counted per
 *   address, one host had 2^64 addresses' worth of places.
 */
import { networkInterfaces } from 'node:os';
import { isIPv4, isIPv6 } from 'node:net';

/** How long the gateway's own networks are taken as read (interfaces change rarely; this is asked per connection). */
const OWN_NETWORKS_TTL_MS = 10_000;
let ownNetworksRead: { at: number; prefixes: ReadonlySet<string> } | undefined;

/**
 * The /64 prefixes (as clientGroup writes them) of the gateway's own IPv6 addresses whose prefix is /64 or
 * wider: the networks it is on, whose clients are the LAN's hosts.
 */
export function ownNetworks(): ReadonlySet<string> {
  const now = performance.now();
  if (ownNetworksRead && now - ownNetworksRead.at < OWN_NETWORKS_TTL_MS) return ownNetworksRead.prefixes;
  const prefixes = new Set<string>();
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) {
      const bits = Number(a.cidr?.split('/')[1]);
      if (a.family !== 'IPv6' || !(bits <= 64)) continue;
      const groups = ipv6Groups(a.address.split('%')[0]!);
      if (groups) prefixes.add(prefix64(groups));
    }
  }
  ownNetworksRead = { at: now, prefixes };
  return prefixes;
}

function prefix64(groups: number[]): string {
  return `${ipv6Text([...groups.slice(0, 4), 0, 0, 0, 0])}/64`;
}

/** The IPv4 address of an IPv4 or IPv4-mapped IPv6 address ("::ffff:10.0.0.5" → "10.0.0.5"), else undefined. */
export function asIPv4(remote: string): string | undefined {
  if (isIPv4(remote)) return remote;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(remote);
  return mapped && isIPv4(mapped[1]!) ? mapped[1] : undefined;
}

/** The eight 16-bit groups of an IPv6 address without zone, or undefined when it is not one. */
function ipv6Groups(addr: string): number[] | undefined {
  if (!isIPv6(addr)) return undefined;
  let text = addr;
  // A dotted IPv4 tail ("::ffff:1.2.3.4", "64:ff9b::1.2.3.4") is the last two groups.
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const parts = (s: string): number[] => (s === '' ? [] : s.split(':').map((h) => parseInt(h, 16)));
  const [head, tail] = text.split('::') as [string, string | undefined];
  const h = parts(head);
  const t = tail === undefined ? [] : parts(tail);
  const groups = [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t];
  return groups.length === 8 && groups.every((g) => g >= 0 && g <= 0xffff) ? groups : undefined;
}

/**
 * The key clients of `remote` (a socket's remoteAddress) are counted under, also the words a refusal
 * names them by: "192.168.1.7", "2001:db8:1:2::/64", "fe80::1%eth0". `own`: the gateway's own networks
 * (ownNetworks; tests pass theirs).
 */
export function clientGroup(remote: string | undefined, own: ReadonlySet<string> = ownNetworks()): string {
  if (remote === undefined || remote === '') return '';
  const v4 = asIPv4(remote);
  if (v4 !== undefined) return v4;
  const zone = remote.indexOf('%');
  const groups = ipv6Groups(zone < 0 ? remote : remote.slice(0, zone));
  if (groups === undefined) return remote; // not an IP address (a Unix socket's): itself
  // An IPv4-mapped address Node did not write dotted.
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) return [groups[6]! >> 8, groups[6]! & 255, groups[7]! >> 8, groups[7]! & 255].join('.');
  if ((groups[0]! & 0xffc0) === 0xfe80) return remote.toLowerCase();
  const prefix = prefix64(groups);
  return own.has(prefix) ? ipv6Text(groups) : prefix;
}

/** Eight groups as RFC 5952 writes them: lower case, the longest run of two or more zero groups as "::". */
function ipv6Text(groups: number[]): string {
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < groups.length; ) {
    let j = i;
    while (j < groups.length && groups[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j === i ? i + 1 : j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

/** Clients holding a place, per client group (clientGroup); a group with none is forgotten. */
export class ClientGroupCounts {
  private readonly counts = new Map<string, number>();

  count(group: string): number {
    return this.counts.get(group) ?? 0;
  }

  add(group: string): void {
    this.counts.set(group, this.count(group) + 1);
  }

  release(group: string): void {
    const n = this.count(group);
    if (n <= 1) this.counts.delete(group);
    else this.counts.set(group, n - 1);
  }
}
