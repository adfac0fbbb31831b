/**
 * The fleet page's model: one row per dongle and per group, from the bridge's fleet stream
 * (GET /api/v1/streams/fleet). The stream opens with a snapshot (id-less events ending with a `log`
 * `fleet_snapshot`); rows the snapshot does not mention are gone from the bridge and are dropped then.
 * Memory: one row per dongle/group and at most RECENT_COMMANDS statuses per dongle.
 */
import { tsToMs, type BusStateData, type CommandStatusData, type ConsoleEvent, type GroupStateData } from '../events.js';

export const RECENT_COMMANDS = 20;

export interface DongleRow {
  id: string;
  online: boolean;
  /** Epoch ms the current online/offline state began (NaN when unknown). */
  sinceMs: number;
  /** Epoch ms of the newest presence (online, offline or seen). */
  lastSeenMs: number;
  version: string;
  buses: Map<string, BusStateData>;
  group: string;
  side: string;
  /** Newest first. */
  commands: CommandStatusData[];
  /** The model's version when this row last changed: a view redraws only rows whose rev moved. */
  rev: number;
}

export class FleetModel {
  readonly dongles = new Map<string, DongleRow>();
  readonly groups = new Map<string, GroupStateData>();
  /** Bumped on every change: views redraw when it moved. */
  version = 0;
  snapshots = 0;
  /** While a snapshot arrives: what it mentioned (null outside a snapshot). */
  private inSnapshot: { dongles: Set<string>; groups: Set<string> } | null = null;

  apply(ev: ConsoleEvent): void {
    // Snapshot events carry no id; live ones do.
    if (ev.id === 0 && this.inSnapshot === null) this.inSnapshot = { dongles: new Set(), groups: new Set() };
    this.version++;
    switch (ev.type) {
      case 'presence': {
        const id = ev.data.dongle;
        if (id === undefined || ev.data.bus !== undefined) return;
        const r = this.touch(this.row(id));
        this.inSnapshot?.dongles.add(id);
        if (ev.data.state !== 'seen') r.online = ev.data.state === 'online';
        else r.online = true;
        const since = ev.data.since ?? (ev.data.state === 'seen' ? undefined : ev.data.ts);
        if (since !== undefined) r.sinceMs = tsToMs(since);
        if (ev.data.state !== 'offline' || ev.id === 0) r.lastSeenMs = tsToMs(ev.data.ts);
        if (ev.data.version !== undefined) r.version = ev.data.version;
        return;
      }
      case 'bus_state': {
        const id = ev.data.dongle;
        if (id !== undefined) this.touch(this.row(id)).buses.set(ev.data.bus, ev.data);
        return;
      }
      case 'command_status': {
        const id = ev.data.dongle;
        if (id === undefined) return;
        const list = this.touch(this.row(id)).commands;
        const i = list.findIndex((c) => c.command_id === ev.data.command_id);
        if (i >= 0) list.splice(i, 1);
        list.unshift(ev.data);
        if (list.length > RECENT_COMMANDS) list.length = RECENT_COMMANDS;
        return;
      }
      case 'group_state': {
        const g = ev.data;
        this.inSnapshot?.groups.add(g.group);
        const prev = this.groups.get(g.group);
        if (prev) for (const s of ['a', 'b'] as const) this.clearSide(prev.sides[s].dongle, g.group);
        this.groups.set(g.group, g);
        for (const s of ['a', 'b'] as const) {
          const r = this.row(g.sides[s].dongle, false);
          if (r && (r.group !== g.group || r.side !== s)) {
            this.touch(r);
            r.group = g.group;
            r.side = s;
          }
        }
        return;
      }
      case 'log':
        if (ev.data.code === 'fleet_snapshot') return this.snapshotEnd();
        if (ev.data.code === 'dongle_removed' && ev.data.dongle !== undefined) this.dongles.delete(ev.data.dongle);
        if (ev.data.code === 'group_removed' && typeof ev.data.details?.group === 'string') this.removeGroup(ev.data.details.group);
        return;
      default:
        return;
    }
  }

