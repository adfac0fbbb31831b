/**
 * What the bridge needs of its durable state, whichever engine holds it: BridgeStore (SQLite, embedded,
 * the default) or PgStore (PostgreSQL, cluster mode). Reads are synchronous in both (PgStore answers
 * them from its in-memory view). Admin changes may be asynchronous — PgStore resolves only once
 * PostgreSQL has committed them — so their callers await them; BridgeStore's plain values await as well.
 * So may a command's timeout (timeOutCommands): PostgreSQL decides it, once for every node.
 */
import type { BridgeStore } from './store.js';

type Awaitable<T> = T | Promise<T>;
type AdminWrites =
  | 'createDongle'
  | 'rotateAgentToken'
  | 'deleteDongle'
  | 'addViewerToken'
  | 'deleteViewerToken'
  | 'putGroup'
  | 'deleteGroup'
  | 'insertCommand'
  | 'timeOutCommands'
  | 'flushBeforeClose';

export type StateStore = Omit<BridgeStore, AdminWrites> & {
  [K in AdminWrites]: (...a: Parameters<BridgeStore[K]>) => Awaitable<ReturnType<BridgeStore[K]>>;
};

/**
 * An admin change the database refused because of what another writer did meanwhile (PostgreSQL: another
 * node committed first): a dongle already in another group, a dongle deleted. Nothing was changed, and
 * retrying the same request will not help, so the admin API answers it as SQLite's in-memory checks do —
 * 409 (`conflict`) or 404 (`missing`) — not as an unreachable database (503, Retry-After).
 */
export class StateRefusedError extends Error {
  constructor(
    readonly reason: 'conflict' | 'missing',
    message: string,
  ) {
    super(message);
    this.name = 'StateRefusedError';
  }
}
