/**
 * Download tickets, shared by the agent's local API and the bridge: a page that holds a token asks, with
 * the token in its Authorization header, for a ticket to one file, and the browser downloads from a URL
 * that carries the ticket instead of the token. A download link cannot carry a header, and a token in its
 * URL stayed in the browser's history and download list for anyone at that laptop later; a ticket opens
 * only that one path, and only for TICKET_TTL_MS (a browser resuming the download within it may use it
 * again).
 *
 * A ticket is signed, not stored: `<end, Unix ms>.<holder>.<HMAC-SHA256(key, end + holder + path)>`.
 * Nothing to bound or expire, and every bridge node of a cluster admits a ticket another node issued when
 * they share the key (the bridge derives it from the admin token they share; the agent draws one per run).
 * The holder names whose token asked for it (the bridge: `admin` or a viewer token's id), so that the
 * server can refuse the ticket once that token is revoked or expired, and end the download with it.
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
/** What a holder may be: a token's public id or a role name, never the token itself. */
const HOLDER = /^[a-z0-9]{1,32}$/;
const TICKET = /^(\d{1,15})\.([a-z0-9]{1,32})\.([A-Za-z0-9_-]{43})$/;

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

  /**
   * A ticket for `path` (the download's path, as the browser will ask for it, without query), held by
   * `holder` (lower-case letters and digits: a token's public id or a role, checked again at download).
   */
  issue(path: string, holder: string): TicketReply {
    if (!HOLDER.test(holder)) throw new Error(`a ticket holder is 1-32 lower-case letters or digits, got ${JSON.stringify(holder.slice(0, 40))}`);
    const end = this.now() + TICKET_TTL_MS;
    const mac = this.sign(path, end, holder).toString('base64url');
    return { url: `${path}?${TICKET_PARAM}=${end}.${holder}.${mac}`, expires_in_s: TICKET_TTL_MS / 1000 };
  }

  /** The holder of the live ticket `url` carries for its own path; undefined when it carries none. */
  holderOf(url: URL): string | undefined {
    const m = TICKET.exec(url.searchParams.get(TICKET_PARAM) ?? '');
    if (!m) return undefined;
    const end = Number(m[1]);
    if (end <= this.now() || end > this.now() + TICKET_TTL_MS + NODE_CLOCK_SKEW_MS) return undefined;
    return timingSafeEqual(Buffer.from(m[3]!, 'base64url'), this.sign(url.pathname, end, m[2]!)) ? m[2] : undefined;
  }

  private sign(path: string, end: number, holder: string): Buffer {
    return createHmac('sha256', this.key).update(`${end}\n${holder}\n${path}`).digest();
  }
}
