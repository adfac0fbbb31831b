/**
 * Bearer tokens on HTTP, shared by the agent's local API and the bridge: where a request carries one,
 * and the digest both sides compare in constant time (equal lengths for timingSafeEqual, and the
 * token's length stays hidden).
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/** Tokens longer than this are refused before hashing: nothing we issue comes close. */
export const MAX_TOKEN_LENGTH = 512;

/** `Authorization: Bearer <token>`, else `?access_token=` when allowed (EventSource cannot set headers). */
export function bearerToken(req: IncomingMessage, url?: URL): string | undefined {
  const h = req.headers.authorization;
  if (h !== undefined) {
    const m = /^Bearer[ ]+(\S+)\s*$/i.exec(h);
    return m ? m[1] : undefined;
  }
  return url?.searchParams.get('access_token') ?? undefined;
}

/** SHA-256 of a token: what is compared (and, on the bridge, stored). */
export function tokenDigest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}
