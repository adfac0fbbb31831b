/**
 * One console stream (a dongle's or a group's): assigns ids, samples can_frame events, keeps the replay
 * ring, and fans events out to subscribers. Transport-agnostic: subscribers are SSE writers in practice.
 *
 * Fan-out never blocks and never queues per subscriber: an event is serialised once and shared. A
 * subscriber that cannot take more right now stops receiving live writes and later pulls what it missed
 * from the ring (`after()`); if the ring no longer has it, or its backlog passes its byte bound, it is cut off.
 *
 * Events are kept compactly in the process's HistoryStore and turned into SSE text only for a reader: a
 * frame on a console nobody watches costs its sampling decision and ~45 bytes, never a JSON string.
 */
import type { CanFrame } from '../can/frame.js';
import type { MessageDecoder } from '../can/dbc-decode.js';
import { frameJsonLength, sseBlock, sseBlockWithoutId, sseLength } from './compact-event.js';
import type { ConsoleEvent, ConsoleEventType, LogData, StreamResetData } from './events.js';
import type { HistoryStore } from './history-store.js';
import { EventIds, type IdStore } from './id-store.js';
import { canFrameData, logData } from './normalize.js';
import { planResume, type ResumePlan, type ResumeRequest, type StreamPosition } from './resume.js';
import { EventRing } from './ring-buffer.js';
import { FrameSampler, SamplerKeys, type SamplerTransition } from './sampler.js';

/** One event as a subscriber writes it: the complete SSE block, built once and shared by every client. */
export interface StoredEvent {
  readonly id: number;
  readonly chunk: string;
  /** Its bytes, made by the first subscriber that writes them and shared by the rest (core/http/sse-output.ts). */
  bytes?: Buffer;
  framed?: Buffer;
}

export interface StreamSubscriber {
  /** Id of the last event this subscriber has written out. */
  readonly cursor: number;
  /** A new event was published. Must not throw. */
  onEvent(e: StoredEvent): void;
  /** The stream is closing (shutdown or removal). */
  onStreamClosed(): void;
}

export interface ConsoleStreamOptions {
  historyEvents: number;
  historySeconds: number;
  /** can_frame events per second before sampling. */
  maxRate: number;
  ids: IdStore;
  /** The process-wide history budget every stream's ring lives in. */
  history: HistoryStore;
  now?: () => number;
  /** Called on sampling transitions, after the announcing log event is published. */
  onSampling?: (t: SamplerTransition) => void;
  /** Called after every publish() (the agent mirrors its console events upstream from here); frames kept compactly are not announced. */
  onPublished?: (ev: ConsoleEvent, id: number) => void;
}

/**
 * Cluster mode (the bridge's cloud-bridge/cluster/console-sync.ts sets it): one node numbers a stream's
 * events, the others forward theirs to it and keep a mirror of its numbered events (`adopt`).
 */
export interface StreamNumbering {
  /** True on the node that numbers this stream's events now. */
  readonly here: boolean;
  /**
   * Here: an event was numbered and stored (told once, to be published to the other nodes). `json` makes
   * its text: a frame kept compactly is turned into JSON only if it is published.
   */
  numbered(id: number, runStart: number, type: ConsoleEventType, json: () => string): void;
  /** Elsewhere: an event made here (sampled here) goes to the node that numbers, not into this node's ring. */
  forward(type: ConsoleEventType, json: string): void;
  /** Elsewhere: whether frames are wanted there (someone reads the stream); when not, a frame costs only its sampling here. */
  wantsFrames(): boolean;
}

/** One stored event as text (a cluster backfill). */
export interface EventText {
  id: number;
  type: ConsoleEventType;
  json: string;
}

