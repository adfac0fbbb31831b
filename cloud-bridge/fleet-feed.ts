/**
 * The fleet stream (`GET /api/v1/streams/fleet`): every dongle's `presence`, every bus's `bus_state`
 * summary, every group's `group_state` and every `command_status` — never a frame — published on one
 * ConsoleStream named "fleet", so it has the consoles' ring, resume and stream_reset rules.
 *
 * It keeps the latest state of each dongle, bus, group and each dongle's last command: a client that
 * starts without a clean resume gets it first as a snapshot (SseWriter `snapshot`), ending with a `log`
 * `fleet_snapshot`, and needs no second request.
 *
 * Changes are published at once and never dropped: presence online/offline, a bus whose link or
 * controller state changed, a group whose mode or sides changed, every command status, registrations
 * and removals. Periodic updates that change none of these (presence "seen", bus_state and group_state
 * refreshes) are merged per dongle/bus/group — the newest wins, keeping its place in line — and published
 * at most PERIODIC_PER_SECOND a second, so the stream's rate is bounded whatever the fleet's size.
 * Memory: one entry per dongle, bus (at most MAX_BUSES_PER_DONGLE per dongle: the bus_state of a further
 * bus name is counted in `busesRefused` and left out) and group, whatever the clients and agents do.
 */
import type { ConsoleStream } from '../core/console/console-stream.js';
import { sseBlockWithoutId } from '../core/console/compact-event.js';
import type { BusStateData, CommandStatusData, ConsoleEvent, GroupStateData, PresenceData } from '../core/console/events.js';
import { logData, presenceData } from '../core/console/normalize.js';
import { MAX_BUSES_PER_DONGLE } from '../core/names.js';

/** Name of the fleet's ConsoleStream (dongles' and groups' are "dongles/…", "groups/…"). */
export const FLEET_STREAM = 'fleet';

/** Periodic (merged) updates published per second, at most; changes come on top and are never held. */
export const PERIODIC_PER_SECOND = 100;
const FLUSH_MS = 250;

export type FleetEvent =
  | { type: 'presence'; data: PresenceData }
  | { type: 'bus_state'; data: BusStateData }
  | { type: 'group_state'; data: GroupStateData }
  | { type: 'command_status'; data: CommandStatusData };

export interface FleetSources {
  /** Registered dongles (the store), for those with no event yet: shown offline since last seen. */
  dongles: () => readonly { id: string; created_at: string; last_seen: string | null }[];
  /** Whether the dongle's agent is connected now (the bridge's own link, the one truth about online). */
  connected: (dongle: string) => boolean;
}

interface DongleEntry {
  presence?: PresenceData;
  /** When the current online/offline state began, and the agent version of its last connection. */
  since?: string;
  version?: string;
  buses: Map<string, BusStateData>;
  command?: CommandStatusData;
}

export class FleetFeed {
  private readonly dongles = new Map<string, DongleEntry>();
  private readonly groups = new Map<string, GroupStateData>();
  /** Keys ("p\0dongle", "b\0dongle\0bus", "g\0group") whose latest periodic update waits to be published. */
  private readonly pending = new Set<string>();
  private readonly timer: NodeJS.Timeout;
  readonly counters = { changes: 0, periodic: 0, merged: 0, busesRefused: 0 };

  constructor(
    readonly stream: ConsoleStream,
    private readonly sources: FleetSources,
  ) {
    this.timer = setInterval(() => this.flush(Math.ceil((PERIODIC_PER_SECOND * FLUSH_MS) / 1000)), FLUSH_MS);
    this.timer.unref();
  }

  /** A dongle's event as its console got it (`dongle` set); logs are not fleet events. */
  dongleEvent(dongle: string, ev: ConsoleEvent): void {
    if (ev.type === 'presence') this.presence(dongle, ev.data);
    else if (ev.type === 'bus_state') this.busState(dongle, ev.data);
    else if (ev.type === 'command_status') {
      const data = { ...ev.data, dongle };
      this.entry(dongle).command = data;
      this.change({ type: 'command_status', data });
    }
  }

  groupState(data: GroupStateData): void {
    const prev = this.groups.get(data.group);
    this.groups.set(data.group, data);
    const same =
      prev !== undefined &&
      prev.mode === data.mode &&
      prev.sides.a.dongle === data.sides.a.dongle &&
      prev.sides.b.dongle === data.sides.b.dongle &&
      prev.sides.a.online === data.sides.a.online &&
      prev.sides.b.online === data.sides.b.online;
    if (same) this.periodic(`g\0${data.group}`);
    else this.change({ type: 'group_state', data });
  }

  dongleRegistered(dongle: string): void {
    this.presence(dongle, presenceData('offline', { reason: 'registered, not connected yet' }));
  }

  dongleRemoved(dongle: string): void {
    this.dongles.delete(dongle);
    this.pending.delete(`p\0${dongle}`);
    for (const k of this.pending) if (k.startsWith(`b\0${dongle}\0`)) this.pending.delete(k);
    this.stream.forgetPresence(dongle);
    this.stream.publish({ type: 'log', data: { ...logData('info', `dongle ${dongle} removed`, 'dongle_removed'), dongle } });
  }

