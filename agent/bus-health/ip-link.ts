/**
 * What the kernel knows about each CAN interface, read through iproute2: `ip -json -details -statistics
 * -statistics link show` (the output technicians already trust from `ip -d -s link`; -statistics twice adds
 * the extended counters, missed_errors among them). Chosen over raw rtnetlink
 * because no npm package decodes IFLA_CAN_* and iproute2 is on every gateway; one process per second
 * costs a few milliseconds. The parser takes the JSON text, validates it, and keeps only what it needs.
 *
 * Shapes (iproute2 ip/iplink_can.c, kernel include/uapi/linux/can/netlink.h): linkinfo.info_kind "can"
 * for real controllers ("vcan", "vxcan" for virtual ones); info_data.state ("ERROR-ACTIVE",
 * "ERROR-WARNING", "ERROR-PASSIVE", "BUS-OFF", "STOPPED", "SLEEPING"), berr_counter {tx, rx},
 * restart_ms, ctrlmode (["LISTEN-ONLY", "FD", …]: the modes on), bittiming {bitrate, sample_point} (sample_point a string "0.875" since iproute2 6.x, a
 * number before), data_bittiming for FD; info_xstats {restarts, bus_error, arbitration_lost,
 * error_warning, error_passive, bus_off}; stats64 {rx: {errors, dropped, over_errors, missed_errors (-s -s)}, tx: {errors, dropped}}.
 */
import { execFile } from 'node:child_process';
import { z } from 'zod';
import { CONTROLLER_STATES, type BusCounterName, type ControllerState } from '../../core/console/events.js';

export interface LinkHealth {
  name: string;
  up: boolean;
  /** info_kind: "can" (a real controller), "vcan", "vxcan", … or null. */
  kind: string | null;
  state: ControllerState | null;
  tec: number | null;
  rec: number | null;
  bitrate: number | null;
  samplePoint: number | null;
  dataBitrate: number | null;
  dataSamplePoint: number | null;
  restartMs: number | null;
  /**
   * The controller is in listen-only mode (`ip link set … type can listen-only on`: ctrlmode LISTEN-ONLY):
   * it sends no ACK and transmits nothing — the kernel takes a frame written to it and drops it.
   */
  listenOnly: boolean;
  /** One-shot mode (ctrlmode ONE-SHOT): a frame nobody acknowledges is not retried. */
  oneShot: boolean;
  txqlen: number | null;
  counters: Partial<Record<BusCounterName, number>>;
}

const n = z.number().int().min(0);
const samplePoint = z.union([
  z.number(),
  z
    .string()
    .regex(/^\d+(\.\d+)?$/)
    .transform(Number),
]);
const timing = z.looseObject({ bitrate: n.optional(), sample_point: samplePoint.optional() });
const Link = z.looseObject({
  ifname: z.string().max(64),
  flags: z.array(z.string()).optional(),
  operstate: z.string().optional(),
  txqlen: n.optional(),
  linkinfo: z
    .looseObject({
      info_kind: z.string().max(32).optional(),
      info_data: z
        .looseObject({
          state: z.string().max(32).optional(),
          berr_counter: z.looseObject({ tx: n, rx: n }).optional(),
          restart_ms: n.optional(),
          ctrlmode: z.array(z.string().max(32)).max(32).optional(),
          bittiming: timing.optional(),
          data_bittiming: timing.optional(),
        })
        .optional(),
      info_xstats: z.record(z.string(), z.unknown()).optional(),
    })
    .optional(),
  stats64: z
    .looseObject({
      rx: z.record(z.string(), z.unknown()).optional(),
      tx: z.record(z.string(), z.unknown()).optional(),
    })
    .optional(),
});
const Output = z.array(z.unknown());

/** info_xstats / stats64 keys → our counter names. */
const XSTATS: readonly [string, BusCounterName][] = [
  ['bus_error', 'bus_errors'],
  ['arbitration_lost', 'arbitration_lost'],
  ['error_warning', 'error_warning'],
  ['error_passive', 'error_passive'],
  ['bus_off', 'bus_off'],
  ['restarts', 'restarts'],
];
const RX: readonly [string, BusCounterName][] = [
  ['errors', 'rx_errors'],
  ['dropped', 'rx_dropped'],
  ['over_errors', 'rx_overruns'],
  ['missed_errors', 'rx_missed'], // printed only with -statistics twice
];
const TX: readonly [string, BusCounterName][] = [
  ['errors', 'tx_errors'],
  ['dropped', 'tx_dropped'],
];

