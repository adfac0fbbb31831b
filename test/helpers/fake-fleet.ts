/**
 * A fleet of protocol-level fake agents (fake-agent.ts) in this process, for the fleet stream and fleet
 * page at 2,000 dongles without 2,000 processes: registers N dongles on a real bridge, connects one
 * FakeAgent each (recording nothing), and sends their mirrored console events with the next outbox seq
 * (presence "seen", bus_state). Used by test/web/fleet-scale.test.ts and bench/fleet-stream.ts,
 * bench/fleet-page.ts.
 */
import type { BusStateData } from '../../core/console/events.js';
import { busStateData, presenceData } from '../../core/console/normalize.js';
import type { StartedBridge } from './bridge-process.js';
import { FakeAgent } from './fake-agent.js';

/** Runs `f` over `items`, `width` at a time. */
export async function pool<T>(items: readonly T[], width: number, f: (t: T) => Promise<void>): Promise<void> {
  let i = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (i < items.length) await f(items[i++]!);
    }),
  );
}

export type BusHealth = 'error-active' | 'error-passive';

/** A can0 bus_state as an agent reports it: TEC follows `state`; `over` changes any other field. */
export function fakeBusState(state: BusHealth, over: Partial<Omit<BusStateData, 'ts' | 'state'>> = {}): BusStateData {
  return busStateData({
    bus: 'can0',
    link: 'up',
    state,
    tec: state === 'error-passive' ? 140 : 0,
    rec: 0,
    bitrate: 500_000,
    bitrate_source: 'kernel',
    sample_point: 0.875,
    data_bitrate: null,
    data_sample_point: null,
    restart_ms: 0,
    counters: {},
    load: 0.2,
    load_peak_1m: 0.3,
    load_history: Array(60).fill(0.2) as number[],
    frame_rate: 100,
    error_frames: {},
    ...over,
  });
}

export class FakeFleet {
  private readonly seqs = new Map<FakeAgent, number>();

  private constructor(readonly agents: FakeAgent[]) {
    for (const a of agents) this.seqs.set(a, a.welcome?.event_ack ?? 0);
  }

  /** Ids `<prefix>0000` … in order; `agents[i]` is dongle i. */
  static ids(n: number, prefix: string): string[] {
    return Array.from({ length: n }, (_, i) => `${prefix}${String(i).padStart(4, '0')}`);
  }

  /** Registers and connects `n` dongles (ids from FakeFleet.ids). */
  static async start(bridge: StartedBridge, n: number, prefix = 'fl-'): Promise<FakeFleet> {
    const ids = FakeFleet.ids(n, prefix);
    const tokens = new Map<string, string>();
    await pool(ids, 8, async (id) => void tokens.set(id, await bridge.admin.register(id)));
    const byId = new Map<string, FakeAgent>();
    await pool(ids, 32, async (id) => void byId.set(id, await FakeAgent.connect(bridge.base, { dongle: id, token: tokens.get(id)!, record: false })));
    return new FakeFleet(ids.map((id) => byId.get(id)!));
  }

  /** Sends one mirrored event from agent `a` with its next outbox seq. */
  send(a: FakeAgent, event: 'presence' | 'bus_state', data: object): void {
    const seq = this.seqs.get(a)! + 1;
    this.seqs.set(a, seq);
    a.sendEvent(seq, event, data as Record<string, unknown>);
  }

  seen(a: FakeAgent): void {
    this.send(a, 'presence', presenceData('seen', { buses: { can0: 'up' } }));
  }

  bus(a: FakeAgent, state: BusHealth, frameRate = 100): void {
    this.send(a, 'bus_state', fakeBusState(state, { frame_rate: frameRate }));
  }

  async close(): Promise<void> {
    await pool(this.agents, 64, (a) => a.close());
  }
}
