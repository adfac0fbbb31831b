/**
 * The agent's signal endpoints:
 *   GET  /api/v1/signals      latest value, unit and time of every decoded signal (unsampled), and the
 *                             state of the DBC files
 *   POST /api/v1/dbc/reload   read the --dbc files again (an admin token where local auth is on)
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { sendJson } from '../../core/http/replies.js';
import type { LocalAuth } from '../local-auth.js';
import type { DbcLoadResult } from './dbc-files.js';
import type { SignalTable } from './signal-table.js';

export interface SignalsRouteDeps {
  table: SignalTable;
  /** The last load's report. */
  status: () => DbcLoadResult;
  reload: () => Promise<DbcLoadResult>;
  auth: LocalAuth;
}

export const SIGNALS_PATH = '/api/v1/signals';
export const DBC_RELOAD_PATH = '/api/v1/dbc/reload';

/** Answers the request and returns true when it is one of these routes. */
export async function handleSignalsRoute(req: IncomingMessage, res: ServerResponse, path: string, deps: SignalsRouteDeps): Promise<boolean> {
  if (path === SIGNALS_PATH) {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      sendJson(res, 405, { error: `${req.method} is not supported on ${path}: use GET` }, { Allow: 'GET, HEAD' });
      return true;
    }
    if (!deps.auth.guard(req, res, 'read')) return true;
    sendJson(res, 200, { dbc: dbcReport(deps.status()), frames_decoded: deps.table.stats.frames, signals: deps.table.readings() });
    return true;
  }
  if (path === DBC_RELOAD_PATH) {
    if (req.method !== 'POST') {
      sendJson(res, 405, { error: `${req.method} is not supported on ${path}: use POST` }, { Allow: 'POST' });
      return true;
    }
    if (!deps.auth.guard(req, res, 'write')) return true;
    req.resume(); // no body is read; drain whatever was sent
    const r = await deps.reload();
    // 200 when every file loaded; 422 when one failed (the previous version of it stays in use).
    sendJson(res, r.errors.length === 0 ? 200 : 422, { ...dbcReport(r), ...(r.errors.length > 0 ? { error: r.errors.join('; ') } : {}) });
    return true;
  }
  return false;
}

export function dbcReport(r: DbcLoadResult): Record<string, unknown> {
  return { files: r.files, messages: r.decoder?.messageCount ?? 0, errors: r.errors };
}
