/**
 * The simulated car (agent/sources/sim.ts generates its bus): the id table from a real capture of a 2019
 * Honda Civic Type R (57 standard ids; ~1,660 frames/s at the recorded periods) plus two 29-bit J1939 ids,
 * the Honda rolling counter and nibble checksum, a smooth 90 s drive cycle (speed, RPM, pedal, steering,
 * temperatures) and where each signal sits in its message. Hard-coded so the simulator never needs the
 * capture file.
 */

/** 'honda': rolling counter and checksum in the last byte; 'plain': template, signals and noise only. */
type Layout = 'honda' | 'plain';

export interface MessageSpec {
  id: number;
  ext: boolean;
  /** Period in the capture, ms. */
  periodMs: number;
  /** Typical payload from the capture, with counter and checksum bits cleared. */
  template: string;
  /** Bytes that wander (random walk around the template) like noisy sensors do. */
  walk: number[];
  layout: Layout;
}

// [id, period ms, template, wandering bytes]: derived from the capture (median period, a typical payload,
// bytes with more than 20 distinct values). 0x255 carries no Honda counter/checksum in the capture.
const HONDA: Array<[number, number, string, number[]]> = [
  [0x039, 40, '028000', []],
  [0x094, 10, '8B6507D9FB000C40', [0, 3, 4]],
  [0x112, 10, '250000', [0]],
  [0x130, 10, '0095009C00000480', [1, 3, 4]],
  [0x140, 10, '0000000000000000', []],
  [0x14a, 10, '0656FECA07064E00', [3, 6]], // steering sensors: bytes 0-1 = angle
  [0x158, 10, '0360000003600200', []], // engine data: speed, odometer
  [0x17c, 10, '000C03D230000000', []], // powertrain: pedal, rpm
  [0x1a4, 20, '0068042410800100', [1]],
  [0x1ab, 20, '801800', [1]],
  [0x1ac, 20, '7FFF030000000000', []],
  [0x1b0, 20, '580F0000030000', []],
  [0x1c2, 20, '2300000000000000', []],
  [0x1cc, 20, '000000', []],
  [0x1d0, 20, '070E0D081C103300', []], // wheel speeds
  [0x1d6, 20, '0000', []],
  [0x1dc, 20, '0004690000001000', [2]],
  [0x1dd, 20, 'FF361B4C00000000', [1, 3]],
  [0x1ea, 20, '0000000000000400', []],
  [0x1ed, 20, '21FF000000', []],
  [0x1fb, 20, '00', []],
  [0x221, 40, '310000000000', []],
  [0x255, 40, '09080808555553E2', [6, 7]],
  [0x296, 40, '00000000', []],
  [0x305, 100, '8054F700010000', []],
  [0x309, 100, '0348050503244080', [1, 5]],
  [0x31b, 100, '5A40000000000000', []],
  [0x320, 100, '0000005300000000', []],
  [0x324, 100, '7A5A014800000000', []], // temperatures, trip fuel
  [0x326, 100, '3E70000000000000', [0, 1]],
  [0x328, 100, '0000000000840040', []],
  [0x32f, 100, '0000000000000000', []],
  [0x339, 100, '8C399000', []],
  [0x34e, 100, '2C29106000000000', [1]],
  [0x371, 100, '0000000000000000', []],
  [0x372, 100, 'E0000000', []],
  [0x374, 100, '4700000013400000', []],
  [0x378, 100, '0000000010800040', []],
  [0x37b, 100, '0000002000000000', []],
  [0x396, 100, '00000047000000', []],
  [0x3a1, 200, '2E00000000000000', []],
  [0x3d7, 200, 'B000000000000040', []],
  [0x3d9, 200, '008400', []],
  [0x400, 300, '0000010200', []],
  [0x405, 300, '0000000000008000', []],
  [0x40c, 300, '8901541FE0000000', [0]],
  [0x428, 300, '00000000000000', []],
  [0x454, 300, '4AF6011A5A006000', []],
  [0x45b, 300, '0000', []],
  [0x465, 300, '0000000000000100', []],
  [0x510, 500, '0000000000000000', []],
  [0x516, 500, '0052600000100000', []],
  [0x551, 500, '0000000600', []],
  [0x555, 500, 'C122000600', []],
  [0x590, 1000, 'C029000600', []],
  [0x659, 1000, '0000000600', []],
  [0x661, 500, '0C510004F0014B00', []],
];

