/** CanFrames for tests: one builder instead of the twelve-field literal in every test file. */
import type { CanFrame } from '../../core/can/frame.js';

/** A classic data frame received on can0 (id 0x100, no data, stamped now); `over` sets any field. `dlc` follows `data` unless given. */
export function testFrame(over: Partial<CanFrame> = {}): CanFrame {
  const data = over.data ?? new Uint8Array(0);
  return {
    bus: 'can0',
    id: 0x100,
    ext: false,
    rtr: false,
    err: false,
    fd: false,
    brs: false,
    esi: false,
    dlc: data.length,
    data,
    tsUs: Date.now() * 1000,
    direction: 'rx',
    ...over,
  };
}
