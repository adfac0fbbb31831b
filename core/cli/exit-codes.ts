/**
 * The daemons' exit codes, and the start-up error that carries one. systemd's units list the codes a
 * restart cannot cure in RestartPreventExitStatus= (docs/deployment.md): the unit fails once, visibly,
 * instead of restarting into the same wall.
 */

/** A bad flag, config file or value. */
export const EXIT_USAGE = 2;
/** The state file or directory cannot be used (corrupt bridge database, unreadable, read-only). */
export const EXIT_STATE_UNUSABLE = 3;
/** The installation is broken: a native addon built for another Node.js ABI. */
export const EXIT_BROKEN_INSTALL = 4;
/** Any other failed start (e.g. the port is taken, the disk is full): a restart may help. */
export const EXIT_START_FAILED = 1;

/** A failed start with a one-line, actionable message and the exit code that says what kind it is. */
export class StartupError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
    this.name = 'StartupError';
  }
}
