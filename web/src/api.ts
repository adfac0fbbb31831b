/** The few HTTP calls the page makes besides the console stream. */
import type { RecordingInfo } from '../../core/recording/recording-info.js';
import type { BusStateData } from './events.js';

/** A recording as the agent (and, for a connected dongle, the bridge) lists it. */
export type { RecordingInfo };

export interface AgentInfo {
  dongle: string;
  source: string;
  buses: Record<string, 'up' | 'down'>;
  console: string;
  console_max_rate: number;
  sampling: boolean;
  uptime_s: number;
  /** What the agent's --local-token-file guards (absent on older agents). */
  local_auth?: { writes: boolean; reads: boolean };
  /** Each bus's health figures of the last second, as bus_state carries them (absent on older agents). */
  bus_health?: BusStateData[];
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
  let json: unknown;
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

export function agentInfo(token?: string): Promise<AgentInfo> {
  return call<AgentInfo>('GET', '/api/v1/info', token);
}

/** Where a dongle's recordings are: the agent's own API, or the bridge's view of a connected dongle. */
export function recordingsPath(dongle: string | null): string {
  return dongle === null ? '/api/v1/recordings' : `/api/v1/dongles/${encodeURIComponent(dongle)}/recordings`;
}

export function listRecordings(path: string, token?: string): Promise<{ recordings: RecordingInfo[] }> {
  return call('GET', path, token);
}

/** Agent only: start (every bus, every id) and stop. */
export function startRecording(token?: string): Promise<RecordingInfo> {
  return call('POST', '/api/v1/recordings', token, {});
}

export function stopRecording(id: string, token?: string): Promise<RecordingInfo> {
  return call('POST', `/api/v1/recordings/${encodeURIComponent(id)}/stop`, token);
}

/** A download ticket for one recording (`path` the list's path): its URL carries the ticket, not the token. */
export function recordingTicket(path: string, id: string, token?: string): Promise<{ url: string; expires_in_s: number }> {
  return call('POST', `${path}/${encodeURIComponent(id)}/ticket`, token);
}

export function deleteRecording(id: string, token?: string): Promise<void> {
  return call('DELETE', `/api/v1/recordings/${encodeURIComponent(id)}`, token);
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

/** The bridge's GET /api/v1/dongles/<id>/commands: the dongle's newest commands, newest first. */
export function recentCommands(dongle: string, token: string, limit = 20): Promise<{ commands: (CommandView & { type: string })[] }> {
  return call('GET', `/api/v1/dongles/${encodeURIComponent(dongle)}/commands?limit=${limit}`, token);
}

export function commandView(id: string, token: string): Promise<CommandView> {
  return call<CommandView>('GET', `/api/v1/commands/${encodeURIComponent(id)}`, token);
}

// ---- the fleet page's admin calls (the bridge's admin API; a viewer token gets 403) ----

export function listDongles(token: string): Promise<{ dongles: DongleView[] }> {
  return call('GET', '/api/v1/dongles', token);
}

/** 201 with the token (shown once); 200 without one when the dongle already exists. */
export function registerDongle(id: string, token: string): Promise<{ id: string; token?: string }> {
  return call('PUT', `/api/v1/dongles/${encodeURIComponent(id)}`, token);
}

export function rotateDongleToken(id: string, token: string): Promise<{ id: string; token: string }> {
  return call('POST', `/api/v1/dongles/${encodeURIComponent(id)}/token`, token);
}

export function deleteDongle(id: string, token: string): Promise<unknown> {
  return call('DELETE', `/api/v1/dongles/${encodeURIComponent(id)}`, token);
}

export function putGroup(gid: string, sides: { a: string; b: string }, busMap: Record<string, string> | undefined, token: string): Promise<unknown> {
  return call('PUT', `/api/v1/groups/${encodeURIComponent(gid)}`, token, busMap === undefined ? { sides } : { sides, bus_map: busMap });
}

export interface GroupConfigView {
  group: string;
  sides: { a: string; b: string };
  bus_map: Record<string, string>;
}

/** The groups as configured (sides and bus map; the fleet stream's group_state has no bus map). */
export function listGroups(token: string): Promise<{ groups: GroupConfigView[] }> {
  return call('GET', '/api/v1/groups', token);
}

export function deleteGroup(gid: string, token: string): Promise<unknown> {
  return call('DELETE', `/api/v1/groups/${encodeURIComponent(gid)}`, token);
}

export interface ViewerTokenView {
  id: string;
  created_at: string;
  expires_at: string | null;
  expired: boolean;
  open_streams: number;
}

export function issueViewerToken(token: string): Promise<{ id: string; token: string; expires_at: string | null }> {
  return call('POST', '/api/v1/viewer-tokens', token, {});
}

export function listViewerTokens(token: string): Promise<{ viewer_tokens: ViewerTokenView[] }> {
  return call('GET', '/api/v1/viewer-tokens', token);
}

export function revokeViewerToken(id: string, token: string): Promise<unknown> {
  return call('DELETE', `/api/v1/viewer-tokens/${encodeURIComponent(id)}`, token);
}