/** J1939 PGNs (priority 6, source address 0): CCVS (vehicle speed) and ET1 (engine temperatures). */
const J1939_CCVS = 0x18fef100;
const J1939_ET1 = 0x18feee00;

export const SIM_MESSAGES: readonly MessageSpec[] = [
  ...HONDA.map(
    ([id, periodMs, template, walk]): MessageSpec => ({
      id,
      ext: false,
      periodMs,
      template,
      walk,
      layout: id === 0x255 ? 'plain' : 'honda',
    }),
  ),
  { id: J1939_CCVS, ext: true, periodMs: 100, template: 'F30000000000001F', walk: [], layout: 'plain' },
  { id: J1939_ET1, ext: true, periodMs: 1000, template: '0000000000FFFFFF', walk: [], layout: 'plain' },
];

/** Frames per second of the table at its recorded periods (~1,671). */
export const SIM_BASE_RATE = SIM_MESSAGES.reduce((sum, m) => sum + 1000 / m.periodMs, 0);

/** Honda nibble checksum over id and payload (excluding the checksum nibble itself), as in the capture. */
export function hondaChecksum(id: number, data: Uint8Array): number {
  let sum = 0;
  for (let v = id; v > 0; v >>>= 4) sum += v & 15;
  const last = data.length - 1;
  for (let i = 0; i < last; i++) sum += (data[i]! >> 4) + (data[i]! & 15);
  sum += data[last]! >> 4;
  return (8 - sum) & 15;
}

function smoothstep(x: number): number {
  const c = Math.min(Math.max(x, 0), 1);
  return c * c * (3 - 2 * c);
}

/** The car's state at `t` seconds after start: a 90 s cycle of idle, acceleration, cruise, braking, idle. */
export interface VehicleState {
  speedKph: number;
  rpm: number;
  pedalPct: number;
  steeringDeg: number;
  coolantC: number;
  oilC: number;
  intakeC: number;
}

const GEAR_UP_KPH = [15, 30, 50, 70, 90];
const RPM_PER_KPH = [110, 62, 42, 32, 26, 22];

export function vehicleState(t: number): VehicleState {
  const c = t % 90;
  let speed: number;
  let pedal: number;
  if (c < 10) {
    speed = 0;
    pedal = 0;
  } else if (c < 30) {
    speed = 80 * smoothstep((c - 10) / 20);
    pedal = 30 + 20 * Math.sin((Math.PI * (c - 10)) / 20);
  } else if (c < 55) {
    speed = 80 + 3 * Math.sin((2 * Math.PI * (c - 30)) / 12.5);
    pedal = 14 + 4 * Math.sin((2 * Math.PI * (c - 30)) / 12.5);
  } else if (c < 70) {
    speed = 80 * (1 - smoothstep((c - 55) / 15));
    pedal = 0;
  } else {
    speed = 0;
    pedal = 0;
  }
  const coolant = 20 + 68 * (1 - Math.exp(-t / 180));
  // A cold engine idles higher; the idle settles as the coolant warms up.
  const idle = 750 + 350 * Math.max(0, (60 - coolant) / 40) + 15 * Math.sin(t * 2.1);
  let gear = 0;
  while (gear < GEAR_UP_KPH.length && speed >= GEAR_UP_KPH[gear]!) gear++;
  const rpm = Math.min(6800, Math.max(idle, speed * RPM_PER_KPH[gear]!));
  const moving = speed > 1 ? 1 : 0.2;
  return {
    speedKph: speed,
    rpm,
    pedalPct: pedal,
    steeringDeg: moving * (25 * Math.sin((2 * Math.PI * t) / 11) + 6 * Math.sin((2 * Math.PI * t) / 3.1)),
    coolantC: coolant,
    oilC: 20 + 75 * (1 - Math.exp(-t / 400)),
    intakeC: 30 + 4 * Math.sin(t / 37),
  };
}

