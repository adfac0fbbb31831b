/**
 * Cluster mode: a group created, changed or deleted on another bridge node is applied to this node's
 * relay and consoles too, as the admin API does on the node where the change was made (a side connected
 * here must relay under the new group at once). Driven by the PostgreSQL store's change feed; this
 * node's own changes are left to its admin API.
 */
import type { BridgeConsoles } from './consoles.js';
import type { GroupRelay } from './group-relay.js';
import type { StateChange } from './pg-store.js';
import type { StateStore } from './state-store.js';

export function applyRemoteGroups(store: StateStore, relay: GroupRelay, consoles: BridgeConsoles): (c: StateChange) => void {
  return (c) => {
    if (c.kind !== 'group' || !c.remote) return;
    const row = store.group(c.id);
    if (row) return relay.put(row, !relay.has(c.id));
    if (!relay.has(c.id)) return;
    relay.remove(c.id);
    consoles.removeGroup(c.id);
  };
}
