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
  // What is given is what is sent, or refused: never silently another frame than the one asked for.
  const ext = cmd.is_extended ?? id > 0x7ff;
  const fd = cmd.is_fd ?? data.length > 8;
  if (rtr && data.length > 0) return { ok: false, error: 'a remote frame (is_remote) carries no data; give dlc instead' };
  if (cmd.dlc !== undefined && !rtr) return { ok: false, error: "dlc is for a remote frame (is_remote: true); a data frame's length is that of data_hex" };
  if (rtr && (cmd.dlc ?? 0) > 8) return { ok: false, error: `a remote frame requests at most 8 bytes: dlc ${cmd.dlc}` };
  if (cmd.brs === true && !fd) return { ok: false, error: 'brs (bit-rate switch) is a CAN FD flag: give is_fd: true, or leave brs out' };
  if (!fd && data.length > 8) return { ok: false, error: `${data.length} data bytes need CAN FD: is_fd cannot be false` };
  const frame: CanFrame = {
    bus: cmd.bus,
    id,
    ext,
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
