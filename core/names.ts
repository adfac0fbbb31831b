/** The naming rules every boundary checks: one definition for the agent, the bridge and the wire. */

/** Dongle and group ids: letters, digits, ".", "_", "-", 1-64 characters (safe in URLs and file names). */
export const ID_RULE = /^[A-Za-z0-9._-]{1,64}$/;
export const ID_RULE_TEXT = '1-64 letters, digits, ".", "_" or "-"';

/** CAN interface (bus) names as Linux allows them in practice, 1-32 characters. */
export const BUS_RULE = /^[A-Za-z0-9_.:-]{1,32}$/;
export const BUS_RULE_TEXT = '1-32 letters, digits, "_", ".", ":" or "-"';

/** Recording ids: the UTC start time and a random suffix, e.g. 20261129T195012Z-3f2a1c (safe in URLs and file names). */
export const RECORDING_ID_RULE = /^\d{8}T\d{6}Z-[0-9a-f]{6}$/;
