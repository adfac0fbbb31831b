/**
 * Open console streams and recording downloads of viewer tokens, so that taking a token away takes its streams away too: a
 * revoked token's streams are closed at once, an expiring token's within SWEEP_MS of its expiry. (An
 * SSE stream is authorised once, when it opens; without this a revoked viewer would keep watching.)
 */

/** What a session needs of a console stream. */
export interface Closable {
  close(): void;
}

const SWEEP_MS = 250;

interface Session {
  tokenId: string;
  expiresAt: number | null;
}

export class ViewerSessions {
  private readonly sessions = new Map<Closable, Session>();
  private readonly timer: NodeJS.Timeout;

  constructor() {
    this.timer = setInterval(() => this.sweep(Date.now()), SWEEP_MS);
    this.timer.unref();
  }

  add(stream: Closable, tokenId: string, expiresAt: number | null): void {
    this.sessions.set(stream, { tokenId, expiresAt });
  }

  /** The stream closed (for whatever reason). */
  remove(stream: Closable): void {
    this.sessions.delete(stream);
  }

  /** Open streams per token id. */
  openStreams(tokenId: string): number {
    let n = 0;
    for (const s of this.sessions.values()) if (s.tokenId === tokenId) n++;
    return n;
  }

  /** Closes every stream of the token; returns how many. */
  revoke(tokenId: string): number {
    return this.closeWhere((s) => s.tokenId === tokenId);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private sweep(now: number): void {
    this.closeWhere((s) => s.expiresAt !== null && s.expiresAt <= now);
  }

  private closeWhere(pred: (s: Session) => boolean): number {
    const doomed = [...this.sessions].filter(([, s]) => pred(s)).map(([stream]) => stream);
    for (const stream of doomed) {
      this.sessions.delete(stream);
      stream.close();
    }
    return doomed.length;
  }
}
