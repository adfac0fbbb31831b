/**
 * Who may do what on the agent's local HTTP API. Writes (recording control and deletion, reloads,
 * transmit) change a box on someone else's LAN; reads (console, recordings, info, metrics) show its bus.
 *
 * `--local-token-file` holds one token per line with its role:
 *
 *     # role  token (16-512 characters without spaces)
 *     admin   3f9c…            every read and every write
 *     read    a71e…            reads only (a write with it: 403)
 *
 * Blank lines and lines starting with `#` are ignored. With the file every write needs an admin token
 * (`Authorization: Bearer`); reads stay open unless `--console-auth`, which makes them need any token
 * from the file (a header, or `?access_token=` where a browser cannot set one: EventSource, downloads).
 * Without the file the API is open, as before (development set-up). Tokens are compared as SHA-256
 * digests in constant time, every stored token each time.
 *
 * Use: `if (!deps.auth.guard(req, res, 'write')) return;` — on false it has already answered 401/403.
 */
import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { sendJson } from '../core/http/replies.js';
import { bearerToken, MAX_TOKEN_LENGTH, tokenDigest } from '../core/http/bearer-token.js';

export type LocalRole = 'admin' | 'read';
export type LocalAccess = 'read' | 'write';

export interface LocalToken {
  role: LocalRole;
  token: string;
}

const LINE = /^(admin|read)[ \t]+(\S{16,512})$/;

/** Parses the token file's text; throws an Error naming the line that is wrong. */
export function parseLocalTokens(text: string, where: string): LocalToken[] {
  const out: LocalToken[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const m = LINE.exec(line);
    if (!m) throw new Error(`${where} line ${i + 1}: expected "admin <token>" or "read <token>" (token 16-512 characters, no spaces)`);
    out.push({ role: m[1] as LocalRole, token: m[2] });
  });
  if (out.length === 0) throw new Error(`${where}: holds no token (one per line: "admin <token>" or "read <token>")`);
  return out;
}

