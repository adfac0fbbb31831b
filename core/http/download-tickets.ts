/**
 * Download tickets, shared by the agent's local API and the bridge: a page that holds a token asks, with
 * the token in its Authorization header, for a ticket to one file, and the browser downloads from a URL
 * that carries the ticket instead of the token. A download link cannot carry a header, and a token in its
 * URL stayed in the browser's history and download list for anyone at that laptop later; a ticket opens
 * only that one path, and only for TICKET_TTL_MS (a browser resuming the download within it may use it
 * again).
 *
 * A ticket is signed, not stored: `<end, Unix ms>.<HMAC-SHA256(key, path + end)>`. Nothing to bound or
 * expire, and every bridge node of a cluster admits a ticket another node issued when they share the key
 * (the bridge derives it from the admin token they share; the agent draws one per run).
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export const TICKET_TTL_MS = 60_000;
/**
 * How far ahead of this node's clock another node's may be: its tickets end that much later than they
 * could have here (the page asks one node and downloads from whichever the balancer picks, at once).
 */
const NODE_CLOCK_SKEW_MS = 5_000;
/** The query parameter that carries a ticket. */
export const TICKET_PARAM = 'ticket';

/** What a ticket request answers (201). */
export interface TicketReply {
  /** The download URL (a path on the same server), ticket included. */
  url: string;
  expires_in_s: number;
}

export class DownloadTickets {
  /** `key`: the signing key (32 random bytes when not given: tickets of this process only). */
  constructor(
    private readonly key: Buffer = randomBytes(32),
    private readonly now: () => number = () => Date.now(),
  ) {}

  /** A ticket for `path` (the download's path, as the browser will ask for it, without query). */
  issue(path: string): TicketReply {
    const end = this.now() + TICKET_TTL_MS;
    return { url: `${path}?${TICKET_PARAM}=${end}.${this.sign(path, end).toString('base64url')}`, expires_in_s: TICKET_TTL_MS / 1000 };
  }

  /** True when `url` carries a live ticket for its own path. */
  admits(url: URL): boolean {
    const m = /^(\d{1,15})\.([A-Za-z0-9_-]{43})$/.exec(url.searchParams.get(TICKET_PARAM) ?? '');
    if (!m) return false;
    const end = Number(m[1]);
    if (end <= this.now() || end > this.now() + TICKET_TTL_MS + NODE_CLOCK_SKEW_MS) return false;
    return timingSafeEqual(Buffer.from(m[2]!, 'base64url'), this.sign(url.pathname, end));
  }

  private sign(path: string, end: number): Buffer {
    return createHmac('sha256', this.key).update(`${end}\n${path}`).digest();
  }
}
