/** The few HTTP calls the page makes besides the console stream. */

export interface AgentInfo {
  dongle: string;
  source: string;
  buses: Record<string, 'up' | 'down'>;
  console: string;
  console_max_rate: number;
  sampling: boolean;
  uptime_s: number;
}

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

async function call<T>(method: string, url: string, token?: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store' });
  const text = await res.text();
  let json: unknown = undefined;
  try {
    json = text === '' ? undefined : JSON.parse(text);
  } catch {
    /* not JSON */
  }
  if (!res.ok) {
    const msg = json && typeof json === 'object' && 'error' in json ? String((json as { error: unknown }).error) : text.slice(0, 200);
    throw new HttpError(res.status, msg || `HTTP ${res.status}`);
  }
  return json as T;
}

export function agentInfo(): Promise<AgentInfo> {
  return call<AgentInfo>('GET', '/api/v1/info');
}

export interface DongleView {
  id: string;
  online: boolean;
  group: string | null;
  side: string | null;
  last_seen: string | null;
}

/** Admin only: 403 for a viewer token, which is how the page tells the two apart. */
export function bridgeDongle(id: string, token: string): Promise<DongleView> {
  return call<DongleView>('GET', `/api/v1/dongles/${encodeURIComponent(id)}`, token);
}

export function bridgeGroup(gid: string, token: string): Promise<Record<string, unknown>> {
  return call<Record<string, unknown>>('GET', `/api/v1/groups/${encodeURIComponent(gid)}`, token);
}

export interface SendFrame {
  type: 'send_frame';
  bus: string;
  id: string;
  data_hex: string;
  is_extended?: boolean;
}

export function sendCommand(dongle: string, cmd: SendFrame, token: string): Promise<{ command_id: string; status?: string }> {
  return call('POST', `/api/v1/dongles/${encodeURIComponent(dongle)}/commands`, token, cmd);
}

export interface CommandView {
  command_id: string;
  dongle: string;
  status: string;
  history: { status: string; ts: string; error?: string }[];
}

export function commandView(id: string, token: string): Promise<CommandView> {
  return call<CommandView>('GET', `/api/v1/commands/${encodeURIComponent(id)}`, token);
}
