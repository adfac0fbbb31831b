/**
 * A tiny OBD-II ECU for the simulator: answers mode 01 requests on 0x7DF (functional) or 0x7E0 (physical)
 * from 0x7E8 for the PIDs below, from the simulated car's state. Unsupported PIDs get no answer, like real
 * ECUs.
 */
import type { CanFrame } from '../../core/can/frame.js';
import { clampByte, type VehicleState } from './sim-vehicle.js';

export const OBD_RESPONSE_ID = 0x7e8;

/** The PID a mode 01 request asks for, or null when the frame is no such request. */
export function obdRequestPid(req: CanFrame): number | null {
  if (req.ext || req.fd || req.rtr || req.err || (req.id !== 0x7df && req.id !== 0x7e0)) return null;
  const d = req.data;
  if (d.length < 3 || d[0]! < 2 || d[0]! > 7 || d[1] !== 0x01) return null;
  return d[2]!;
}

/** The 8 data bytes of the answer to `pid` (padded with 0x55), or null for an unsupported PID. */
export function obdResponseData(pid: number, v: VehicleState): Uint8Array | null {
  const values = obdValues(pid, v);
  if (!values) return null;
  const data = new Uint8Array(8).fill(0x55);
  data[0] = 2 + values.length;
  data[1] = 0x41;
  data[2] = pid;
  data.set(values, 3);
  return data;
}

function obdValues(pid: number, v: VehicleState): number[] | null {
  switch (pid) {
    case 0x00: {
      // Supported PIDs 01-20: bit (32 - pid) of a big-endian 32-bit mask.
      let mask = 0;
      for (const p of [0x05, 0x0c, 0x0d, 0x0f, 0x11]) mask |= 1 << (32 - p);
      return [(mask >>> 24) & 0xff, (mask >>> 16) & 0xff, (mask >>> 8) & 0xff, mask & 0xff];
    }
    case 0x05:
      return [clampByte(v.coolantC + 40)];
    case 0x0c: {
      const q = Math.round(v.rpm * 4);
      return [(q >> 8) & 0xff, q & 0xff];
    }
    case 0x0d:
      return [clampByte(v.speedKph)];
    case 0x0f:
      return [clampByte(v.intakeC + 40)];
    case 0x11:
      return [clampByte(v.pedalPct * 2.55)];
    default:
      return null;
  }
}
