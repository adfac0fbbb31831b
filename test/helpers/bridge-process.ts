/**
 * Runs `canrelay bridge` as a real child process on a free loopback port with a real SQLite file, and a
 * small JSON client for its admin API.
 */
import { join } from 'node:path';
import { runCli, tempDir, type CliProcess } from './processes.js';

export const ADMIN_TOKEN = 'test-admin-token-0123456789abcdef';

export interface StartedBridge {
  proc: CliProcess;
  base: string;
  db: string;
  admin: AdminClient;
}

/** Starts the bridge and waits for its `bridge listening` log line. Extra flags go to `args`. */
export async function startBridgeProcess(
  args: string[] = [],
  opts: { db?: string; env?: NodeJS.ProcessEnv; adminToken?: string; nodeArgs?: string[] } = {},
): Promise<StartedBridge> {
  const db = opts.db ?? join(tempDir('canrelay-bridge-'), 'bridge.sqlite');
  const token = opts.adminToken ?? ADMIN_TOKEN;
  const proc = runCli(['bridge', '--listen', '127.0.0.1:0', '--db', db, ...args], { CANRELAY_ADMIN_TOKEN: token, ...opts.env }, { nodeArgs: opts.nodeArgs });
  const line = await proc.waitForLog((l) => l.msg === 'bridge listening');
  const base = String(line.url);
  return { proc, base, db, admin: new AdminClient(base, token) };
}

export interface JsonResponse {
  status: number;
  body: Record<string, unknown>;
  headers: Headers;
}

export class AdminClient {
  constructor(
    readonly base: string,
    readonly token: string | undefined,
  ) {}

  withToken(token: string | undefined): AdminClient {
    return new AdminClient(this.base, token);
  }

  async call(method: string, path: string, body?: unknown, raw?: string): Promise<JsonResponse> {
    const headers: Record<string, string> = {};
    if (this.token !== undefined) headers.Authorization = `Bearer ${this.token}`;
    if (body !== undefined || raw !== undefined) headers['Content-Type'] = 'application/json';
    const r = await fetch(this.base + path, { method, headers, body: raw ?? (body === undefined ? undefined : JSON.stringify(body)) });
    const text = await r.text();
    let parsed: Record<string, unknown> = {};
    try {
      parsed = JSON.parse(text) as Record<string, unknown>;
    } catch {
      parsed = { _text: text };
    }
    return { status: r.status, body: parsed, headers: r.headers };
  }

  get = (path: string): Promise<JsonResponse> => this.call('GET', path);
  put = (path: string, body?: unknown): Promise<JsonResponse> => this.call('PUT', path, body);
  post = (path: string, body?: unknown): Promise<JsonResponse> => this.call('POST', path, body);
  del = (path: string): Promise<JsonResponse> => this.call('DELETE', path);

  /** Registers a dongle and returns its agent token. */
  async register(id: string): Promise<string> {
    const r = await this.put(`/api/v1/dongles/${id}`);
    if (r.status !== 201) throw new Error(`register ${id}: ${r.status} ${JSON.stringify(r.body)}`);
    return String(r.body.token);
  }

  async group(gid: string, a: string, b: string, busMap?: Record<string, string>): Promise<JsonResponse> {
    const r = await this.put(`/api/v1/groups/${gid}`, { sides: { a, b }, ...(busMap ? { bus_map: busMap } : {}) });
    if (r.status !== 201 && r.status !== 200) throw new Error(`group ${gid}: ${r.status} ${JSON.stringify(r.body)}`);
    return r;
  }
}
