/**
 * The latest value of every decoded signal, updated from every frame at the intake (FrameRouter), never
 * sampled: what `GET /api/v1/signals` shows is exact even while the console thins its frames.
 * Per bus and message one slot of typed arrays, allocated on the message's first frame; updating is
 * copying numbers, no allocation per frame.
 */
import type { CanFrame } from '../../core/can/frame.js';
import { labelOf, shownValue, type MessageDecoder, type SignalDecoder } from '../../core/can/dbc-decode.js';
import { canIdToString } from '../../core/can/hex.js';
import { isoFromUs } from '../../core/console/time.js';

interface Slot {
  bus: string;
  dec: MessageDecoder;
  /** Per signal: last physical value, raw value and time (µs); time 0 = never seen. */
  value: Float64Array;
  raw: Float64Array;
  /** The raw value exactly where a double cannot hold it (MessageDecoder.exact). */
  exact: (bigint | undefined)[];
  tsUs: Float64Array;
  frames: number;
}

export interface SignalReading {
  bus: string;
  message: string;
  id: string;
  signal: string;
  value: number | string;
  /** The numeric value when `value` is a value-table label. */
  numeric?: number | string;
  unit: string;
  min: number;
  max: number;
  ts: string;
}

export class SignalTable {
  private decoder: SignalDecoder | undefined;
  private readonly slots = new Map<string, Map<MessageDecoder, Slot>>();
  /** Frames that matched a DBC message, and signal values decoded. */
  readonly stats = { frames: 0, values: 0 };

  /** A new set of DBC files (start or reload): values of the old one are dropped. */
  use(decoder: SignalDecoder | undefined): void {
    this.decoder = decoder;
    this.lastFrame = undefined;
    this.lastDecoded = undefined;
    this.slots.clear();
  }

  get active(): SignalDecoder | undefined {
    return this.decoder;
  }

  /**
   * The decode of the frame the intake saw last: the router offers that same frame to the console right
   * after, synchronously, so the console reuses it instead of decoding the frame a second time.
   */
  decodedFrame(f: CanFrame): MessageDecoder | undefined {
    return f === this.lastFrame ? this.lastDecoded : this.decoder?.decodeFrame(f);
  }
  private lastFrame: CanFrame | undefined;
  private lastDecoded: MessageDecoder | undefined;

  /** The intake hook: decodes one frame. Cheap when no DBC describes it (one map lookup). */
  frame(f: CanFrame): void {
    const dec = this.decoder?.decodeFrame(f);
    this.lastFrame = f;
    this.lastDecoded = dec;
    if (dec === undefined) return;
    const n = dec.presentCount;
    this.stats.frames++;
    this.stats.values += n;
    let perBus = this.slots.get(f.bus);
    if (perBus === undefined) this.slots.set(f.bus, (perBus = new Map()));
    let slot = perBus.get(dec);
    if (slot === undefined) {
      const k = dec.signals.length;
      slot = {
        bus: f.bus,
        dec,
        value: new Float64Array(k),
        raw: new Float64Array(k),
        exact: new Array<bigint | undefined>(k).fill(undefined),
        tsUs: new Float64Array(k),
        frames: 0,
      };
      perBus.set(dec, slot);
    }
    slot.frames++;
    const present = dec.present;
    for (let i = 0; i < present.length; i++) {
      if (present[i] === 0) continue;
      slot.value[i] = dec.value[i]!;
      slot.raw[i] = dec.raw[i]!;
      slot.exact[i] = dec.exact[i];
      slot.tsUs[i] = f.tsUs;
    }
  }

  /** Every signal seen so far, sorted by bus, message and signal name. */
  readings(): SignalReading[] {
    const out: SignalReading[] = [];
    for (const perBus of this.slots.values()) {
      for (const s of perBus.values()) {
        const m = s.dec.msg;
        s.dec.signals.forEach((cs, i) => {
          if (s.tsUs[i] === 0) return;
          const label = labelOf(cs.def, s.raw[i]!, s.exact[i]);
          const value = shownValue(cs, s.value[i]!, s.raw[i]!, s.exact[i]);
          const r: SignalReading = {
            bus: s.bus,
            message: m.name,
            id: canIdToString(m.id, m.extended),
            signal: cs.def.name,
            value: label ?? value,
            unit: cs.def.unit,
            min: cs.def.min,
            max: cs.def.max,
            ts: isoFromUs(s.tsUs[i]!),
          };
          if (label !== undefined) r.numeric = value;
          out.push(r);
        });
      }
    }
    return out.sort((a, b) => a.bus.localeCompare(b.bus) || a.message.localeCompare(b.message) || a.signal.localeCompare(b.signal));
  }
}
