/**
 * Who is calling. Three kinds of bearer token:
 *  - the admin token (from the command line/environment/file): the whole admin API and every console;
 *  - viewer tokens: read-only, every console; listed and revoked by id (the first 16 hex digits of the
 *    token's SHA-256, which reveal nothing of the token), optionally with an expiry;
 *  - agent tokens: one per dongle, only for the uplink WebSocket.
 * Issued tokens are 32 random bytes (base64url) and only their SHA-256 is stored, so a copy of the
 * database does not let anyone connect. The admin token is compared in constant time.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { MAX_TOKEN_LENGTH, tokenDigest } from '../core/http/bearer-token.js';
import type { StateStore } from './state-store.js';

export type Caller = { kind: 'admin' } | { kind: 'viewer'; tokenId: string; expiresAt: number | null } | { kind: 'agent'; dongle: string };

/** A viewer token's public id: the first hex digits of its stored hash. */
export const VIEWER_ID_LENGTH = 16;
export const viewerTokenId = (hash: string): string => hash.slice(0, VIEWER_ID_LENGTH);
/** What a viewer token's id looks like. */
export const VIEWER_ID = new RegExp(`^[0-9a-f]{${VIEWER_ID_LENGTH}}$`);
/** The holder named in the download tickets of the admin token (core/http/download-tickets.ts). */
const ADMIN_HOLDER = 'admin';

/** The holder a download ticket names for a caller: `admin`, or the viewer token's id. */
export function ticketHolder(caller: Caller & { kind: 'admin' | 'viewer' }): string {
  return caller.kind === 'admin' ? ADMIN_HOLDER : caller.tokenId;
}

export function newToken(): string {
  return randomBytes(32).toString('base64url');
}

export function hashToken(token: string): string {
  return tokenDigest(token).toString('hex');
}

export class Auth {
  private readonly adminDigest: Buffer;

  constructor(
    private readonly store: StateStore,
    adminToken: string,
  ) {
    this.adminDigest = tokenDigest(adminToken);
  }

  /** The caller a token belongs to, or undefined when it is unknown. */
  identify(token: string | undefined): Caller | undefined {
    if (token === undefined || token === '' || token.length > MAX_TOKEN_LENGTH) return undefined;
    // Comparing digests gives equal lengths (timingSafeEqual requires them) and hides the token's length.
    const digest = tokenDigest(token);
    if (timingSafeEqual(digest, this.adminDigest)) return { kind: 'admin' };
    const hash = digest.toString('hex');
    const row = this.store.token(hash);
    if (!row) return undefined;
    if (row.kind === 'viewer') {
      const expiresAt = row.expires_at === null ? null : Date.parse(row.expires_at);
      if (expiresAt !== null && expiresAt <= Date.now()) return undefined;
      return { kind: 'viewer', tokenId: viewerTokenId(hash), expiresAt };
    }
    return row.dongle === null ? undefined : { kind: 'agent', dongle: row.dongle };
  }

  /**
   * The caller a download ticket's holder stands for while its token is valid: undefined once the viewer
   * token was revoked or expired, so a ticket dies with its token (not up to a minute later).
   */
  holderCaller(holder: string): Caller | undefined {
    if (holder === ADMIN_HOLDER) return { kind: 'admin' };
    if (!VIEWER_ID.test(holder)) return undefined;
    // A scan of the viewer tokens, once per ticketed download: not a per-frame or per-request cost.
    const row = this.store.viewerTokens().find((t) => viewerTokenId(t.hash) === holder);
    if (!row) return undefined;
    const expiresAt = row.expires_at === null ? null : Date.parse(row.expires_at);
    if (expiresAt !== null && expiresAt <= Date.now()) return undefined;
    return { kind: 'viewer', tokenId: holder, expiresAt };
  }
}
