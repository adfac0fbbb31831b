/**
 * Which event goes to which console stream on the bridge:
 *  - `dongles/<id>`: the agent's mirrored events (presence, log, command_status, bus_state), the bridge's own
 *    presence and command statuses for it, its UP frames and the DOWN frames relayed to it;
 *  - `groups/<gid>`: the same events and UP frames of both sides, each marked with its `dongle`, plus
 *    `group_state` (a relayed frame appears there once, as its origin's UP frame);
 *  - `fleet`: every dongle's presence, bus_state and command_status and every group's group_state,
 *    registrations and removals, through FleetFeed (fleet-feed.ts: snapshot, merged periodic updates).
 * Frames are offered (the stream samples them for its console); nothing here touches the relay.
 */
import { transmittedFrame, type CanFrame } from '../core/can/frame.js';
import type { ConsoleStream } from '../core/console/console-stream.js';
import type { ConsoleEvent, GroupStateData, LogData } from '../core/console/events.js';
import type { MirroredEventType } from '../core/console/normalize.js';
import type { StreamManager } from '../core/console/stream-manager.js';
import type { SequencedFrame } from '../core/uplink/frame-codec.js';
import type { DongleDbcs } from './dongle-dbc.js';
import type { FleetFeed } from './fleet-feed.js';

/** Events that belong to one dongle and are also shown on its group's console. */
export type DongleEvent = Extract<ConsoleEvent, { type: MirroredEventType }>;

export const dongleStreamName = (id: string): string => `dongles/${id}`;
export const groupStreamName = (gid: string): string => `groups/${gid}`;

export class BridgeConsoles {
  /**
   * Cluster mode: awaited before a reader is served (cluster/console-sync.ts: the stream's mirror and its
   * history, when another node numbers it). Undefined on a single bridge.
   */
  beforeRead: ((s: ConsoleStream, lastEventId: string | undefined) => Promise<void> | undefined) | undefined;
  /**
   * Streams by dongle and by group id. Frames look theirs up per UP and DOWN batch, and building and
   * hashing the "dongles/<id>" name each time was ~1.5 % of a busy bridge's CPU. Entries leave with
   * removeDongle/removeGroup, the only way these streams are removed.
   */
  private readonly byDongle = new Map<string, ConsoleStream>();
  private readonly byGroup = new Map<string, ConsoleStream>();

  constructor(
    readonly streams: StreamManager,
    /** The group a dongle is in, if any (group-membership.ts, kept by the relay). */
    private readonly groupOf: (dongle: string) => string | undefined,
    /** Each agent's DBC files: frames shown on a console are decoded with their origin dongle's. */
    readonly dbcs: DongleDbcs,
    /** The fleet stream: no frames, only state. */
    readonly fleet: FleetFeed,
  ) {}

  /** A dongle's or group's stream by its name, or undefined when it names neither (a name from another node). */
  byName(name: string, known: { dongle(id: string): unknown; group(id: string): unknown }): ConsoleStream | undefined {
    if (name.startsWith('dongles/')) return known.dongle(name.slice(8)) ? this.dongleStream(name.slice(8)) : undefined;
    if (name.startsWith('groups/')) return known.group(name.slice(7)) ? this.groupStream(name.slice(7)) : undefined;
    return undefined;
  }

  dongleStream(id: string): ConsoleStream {
    let s = this.byDongle.get(id);
    if (s === undefined) this.byDongle.set(id, (s = this.withDecoding(this.streams.get(dongleStreamName(id)))));
    return s;
  }

  groupStream(gid: string): ConsoleStream {
    let s = this.byGroup.get(gid);
    if (s === undefined) this.byGroup.set(gid, (s = this.withDecoding(this.streams.get(groupStreamName(gid)))));
    return s;
  }

  private withDecoding(s: ConsoleStream): ConsoleStream {
    s.decodeFrame ??= (f, dongle) => (dongle === undefined ? undefined : this.dbcs.decoderOf(dongle)?.decodeFrame(f));
    return s;
  }

  /** Publishes on the dongle's console and its group's, marked with the dongle. */
  dongleEvent(dongle: string, ev: DongleEvent): void {
    ev.data.dongle = dongle;
    this.dongleStream(dongle).publish(ev);
    const g = this.groupOf(dongle);
    if (g !== undefined) this.groupStream(g).publish(ev);
    this.fleet.dongleEvent(dongle, ev);
  }

  /** A dongle was registered: the fleet shows it (offline until its agent connects). */
  dongleRegistered(id: string): void {
    this.fleet.dongleRegistered(id);
  }

  /** Frames a dongle received (UP), offered to its console and its group's. */
  upFrames(dongle: string, frames: readonly SequencedFrame[]): void {
    const ds = this.dongleStream(dongle);
    const g = this.groupOf(dongle);
    const gs = g === undefined ? undefined : this.groupStream(g);
    for (const { frame } of frames) {
      ds.offerFrame(frame, dongle);
      gs?.offerFrame(frame, dongle);
    }
  }

  /**
   * Frames relayed DOWN to a dongle, as it will transmit them (`tx` on the mapped bus), on its own console.
   * Not on the group console: it already shows each of them once, as the origin side's UP frame.
   */
  downFrames(dongle: string, frames: readonly { frame: CanFrame }[]): void {
    const ds = this.dongleStream(dongle);
    for (const { frame: f } of frames) {
      ds.offerFrame(transmittedFrame(f), dongle);
    }
  }

  groupState(gid: string, data: GroupStateData): void {
    this.groupStream(gid).publish({ type: 'group_state', data });
    this.fleet.groupState(data);
  }

  groupLog(gid: string, data: LogData): void {
    this.groupStream(gid).publish({ type: 'log', data });
  }

  /** A dongle or group was deleted: its console subscribers are disconnected. */
  removeDongle(id: string): void {
    this.dbcs.forget(id);
    this.byDongle.delete(id);
    this.streams.remove(dongleStreamName(id));
    this.fleet.dongleRemoved(id);
  }

  removeGroup(gid: string): void {
    this.byGroup.delete(gid);
    this.streams.remove(groupStreamName(gid));
    this.fleet.groupRemoved(gid);
  }
}
