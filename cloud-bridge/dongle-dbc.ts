/**
 * The DBC files each connected agent sent up (core/uplink/dbc-transfer.ts), parsed with the same code
 * the agent uses, so a dongle's and a group's consoles on the bridge carry the same `msg`/`signals` as
 * the agent's own console. Only frames that pass a console's sampler are decoded here.
 */
import type { Logger } from 'pino';
import { parseUsableDbc, SignalDecoder, type BoundDatabase } from '../core/can/dbc-decode.js';
import { DbcAssembler, type DbcChunkMessage } from '../core/uplink/dbc-transfer.js';

export class DongleDbcs {
  private readonly assemblers = new WeakMap<object, DbcAssembler>();
  private readonly decoders = new Map<string, SignalDecoder>();

  constructor(private readonly log: Logger) {}

  decoderOf(dongle: string): SignalDecoder | undefined {
    return this.decoders.get(dongle);
  }

  /** One part from a link; returns an error text when the set is unusable (the link stays up). */
  accept(link: object, dongle: string, m: DbcChunkMessage): string | undefined {
    let a = this.assemblers.get(link);
    if (a === undefined) this.assemblers.set(link, (a = new DbcAssembler()));
    const r = a.push(m);
    if (r.state === 'partial') return undefined;
    if (r.state === 'error') return r.error;
    const bound: BoundDatabase[] = [];
    const errors: string[] = [];
    for (const f of r.files) {
      try {
        bound.push({ bus: f.bus ?? undefined, db: parseUsableDbc(f.text, f.file) });
      } catch (err) {
        errors.push((err as Error).message);
      }
    }
    try {
      if (bound.length === 0) this.decoders.delete(dongle);
      else this.decoders.set(dongle, new SignalDecoder(bound));
    } catch (err) {
      errors.push((err as Error).message);
    }
    this.log.info({ dongle, files: r.files.map((f) => f.file), messages: this.decoders.get(dongle)?.messageCount ?? 0 }, 'DBC files from the agent');
    return errors.length > 0 ? `the bridge could not use the agent's DBC: ${errors.join('; ')}` : undefined;
  }

  forget(dongle: string): void {
    this.decoders.delete(dongle);
  }
}
