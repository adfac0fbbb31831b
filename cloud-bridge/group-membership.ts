/**
 * Which group and side each dongle is in: the one answer every part of the bridge reads (the consoles,
 * to publish a dongle's events on its group's console too; the admin API, to refuse a dongle already in
 * another group; the uplink's welcome; the cluster's remote sides). Only GroupRelay writes it, as it
 * applies and removes groups, so it always matches the groups that relay now. The store's group_members
 * table keeps the same rule durable (its key keeps a dongle in at most one group) but is not read here.
 */
export type Side = 'a' | 'b';

export interface Membership {
  readonly group: string;
  readonly side: Side;
  /**
   * The revision of what the group relays under (its creation, its sides, its bus map: group-relay.ts
   * relayRevision). Sent in the welcome and the `group` message: an agent that comes back to the same group
   * under another revision drops the relayed frames it still holds for the old one.
   */
  readonly rev: string;
}

export class GroupMembership {
  private readonly members = new Map<string, Membership>();

  of(dongle: string): Membership | undefined {
    return this.members.get(dongle);
  }

  /** Every dongle that is a side of a group. */
  dongles(): IterableIterator<string> {
    return this.members.keys();
  }

  // ---- written by GroupRelay only ----

  set(dongle: string, group: string, side: Side, rev: string): void {
    this.members.set(dongle, { group, side, rev });
  }

  delete(dongle: string): void {
    this.members.delete(dongle);
  }
}
