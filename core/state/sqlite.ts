/**
 * Opens a state database and proves it usable before the daemon relies on it: WAL (readers never block
 * the writer), synchronous=NORMAL or FULL (`durable`), a quick integrity check and one small
 * write. A file that fails is either moved aside (the agent's state is expendable: `<file>.corrupt-<time>`,
 * logged loudly, a fresh file takes its place; where no file on that disk works, a database in memory for
 * the run, `onInMemory`) or refused (the bridge's database holds the tokens) with a one-line StartupError
 * that names the path, the cause and what to do (exit codes: core/cli/exit-codes.ts).
 */
import Database from 'better-sqlite3';
import { accessSync, constants, existsSync, mkdirSync, renameSync } from 'node:fs';
import { dirname } from 'node:path';
import { EXIT_START_FAILED, EXIT_STATE_UNUSABLE, StartupError } from '../cli/exit-codes.js';
import { addonLoadError } from '../native-addon.js';
import { faultAdvice, faultCause, stateFault, type StateFault } from './state-errors.js';

export interface OpenStateOptions {
  /** What to do with a corrupt, unreadable or read-only file: start fresh beside it, or refuse to start. */
  onUnusable: 'move-aside' | 'refuse';
  /** The flag that sets the path, named in the advice ("--state-dir", "--db"). */
  flag: string;
  /** Told when a file was moved aside. */
  onMovedAside?: (info: { file: string; movedTo: string; cause: string }) => void;
  /**
   * Set where the state is expendable (the agent): a file that cannot be used at all — disk full, I/O
   * errors, a read-only or unreadable file or directory, not fixed by moving the file aside — gives a
   * database in memory for this run instead of a refusal to start, and this is told why (the start-up
   * error's text). A gateway whose disk filled up or turned read-only goes on relaying. Not for a file
   * another process holds (two daemons on one state) nor for a broken installation.
   */
  onInMemory?: (why: string) => void;
  /**
   * Every commit is on the disk before it returns (synchronous=FULL: the WAL is synced at each commit).
   * For a database whose writes are answered as done (the bridge's admin API: a 2xx, a queued command);
   * otherwise NORMAL, where a commit may roll back at a power loss (never corrupting the file).
   */
  durable?: boolean;
}

/** Faults that no state file on that disk survives, and a database in memory does (`onInMemory`). */
const DISK_FAULTS: ReadonlySet<StateFault> = new Set(['corrupt', 'unreadable', 'read_only', 'full', 'io']);

/** Faults that a fresh file fixes; the others (disk full, I/O, locked) would hit the fresh file too. */
const FILE_FAULTS: ReadonlySet<StateFault> = new Set(['corrupt', 'unreadable', 'read_only']);

class OpenFailure extends Error {
  constructor(
    readonly fault: StateFault,
    readonly error: unknown,
  ) {
    super(faultCause(fault, error));
  }
}

export function openStateDb(file: string, opts: OpenStateOptions = { onUnusable: 'refuse', flag: '--state-dir' }): Database.Database {
  try {
    return openOnDisk(file, opts);
  } catch (err) {
    const fault = err instanceof OpenFailure ? err.fault : err instanceof MoveAsideFailure ? err.why.fault : undefined;
    if (opts.onInMemory === undefined || fault === undefined || !DISK_FAULTS.has(fault)) {
      if (err instanceof OpenFailure) throw startupError(file, err, opts);
      if (err instanceof MoveAsideFailure) throw err.startupError;
      throw err;
    }
    opts.onInMemory(err instanceof OpenFailure ? startupError(file, err, opts).message : (err as MoveAsideFailure).startupError.message);
    return new Database(':memory:');
  }
}

function openOnDisk(file: string, opts: OpenStateOptions): Database.Database {
  try {
    return tryOpen(file, opts.durable === true);
  } catch (err) {
    if (!(err instanceof OpenFailure)) throw err;
    if (opts.onUnusable === 'move-aside' && FILE_FAULTS.has(err.fault) && existsSync(file)) {
      const movedTo = moveAside(file, err, opts);
      opts.onMovedAside?.({ file, movedTo, cause: err.message });
      return tryOpen(file, opts.durable === true);
    }
    throw err;
  }
}

function tryOpen(file: string, durable: boolean): Database.Database {
  try {
    mkdirSync(dirname(file), { recursive: true });
  } catch (err) {
    throw new OpenFailure(stateFault(err) ?? 'unreadable', err);
  }
  let db: Database.Database;
  try {
    db = new Database(file);
  } catch (err) {
    const why = accessError(file) ?? err;
    throw new OpenFailure(stateFault(why) ?? 'unreadable', why);
  }
  try {
    db.pragma('busy_timeout = 2000');
    db.pragma('journal_mode = WAL');
    db.pragma(durable ? 'synchronous = FULL' : 'synchronous = NORMAL');
    const check = db.pragma('quick_check(1)', { simple: true });
    if (check !== 'ok') throw Object.assign(new Error(`integrity check failed: ${String(check)}`), { code: 'SQLITE_CORRUPT' });
    // One real write: a read-only file or file system shows here, not at the first event of the run.
    db.exec('CREATE TABLE IF NOT EXISTS canrelay_meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)');
    db.prepare("INSERT INTO canrelay_meta (k, v) VALUES ('last_start', ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v").run(new Date().toISOString());
    return db;
  } catch (err) {
    db.close();
    const fault = stateFault(err);
    if (fault === undefined) throw err;
    throw new OpenFailure(fault, err);
  }
}

/** SQLite says only "unable to open database file"; the file system's own answer (EROFS, EACCES) is clearer. */
function accessError(file: string): Error | undefined {
  try {
    accessSync(existsSync(file) ? file : dirname(file), constants.R_OK | constants.W_OK);
    return undefined;
  } catch (err) {
    return stateFault(err) === undefined ? undefined : (err as Error);
  }
}

/** `<file>.corrupt-<UTC time>`, with its -wal and -shm (a stale WAL must never meet the fresh file). */
function moveAside(file: string, why: OpenFailure, opts: OpenStateOptions): string {
  const stamp = new Date()
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  const target = `${file}.corrupt-${stamp}`;
  try {
    renameSync(file, target);
    for (const side of ['-wal', '-shm']) if (existsSync(file + side)) renameSync(file + side, target + side);
  } catch (err) {
    throw new MoveAsideFailure(
      why,
      new StartupError(
        `state file ${file} is ${why.message} and could not be moved aside (${(err as Error).message}): ${faultAdvice(why.fault)}, or set ${opts.flag} to a writable directory`,
        EXIT_STATE_UNUSABLE,
      ),
    );
  }
  return target;
}

class MoveAsideFailure extends Error {
  constructor(
    readonly why: OpenFailure,
    readonly startupError: StartupError,
  ) {
    super(startupError.message);
  }
}

function startupError(file: string, err: OpenFailure, opts: OpenStateOptions): StartupError {
  if (err.fault === 'abi') return addonLoadError(err.error, 'better-sqlite3');
  if (err.fault === 'corrupt' && opts.onUnusable === 'refuse') {
    return new StartupError(
      `state database ${file} is ${err.message}: it holds the dongles' tokens, so it is not replaced; restore it from a backup, or move it away to start with an empty database`,
      EXIT_STATE_UNUSABLE,
    );
  }
  // Disk full, I/O errors and locks may pass: a restart may help. A bad file or directory will not.
  const code = FILE_FAULTS.has(err.fault) ? EXIT_STATE_UNUSABLE : EXIT_START_FAILED;
  return new StartupError(`state database ${file}: ${err.message}: ${faultAdvice(err.fault)} (${opts.flag})`, code);
}
