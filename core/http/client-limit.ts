/**
 * A cap on the concurrent clients of a stream endpoint (`--fleet-max-clients`, `--console-max-clients`,
 * `--console-max-clients-per-address`). Each client is bounded on its own (--client-max-pending-kib), but
 * their number is not, unless capped: thousands of idle connections from one host held an agent's memory
 * past its unit's MemoryHigh. Past the cap a new client is refused with 503 (what happened and what to do,
 * and Retry-After: core/http/replies.ts sendUnavailable) and counted; a client that leaves frees its place. Clients of "one address" are those
 * of one client group (core/net/client-address.ts: an IPv6 host counts by its /64).
 */
import { clientGroup, ClientGroupCounts } from '../net/client-address.js';

export interface ClientLimitSpec {
  /** The refusal's first words: "the fleet stream is full". */
  full: string;
  /** Which daemon's flag sets `max`: "bridge". */
  daemon: string;
  flag: string;
  max: number;
  /** Clients of one address, an IPv6 one by its /64 (an agent's LAN; behind a reverse proxy every client has its address). */
  perAddress?: { flag: string; max: number };
}

export class ClientLimit {
  private open = 0;
  private readonly byAddress = new ClientGroupCounts();
  /** Clients refused because a cap was reached (metrics). */
  refused = 0;

  constructor(private readonly spec: ClientLimitSpec) {}

  get max(): number {
    return this.spec.max;
  }

  get count(): number {
    return this.open;
  }

  /** Takes a place for a client from `address`: undefined when taken, else the refusal's text (counted). */
  tryAdd(address = ''): string | undefined {
    const s = this.spec;
    const group = clientGroup(address);
    const mine = this.byAddress.count(group);
    let refusal: string | undefined;
    if (this.open >= s.max) refusal = `${s.full}: ${s.max} clients are connected (the ${s.daemon}'s --${s.flag}); close another client or raise --${s.flag}, and try again`;
    else if (s.perAddress !== undefined && mine >= s.perAddress.max)
      refusal = `too many clients from ${group}: ${mine} are connected (the ${s.daemon}'s --${s.perAddress.flag}); close one of them first`;
    if (refusal !== undefined) {
      this.refused++;
      return refusal;
    }
    this.open++;
    if (s.perAddress !== undefined) this.byAddress.add(group);
    return undefined;
  }

  /** Frees the place `tryAdd(address)` took. */
  release(address = ''): void {
    if (this.open > 0) this.open--;
    if (this.spec.perAddress !== undefined) this.byAddress.release(clientGroup(address));
  }
}