export function clampByte(v: number): number {
  return v < 0 ? 0 : v > 255 ? 255 : Math.round(v);
}

/** Writes the drive cycle into the messages that carry it, integrating odometer and trip fuel over time. */
export class DriveSignals {
  private odometerM = 0;
  private tripFuelMl = 0;

  constructor(private lastEngineUs: number) {}

  /** Writes the drive-cycle signals into the messages that carry them. */
  apply(id: number, d: Uint8Array, v: VehicleState, dueUs: number): void {
    switch (id) {
      case 0x158: {
        // Engine data: vehicle speed twice (0.01 km/h, big-endian) and a wrapping odometer byte.
        const dt = (dueUs - this.lastEngineUs) / 1e6;
        this.lastEngineUs = dueUs;
        this.odometerM += (v.speedKph / 3.6) * dt;
        this.tripFuelMl += (0.02 + v.rpm * v.pedalPct * 2e-7) * dt * 1000;
        const s = Math.round(v.speedKph * 100);
        d[0] = s >> 8;
        d[1] = s & 0xff;
        d[4] = s >> 8;
        d[5] = s & 0xff;
        d[6] = Math.floor(this.odometerM / 10) & 0xff;
        break;
      }
      case 0x17c: {
        // Powertrain: accelerator pedal (0-255) and engine RPM (big-endian).
        const rpm = Math.round(v.rpm);
        d[0] = clampByte(v.pedalPct * 2.55);
        d[2] = rpm >> 8;
        d[3] = rpm & 0xff;
        break;
      }
      case 0x14a: {
        // Steering angle, signed 0.1 degree, big-endian.
        const a = Math.round(v.steeringDeg * 10) & 0xffff;
        d[0] = a >> 8;
        d[1] = a & 0xff;
        break;
      }
      case 0x1d0: {
        // Four wheel speeds, 14 bits each (0.01 km/h, saturating), packed MSB first into bytes 0-6.
        const w = (k: number): number => Math.min(0x3fff, Math.round(v.speedKph * k * 100));
        const front = w(1.0) * 0x4000 + w(1.004); // 28 bits: bytes 0-2 and the high nibble of byte 3
        const rear = w(0.997) * 0x4000 + w(1.002); // 28 bits: the low nibble of byte 3 and bytes 4-6
        d[0] = Math.floor(front / 0x100000) & 0xff;
        d[1] = (front >>> 12) & 0xff;
        d[2] = (front >>> 4) & 0xff;
        d[3] = ((front & 0xf) << 4) | (Math.floor(rear / 0x1000000) & 0xf);
        d[4] = (rear >>> 16) & 0xff;
        d[5] = (rear >>> 8) & 0xff;
        d[6] = rear & 0xff;
        break;
      }
      case 0x324: {
        // Coolant and oil temperature (+40 °C offset), trip fuel consumed (ml, big-endian).
        const fuel = Math.floor(this.tripFuelMl) & 0xffff;
        d[0] = clampByte(v.coolantC + 40);
        d[1] = clampByte(v.oilC + 40);
        d[2] = fuel >> 8;
        d[3] = fuel & 0xff;
        break;
      }
      case J1939_CCVS: {
        // Wheel-based vehicle speed, 1/256 km/h, little-endian (J1939 SPN 84).
        const s = Math.min(0xfaff, Math.round(v.speedKph * 256));
        d[1] = s & 0xff;
        d[2] = s >> 8;
        break;
      }
      case J1939_ET1: {
        // Coolant and fuel temperature (+40 °C), oil temperature 0.03125 °C/bit -273 (little-endian).
        const oil = Math.round((v.oilC + 273) / 0.03125);
        d[0] = clampByte(v.coolantC + 40);
        d[1] = clampByte(v.intakeC + 40);
        d[2] = oil & 0xff;
        d[3] = oil >> 8;
        break;
      }
    }
  }
}
