/**
 * The one way a test skips (issue 17): a skip must never make `make test` look green for the wrong
 * reason. Under CI (`CI=true`, .ci/run installs every package and runs as root) a skip of something CI is
 * supposed to run FAILS the run, with the reason. Outside CI the skip is printed loudly at once and
 * appended to build/test-skipped.txt, which the Makefile's suites print as a summary at their end.
 *
 * Skips that are expected even under CI (a check of the no-SocketCAN path on a kernel that has SocketCAN)
 * pass `{ evenUnderCi: true }`: they are still printed and listed, never silent.
 */
import { appendFileSync, mkdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';

/** Repository root (this file runs as build/test/helpers/skips.js). */
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
/** Where every skip of a run is listed; the Makefile prints it and removes it before each suite. */
export const SKIP_LOG = process.env.CANRELAY_SKIP_LOG ?? join(ROOT, 'build', 'test-skipped.txt');

export function underCi(): boolean {
  const v = process.env.CI;
  return v !== undefined && v !== '' && v !== '0' && v.toLowerCase() !== 'false';
}

export interface SkipOptions {
  /** A skip that is legitimate on CI's machine too (the thing checked cannot exist there). */
  evenUnderCi?: boolean;
}

function fileOfCaller(): string {
  // The test file that asked: the first stack frame outside this helper.
  const here = fileURLToPath(import.meta.url);
  for (const line of (new Error().stack ?? '').split('\n').slice(1)) {
    const m = /(file:\/\/[^\s)]+?):\d+:\d+\)?$/.exec(line.trim());
    if (m && !m[1]!.endsWith(basename(here))) return basename(fileURLToPath(m[1]!));
  }
  return '?';
}

function record(what: string, reason: string): void {
  const line = `SKIPPED ${what}: ${reason}`;
  process.stderr.write(`\n*** ${line} ***\n\n`);
  try {
    mkdirSync(dirname(SKIP_LOG), { recursive: true });
    appendFileSync(SKIP_LOG, `${line}\n`);
  } catch {
    // The loud line above is still there.
  }
}

/**
 * For the `skip` option of `test`/`describe`: returns `reason` (skip) or undefined (run). Under CI a
 * reason registers a failing test naming it, so the run fails instead of passing without the check.
 */
export function skipUnlessPresent(what: string, reason: string | undefined, opts: SkipOptions = {}): string | undefined {
  if (reason === undefined) return undefined;
  const where = `${fileOfCaller()}: ${what}`;
  if (underCi() && !opts.evenUnderCi) {
    test(`CI must run ${what}, but: ${reason}`, () => {
      throw new Error(`CI=true and ${where} would be skipped: ${reason}`);
    });
  } else {
    record(where, reason);
  }
  return reason;
}

/** Inside a running test: skips it (loudly), or under CI fails it with the reason. */
export function skipOrFail(t: TestContext, reason: string, opts: SkipOptions = {}): void {
  const where = `${fileOfCaller()}: ${t.name}`;
  if (underCi() && !opts.evenUnderCi) throw new Error(`CI=true and ${where} would be skipped: ${reason}`);
  record(where, reason);
  t.skip(reason);
}