export class ConsoleStream {
  private readonly ids: EventIds;
  private readonly ring: EventRing;
  private readonly sampler: FrameSampler;
  /** The latest `presence` event's JSON per dongle ('' for the agent's own), told again after a stream_reset. */
  private readonly lastPresence = new Map<string, string>();
  /** The data of the `sampling_on` event while sampling is on (told again to clients that connect later). */
  private samplingOn: LogData | undefined;
  private readonly keys = new SamplerKeys();
  private readonly subscribers = new Set<StreamSubscriber>();
  private readonly now: () => number;
  private bytesTotal = 0;
  private closed = false;
  readonly counters = { published: 0, framesOffered: 0, sampledOut: 0 };
  /**
   * Set where DBC files are loaded: decodes a frame that passed the sampler (so at most the console's
   * rate) and returns its message decoder, or undefined when no DBC describes the frame.
   */
  decodeFrame: ((f: CanFrame, dongle?: string) => MessageDecoder | undefined) | undefined;
  /** Cluster mode only: see StreamNumbering. */
  numbering: StreamNumbering | undefined;

  constructor(
    readonly name: string,
    private readonly opts: ConsoleStreamOptions,
  ) {
    this.now = opts.now ?? Date.now;
    // Ids by the rule in id-store.ts: above every earlier run's, never below the clock floor.
    this.ids = new EventIds(name, opts.ids, this.now);
    this.ring = new EventRing(opts.history, opts.historyEvents, opts.historySeconds * 1000);
    this.sampler = new FrameSampler(opts.maxRate, (t) => this.announceSampling(t), this.now());
  }

  get latest(): number {
    return this.ids.latest;
  }

  /** First id of this run: anything below it comes from an earlier run. */
  get runStart(): number {
    return this.ids.runStart;
  }

  /** Events not published because their state could not be written and no id was provably unused. */
  get withheld(): number {
    return this.ids.withheld;
  }

  get subscriberCount(): number {
    return this.subscribers.size;
  }

  get buffered(): number {
    return this.ring.size;
  }

  get sampling(): boolean {
    return this.sampler.active;
  }

  /**
   * The latest `presence` event (one per dongle on a group console) as SSE blocks without ids, for a
   * client that got a stream_reset: the reset jumps past the events that told the current presence (after
   * a restart, the new run's `online`), which it would otherwise learn only at the next periodic `seen`.
   */
  presenceNotices(): string[] {
    return [...this.lastPresence.values()].map((json) => sseBlockWithoutId('presence', json));
  }

  /** The dongle was removed: its latest `presence` is no longer told (the fleet stream keeps one per dongle). */
  forgetPresence(dongle: string): void {
    this.lastPresence.delete(dongle);
  }

  /**
   * While sampling is on: the `sampling_on` log event that announced it, as an SSE block without an id,
   * for a client that starts without a clean resume (it connected after the announcement went out and
   * would otherwise not know). Undefined while sampling is off.
   */
  samplingNotice(): string | undefined {
    return this.samplingOn && this.sampler.active ? sseBlockWithoutId('log', JSON.stringify(this.samplingOn)) : undefined;
  }

  position(): StreamPosition {
    return { runStart: this.runStart, latest: this.latest, oldest: this.ring.oldestId ?? null };
  }

  /** Publishes any event except stream_reset (which is per subscriber). Returns its id. */
  publish(ev: ConsoleEvent): number {
    if (this.closed) return -1;
    const json = JSON.stringify(ev.data);
    const id = this.publishText(ev.type, json, ev.data);
    if (id >= 0) this.opts.onPublished?.(ev, id);
    return id;
  }

  /**
   * Publishes an event given as JSON text (`key`: the object it was made from, so that the same event on
   * two streams is stored once). In cluster mode on a node that does not number the stream, it is forwarded.
   */
  publishText(type: ConsoleEventType, json: string, key: object = {}): number {
    if (this.closed) return -1;
    const n = this.numbering;
    if (n !== undefined && !n.here) {
      n.forward(type, json);
      return -1;
    }
    const id = this.ids.take();
    if (id === undefined) return -1;
    this.store(id, type, json, key);
    n?.numbered(id, this.runStart, type, () => json);
    return id;
  }

  private store(id: number, type: ConsoleEventType, json: string, key: object): void {
    if (type === 'presence') this.lastPresence.set(presenceKey(json), json);
    const now = this.now();
    this.ring.prepare();
    const loc = this.opts.history.appendText(this.ring, type, json, key);
    this.append(id, loc, now, sseLength(id, type, Buffer.byteLength(json)));
    if (this.subscribers.size > 0) this.fanOut({ id, chunk: sseBlock(id, type, json) });
  }

