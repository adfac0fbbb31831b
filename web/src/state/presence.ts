/**
 * The header's interface states from presence events. An event about one interface (`bus` set) is
 * published with the dongle's state (`online`: the agent is still there) and every interface's own state
 * in `buses` (agent/frame-router.ts busState): the interface's state is `buses[bus]`, not the dongle's. Only
 * an event without that map falls back to the dongle's state (offline: down).
 */
import type { PresenceData } from '../events.js';

export type BusStates = Record<string, 'up' | 'down'>;

export function busesAfter(cur: BusStates | undefined, p: PresenceData): BusStates {
  const buses: BusStates = { ...(cur ?? {}), ...(p.buses ?? {}) };
  if (p.bus) buses[p.bus] = p.buses?.[p.bus] ?? (p.state === 'offline' ? 'down' : 'up');
  return buses;
}