export function readLocalTokenFile(path: string): LocalToken[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new Error(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return parseLocalTokens(text, path);
}

export class LocalAuth {
  private readonly digests: { role: LocalRole; digest: Buffer }[];

  /** tokens undefined: no token file, everything is open. */
  constructor(
    tokens: readonly LocalToken[] | undefined,
    private readonly opts: {
      consoleAuth: boolean;
      corsAllows?: (origin: string | undefined) => boolean;
      /** True for a Host the operator listed (the host of a --cors-origin origin). */
      hostListed?: (host: string) => boolean;
    } = { consoleAuth: false },
  ) {
    this.digests = (tokens ?? []).map((t) => ({ role: t.role, digest: tokenDigest(t.token) }));
    if (opts.consoleAuth && this.digests.length === 0) throw new Error('--console-auth needs --local-token-file (the tokens readers present)');
  }

  /** True when writes need a token (a token file was given). */
  get enabled(): boolean {
    return this.digests.length > 0;
  }

  /** True when reads need a token too (--console-auth). */
  get readsGuarded(): boolean {
    return this.opts.consoleAuth;
  }

  /** The role of a token, or undefined for none/unknown. Looks at every stored token (constant time). */
  role(token: string | undefined): LocalRole | undefined {
    if (token === undefined || token === '' || token.length > MAX_TOKEN_LENGTH) return undefined;
    const d = tokenDigest(token);
    let found: LocalRole | undefined;
    for (const t of this.digests) if (timingSafeEqual(d, t.digest) && found === undefined) found = t.role;
    return found;
  }

  /** True when the request may read (reads are open, or it carries a token of the file); answers nothing. */
  mayRead(req: IncomingMessage): boolean {
    return !this.readsGuarded || this.role(bearerToken(req, new URL(req.url ?? '/', 'http://localhost'))) !== undefined;
  }

  /**
   * Why a request addresses this agent under a name that is not its own, or undefined. A site can make
   * its own name resolve to the gateway (DNS rebinding): its page is then same-origin with the agent's API
   * and reads the console, the signals and the recordings from the technician's browser, and sends them
   * anywhere. Every request names the host it was sent to (Host); only names nobody else can point here
   * are the agent's (ownName), or one the operator listed (the host of a --cors-origin origin). A request
   * without Host (HTTP/1.0 tools) names nothing a browser would have sent.
   */
  foreignHost(req: IncomingMessage): string | undefined {
    const host = req.headers.host;
    if (host === undefined) return undefined;
    let name: string;
    try {
      name = new URL(`http://${host}`).hostname;
    } catch {
      return `the Host header ${JSON.stringify(host.slice(0, 100))} is not a host name`;
    }
    if (ownName(name) || this.opts.hostListed?.(host)) return undefined;
    return `this gateway was addressed as ${name}, a name any site can point at it (DNS rebinding): use its IP address or ${hostname()}, or list http(s)://${host} in --cors-origin`;
  }

  /**
   * True when the request may go on. Otherwise it answers: 401 (no or unknown token), 403 (a read
   * token for a write, or a cross-site write) and returns false.
   */
  guard(req: IncomingMessage, res: ServerResponse, access: LocalAccess): boolean {
    // A site listed in --cors-origin is not "another site": the operator let its pages use the API.
    const foreign = access === 'write' ? foreignPage(req) : undefined;
    if (foreign !== undefined && !this.opts.corsAllows?.(req.headers.origin)) {
      sendJson(res, 403, { error: `write refused: ${foreign}` });
      return false;
    }
    const needed = access === 'write' ? this.enabled : this.readsGuarded;
    // Only reads may carry the token in the URL: a browser cannot set headers on EventSource or a download link.
    const url = access === 'read' ? new URL(req.url ?? '/', 'http://localhost') : undefined;
    if (!needed) {
      // Reads open: a token is not needed, but one presented must be right. Accepted, a mistyped admin
      // token passed the page's check and the technician learnt only at the first write (RFC 6750: invalid_token).
      const presented = this.enabled ? bearerToken(req, url) : undefined;
      if (presented === undefined || this.role(presented) !== undefined) return true;
      sendJson(
        res,
        401,
        { error: "this token is not one of the agent's --local-token-file (reads need none here: send the right token or none)" },
        { 'WWW-Authenticate': 'Bearer realm="canrelay-agent", error="invalid_token"' },
      );
      return false;
    }
    const role = this.role(bearerToken(req, url));
    if (role === undefined) {
      sendJson(
        res,
        401,
        { error: `this ${access} needs a token from the agent's --local-token-file: send Authorization: Bearer <token>` },
        { 'WWW-Authenticate': 'Bearer realm="canrelay-agent"' },
      );
      return false;
    }
    if (access === 'write' && role !== 'admin') {
      sendJson(res, 403, { error: 'this token is read-only; writes need an admin token' });
      return false;
    }
    return true;
  }
}

/**
 * Why a write comes from a page that is not this agent's own, or undefined. A browser sends Origin with
 * every write; a page elsewhere on the LAN must not drive the agent through a technician's browser
 * (without a token file there is nothing else to stop it). Nor may a page whose own name another site
 * made resolve to this gateway (DNS rebinding: Origin and Host then agree): only names nobody else can
 * point here — an IP address, localhost, this machine's hostname — are the agent's own site; a page
 * served under another name is listed in --cors-origin.
 */
function foreignPage(req: IncomingMessage): string | undefined {
  const origin = req.headers.origin;
  if (origin === undefined) return undefined;
  let o: URL;
  try {
    o = new URL(origin);
  } catch {
    return 'it comes from a page of no site (Origin: null or unreadable)';
  }
  if (o.host !== req.headers.host) return 'it comes from a page on another site (Origin does not match Host)';
  if (!ownName(o.hostname))
    return `the page was opened as ${o.hostname}, a name any site can point at this gateway: open it by IP address or as ${hostname()}, or list ${o.origin} in --cors-origin`;
  return undefined;
}

function ownName(name: string): boolean {
  const n = name.toLowerCase().replace(/\.$/, '');
  if (isIP(n.replace(/^\[|\]$/g, '')) !== 0) return true;
  const me = hostname().toLowerCase();
  return n === 'localhost' || n.endsWith('.localhost') || n === me || n === `${me}.local`;
}