  /**
   * Cluster mirror: an event numbered by another node, in run `runStart`. Kept when it is the next id;
   * an older id is a duplicate (ignored); a newer id or another run starts the ring again at it, and
   * subscribers that would miss events are disconnected (they resume and get a stream_reset: never a
   * silent gap). Returns what happened.
   */
  adopt(runStart: number, id: number, type: ConsoleEventType, json: string): 'kept' | 'duplicate' | 'restarted' {
    if (this.closed) return 'duplicate';
    let restarted = false;
    if (runStart !== this.runStart || id > this.latest + 1) {
      this.restartAt(runStart, id - 1);
      restarted = true;
    } else if (id <= this.latest) return 'duplicate';
    this.ids.advanceTo(id);
    this.store(id, type, json, {});
    return restarted ? 'restarted' : 'kept';
  }

  /**
   * This node starts numbering the stream (cluster: it became the owner): a new run above every id it
   * has seen and above the clock floor, so an id from before is recognised (a stream_reset, unless proven
   * complete — which it cannot be, since the previous numbering node may have numbered more than it told).
   */
  startRun(): void {
    const runStart = this.ids.nextRunStart();
    this.restartAt(runStart, runStart - 1);
  }

  /** Empties the ring at a new position (run start, latest id); subscribers behind it are disconnected. */
  restartAt(runStart: number, latest: number): void {
    this.ids.restart(runStart, latest);
    this.ring.clear();
    for (const s of [...this.subscribers]) {
      if (s.cursor !== latest) {
        this.subscribers.delete(s);
        s.onStreamClosed();
      }
    }
  }

  /** Stored events after `cursor` as text, up to about `maxBytes` of JSON (a cluster backfill). */
  textAfter(cursor: number, maxBytes: number): EventText[] {
    const out: EventText[] = [];
    const oldest = this.ring.oldestId;
    if (oldest === undefined) return out;
    let bytes = 0;
    for (let id = Math.max(cursor + 1, oldest); id <= this.latest && bytes < maxBytes; id++) {
      const slot = this.ring.slot(id);
      if (slot < 0) break;
      const loc = this.ring.loc(slot);
      const type = this.opts.history.type(loc);
      const json = this.opts.history.json(loc);
      if (type === undefined || json === undefined) break;
      out.push({ id, type, json });
      bytes += json.length + 32;
    }
    return out;
  }

  /**
   * Offers a CAN frame to the console: sampled here, and stored compactly if it passes; turned into text
   * only when someone is watching. `dongle` marks frames a group console re-publishes from one of its sides.
   */
  offerFrame(f: CanFrame, dongle?: string): void {
    if (this.closed) return;
    this.counters.framesOffered++;
    const now = this.now();
    const n = this.sampler.offer(this.keys.key(f, dongle), now);
    if (n === 0) {
      this.counters.sampledOut++;
      return;
    }
    const represents = this.sampler.active || n > 1 ? n : undefined;
    const numbering = this.numbering;
    const elsewhere = numbering !== undefined && !numbering.here;
    if (elsewhere && !numbering.wantsFrames()) return;
    const decoded = this.decodeFrame?.(f, dongle);
    // Forwarded to the numbering node (cluster): as text, which a frame stored here is made only when read.
    if (decoded !== undefined || f.err || elsewhere) {
      // Decoded signals (the decoder's state right now) and error-frame words are made here, once, as text.
      const data = canFrameData(f, represents, decoded);
      if (dongle !== undefined) data.dongle = dongle;
      this.publish({ type: 'can_frame', data });
      return;
    }
    const id = this.ids.take();
    if (id === undefined) return;
    const jsonLength = frameJsonLength(f, represents, dongle);
    this.ring.prepare();
    const loc = this.opts.history.appendFrame(this.ring, f, represents, dongle, jsonLength);
    this.append(id, loc, now, sseLength(id, 'can_frame', jsonLength));
    if (this.subscribers.size > 0) this.fanOut({ id, chunk: sseBlock(id, 'can_frame', this.opts.history.json(loc)!) });
    this.numbering?.numbered(id, this.runStart, 'can_frame', () => this.opts.history.json(loc)!);
  }

