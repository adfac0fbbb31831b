/**
 * A client address allow-list from CIDR text ("10.0.0.0/8,192.168.1.7,fd00::/8"), for services that
 * have no authentication of their own. IPv4 clients of a dual-stack listener arrive as "::ffff:a.b.c.d"
 * and are matched as IPv4.
 */
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import { asIPv4 } from './client-address.js';

export class AllowList {
  private readonly list = new BlockList();

  private constructor(readonly text: string) {}

  /** Parses "cidr,cidr,…"; throws an Error naming the bad entry. A bare address means that host only. */
  static parse(text: string): AllowList {
    const a = new AllowList(text);
    const entries = text.split(',').map((e) => e.trim());
    if (entries.length === 0 || entries.some((e) => e === '')) throw new Error('must be addresses or CIDR blocks separated by commas, e.g. 192.168.1.0/24,10.0.0.5');
    for (const e of entries) {
      const [addr, bits, extra] = e.split('/');
      const family = isIPv4(addr ?? '') ? 'ipv4' : isIPv6(addr ?? '') ? 'ipv6' : undefined;
      const max = family === 'ipv4' ? 32 : 128;
      const prefix = bits === undefined ? max : /^\d{1,3}$/.test(bits) ? Number(bits) : NaN;
      if (family === undefined || extra !== undefined || !(prefix >= 0 && prefix <= max))
        throw new Error(`${JSON.stringify(e.slice(0, 60))} is not an IPv4 or IPv6 address or CIDR block (e.g. 192.168.1.0/24, fd00::/8)`);
      a.list.addSubnet(addr!, prefix, family);
    }
    return a;
  }

  allows(remote: string | undefined): boolean {
    if (remote === undefined) return false;
    const v4 = asIPv4(remote);
    if (v4 !== undefined) return this.list.check(v4, 'ipv4');
    if (isIPv6(remote)) return this.list.check(remote, 'ipv6');
    return false;
  }
}
