/**
 * Cluster mode: a dongle removed on another bridge node is forgotten on this one too, as the admin API
 * does on the node where it was removed: its console closes (readers are cut, the fleet shows the
 * removal), its DBC decoder (up to 16 MiB of parsed text), uplink positions, sequence and relay state and
 * its metric series go. Its token's removal has already cut its uplink here (remote-revocations.ts) and its
 * group's deletion ended the group (remote-groups.ts): both are notified before the dongle. Commands are
 * left to the node that removed it (it failed the unfinished ones). Driven by the PostgreSQL store's change
 * feed; this node's own removals are left to its admin API.
 */
import type { AgentServer } from './agent-server.js';
import type { BridgeConsoles } from './consoles.js';
import type { GroupRelay } from './group-relay.js';
import type { BridgeStats } from './metrics.js';
import type { StateChange } from './pg-store.js';
import type { StateStore } from './state-store.js';

/** What keeps per-dongle state on a node. */
export interface DongleStateHolders {
  agents: Pick<AgentServer, 'forget'>;
  relay: Pick<GroupRelay, 'forget'>;
  consoles: Pick<BridgeConsoles, 'removeDongle'>;
  stats: Pick<BridgeStats, 'forgetDongle'>;
}

/** Forgets what this node keeps of a removed dongle: the one list, for the admin API's removal and a remote one. */
export function forgetDongle(d: DongleStateHolders, id: string): void {
  d.agents.forget(id);
  d.relay.forget(id);
  d.consoles.removeDongle(id);
  d.stats.forgetDongle(id);
}

export function forgetRemovedDongles(store: Pick<StateStore, 'dongle'>, d: DongleStateHolders): (c: StateChange) => void {
  return (c) => {
    // A dongle still (or again) registered is not forgotten: a removal and a new registration under the
    // same id may reach this node as two notices read after both.
    if (c.kind !== 'dongle' || !c.remote || store.dongle(c.id) !== undefined) return;
    forgetDongle(d, c.id);
  };
}
