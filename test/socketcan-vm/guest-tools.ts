/**
 * What the guest's check files share: progress lines in the results share (the test runner prints a
 * file's results only at its end; the host reads the share while the VM runs, and a failed guest run
 * shows their tail), commands run to their end, and waits that say what they wait for.
 */
import { spawnSync } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { until as untilHolds } from '../helpers/until.js';

export interface GuestTools {
  /** A line in `<name>-progress.log` of the results share (nothing outside the VM run). */
  progress(msg: string): void;
  /** Runs a command to its end (killed after the file's `shTimeoutMs`); its stdout, or an error with its stderr. */
  sh(cmd: string, args: string[]): string;
  /** test/helpers/until.ts, announced in the progress log first. */
  until(pred: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void>;
}

/** `shTimeoutMs`: how long one command may take; 0, as long as it takes. */
export function guestTools(name: string, shTimeoutMs: number): GuestTools {
  const progress = (msg: string): void => {
    const dir = process.env.SOCKETCAN_VM_RESULTS;
    if (dir) appendFileSync(join(dir, `${name}-progress.log`), `${new Date().toISOString()} ${msg}\n`);
  };
  return {
    progress,
    sh(cmd, args) {
      progress(`${cmd} ${args.join(' ')}`);
      const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: shTimeoutMs });
      if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
      return r.stdout;
    },
    until(pred, ms, what) {
      progress(`waiting for ${what}`);
      return untilHolds(pred, ms, what);
    },
  };
}
