/**
 * Carries out commands from the bridge and reports each step as a `command_status` console event:
 * delivered (received here), then succeeded or failed. Those events reach the local console and, like
 * every console event, the bridge through the outbox. A command past its expiry is refused: a frame
 * transmitted long after the operator asked for it is worse than none. The expiry is on the bridge's
 * clock: converted with this agent's clock fix (every uncertainty against the command), it is checked on
 * arrival and again when the frame would be handed to the kernel (a busy bus can hold it in the queue).
 * A command id already taken is ignored, also one a previous run of the agent took (command-ledger.ts):
 * a bridge (or another cluster node, whose record of the first delivery was not written yet or was lost)
 * can send the same command again after a reconnect, and its frame must not reach the bus twice. Its
 * statuses from the first time reach the bridge anyway (the outbox).
 */
import type { ConsoleStream } from '../core/console/console-stream.js';
import type { CommandState } from '../core/console/events.js';
import { commandStatusData } from '../core/console/normalize.js';
import type { ClockFix } from '../core/uplink/clock.js';
import { frameFromCommand } from '../core/uplink/commands.js';
import type { CommandBody } from '../core/uplink/messages.js';
import type { CommandLedger } from './command-ledger.js';
import type { TxQueue } from './tx-queue.js';

export class CommandRunner {
  constructor(
    private readonly console: ConsoleStream,
    private readonly tx: TxQueue,
    private readonly taken: CommandLedger,
  ) {}

  /** `local`: this agent's clock fix to the bridge (undefined: none usable; the command is refused, as relayed frames are). */
  run(commandId: string, expiresAt: string, cmd: CommandBody, local: ClockFix | undefined): void {
    if (this.taken.has(commandId)) return;
    const status = (s: CommandState, error?: string): void => {
      this.console.publish({ type: 'command_status', data: commandStatusData(commandId, cmd.type, s, error) });
    };
    const expiry = Date.parse(expiresAt);
    // The last local moment at which the bridge's clock can still be before the expiry.
    const notAfterMs = expiry - (local ? local.offsetMs + local.errorMs : 0);
    // Remembered before anything is done: a restart in between must not carry it out again.
    this.taken.add(commandId, expiry, local ? Date.now() + local.offsetMs : undefined);
    status('delivered');
    // A command whose expiry cannot be read cannot be proven current: refused, never taken as "no expiry".
    if (!Number.isFinite(expiry)) return status('failed', `its expiry ${JSON.stringify(expiresAt)} is not a time: not carried out`);
    // Without a fix the expiry, on the bridge's clock, cannot be told on this one (an unset clock would take
    // a command as current for years): refused, as relayed frames are.
    if (local === undefined) return status('failed', "the agent has no usable clock fix against the bridge's clock, so the expiry cannot be checked: not carried out (retry)");
    const expired = `expired at ${expiresAt} before the agent could carry it out`;
    if (Date.now() >= notAfterMs) return status('failed', expired);
    switch (cmd.type) {
      case 'send_frame': {
        const built = frameFromCommand(cmd);
        if (!built.ok) return status('failed', built.error);
        this.tx.enqueue(built.frame, (r) => (r.ok ? status('succeeded') : status('failed', r.error)), notAfterMs, `${expired} (the transmit queue held it)`, this);
        return;
      }
    }
  }

  /**
   * The bridge refused this agent (its token rotated or revoked, the dongle removed): commands' frames
   * still waiting for a busy bus are not transmitted (counted as `tx_dropped_unauthorized`, each command
   * failed with `why`). Returns how many.
   */
  dropWaiting(why: string): number {
    return this.tx.dropOwned(this, 'droppedUnauthorized', why);
  }
}
