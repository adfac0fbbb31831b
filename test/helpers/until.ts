/**
 * Waiting for a condition in tests (never a fixed sleep): the one polling loop of the test helpers.
 * `until` polls a yes/no condition; an error it throws fails the wait at once (a pred may assert on what
 * must never be seen). `untilValue` polls `fn` until it returns a truthy value, which it returns; there a
 * throw counts as "not yet" (a page element not there yet), and the last value or error is in the
 * timeout's message. `waitForValue` polls a getter until its value passes a check, and returns it.
 */
async function poll<T>(fn: () => Promise<T> | T, ms: number, every: number, retryErrors: boolean, timedOut: (last: unknown) => string): Promise<NonNullable<T>> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
      last = v;
    } catch (err) {
      if (!retryErrors) throw err;
      last = err;
    }
    if (Date.now() > deadline) throw new Error(timedOut(last));
    await new Promise((r) => setTimeout(r, every));
  }
}

const lastText = (last: unknown): string => (last instanceof Error ? last.message : (JSON.stringify(last)?.slice(0, 500) ?? String(last)));

/** Polls `pred` until it holds, or fails with `what` after `ms`. */
export async function until(pred: () => Promise<boolean> | boolean, ms: number, what: string): Promise<void> {
  await poll(pred, ms, 100, false, () => `timed out: ${what}`);
}

/** Polls `fn` until it returns a truthy value (returned), or fails with `what` after `ms`. */
export function untilValue<T>(fn: () => Promise<T> | T, what: string, ms = 10_000, every = 100): Promise<NonNullable<T>> {
  return poll(fn, ms, every, true, (last) => `timed out after ${ms} ms waiting for ${what} (last: ${lastText(last)})`);
}

/** Polls `get` until its value passes `ok` (returned), or fails with `what` and the last value after `ms`. */
export async function waitForValue<T>(get: () => Promise<T>, ok: (v: T) => boolean, ms: number, what: string): Promise<T> {
  let last: T | undefined;
  const found = await poll<{ v: T } | undefined>(
    async () => {
      last = await get();
      return ok(last) ? { v: last } : undefined;
    },
    ms,
    100,
    false,
    () => `timed out waiting for ${what}; last: ${lastText(last)}`,
  );
  return found.v;
}
