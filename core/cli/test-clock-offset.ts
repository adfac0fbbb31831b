/**
 * TEST ONLY. `CANRELAY_TEST_CLOCK_OFFSET_MS=<ms>` shifts this process's wall clock (`Date.now()`, which
 * the sources, the uplink, the transmit queue and the logs read) by that many ms, so that the fault tests
 * can run an agent whose clock is seconds off the bridge's on one host (test/faults/relay.test.ts).
 * Read here and nowhere else; never set it in production. An unusable value stops the start.
 */
export function applyTestClockOffset(env: NodeJS.ProcessEnv = process.env): void {
  const raw = env.CANRELAY_TEST_CLOCK_OFFSET_MS;
  if (raw === undefined || raw === '') return;
  const offset = Number(raw);
  if (!Number.isFinite(offset)) throw new Error(`CANRELAY_TEST_CLOCK_OFFSET_MS=${raw} is not a number of ms (it is a test-only setting: unset it)`);
  const realNow = Date.now.bind(Date);
  Date.now = () => realNow() + offset;
}
