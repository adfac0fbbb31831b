/**
 * Opt-in CORS for consoles and tools served from another origin (--cors-origin, agent and bridge). Only
 * the origins listed, each exactly (`https://tools.example.com`, scheme://host[:port]), are answered with
 * `Access-Control-Allow-Origin: <that origin>`; never `*`. The API's credentials are bearer tokens in the
 * Authorization header (or ?access_token=), never cookies, so `Access-Control-Allow-Credentials` is never
 * sent: a listed page must hold a token itself. Preflights (OPTIONS with Access-Control-Request-Method)
 * from a listed origin get 204 with the methods and headers the API takes (Authorization for the token);
 * from any other origin 403 with the reason.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { OptionError, type OptionSpec } from '../cli/options.js';
import { sendJson } from './replies.js';

const ALLOW_METHODS = 'GET, HEAD, POST, PUT, DELETE';
const ALLOW_HEADERS = 'Authorization, Content-Type, Last-Event-ID';
/** Response headers a page may read besides the simple ones (downloads' name, 429's retry, 401's realm). */
const EXPOSE_HEADERS = 'Content-Disposition, Retry-After, WWW-Authenticate';
const PREFLIGHT_MAX_AGE_S = 600;

/** The origins as given (`https://a.example,http://10.0.0.5:3000`), each checked and normalised. */
export function parseCorsOrigins(raw: unknown): string {
  const out: string[] = [];
  for (const item of String(raw)
    .split(',')
    .map((s) => s.trim())) {
    if (item === '*') throw new OptionError('must list origins (https://host[:port]); "*" is refused: the API carries tokens');
    let u: URL;
    try {
      u = new URL(item);
    } catch {
      throw new OptionError(`must be origins like https://tools.example.com, separated by commas, got ${JSON.stringify(item.slice(0, 80))}`);
    }
    if ((u.protocol !== 'https:' && u.protocol !== 'http:') || u.username || u.password || (u.pathname !== '/' && u.pathname !== '') || u.search || u.hash || item.endsWith('/')) {
      throw new OptionError(`an origin is scheme://host[:port] with http or https and nothing after it, got ${JSON.stringify(item.slice(0, 80))}`);
    }
    out.push(u.origin);
  }
  return out.join(',');
}

export const CORS_ORIGIN_OPTION: OptionSpec = {
  name: 'cors-origin',
  arg: '<origin[,origin…]>',
  description: 'let pages of these origins (https://host[:port]) use the HTTP API from a browser (CORS); never "*"',
  // A config file gives the list as one string, like the flag (`json`: its type is checked first).
  parse: Object.assign((raw: unknown) => parseCorsOrigins(raw), { json: 'string' as const }),
};

export class CorsPolicy {
  private readonly origins: ReadonlySet<string>;
  /** The `host[:port]` of each listed origin (as a request's Host header names it). */
  private readonly hosts: ReadonlySet<string>;

  /** `list`: the parsed --cors-origin value; empty or undefined: no CORS at all. */
  constructor(list: string | undefined) {
    this.origins = new Set(list ? list.split(',') : []);
    this.hosts = new Set([...this.origins].flatMap((o) => (URL.canParse(o) ? [new URL(o).host.toLowerCase()] : [])));
  }

  /** True when `host` (a Host header) is the host of a listed origin: the operator named it as a site of its own. */
  listsHost(host: string): boolean {
    return this.hosts.has(host.toLowerCase());
  }

  get enabled(): boolean {
    return this.origins.size > 0;
  }

  /** True when the request's Origin is one of the listed origins. */
  allows(origin: string | undefined): boolean {
    return origin !== undefined && this.origins.has(origin);
  }

  /**
   * Adds the CORS headers for a listed Origin and answers preflights. Returns true when it answered the
   * request (a preflight), so the caller stops there.
   */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    if (!this.enabled) return false;
    res.setHeader('Vary', 'Origin');
    const origin = req.headers.origin;
    const preflight = req.method === 'OPTIONS' && req.headers['access-control-request-method'] !== undefined;
    if (!this.allows(origin)) {
      if (!preflight) return false;
      sendJson(res, 403, { error: `origin ${JSON.stringify(origin ?? '')} is not allowed: list it in --cors-origin` });
      return true;
    }
    res.setHeader('Access-Control-Allow-Origin', origin!);
    res.setHeader('Access-Control-Expose-Headers', EXPOSE_HEADERS);
    if (!preflight) return false;
    res.writeHead(204, {
      'Access-Control-Allow-Methods': ALLOW_METHODS,
      'Access-Control-Allow-Headers': ALLOW_HEADERS,
      'Access-Control-Max-Age': String(PREFLIGHT_MAX_AGE_S),
    });
    res.end();
    return true;
  }
}
