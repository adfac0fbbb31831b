/**
 * The byte path of one SSE response after its head: events go straight to the socket, each as one write of
 * a Buffer made once per event and shared by every client (with its HTTP/1.1 chunk framing when the
 * response is chunked), instead of through ServerResponse.write, which per client and event measures the
 * string, encodes it and queues four pieces (size line, CRLF, data, CRLF). Measured with make bench-fanout
 * (docs/benchmarks.md): that path was most of the console's CPU per delivered event.
 *
 * Direct writes are used only when the response owns its socket and holds nothing itself (it is the
 * socket's current message, its head already handed over), so the bytes keep their order; otherwise (a
 * pipelined request waiting its turn) everything goes through ServerResponse as before. res.end() still
 * writes the final empty chunk, after everything written here.
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

export class SseOutput {
  private sock: Socket | undefined;
  private chunked = false;
  private onDrain: (() => void) | undefined;
  private corked = false;
  /** Uncorks on the next tick: every write of this event-loop turn leaves in one writev (as ServerResponse does). */
  private readonly uncork = (): void => {
    this.corked = false;
    this.sock?.uncork();
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
      sock.on('drain', onDrain);
    } else this.res.on('drain', onDrain);
  }

  /** Unsent bytes of this connection (the socket's buffer, and anything the response holds). */
  get pending(): number {
    return this.res.writableLength;
  }

  /** Writes text made for this client only. False: the socket is full, wait for the drain callback. */
  write(text: string): boolean {
    if (this.sock === undefined) return this.res.write(text);
    const body = Buffer.from(text, 'utf8');
    this.cork(this.sock);
    return this.sock.write(this.chunked ? frameChunk(body) : body);
  }

  /** Writes an event every client gets: its bytes are made by the first client that writes it, then shared. */
  writeShared(e: SharedChunk): boolean {
    if (this.sock === undefined) return this.res.write(e.chunk);
    this.cork(this.sock);
    if (this.chunked) return this.sock.write((e.framed ??= frameChunk((e.bytes ??= Buffer.from(e.chunk, 'utf8')))));
    return this.sock.write((e.bytes ??= Buffer.from(e.chunk, 'utf8')));
  }

  /**
   * Without corking every event is a syscall per client (measured: 2.8× the CPU per event of the corked
   * ServerResponse path at 500 clients × 200 events/s); corked, the writes of one turn go out together.
   */
  private cork(sock: Socket): void {
    if (this.corked) return;
    this.corked = true;
    sock.cork();
    process.nextTick(this.uncork);
  }

  /** The connection ends: a socket kept alive for another request must not call back here. */
  detach(): void {
    if (this.onDrain === undefined) return;
    if (this.sock !== undefined) this.sock.off('drain', this.onDrain);
    else this.res.off('drain', this.onDrain);
    this.onDrain = undefined;
  }
}
