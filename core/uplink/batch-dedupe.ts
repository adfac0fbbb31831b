/**
 * The receiving side of the data plane's numbered batches, used by both receivers: the bridge's AgentLink
 * (UP batches of one agent run) and the agent's Downlink (DOWN batches of one bridge process).
 *
 * Batch numbers increase within a stream; a resend after a reconnect carries its original number, so a
 * number at or below the last one taken is a duplicate: acknowledged, never applied twice. Gaps are
 * normal (a sender may forget an expired batch). A new stream (agent run, bridge epoch) starts afresh.
 */

/** Where a receiver stands in a sender's batch stream: the stream's id and the last batch taken (-1: none). */
export interface BatchPosition {
  /** The sender's numbering: an agent run id (UP) or a bridge relay epoch (DOWN). */
  stream: string;
  batch: number;
}

export class BatchDedupe {
  /** `position` is kept (and updated) by reference, so an owner may share and persist it. */
  constructor(readonly position: BatchPosition = { stream: '', batch: -1 }) {}

  /** The sender's numbering changed: everything from it is new. */
  setStream(stream: string): void {
    if (stream === this.position.stream) return;
    this.position.stream = stream;
    this.position.batch = -1;
  }

  /** True when `batch` is new (and is now the position); false for a duplicate. */
  accept(batch: number): boolean {
    if (batch <= this.position.batch) return false;
    this.position.batch = batch;
    return true;
  }
}
