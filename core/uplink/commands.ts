/** Turns a validated send_frame command into a CanFrame, with every CAN rule checked (both sides use it). */
import { frameProblem, nowUs, type CanFrame } from '../can/frame.js';
import { parseCanId, parseHexBytes } from '../can/hex.js';
import type { SendFrameCommand } from './messages.js';

export function frameFromCommand(cmd: SendFrameCommand): { ok: true; frame: CanFrame } | { ok: false; error: string } {
  const id = parseCanId(cmd.id);
  if (id === null) return { ok: false, error: `id ${JSON.stringify(cmd.id)} is not hex` };
  const data = parseHexBytes(cmd.data_hex ?? '');
  if (data === null) return { ok: false, error: `data_hex ${JSON.stringify(cmd.data_hex)} is not whole hex bytes` };
  const rtr = cmd.is_remote === true;
  const fd = cmd.is_fd === true || data.length > 8;
  if (rtr && data.length > 0) return { ok: false, error: 'a remote frame (is_remote) carries no data; give dlc instead' };
  const frame: CanFrame = {
    bus: cmd.bus,
    id,
    ext: cmd.is_extended === true || id > 0x7ff,
    rtr,
    err: false,
    fd,
    brs: fd && cmd.brs === true,
    esi: false,
    dlc: rtr ? (cmd.dlc ?? 0) : data.length,
    data: rtr ? new Uint8Array(0) : data,
    tsUs: nowUs(),
    direction: 'tx',
  };
  const problem = frameProblem(frame);
  return problem ? { ok: false, error: problem } : { ok: true, frame };
}