  private append(id: number, loc: number, now: number, bytes: number): void {
    this.ring.push(id, loc, now, this.bytesTotal);
    this.bytesTotal += bytes;
    this.ring.evictOlderThan(now);
    this.counters.published++;
  }

  private fanOut(e: StoredEvent): void {
    for (const s of this.subscribers) s.onEvent(e);
  }

  /** Housekeeping from a timer: age-based eviction and sampler windows even when the bus is quiet. */
  tick(): void {
    const now = this.now();
    this.ring.evictOlderThan(now);
    this.ring.compact();
    this.sampler.tick(now);
  }

  /**
   * Registers a subscriber at the position its resume request asks for. Returns the plan: the subscriber
   * writes `plan.reset` first (when set), then pulls events after `plan.cursor` with `after()`. Because
   * JavaScript runs this synchronously, no event can slip between the plan and the registration.
   */
  subscribe(s: StreamSubscriber, req: ResumeRequest): ResumePlan {
    const plan = planResume(this.position(), req);
    this.subscribers.add(s);
    return plan;
  }

  unsubscribe(s: StreamSubscriber): void {
    this.subscribers.delete(s);
  }

  /** The event right after `cursor`, or undefined: `gone` when it was evicted (the subscriber fell too far behind). */
  after(cursor: number): { event?: StoredEvent; gone: boolean } {
    if (cursor >= this.latest) return { gone: false };
    const slot = this.ring.slot(cursor + 1);
    if (slot < 0) return { gone: true };
    const loc = this.ring.loc(slot);
    // The ring forgets entries the store drops, so a slot it has always resolves.
    return { event: { id: cursor + 1, chunk: sseBlock(cursor + 1, this.opts.history.type(loc)!, this.opts.history.json(loc)!) }, gone: false };
  }

  /** Bytes published after `cursor` that a subscriber at that position has yet to write. */
  backlogBytes(cursor: number): number {
    if (cursor >= this.latest) return 0;
    const slot = this.ring.slot(cursor + 1);
    return slot >= 0 ? this.bytesTotal - this.ring.offset(slot) : Infinity;
  }

  /**
   * `position` false: without the id — for a stream whose reset is followed by a snapshot (the fleet), so
   * that a client cut during the snapshot resumes from where it was, gets the reset and the whole snapshot
   * again, and never a clean resume that skips the rest of it.
   */
  resetEvent(data: StreamResetData, position = true): string {
    // The reset carries the id of the latest event: it is a position, not a new event, so a client that
    // reconnects right after it resumes cleanly from there.
    return `${position ? `id: ${data.latest}\n` : ''}event: stream_reset\ndata: ${JSON.stringify(data)}\n\n`;
  }

  /** Closed (its dongle or group deleted): a reader that waited for it must not subscribe to it. */
  get isClosed(): boolean {
    return this.closed;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const s of [...this.subscribers]) s.onStreamClosed();
    this.subscribers.clear();
    this.ring.close();
  }

  private announceSampling(t: SamplerTransition): void {
    const message =
      t.state === 'on'
        ? `sampling on: ${t.inputRate} frames/s in, showing about ${t.outputRate} frames/s (every id at least once a second)`
        : `sampling off: ${t.inputRate} frames/s in, showing every frame`;
    const data = logData('info', message, t.state === 'on' ? 'sampling_on' : 'sampling_off', {
      input_rate: t.inputRate,
      output_rate: t.outputRate,
      max_rate: this.opts.maxRate,
    });
    this.samplingOn = t.state === 'on' ? data : undefined;
    this.publish({ type: 'log', data });
    this.opts.onSampling?.(t);
  }
}

/** The dongle a presence event is about ('' for the agent's own), from its JSON (presence events are rare). */
function presenceKey(json: string): string {
  try {
    const d = JSON.parse(json) as { dongle?: unknown };
    return typeof d.dongle === 'string' ? d.dongle : '';
  } catch {
    return '';
  }
}
