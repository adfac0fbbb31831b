/**
 * Cuts a client's byte stream into `< … >` messages, as socketcand does (from a '<' to the next '>').
 * Bounded: at most MAX_MESSAGE_BYTES are held. A longer message is reported once and skipped up to its
 * '>' without being stored, so a 1 MB line costs nothing; text outside messages (other than whitespace)
 * is reported once per run. Reports become `< error … >` replies; the connection goes on.
 */

/** Longer than any real command: the longest, an fdsend with 64 bytes, is about 230 characters. */
export const MAX_MESSAGE_BYTES = 1024;

/** `outside`: the problem is text outside any message (what an HTTP request or other protocol sends first). */
export type ReaderEvent = { kind: 'message'; text: string } | { kind: 'problem'; error: string; outside?: true };

export class MessageReader {
  private buf = '';
  /** Inside an over-long message: discard up to its closing '>'. */
  private skipping = false;
  /** Inside a run of text outside any message that was already reported. */
  private inGarbage = false;

  /** Feeds bytes; returns the messages and problems they complete, in order. */
  feed(chunk: Buffer): ReaderEvent[] {
    const out: ReaderEvent[] = [];
    // latin1 maps every byte to one character: lengths stay byte counts; non-ASCII is refused by the parser.
    let s = this.buf + chunk.toString('latin1');
    this.buf = '';
    let i = 0;
    while (i < s.length) {
      if (this.skipping) {
        const end = s.indexOf('>', i);
        if (end < 0) return out; // everything up to here is discarded
        this.skipping = false;
        i = end + 1;
        continue;
      }
      const start = s.indexOf('<', i);
      const gap = start < 0 ? s.slice(i) : s.slice(i, start);
      if (/\S/.test(gap)) {
        if (!this.inGarbage) out.push({ kind: 'problem', error: 'text outside a command was ignored; a command is a line such as "open can0" in angle brackets', outside: true });
        this.inGarbage = true;
      }
      if (start < 0) return out;
      const end = s.indexOf('>', start + 1);
      if (end < 0) {
        if (s.length - start > MAX_MESSAGE_BYTES) {
          out.push({ kind: 'problem', error: `a command longer than ${MAX_MESSAGE_BYTES} bytes was discarded` });
          this.skipping = true;
          return out;
        }
        this.buf = s.slice(start);
        return out;
      }
      this.inGarbage = false;
      if (end - start + 1 > MAX_MESSAGE_BYTES) out.push({ kind: 'problem', error: `a command longer than ${MAX_MESSAGE_BYTES} bytes was discarded` });
      else out.push({ kind: 'message', text: s.slice(start, end + 1) });
      i = end + 1;
    }
    s = '';
    return out;
  }
}
