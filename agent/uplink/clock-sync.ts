/**
 * The agent's side of the clock exchange (core/uplink/clock.ts): probes the bridge on every new
 * connection (before hello, so the offset is known before any frame moves: a few quick round trips) and
 * then with every heartbeat, and keeps the estimate. Its fix stamps every UP batch and converts the
 * origin times of DOWN frames to this agent's clock.
 */
import { ClockEstimator, fixForWallClockNow, type ClockFix } from '../../core/uplink/clock.js';
import type { AgentMessage, BridgeMessage } from '../../core/uplink/messages.js';

/** Round trips taken right after connecting; the best of them is the first estimate's error. */
const PROBES_AT_CONNECT = 4;
/** Probes awaiting their reply; older ones are forgotten (their replies ignored). */
const MAX_OUTSTANDING = 8;

export class ClockSync {
  private readonly estimator = new ClockEstimator();
  private outstanding: number[] = [];
  private samplesThisLink = 0;
  /** This link's bridge says its clock domain in replies (welcome feature "clock_domain"): probes ask for it. */
  private domains = false;
  private send: ((m: AgentMessage) => void) | undefined;
  readonly stats = { probes: 0, samples: 0 };

  constructor(
    private readonly now: () => number = Date.now,
    private readonly monoNow: () => number = () => performance.now(),
  ) {}

  /** The current estimate, its error grown by the drift since its round trip (undefined until the first round trip of a connection). */
  get fix(): ClockFix | undefined {
    return this.estimator.fixAt(this.monoNow());
  }

  /** The wall-minus-monotonic offset (ms) of the wall clock the fix is for (frame-uploader.ts restates held frames into it). */
  get fixWallMinusMono(): number | undefined {
    return this.estimator.fixWallMinusMono;
  }

  /**
   * The fix for times read on the wall clock now: restated by any step of the wall clock since its round
   * trip (core/uplink/clock.ts fixForWallClockNow). What converts a time read now (a DOWN frame's transmit
   * deadline, a command's expiry) uses this; the fix as measured would be off by the step until the next
   * probe — a step back would let a relayed frame or a command outlive its limit by the step.
   */
  fixNow(): ClockFix | undefined {
    const fix = this.fix;
    const wm = this.estimator.fixWallMinusMono;
    return fix === undefined || wm === undefined ? fix : fixForWallClockNow(fix, wm, this.now() - this.monoNow());
  }

  /** A new connection: fresh round trips (the clock may have been stepped while it was down). */
  start(send: (m: AgentMessage) => void): void {
    this.send = send;
    this.estimator.reset();
    this.outstanding = [];
    this.samplesThisLink = 0;
    this.domains = false;
    this.probe();
  }

  /**
   * The bridge welcomed us listing the feature "clock_domain": from now on probes ask for its clock domain
   * (core/uplink/clock.ts), and a few are sent at once, since the samples taken before, of no known domain,
   * give way to the first that has one.
   */
  useBridgeDomains(): void {
    if (this.domains) return;
    this.domains = true;
    this.samplesThisLink = 0;
    this.probe();
  }

  probe(): void {
    if (!this.send) return;
    const t0 = this.now();
    this.outstanding.push(t0);
    if (this.outstanding.length > MAX_OUTSTANDING) this.outstanding.shift();
    this.stats.probes++;
    this.send(this.domains ? { t: 'clock_probe', t0, domain: true } : { t: 'clock_probe', t0 });
  }

  /** A reply; true when it gave the connection its first estimate. Replies to no probe of ours are ignored. */
  reply(m: Extract<BridgeMessage, { t: 'clock_reply' }>): boolean {
    const i = this.outstanding.indexOf(m.t0);
    if (i < 0) return false;
    this.outstanding.splice(i, 1);
    const t1 = this.now();
    if (!this.estimator.add(m.t0, m.bridge_ms, t1, t1 - this.monoNow(), m.bridge_wm)) return false;
    this.stats.samples++;
    this.samplesThisLink++;
    if (this.samplesThisLink < PROBES_AT_CONNECT) this.probe();
    return this.samplesThisLink === 1;
  }
}
