/**
 * Write failures of the SQLite stores of one process (agent: ids, outbox; bridge: bridge). A store whose
 * write fails for a storage reason (disk full, I/O error, read-only, file gone) is degraded, not fatal:
 * the write is counted (`canrelay_state_write_errors_total{store}`), one rate-limited error line names
 * the file, the cause and what to do, /healthz says `"state":"degraded"` with the reason, and the first
 * write that works again heals it. What each store does meanwhile is the store's own business (ids stay
 * unique by the clock floor, the outbox keeps events in a bounded memory buffer, the bridge keeps
 * positions in memory and refuses admin changes with 503).
 */
import { statSync } from 'node:fs';
import type { Logger } from 'pino';
import { RateLimitedLog } from '../log/rate-limited-log.js';
import { faultAdvice, faultCause, stateFault } from './state-errors.js';

/** At most one "writes failing" line per store per minute (with how many were held back). */
const LOG_INTERVAL_MS = 60_000;
/** How often the state file is checked for having been deleted or replaced under the running daemon. */
const FILE_CHECK_MS = 5000;

/**
 * A store's read through `writes` when it has one (a disk fault counted and reported: `fallback`), else
 * directly (a fault throws): the one way the state stores read.
 */
export function readVia<T>(writes: StoreWrites | undefined, fn: () => T, fallback: T): T {
  if (!writes) return fn();
  const r = writes.read(fn);
  return r.ok ? r.value : fallback;
}

/** A store's write through `writes` when it has one (a disk fault counted and reported: false), else directly. */
export function writeVia(writes: StoreWrites | undefined, fn: () => void): boolean {
  if (!writes) {
    fn();
    return true;
  }
  return writes.attempt(fn).ok;
}

/** A write that could not be made durable; carries a message for the user (e.g. an admin API 503). */
export class StateWriteError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StateWriteError';
  }
}

export class StoreWrites {
  /** Failed writes since start. */
  errors = 0;
  /** The cause while degraded, undefined while writes work. */
  reason: string | undefined;
  /** Set by givenUp: degraded until the restart, whatever later writes do. */
  private gaveUp = false;
  private readonly failing: RateLimitedLog;

  constructor(
    readonly store: string,
    readonly file: string,
    private readonly log: Logger,
    /** Why the file written is not the one opened (deleted or replaced), checked now; undefined when it is. */
    private readonly fileProblem: () => string | undefined = () => undefined,
  ) {
    this.failing = new RateLimitedLog(log, LOG_INTERVAL_MS);
  }

  /**
   * Runs one write. On a storage failure: counted, reported, and `{ ok: false }`. Any other error is a
   * bug (a constraint, a closed database) and is thrown.
   */
  attempt<T>(write: () => T): { ok: true; value: T } | { ok: false; message: string } {
    let value: T;
    try {
      value = write();
    } catch (err) {
      return this.failed(err, 'write');
    }
    if (this.reason !== undefined && !this.gaveUp) {
      this.log.info({ store: this.store, file: this.file, failed_writes: this.errors }, `state writes work again: ${this.store} store recovered`);
      this.reason = undefined;
    }
    return { ok: true, value };
  }

  /**
   * Runs one read. A storage failure is counted and reported as a write's is (the disk is failing); a read
   * that works says nothing of writes, so it never clears the degraded state (a full disk reads fine: each
   * read "healed" the store between two failed writes, and /healthz flipped with every event).
   */
  read<T>(fn: () => T): { ok: true; value: T } | { ok: false; message: string } {
    try {
      return { ok: true, value: fn() };
    } catch (err) {
      return this.failed(err, 'read');
    }
  }

  private failed(err: unknown, what: 'read' | 'write'): { ok: false; message: string } {
    const fault = stateFault(err);
    if (fault === undefined || fault === 'abi') throw err;
    this.errors++;
    const cause = faultCause(fault, err);
    const message = `${this.store} store: cannot ${what} ${this.file}: ${cause}: ${faultAdvice(fault)}`;
    if (!this.gaveUp) this.reason = message;
    this.failing.write('error', { store: this.store, file: this.file, cause, failed_writes: this.errors }, `state ${what}s failing: ${message}`);
    return { ok: false, message };
  }

