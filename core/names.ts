/**
 * The naming rules every boundary checks: one definition for the agent, the bridge, the wire and the page
 * (browser-safe: no imports). Lists and `bus=value` specs are built from the same patterns.
 */

/** Dongle and group ids: letters, digits, ".", "_", "-", 1-64 characters (safe in URLs and file names). */
export const ID_RULE = /^[A-Za-z0-9._-]{1,64}$/;
export const ID_RULE_TEXT = '1-64 letters, digits, ".", "_" or "-"';

/** CAN interface (bus) names as Linux allows them in practice, 1-32 characters. */
const BUS = '[A-Za-z0-9_.:-]{1,32}';
export const BUS_RULE = new RegExp(`^${BUS}$`);
export const BUS_RULE_TEXT = '1-32 letters, digits, "_", ".", ":" or "-"';

/** An interface the kernel can open: at most IFNAMSIZ - 1 = 15 characters of the bus alphabet. */
const IFNAME = '[A-Za-z0-9_.:-]{1,15}';
export const IFNAME_RULE = new RegExp(`^${IFNAME}$`);
/** `can0,can1`: interface names separated by commas. */
export const IFNAME_LIST_RULE = new RegExp(`^${IFNAME}(,${IFNAME})*$`);

/** `can0=500000,can1=250000`: a bitrate per bus. */
export const BUS_BITRATE_LIST_RULE = new RegExp(`^${BUS}=[0-9]{3,8}(,${BUS}=[0-9]{3,8})*$`);

/** `<bus>=<value>` binds a value to one bus; the `<bus>=` part is optional where a value may apply to every bus. */
const BUS_PREFIXED = new RegExp(`^(${BUS})=(.+)$`);
export function splitBusPrefix(spec: string): { bus: string | undefined; value: string } {
  const m = BUS_PREFIXED.exec(spec);
  return m ? { bus: m[1]!, value: m[2]! } : { bus: undefined, value: spec };
}
/** `[<bus>=]<path>`: an optional bus and a path that neither starts with "=" or a space nor spans lines. */
export const BUS_PREFIXED_PATH_RULE = new RegExp(`^(?:${BUS}=)?[^=\\s][^\\n]*$`);

/** Recording ids: the UTC start time and a random suffix, e.g. 20261129T195012Z-3f2a1c (safe in URLs and file names). */
export const RECORDING_ID_RULE = /^\d{8}T\d{6}Z-[0-9a-f]{6}$/;

/**
 * Buses one agent names, at most: in its hello, in what the bridge keeps per dongle (sequence checks, the
 * fleet's bus states) and in the agent's own per-bus transmit lines, so nobody can grow those maps or
 * metric labels without bound.
 */
export const MAX_BUSES_PER_DONGLE = 64;
