/**
 * SocketCAN error frames (CAN_ERR_FLAG) in words. The class bits of the id and the detail bytes follow
 * linux/include/uapi/linux/can/error.h: data[0] lost-arbitration bit, data[1] controller status,
 * data[2] protocol violation kind, data[3] its location, data[4] transceiver status, data[6]/data[7]
 * TX/RX error counters (when CAN_ERR_CNT is set, Linux 6.0+).
 */

/** Error classes, in the kernel's bit order; these names are the `class` label of canrelay_bus_errors_total. */
export const ERROR_CLASSES = ['tx_timeout', 'lost_arbitration', 'controller', 'protocol', 'transceiver', 'no_ack', 'bus_off', 'bus_error', 'restarted'] as const;
export type ErrorClass = (typeof ERROR_CLASSES)[number];

const CAN_ERR_CNT = 0x200;

const CONTROLLER: readonly [number, string][] = [
  [0x01, 'RX buffer overflow'],
  [0x02, 'TX buffer overflow'],
  [0x04, 'RX errors reached warning level'],
  [0x08, 'TX errors reached warning level'],
  [0x10, 'RX errors reached error-passive'],
  [0x20, 'TX errors reached error-passive'],
  [0x40, 'back to error-active'],
];

const PROTOCOL: readonly [number, string][] = [
  [0x01, 'single bit error'],
  [0x02, 'frame format error'],
  [0x04, 'bit stuffing error'],
  [0x08, 'unable to send a dominant bit'],
  [0x10, 'unable to send a recessive bit'],
  [0x20, 'bus overload'],
  [0x40, 'active error announcement'],
  [0x80, 'error while transmitting'],
];

const LOCATION: Readonly<Record<number, string>> = {
  0x03: 'start of frame',
  0x02: 'id bits 28-21 (standard: 10-3)',
  0x06: 'id bits 20-18 (standard: 2-0)',
  0x04: 'substitute RTR (standard: RTR)',
  0x05: 'identifier extension',
  0x07: 'id bits 17-13',
  0x0f: 'id bits 12-5',
  0x0e: 'id bits 4-0',
  0x0c: 'RTR',
  0x0d: 'reserved bit 1',
  0x09: 'reserved bit 0',
  0x0b: 'data length code',
  0x0a: 'data field',
  0x08: 'CRC sequence',
  0x18: 'CRC delimiter',
  0x19: 'ACK slot',
  0x1b: 'ACK delimiter',
  0x1a: 'end of frame',
  0x12: 'intermission',
};

const TRANSCEIVER: Readonly<Record<number, string>> = {
  0x04: 'CAN-H wire missing',
  0x05: 'CAN-H shorted to battery',
  0x06: 'CAN-H shorted to VCC',
  0x07: 'CAN-H shorted to ground',
  0x40: 'CAN-L wire missing',
  0x50: 'CAN-L shorted to battery',
  0x60: 'CAN-L shorted to VCC',
  0x70: 'CAN-L shorted to ground',
  0x80: 'CAN-L shorted to CAN-H',
};

export interface DecodedError {
  classes: ErrorClass[];
  /** One line a technician can read, e.g. "protocol violation: bit stuffing error in the data field; bus error". */
  text: string;
  /** Error counters carried by the frame (CAN_ERR_CNT), when present. */
  tec?: number;
  rec?: number;
}

/** error.h gives CAN-H the low nibble and CAN-L the high one: 0x44 is both wires missing. */
function transceiverText(v: number): string {
  if (v === 0) return 'unspecified problem';
  if (TRANSCEIVER[v] !== undefined) return TRANSCEIVER[v]!;
  const h = TRANSCEIVER[v & 0x0f];
  const l = TRANSCEIVER[v & 0xf0];
  if (h !== undefined && l !== undefined) return `${h}, ${l}`;
  return `status 0x${v.toString(16).padStart(2, '0')}`;
}

function flags(byte: number, table: readonly [number, string][]): string[] {
  return table.filter(([bit]) => (byte & bit) !== 0).map(([, words]) => words);
}

/** Decodes the class mask (`id` of an error frame) and its detail bytes. Unknown bits are named as such. */
export function decodeErrorFrame(id: number, data: Uint8Array): DecodedError {
  const d = (i: number): number => data[i] ?? 0;
  const classes: ErrorClass[] = [];
  const parts: string[] = [];
  ERROR_CLASSES.forEach((c, bit) => {
    if ((id & (1 << bit)) !== 0) classes.push(c);
  });
  for (const c of classes) {
    switch (c) {
      case 'tx_timeout':
        parts.push('transmit timeout');
        break;
      case 'lost_arbitration':
        parts.push(d(0) === 0 ? 'lost arbitration' : `lost arbitration at bit ${d(0)}`);
        break;
      case 'controller': {
        const f = flags(d(1), CONTROLLER);
        parts.push(`controller: ${f.length ? f.join(', ') : 'unspecified problem'}`);
        break;
      }
      case 'protocol': {
        const kind = flags(d(2), PROTOCOL);
        const loc = LOCATION[d(3)];
        let s = `protocol violation: ${kind.length ? kind.join(', ') : 'unspecified'}`;
        if (loc) s += ` in the ${loc}`;
        else if (d(3) !== 0) s += ` at location 0x${d(3).toString(16).padStart(2, '0')}`;
        parts.push(s);
        break;
      }
      case 'transceiver':
        parts.push(`transceiver: ${transceiverText(d(4))}`);
        break;
      case 'no_ack':
        parts.push('no ACK on transmission (no other node on the bus, or a missing terminator)');
        break;
      case 'bus_off':
        parts.push('bus-off');
        break;
      case 'bus_error':
        parts.push('bus error');
        break;
      case 'restarted':
        parts.push('controller restarted');
        break;
    }
  }
  const unknown = id & ~(CAN_ERR_CNT | ((1 << ERROR_CLASSES.length) - 1));
  if (unknown !== 0) parts.push(`unknown error class bits 0x${unknown.toString(16)}`);
  const out: DecodedError = { classes, text: parts.length ? parts.join('; ') : 'error frame without a class' };
  if ((id & CAN_ERR_CNT) !== 0) {
    out.tec = d(6);
    out.rec = d(7);
    out.text += ` (error counters: TX ${d(6)}, RX ${d(7)})`;
  }
  return out;
}
