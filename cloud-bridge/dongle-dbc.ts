/**
 * The DBC files each connected agent sent up (core/uplink/dbc-transfer.ts), parsed with the same code
 * the agent uses, so a dongle's and a group's consoles on the bridge carry the same `msg`/`signals` as
 * the agent's own console. Only frames that pass a console's sampler are decoded here.
 *
 * A set is parsed once per bridge process, whoever sends it: dongles that send the same files (a fleet of
 * one vehicle model) share one decoder, and a set sent again (every reconnect, every reload) is not parsed
 * again. Parsing held the event loop (~1.2 s for a set at the 16 MiB bound) and each dongle kept its own
 * decoder (~70 MB for such a set) for as long as it existed. Distinct sets held at once are bounded by
 * their text (DBC_MEMORY_CHARS); past it a new set is refused, said on the dongle's console.
 */
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { parseUsableDbc, SignalDecoder, type BoundDatabase } from '../core/can/dbc-decode.js';
import { DbcAssembler, type DbcChunkMessage, type DbcUpload } from '../core/uplink/dbc-transfer.js';

/**
 * Characters of distinct DBC sets the bridge holds decoders for: ~4 sets at the 16 MiB bound, a hundred
 * real vehicles' files (opendbc's largest are under 1 MiB). A decoder takes a few times its text.
 */
export const DBC_MEMORY_CHARS = 64 * 1024 * 1024;

interface SharedSet {
  decoder: SignalDecoder | undefined;
  /** What could not be used, said again to each dongle that sends the set. */
  errors: string[];
  chars: number;
  users: Set<string>;
}

export class DongleDbcs {
  private readonly assemblers = new WeakMap<object, DbcAssembler>();
  private readonly sets = new Map<string, SharedSet>();
  /** Each dongle's set, by its digest. */
  private readonly byDongle = new Map<string, string>();
  private heldChars = 0;

  constructor(
    private readonly log: Logger,
    private readonly budgetChars = DBC_MEMORY_CHARS,
  ) {}

  decoderOf(dongle: string): SignalDecoder | undefined {
    const key = this.byDongle.get(dongle);
    return key === undefined ? undefined : this.sets.get(key)?.decoder;
  }

  /** Distinct sets held, and their text (metrics, tests). */
  get held(): { sets: number; chars: number } {
    return { sets: this.sets.size, chars: this.heldChars };
  }

  /** One part from a link; returns an error text when the set is unusable (the link stays up). */
  accept(link: object, dongle: string, m: DbcChunkMessage): string | undefined {
    let a = this.assemblers.get(link);
    if (a === undefined) this.assemblers.set(link, (a = new DbcAssembler()));
    const r = a.push(m);
    if (r.state === 'partial') return undefined;
    if (r.state === 'error') return r.error;
    if (r.files.length === 0) {
      this.forget(dongle);
      return undefined;
    }
    const key = digest(r.files);
    if (this.byDongle.get(dongle) === key) return this.said(this.sets.get(key)!);
    let set = this.sets.get(key);
    if (set === undefined) {
      const chars = r.files.reduce((n, f) => n + f.text.length, 0);
      const freed = this.releases(dongle);
      if (this.heldChars - freed + chars > this.budgetChars) {
        this.forget(dongle);
        return `the bridge holds ${mib(this.heldChars - freed)} MiB of other dongles' DBC files, and ${mib(chars)} MiB more would pass its ${mib(this.budgetChars)} MiB: this dongle's frames show undecoded on the bridge (send smaller files, or the same files as other dongles)`;
      }
      set = { ...parse(r.files), chars, users: new Set() };
      this.sets.set(key, set);
      this.heldChars += chars;
      this.log.info({ dongle, files: r.files.map((f) => f.file), messages: set.decoder?.messageCount ?? 0 }, 'DBC files from the agent');
    }
    this.forget(dongle);
    set.users.add(dongle);
    this.byDongle.set(dongle, key);
    return this.said(set);
  }

  forget(dongle: string): void {
    const key = this.byDongle.get(dongle);
    if (key === undefined) return;
    this.byDongle.delete(dongle);
    const set = this.sets.get(key)!;
    set.users.delete(dongle);
    if (set.users.size > 0) return;
    this.sets.delete(key);
    this.heldChars -= set.chars;
  }

  /** The text the dongle's current set would give back if it were its last user. */
  private releases(dongle: string): number {
    const key = this.byDongle.get(dongle);
    const set = key === undefined ? undefined : this.sets.get(key);
    return set !== undefined && set.users.size === 1 ? set.chars : 0;
  }

  private said(set: SharedSet): string | undefined {
    return set.errors.length > 0 ? `the bridge could not use the agent's DBC: ${set.errors.join('; ')}` : undefined;
  }
}

const mib = (chars: number): number => Math.round((chars / 1048576) * 10) / 10;

/** Names, buses and texts, in the order sent (the order decides which file wins an id). */
function digest(files: readonly DbcUpload[]): string {
  const h = createHash('sha256');
  for (const f of files) h.update(JSON.stringify([f.bus ?? null, f.file, f.text.length])).update(f.text);
  return h.digest('base64url');
}

function parse(files: readonly DbcUpload[]): { decoder: SignalDecoder | undefined; errors: string[] } {
  const bound: BoundDatabase[] = [];
  const errors: string[] = [];
  for (const f of files) {
    try {
      bound.push({ bus: f.bus ?? undefined, db: parseUsableDbc(f.text, f.file) });
    } catch (err) {
      errors.push((err as Error).message);
    }
  }
  try {
    return { decoder: bound.length === 0 ? undefined : new SignalDecoder(bound), errors };
  } catch (err) {
    return { decoder: undefined, errors: [...errors, (err as Error).message] };
  }
}