  private snapshotEnd(): void {
    const s = this.inSnapshot;
    this.inSnapshot = null;
    this.snapshots++;
    if (s === null) return;
    for (const id of [...this.dongles.keys()]) if (!s.dongles.has(id)) this.dongles.delete(id);
    for (const gid of [...this.groups.keys()]) if (!s.groups.has(gid)) this.removeGroup(gid);
  }

  private removeGroup(gid: string): void {
    const g = this.groups.get(gid);
    if (!g) return;
    this.groups.delete(gid);
    for (const s of ['a', 'b'] as const) this.clearSide(g.sides[s].dongle, gid);
  }

  private clearSide(dongle: string, gid: string): void {
    const r = this.dongles.get(dongle);
    if (r && r.group === gid) {
      this.touch(r);
      r.group = '';
      r.side = '';
    }
  }

  /**
   * Adds commands fetched from the admin API (those from before the page opened) to a dongle's recent
   * list; a status the stream already brought is newer and wins. Newest first, at most RECENT_COMMANDS.
   */
  mergeCommands(id: string, fetched: CommandStatusData[]): void {
    const r = this.dongles.get(id);
    if (!r) return;
    const known = new Set(r.commands.map((c) => c.command_id));
    const all = r.commands.concat(fetched.filter((c) => !known.has(c.command_id)));
    all.sort((x, y) => tsToMs(y.ts) - tsToMs(x.ts));
    r.commands = all.slice(0, RECENT_COMMANDS);
    this.version++;
    this.touch(r);
  }

  /** Marks a row changed (its rev is the model's current version). */
  private touch(r: DongleRow): DongleRow {
    r.rev = this.version;
    return r;
  }

  private row(id: string): DongleRow;
  private row(id: string, create: false): DongleRow | undefined;
  private row(id: string, create = true): DongleRow | undefined {
    let r = this.dongles.get(id);
    if (r === undefined && create) {
      r = { id, online: false, sinceMs: NaN, lastSeenMs: NaN, version: '', buses: new Map(), group: '', side: '', commands: [], rev: this.version };
      this.dongles.set(id, r);
      // A dongle that joins after its group's state arrived.
      for (const g of this.groups.values())
        for (const s of ['a', 'b'] as const)
          if (g.sides[s].dongle === id) {
            r.group = g.group;
            r.side = s;
          }
    }
    return r;
  }
}

/** Frames per second over every bus of a dongle (from its bus_state summaries); 0 while it is offline (the last summary is not now). */
export function framesPerSecond(r: DongleRow): number {
  if (!r.online) return 0;
  let n = 0;
  for (const b of r.buses.values()) n += b.frame_rate;
  return n;
}

export type DongleSort = 'id' | 'status' | 'last_seen' | 'group' | 'version' | 'rate';

/** Rows matching `filter` (every word must appear in the id, group, version, a bus name or state), sorted. */
export function visibleDongles(m: FleetModel, filter: string, sort: DongleSort, desc: boolean): DongleRow[] {
  const words = filter
    .toLowerCase()
    .split(/\s+/)
    .filter((w) => w !== '');
  const rows: DongleRow[] = [];
  for (const r of m.dongles.values()) {
    if (words.length > 0) {
      const hay = [r.id, r.group, r.version, r.online ? 'online' : 'offline', ...[...r.buses.values()].flatMap((b) => [b.bus, b.state ?? '', b.link])].join(' ').toLowerCase();
      if (!words.every((w) => hay.includes(w))) continue;
    }
    rows.push(r);
  }
  const key = (r: DongleRow): string | number => {
    switch (sort) {
      case 'status':
        return r.online ? 1 : 0;
      case 'last_seen':
        return Number.isNaN(r.lastSeenMs) ? -1 : r.lastSeenMs;
      case 'group':
        return r.group;
      case 'version':
        return r.version;
      case 'rate':
        return framesPerSecond(r);
      default:
        return r.id;
    }
  };
  rows.sort((a, b) => {
    const ka = key(a);
    const kb = key(b);
    const c = ka < kb ? -1 : ka > kb ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
    return desc ? -c : c;
  });
  return rows;
}