  groupRemoved(gid: string): void {
    this.groups.delete(gid);
    this.pending.delete(`g\0${gid}`);
    this.stream.publish({ type: 'log', data: logData('info', `group ${gid} deleted`, 'group_removed', { group: gid }) });
  }

  /**
   * The current state of the whole fleet as SSE blocks without ids (see the file comment); `groups`: the
   * current state of every group (the relay's).
   */
  snapshot(groups: readonly GroupStateData[]): string[] {
    const out: string[] = [];
    const block = (type: FleetEvent['type'] | 'log', data: object): void => {
      out.push(sseBlockWithoutId(type, JSON.stringify(data)));
    };
    let dongles = 0;
    for (const row of this.sources.dongles()) {
      dongles++;
      const e = this.dongles.get(row.id);
      const seen = row.last_seen ?? row.created_at;
      block('presence', e?.presence ?? { ...presenceData('offline', { reason: 'not connected since the bridge started', since: seen }), ts: seen, dongle: row.id });
      if (e === undefined) continue;
      for (const b of e.buses.values()) block('bus_state', b);
      if (e.command !== undefined) block('command_status', e.command);
    }
    for (const g of groups) block('group_state', g);
    block('log', logData('info', `fleet snapshot: ${dongles} dongles, ${groups.length} groups`, 'fleet_snapshot', { dongles, groups: groups.length }));
    return out;
  }

  /** Pending periodic updates (merged per key). */
  get pendingCount(): number {
    return this.pending.size;
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private presence(dongle: string, ev: PresenceData): void {
    const e = this.entry(dongle);
    if (ev.bus !== undefined) {
      // About one interface, not the dongle: a change, shown as it came.
      this.change({ type: 'presence', data: { ...ev, dongle } });
      return;
    }
    // Mirrored events can be late (an agent's outbox delivers its "offline" of a previous run after the
    // reconnect): one that contradicts the bridge's own link is not the dongle's state now.
    const online = this.sources.connected(dongle);
    if ((ev.state === 'offline') === online) return;
    const wasOnline = e.presence === undefined ? undefined : e.presence.state !== 'offline';
    // Only a flip is a change; an agent's own "online" after the bridge's is a refresh.
    const flipped = wasOnline !== online;
    if (flipped) e.since = ev.ts;
    if (ev.version !== undefined) e.version = ev.version;
    const data: PresenceData = { ...ev, dongle };
    if (e.since !== undefined) data.since = e.since;
    if (e.version !== undefined) data.version = e.version;
    e.presence = data;
    if (flipped) this.change({ type: 'presence', data });
    else this.periodic(`p\0${dongle}`);
  }

  private busState(dongle: string, ev: BusStateData): void {
    const e = this.entry(dongle);
    const prev = e.buses.get(ev.bus);
    if (prev === undefined && e.buses.size >= MAX_BUSES_PER_DONGLE) {
      this.counters.busesRefused++;
      return;
    }
    // A summary: the minute of per-second loads is the bus console's, not the fleet's.
    const data: BusStateData = { ...ev, dongle, load_history: [] };
    e.buses.set(ev.bus, data);
    if (prev !== undefined && prev.link === ev.link && prev.state === ev.state) this.periodic(`b\0${dongle}\0${ev.bus}`);
    else this.change({ type: 'bus_state', data });
  }

  private entry(dongle: string): DongleEntry {
    let e = this.dongles.get(dongle);
    if (e === undefined) this.dongles.set(dongle, (e = { buses: new Map() }));
    return e;
  }

  private change(ev: FleetEvent): void {
    this.counters.changes++;
    // The change carries the newest state: an older periodic update of the same key is superseded.
    const d = ev.data as { dongle?: string; bus?: string; group?: string };
    if (ev.type === 'presence' && d.bus === undefined) this.pending.delete(`p\0${d.dongle}`);
    else if (ev.type === 'bus_state') this.pending.delete(`b\0${d.dongle}\0${d.bus}`);
    else if (ev.type === 'group_state') this.pending.delete(`g\0${d.group}`);
    this.stream.publish(ev);
  }

  private periodic(key: string): void {
    if (this.pending.has(key)) this.counters.merged++;
    else this.pending.add(key);
  }

  /** Publishes up to `n` waiting periodic updates, oldest first. */
  flush(n: number): void {
    for (const key of this.pending) {
      if (n-- <= 0) break;
      this.pending.delete(key);
      const ev = this.latestOf(key);
      if (ev === undefined) continue;
      this.counters.periodic++;
      this.stream.publish(ev);
    }
  }

  private latestOf(key: string): FleetEvent | undefined {
    const [kind, a, b] = key.split('\0') as [string, string, string | undefined];
    if (kind === 'g') {
      const g = this.groups.get(a);
      return g && { type: 'group_state', data: g };
    }
    const e = this.dongles.get(a);
    if (kind === 'p') return e?.presence && { type: 'presence', data: e.presence };
    const bs = e?.buses.get(b!);
    return bs && { type: 'bus_state', data: bs };
  }
}
