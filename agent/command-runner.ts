/**
 * Carries out commands from the bridge and reports each step as a `command_status` console event:
 * delivered (received here), then succeeded or failed. Those events reach the local console and, like
 * every console event, the bridge through the outbox. A command past its expiry is refused: a frame
 * transmitted long after the operator asked for it is worse than none.
 */
import type { ConsoleStream } from '../core/console/console-stream.js';
import type { CommandState } from '../core/console/events.js';
import { commandStatusData } from '../core/console/normalize.js';
import { frameFromCommand } from '../core/uplink/commands.js';
import type { CommandBody } from '../core/uplink/messages.js';
import type { TxQueue } from './tx-queue.js';

export class CommandRunner {
  constructor(
    private readonly console: ConsoleStream,
    private readonly tx: TxQueue,
  ) {}

  run(commandId: string, expiresAt: string, cmd: CommandBody): void {
    const status = (s: CommandState, error?: string): void => {
      this.console.publish({ type: 'command_status', data: commandStatusData(commandId, cmd.type, s, error) });
    };
    status('delivered');
    const expiry = Date.parse(expiresAt);
    if (Number.isFinite(expiry) && Date.now() > expiry) return status('failed', `expired at ${expiresAt} before the agent could carry it out`);
    switch (cmd.type) {
      case 'send_frame': {
        const built = frameFromCommand(cmd);
        if (!built.ok) return status('failed', built.error);
        this.tx.enqueue(built.frame, (r) => (r.ok ? status('succeeded') : status('failed', r.error)));
        return;
      }
    }
  }
}