function copyCounters(src: Record<string, unknown> | undefined, map: readonly [string, BusCounterName][], out: Partial<Record<BusCounterName, number>>): void {
  if (!src) return;
  for (const [from, to] of map) {
    const v = src[from];
    if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) out[to] = v;
  }
}

function controllerState(s: string | undefined): ControllerState | null {
  if (s === undefined) return null;
  const lower = s.toLowerCase() as ControllerState;
  return (CONTROLLER_STATES as readonly string[]).includes(lower) ? lower : null;
}

/** An entry of `ip -json` output that names a CAN interface (kind can, vcan or vxcan, or link type can). */
function isCanEntry(entry: unknown): boolean {
  if (entry === null || typeof entry !== 'object') return false;
  const e = entry as { link_type?: unknown; linkinfo?: { info_kind?: unknown } };
  const kind = typeof e.linkinfo === 'object' && e.linkinfo !== null ? e.linkinfo.info_kind : undefined;
  return e.link_type === 'can' || kind === 'can' || kind === 'vcan' || kind === 'vxcan';
}

/** Parses `ip -json -details -statistics -statistics link show` output. Throws an Error saying what is wrong. */
export function parseIpLinkJson(text: string): Map<string, LinkHealth> {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new Error(`ip -json printed something that is not JSON (${(err as Error).message}); is iproute2 too old for -json?`);
  }
  const r = Output.safeParse(raw);
  if (!r.success) throw new Error(`unexpected ip -json link output: ${z.prettifyError(r.error).slice(0, 300)}`);
  const out = new Map<string, LinkHealth>();
  for (const entry of r.data) {
    // Each interface on its own: a gateway's other interfaces (bridges, VPNs, containers' veths) come and
    // go with fields of their own, and one that did not fit failed the whole reading for every CAN bus.
    // A CAN interface that does not fit still fails it, loudly (bus_health_unavailable; the last good
    // reading stays): skipped, its bus would lose its state, and the listen-only and bus-off refusals.
    const p = Link.safeParse(entry);
    if (!p.success) {
      if (isCanEntry(entry)) throw new Error(`unexpected ip -json link output for a CAN interface: ${z.prettifyError(p.error).slice(0, 300)}`);
      continue;
    }
    const l = p.data;
    const data = l.linkinfo?.info_data;
    const counters: Partial<Record<BusCounterName, number>> = {};
    copyCounters(l.linkinfo?.info_xstats, XSTATS, counters);
    copyCounters(l.stats64?.rx, RX, counters);
    copyCounters(l.stats64?.tx, TX, counters);
    out.set(l.ifname, {
      name: l.ifname,
      // IFF_UP as `ip link set up` sets it; operstate is UNKNOWN for vcan.
      up: l.flags ? l.flags.includes('UP') : l.operstate === 'UP',
      kind: l.linkinfo?.info_kind ?? null,
      state: controllerState(data?.state),
      tec: data?.berr_counter?.tx ?? null,
      rec: data?.berr_counter?.rx ?? null,
      bitrate: data?.bittiming?.bitrate || null,
      samplePoint: data?.bittiming?.sample_point ?? null,
      dataBitrate: data?.data_bittiming?.bitrate || null,
      dataSamplePoint: data?.data_bittiming?.sample_point ?? null,
      restartMs: data?.restart_ms ?? null,
      listenOnly: data?.ctrlmode?.includes('LISTEN-ONLY') ?? false,
      oneShot: data?.ctrlmode?.includes('ONE-SHOT') ?? false,
      txqlen: l.txqlen ?? null,
      counters,
    });
  }
  return out;
}

/** Runs ip once for every interface (one process, not one per bus). Rejects with a message to act on. */
export function readIpLinks(ipBinary = 'ip', timeoutMs = 3000): Promise<Map<string, LinkHealth>> {
  return new Promise((resolve, reject) => {
    execFile(ipBinary, ['-json', '-details', '-statistics', '-statistics', 'link', 'show'], { timeout: timeoutMs, maxBuffer: 4 << 20 }, (err, stdout, stderr) => {
      if (err) {
        const code = (err as NodeJS.ErrnoException).code;
        reject(
          new Error(
            code === 'ENOENT'
              ? `cannot run ${ipBinary}: install iproute2 for controller state and error counters`
              : `${ipBinary} -json -details -statistics -statistics link show failed: ${String(stderr).trim() || err.message}`,
          ),
        );
        return;
      }
      try {
        resolve(parseIpLinkJson(stdout));
      } catch (e) {
        reject(e as Error);
      }
    });
  });
}