  /**
   * The store stopped using its file for the rest of the run (the outbox's table unreadable for good):
   * said once, loudly, and degraded until the restart — no later write heals it.
   */
  givenUp(message: string, fields: Record<string, unknown>): void {
    this.gaveUp = true;
    this.reason = `${this.store} store: ${message}`;
    this.log.error({ store: this.store, file: this.file, ...fields }, `state store given up: ${this.reason}`);
  }

  /** At close: what is still only in memory is lost now; said once, loudly, with how much. */
  lostAtClose(count: number, what: string): void {
    if (count === 0) return;
    this.log.error({ store: this.store, file: this.file, lost: count, cause: this.reason }, `${count} ${what} could not be written to ${this.file} before the stop and are lost`);
  }

  /**
   * Like attempt(), but a failure is thrown as a StateWriteError (for changes a caller must not assume
   * made). Also refused while the file is deleted or replaced: SQLite would write into the unlinked file
   * without an error, and the change would be answered as made and be gone at the next start.
   */
  must<T>(write: () => T): T {
    const gone = this.fileProblem();
    if (gone !== undefined) throw new StateWriteError(`${this.store} store: ${gone}; nothing was changed`);
    const r = this.attempt(write);
    if (!r.ok) throw new StateWriteError(`${r.message}; nothing was changed, try again once it is fixed`);
    return r.value;
  }
}

export class StateHealth {
  private readonly stores: StoreWrites[] = [];
  private readonly gone = new Map<string, string>();
  /** Watched files and the inode each had when opened. */
  private readonly opened = new Map<string, number | undefined>();
  private readonly timers: NodeJS.Timeout[] = [];

  constructor(private readonly log: Logger) {}

  /**
   * SQLite goes on writing to a state file that was deleted (or replaced) under it, without an error,
   * and all of it is lost at the next start. A periodic check makes that visible as "degraded" (restart
   * to recreate the file; event ids stay unique by the clock floor).
   */
  watchFile(file: string): void {
    this.opened.set(file, inodeOf(file));
    const timer = setInterval(() => {
      const reason = this.fileProblem(file);
      const wasGone = this.gone.has(file);
      if (reason === undefined) {
        if (wasGone) this.log.info({ file }, 'state file is back');
        this.gone.delete(file);
        return;
      }
      if (wasGone) return;
      this.gone.set(file, reason);
      this.log.error({ file }, reason);
    }, FILE_CHECK_MS);
    timer.unref();
    this.timers.push(timer);
  }

  /**
   * The state file could not be used at start, and the daemon runs with its state in memory (sqlite.ts,
   * `onInMemory`): degraded for the whole run — only a restart goes back to a file.
   */
  inMemory(file: string, why: string): void {
    this.gone.set(file, `${why}; running with the state in memory: restart the service once that is fixed (until then nothing of it survives a restart)`);
  }

  /** Stops the file checks (at shutdown). */
  close(): void {
    for (const t of this.timers) clearInterval(t);
  }

  /** Why `file` (watched) is not the file opened any more, checked now; undefined while it is. */
  private fileProblem(file: string): string | undefined {
    if (!this.opened.has(file)) return undefined;
    const now = inodeOf(file);
    if (now === this.opened.get(file)) return undefined;
    return `state file ${file} was ${now === undefined ? 'deleted' : 'replaced'} while running: what is written now is lost at the next start; restart the service to create it anew`;
  }

  store(name: string, file: string): StoreWrites {
    const s = new StoreWrites(name, file, this.log, () => this.fileProblem(file));
    this.stores.push(s);
    return s;
  }

  /** For /healthz: `state` is "ok" or "degraded", with the reasons while degraded. */
  status(): { state: 'ok' | 'degraded'; state_reason?: string } {
    const reasons = this.stores.map((s) => s.reason).filter((r): r is string => r !== undefined);
    reasons.push(...this.gone.values());
    return reasons.length === 0 ? { state: 'ok' } : { state: 'degraded', state_reason: reasons.join('; ') };
  }

  /** Failed writes per store, for /metrics. */
  writeErrors(): Array<{ store: string; errors: number; degraded: boolean }> {
    return this.stores.map((s) => ({ store: s.store, errors: s.errors, degraded: s.reason !== undefined }));
  }
}

function inodeOf(file: string): number | undefined {
  try {
    return statSync(file).ino;
  } catch {
    return undefined;
  }
}
