/** Where state lives by default: systemd's StateDirectory= when it set one, else the XDG per-user path. */
import { homedir } from 'node:os';
import { join } from 'node:path';

export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  // systemd passes StateDirectory= as $STATE_DIRECTORY (several paths are colon-separated: take the first).
  const fromSystemd = env.STATE_DIRECTORY?.split(':')[0];
  if (fromSystemd) return fromSystemd;
  const base = env.XDG_STATE_HOME || join(homedir(), '.local', 'state');
  return join(base, 'canrelay');
}
