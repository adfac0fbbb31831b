/**
 * What the kernel says about a CAN interface, read from sysfs and procfs: whether it exists, is up, is a
 * CAN device, and its MTU (FD or classic); and, when a channel cannot be opened, why — in words a user can
 * act on. The SocketCAN source (socketcan.ts) polls this; the addon itself reports neither.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** Link type of CAN devices in /sys/class/net/<if>/type (ARPHRD_CAN). */
export const ARPHRD_CAN = 280;
const IFF_UP = 0x1;

export interface LinkState {
  exists: boolean;
  up: boolean;
  /** Why the interface is in this state, phrased for the console. */
  reason: string;
  ifindex: number | null;
  mtu: number | null;
  type: number | null;
}

/**
 * Reads an interface's state from sysfs. Up means administratively up (IFF_UP) with an operstate of
 * "up" or "unknown" (vcan never reports carrier, so it stays "unknown" while up).
 */
export function readLinkState(sysfsRoot: string, iface: string): LinkState {
  const dir = join(sysfsRoot, 'class', 'net', iface);
  if (!existsSync(dir)) {
    return { exists: false, up: false, reason: `interface ${iface} is gone (removed or not created yet)`, ifindex: null, mtu: null, type: null };
  }
  const flags = readNumber(join(dir, 'flags'), 16);
  const oper = readText(join(dir, 'operstate'));
  const base = { exists: true, ifindex: readNumber(join(dir, 'ifindex'), 10), mtu: readNumber(join(dir, 'mtu'), 10), type: readNumber(join(dir, 'type'), 10) };
  if (flags !== null && (flags & IFF_UP) === 0) {
    return { ...base, up: false, reason: `interface ${iface} is set down (ip link set ${iface} up)` };
  }
  if (oper !== null && oper !== 'up' && oper !== 'unknown') {
    return { ...base, up: false, reason: `interface ${iface} has no carrier (operstate ${oper}): bus-off or controller stopped; check wiring, bitrate and restart-ms` };
  }
  return { ...base, up: true, reason: `interface ${iface} is up` };
}

/**
 * The addon throws the same bare "Error while creating channel" for every failure, so the cause is
 * worked out afterwards. AF_CAN is checked after the failed attempt, not before: socket(PF_CAN) loads
 * the can/can_raw modules on demand, so "not loaded yet" is not "not available". Once that attempt has
 * failed, a kernel with CAN_RAW lists it in /proc/net/protocols (can_raw registers a proto "CAN_RAW";
 * /proc/net/can exists as soon as the can core is loaded).
 */
/** An open failure; `kernel` failures (no AF_CAN) are the same for every interface and reported once. */
export class SocketCanOpenError extends Error {
  constructor(
    message: string,
    readonly scope: 'kernel' | 'interface',
    cause: unknown,
  ) {
    super(message, { cause });
    this.name = 'SocketCanOpenError';
  }
}

export function diagnoseOpenFailure(iface: string, cause: unknown, sysfsRoot: string, procRoot: string): SocketCanOpenError {
  const detail = cause instanceof Error ? cause.message : String(cause);
  const af = afCanStatus(procRoot);
  let message: string;
  if (af === 'absent') {
    message = `cannot open ${iface}: this kernel has no SocketCAN (AF_CAN): load the can and can_raw modules (modprobe can_raw) or use --sim/--replay`;
  } else if (af === 'core-only') {
    message = `cannot open ${iface}: the kernel has the CAN core but no CAN_RAW protocol: load it (modprobe can_raw) or use --sim/--replay`;
  } else {
    const link = readLinkState(sysfsRoot, iface);
    if (!link.exists) {
      const create = iface.startsWith('vcan') ? ` (ip link add dev ${iface} type vcan && ip link set ${iface} up)` : '';
      message = `interface ${iface} does not exist (ip link show); create it${create} or fix --can`;
    } else if (link.type !== null && link.type !== ARPHRD_CAN) {
      message = `interface ${iface} is not a CAN interface (link type ${link.type}, CAN is ${ARPHRD_CAN}); fix --can`;
    } else {
      message = `cannot open a SocketCAN channel on ${iface} (socketcan: ${detail}); check that it is a CAN device visible in this network namespace`;
    }
  }
  return new SocketCanOpenError(message, af === 'absent' || af === 'core-only' ? 'kernel' : 'interface', cause);
}

type AfCanStatus = 'raw' | 'core-only' | 'absent' | 'unknown';

function afCanStatus(procRoot: string): AfCanStatus {
  // /proc/self/net first: the units' ProcSubset=pid hides /proc/net, not the process's own view of it.
  const net = existsSync(join(procRoot, 'self', 'net')) ? join(procRoot, 'self', 'net') : join(procRoot, 'net');
  const protocols = readText(join(net, 'protocols'));
  if (protocols === null) return 'unknown';
  if (/^CAN_RAW\s/m.test(protocols)) return 'raw';
  return existsSync(join(net, 'can')) ? 'core-only' : 'absent';
}

function readText(path: string): string | null {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return null;
  }
}

export function readNumber(path: string, radix: 10 | 16): number | null {
  const text = readText(path);
  if (text === null) return null;
  const n = parseInt(text, radix); // parseInt(…, 16) accepts the "0x" prefix sysfs writes in `flags`
  return Number.isNaN(n) ? null : n;
}

/** CAP_NET_ADMIN's bit in the capability sets (linux/capability.h). */
const CAP_NET_ADMIN = 12;

/**
 * Whether the `ip` this process runs may set interfaces down and up: CAP_NET_ADMIN in its ambient set
 * (systemd's AmbientCapabilities=: a child keeps it), or root with it effective. A capability on the node
 * binary alone (setcap) is not passed to `ip`. From <procRoot>/self/status; null when that cannot be read.
 */
export function canSetLinks(procRoot: string): boolean | null {
  const status = readText(join(procRoot, 'self', 'status'));
  if (status === null) return null;
  const caps = (name: string): bigint | null => {
    const m = new RegExp(`^${name}:\\s*([0-9a-fA-F]+)$`, 'm').exec(status);
    return m ? BigInt('0x' + m[1]!) : null;
  };
  const uid = /^Uid:\s*\d+\s+(\d+)/m.exec(status);
  const eff = caps('CapEff');
  const amb = caps('CapAmb');
  if (eff === null || uid === null) return null;
  const bit = 1n << BigInt(CAP_NET_ADMIN);
  return (amb !== null && (amb & bit) !== 0n) || (uid[1] === '0' && (eff & bit) !== 0n);
}
