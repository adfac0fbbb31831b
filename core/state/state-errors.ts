/**
 * What went wrong with a state file, from a SQLite or file-system error: one classification shared by
 * the start-up checks (core/state/sqlite.ts) and the run-time write guard (core/state/state-health.ts),
 * each with a cause a human can read and what to do about it.
 */
import { addonAdvice } from '../native-addon.js';

export type StateFault = 'corrupt' | 'unreadable' | 'read_only' | 'full' | 'io' | 'busy' | 'abi';

interface CodedError {
  code?: unknown;
  message?: unknown;
}

/** The fault behind an error, or undefined when it is not about the state file (a programming error). */
export function stateFault(err: unknown): StateFault | undefined {
  const e = (err ?? {}) as CodedError;
  const code = typeof e.code === 'string' ? e.code : '';
  const message = typeof e.message === 'string' ? e.message : '';
  if (code === 'ERR_DLOPEN_FAILED' || /NODE_MODULE_VERSION/.test(message)) return 'abi';
  if (code === 'SQLITE_NOTADB' || code.startsWith('SQLITE_CORRUPT')) return 'corrupt';
  if (code.startsWith('SQLITE_READONLY') || code === 'EROFS') return 'read_only';
  if (code.startsWith('SQLITE_CANTOPEN') || code === 'SQLITE_PERM' || code === 'SQLITE_AUTH' || code === 'EACCES' || code === 'EPERM') return 'unreadable';
  // SQLite cannot size its shared-memory file (-shm) when the disk is full: every statement fails so.
  if (code === 'SQLITE_FULL' || code === 'SQLITE_IOERR_SHMSIZE' || code === 'ENOSPC' || code === 'EDQUOT') return 'full';
  if (code.startsWith('SQLITE_IOERR') || code === 'SQLITE_PROTOCOL' || code === 'SQLITE_NOLFS' || code === 'EIO') return 'io';
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) return 'busy';
  // better-sqlite3 reports a missing parent directory without a code.
  if (/directory does not exist/.test(message)) return 'unreadable';
  return undefined;
}

const WHAT_TO_DO: Record<StateFault, string> = {
  corrupt: 'it is damaged or not a SQLite database',
  unreadable: 'make the file and its directory readable and writable by the service user (e.g. canrelay)',
  read_only: 'make the file, its directory and the file system writable by the service user',
  full: 'free space on that file system',
  io: 'check the disk (dmesg, SMART) or move the state to a healthy one',
  busy: 'another process holds it: stop the other canrelay using the same file',
  abi: addonAdvice('better-sqlite3'),
};

/** "the cause (the raw error)": e.g. `disk full (database or disk is full)`. */
export function faultCause(fault: StateFault, err: unknown): string {
  const raw = err instanceof Error ? err.message.split('\n')[0]! : String(err);
  const what: Record<StateFault, string> = {
    corrupt: 'not a usable SQLite database',
    unreadable: 'cannot be opened',
    read_only: 'read-only',
    full: 'disk full',
    io: 'I/O error',
    busy: 'locked',
    abi: 'native addon built for another Node.js',
  };
  return `${what[fault]} (${raw})`;
}

export function faultAdvice(fault: StateFault): string {
  return WHAT_TO_DO[fault];
}
