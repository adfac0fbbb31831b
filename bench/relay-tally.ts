/**
 * The fleet and cluster benches' numbered frames: what a fake agent sends (its number in the first 4 data
 * bytes, its time in sub-millisecond µs) and what the receiving fake agents count: frames relayed, frames out
 * of order, and the added latency (send time to arrival) of the last LATENCY_SAMPLES frames, for percentiles.
 */
import type { CanFrame } from '../core/can/frame.js';
import type { Batch } from '../core/uplink/frame-codec.js';
import type { FakeAgent } from '../test/helpers/fake-agent.js';

/** Sub-millisecond: the latencies measured are a few ms. */
const nowUs = (): number => (performance.timeOrigin + performance.now()) * 1000;

/** Frame number n of a sender. */
export function numberedFrame(n: number): CanFrame {
  const data = new Uint8Array(4);
  new DataView(data.buffer).setUint32(0, n >>> 0);
  return { bus: 'can0', id: 0x100, ext: false, rtr: false, err: false, fd: false, brs: false, esi: false, dlc: 4, data, tsUs: nowUs(), direction: 'rx' };
}

const LATENCY_SAMPLES = 1 << 18;

export class RelayTally {
  relayed = 0;
  outOfOrder = 0;
  private readonly latency = new Float64Array(LATENCY_SAMPLES);
  private latN = 0;
  private readonly expected = new Map<string, number>();

  /** The fake agent's onDown for dongle `to`. */
  onDown(to: string): (b: Batch) => void {
    return (b) => {
      const t = nowUs();
      let next = this.expected.get(to) ?? 0;
      for (const { frame: f } of b.frames) {
        const n = new DataView(f.data.buffer, f.data.byteOffset, 4).getUint32(0);
        if (n !== next) this.outOfOrder++;
        next = n + 1;
        this.latency[this.latN++ & (LATENCY_SAMPLES - 1)] = (t - f.tsUs) / 1000;
        this.relayed++;
      }
      this.expected.set(to, next);
    };
  }

  /** Forgets the counts and latencies (after a warm-up); the per-sender numbering goes on. */
  reset(): void {
    this.relayed = 0;
    this.outOfOrder = 0;
    this.latN = 0;
  }

  /** The p-quantile (0..1) of the recorded latencies in ms, to 0.1 ms; NaN without any. */
  latencyMs(p: number): number {
    const lat = [...this.latency.subarray(0, Math.min(this.latN, LATENCY_SAMPLES))].sort((a, b) => a - b);
    return lat.length ? Math.round(lat[Math.min(lat.length - 1, Math.floor(p * lat.length))]! * 10) / 10 : NaN;
  }
}

/**
 * A batch every SEND_TICK_MS from each agent (at 200 frames/s, 2 frames per message). BENCH_SEND_TICK_MS
 * changes it, to see what frames per message do to the bridge's cost (docs/benchmarks.md, fourth round).
 */
export const SEND_TICK_MS = Math.max(1, Number(process.env.BENCH_SEND_TICK_MS ?? 10));

/**
 * Each agent sends `rate` numbered frames/s for `seconds`, from frame number `first`, phase-shifted so that
 * slow rates do not all land on one tick. Resolves with the number of frames sent.
 */
export function sendPaced(agents: FakeAgent[], rate: number, seconds: number, first = 0): Promise<number> {
  const t0 = Date.now();
  const sent = new Array<number>(agents.length).fill(first);
  let total = 0;
  return new Promise((resolve) => {
    const timer = setInterval(() => {
      const elapsed = Math.min((Date.now() - t0) / 1000, seconds);
      for (let i = 0; i < agents.length; i++) {
        const due = first + Math.floor(elapsed * rate + i / agents.length);
        const k = due - sent[i]!;
        if (k <= 0) continue;
        const frames: CanFrame[] = [];
        for (let j = 0; j < k; j++) frames.push(numberedFrame(sent[i]! + j));
        agents[i]!.sendFrames(frames);
        sent[i] = due;
        total += k;
      }
      if (elapsed >= seconds) {
        clearInterval(timer);
        resolve(total);
      }
    }, SEND_TICK_MS);
  });
}
