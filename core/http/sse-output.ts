/**
 * The byte path of one SSE response after its head. Events are not written as they are published: each
 * connection collects what it is given (references to Buffers made once per event and shared by every
 * client, and its own few lines) and one process-wide timer writes every connection's collection at most
 * FLUSH_MS later, as one write (one HTTP/1.1 chunk). Connections in step (the usual case: every live
 * client got the same events since the last flush) share that write's Buffer too. Measured with make
 * bench-fanout (docs/benchmarks.md): a write per event per client was half the console's CPU (writev,
 * one syscall each) and most of its garbage (Node's per-write request objects); corking until the next
 * tick did not help at a simulator's 5 ms ticks, one event per turn.
 *
 * Direct socket writes are used only when the response owns its socket and holds nothing itself (it is
 * the socket's current message, its head already handed over), so the bytes keep their order; otherwise
 * (a pipelined request waiting its turn) everything goes through ServerResponse at once, as before.
 * res.end() writes the final empty chunk: detach(true) first writes what is still collected.
 */
import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/** What a shared event keeps: its text, and the bytes made from it once for all clients. */
export interface SharedChunk {
  readonly chunk: string;
  /** The chunk as UTF-8 bytes (responses without chunked encoding: HTTP/1.0). */
  bytes?: Buffer;
  /** The chunk framed as one HTTP/1.1 chunk: `<size hex>\r\n<bytes>\r\n`. */
  framed?: Buffer;
}

export function frameChunk(body: Buffer): Buffer {
  const head = body.length.toString(16);
  const out = Buffer.allocUnsafe(head.length + 2 + body.length + 2);
  let o = out.write(head, 0, 'latin1');
  out[o++] = 13;
  out[o++] = 10;
  o += body.copy(out, o);
  out[o++] = 13;
  out[o] = 10;
  return out;
}

/**
 * How long a connection's bytes may wait to leave together with what follows. 25 ms: five of the
 * simulator's 5 ms ticks, so at 200 events/s five events per write instead of one; below what a person
 * watching a console notices.
 */
export const FLUSH_MS = 25;

/**
 * Outputs holding collected bytes; one timer writes them all. Two arrays swapped and reused, like each
 * output's item array: at 100,000 client-events/s, arrays made per flush lived through the young
 * generation's collections (25 ms) and grew the old one by ~2 MB/s (measured; --max-semi-space-size=1).
 */
let due: SseOutput[] = [];
let spare: SseOutput[] = [];
let flushScheduled = false;

function flushDue(): void {
  flushScheduled = false;
  const list = due;
  due = spare;
  spare = list;
  for (const o of list) o.flushDue();
  list.length = 0;
}

type Item = SharedChunk | Buffer;

/** One flush's bytes shared by the connections in step: keyed by its first event, checked by its last and count. */
const batches = new WeakMap<SharedChunk, { last: SharedChunk; n: number; bytes: Buffer; framed?: Buffer }>();

function bodyOf(i: Item): Buffer {
  return Buffer.isBuffer(i) ? i : (i.bytes ??= Buffer.from(i.chunk, 'utf8'));
}

export class SseOutput {
  private sock: Socket | undefined;
  private chunked = false;
  private onDrain: (() => void) | undefined;
  private readonly items: Item[] = [];
  private queued = false;
  private itemBytes = 0;
  /** Every item so far is a shared event (the flush may use a shared batch). */
  private allShared = true;
  /** The socket refused more at the last flush: its 'drain' resumes the writer. */
  private sockFull = false;
  private readonly drained = (): void => {
    this.sockFull = false;
    this.onDrain?.();
  };

  constructor(private readonly res: ServerResponse) {}

  /** After the head and the first write went through `res`: switches to the socket when that is safe. */
  start(onDrain: () => void): void {
    const sock = this.res.socket;
    this.onDrain = onDrain;
    // writableLength = bytes held by the response itself + the socket's: only the socket's means nothing waits in res.
    if (sock !== null && !sock.destroyed && this.res.headersSent && this.res.writableLength === sock.writableLength) {
      this.sock = sock;
      this.chunked = this.res.chunkedEncoding;
      sock.on('drain', this.drained);
    } else this.res.on('drain', onDrain);
  }

  /** Unsent bytes of this connection (collected here, the socket's buffer, anything the response holds). */
  get pending(): number {
    return this.itemBytes + this.res.writableLength;
  }

  /** Writes text made for this client only. False: wait for the drain callback before writing more. */
  write(text: string): boolean {
    if (this.sock === undefined) return this.res.write(text);
    this.allShared = false;
    return this.collect(Buffer.from(text, 'utf8'));
  }

  /** Writes an event every client gets: its bytes are made by the first client that needs them, then shared. */
  writeShared(e: SharedChunk): boolean {
    if (this.sock === undefined) return this.res.write(e.chunk);
    return this.collect(e);
  }

  private collect(i: Item): boolean {
    this.items.push(i);
    this.itemBytes += bodyOf(i).length;
    if (!this.queued) {
      this.queued = true;
      due.push(this);
    }
    if (!flushScheduled) {
      flushScheduled = true;
      setTimeout(flushDue, FLUSH_MS);
    }
    // A burst (an uplink batch of a thousand frames) leaves at once, as a socket's buffer would take it: held
    // for FLUSH_MS it would count against the client's backlog bound and cut a client that reads.
    if (this.itemBytes >= this.sock!.writableHighWaterMark) this.flush();
    return !this.sockFull;
  }

  /** The timer's flush: off the due list (an early flush leaves it listed, so it is listed at most once). */
  flushDue(): void {
    this.queued = false;
    this.flush();
  }

  /** Writes what was collected, as one write. */
  flush(): void {
    const sock = this.sock;
    const items = this.items;
    if (items.length === 0 || sock === undefined) return;
    const buf = items.length === 1 ? this.one(items[0]!) : this.joined(items);
    items.length = 0;
    this.itemBytes = 0;
    this.allShared = true;
    if (sock.destroyed) return;
    if (!sock.write(buf)) this.sockFull = true;
  }

  private one(i: Item): Buffer {
    if (Buffer.isBuffer(i)) return this.chunked ? frameChunk(i) : i;
    return this.chunked ? (i.framed ??= frameChunk(bodyOf(i))) : bodyOf(i);
  }

  private joined(items: Item[]): Buffer {
    const first = items[0]!;
    const last = items[items.length - 1]!;
    if (this.allShared && !Buffer.isBuffer(first) && !Buffer.isBuffer(last)) {
      let b = batches.get(first);
      if (b === undefined || b.last !== last || b.n !== items.length) {
        b = { last, n: items.length, bytes: Buffer.concat(items.map(bodyOf)) };
        batches.set(first, b);
      }
      return this.chunked ? (b.framed ??= frameChunk(b.bytes)) : b.bytes;
    }
    const body = Buffer.concat(items.map(bodyOf));
    return this.chunked ? frameChunk(body) : body;
  }

  /**
   * The connection ends. `flush`: it ends cleanly (res.end() follows), so what is collected is written
   * first; otherwise (destroyed) it is dropped. A socket kept alive for another request must not call back here.
   */
  detach(flush: boolean): void {
    if (flush) this.flush();
    // Still listed in `due` until the next flush, which finds nothing to write.
    this.items.length = 0;
    this.itemBytes = 0;
    if (this.onDrain === undefined) return;
    if (this.sock !== undefined) this.sock.off('drain', this.drained);
    else this.res.off('drain', this.onDrain);
    this.onDrain = undefined;
  }
}
