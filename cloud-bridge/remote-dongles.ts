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

export function forgetRemovedDongles(
  store: Pick<StateStore, 'dongle'>,
  d: { agents: Pick<AgentServer, 'forget'>; relay: Pick<GroupRelay, 'forget'>; consoles: Pick<BridgeConsoles, 'removeDongle'>; stats: Pick<BridgeStats, 'forgetDongle'> },
): (c: StateChange) => void {
  return (c) => {
    // A dongle still (or again) registered is not forgotten: a removal and a new registration under the
    // same id may reach this node as two notices read after both.
    if (c.kind !== 'dongle' || !c.remote || store.dongle(c.id) !== undefined) return;
    d.agents.forget(c.id);
    d.relay.forget(c.id);
    d.consoles.removeDongle(c.id);
    d.stats.forgetDongle(c.id);
  };
}
