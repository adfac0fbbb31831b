/** Where the page runs: the agent's own console at "/", or a dongle or group page on the bridge. */
import { ID_RULE } from '../../core/names.js';

export type Route = { kind: 'agent' } | { kind: 'dongle'; id: string } | { kind: 'group'; id: string };

export function parseRoute(pathname: string): Route {
  const m = /^\/console\/(dongles|groups)\/([^/]+)\/?$/.exec(pathname);
  if (m) {
    let id = m[2]!;
    try {
      id = decodeURIComponent(id);
    } catch {
      /* keep it raw; the bridge will answer 400 */
    }
    if (ID_RULE.test(id)) return m[1] === 'dongles' ? { kind: 'dongle', id } : { kind: 'group', id };
  }
  return { kind: 'agent' };
}

export function consolePath(r: Exclude<Route, { kind: 'agent' }>): string {
  return `/api/v1/streams/${r.kind === 'dongle' ? 'dongles' : 'groups'}/${encodeURIComponent(r.id)}/console`;
}
