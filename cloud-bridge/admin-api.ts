/**
 * The admin HTTP API (`Authorization: Bearer <admin token>`, JSON in and out): dongles and their agent
 * tokens, groups, viewer tokens, commands. Every body is size-capped and validated with zod; every error
 * is `{"error": "<what happened and what to do>"}` with the status that fits (400, 401, 403, 404, 405,
 * 409, 413, 429).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { z } from 'zod';
import { BUS_RULE, BUS_RULE_TEXT, ID_RULE, ID_RULE_TEXT } from '../core/names.js';
import { sendJson, sendUnavailable } from '../core/http/replies.js';
import { isoNow } from '../core/console/time.js';
import { frameFromCommand } from '../core/uplink/commands.js';
import { CLOSE, CommandBody } from '../core/uplink/messages.js';
import { discardBody, HttpError, parseWith, readJson } from '../core/http/json-body.js';
import type { AgentServer } from './agent-server.js';
import { hashToken, newToken, VIEWER_ID, VIEWER_ID_LENGTH, viewerTokenId, type Caller } from './auth.js';
import { TooManyCommandsError, type CommandCenter } from './commands.js';
import type { BridgeConsoles } from './consoles.js';
import type { GroupRelay } from './group-relay.js';
import type { BridgeStats } from './metrics.js';
import type { DongleRow, GroupRow } from './store.js';
import { StateRefusedError, type StateStore } from './state-store.js';
import type { ViewerSessions } from './viewer-sessions.js';
import { forgetDongle } from './remote-dongles.js';
import { StateWriteError } from '../core/state/state-health.js';

const DongleId = z.string().regex(ID_RULE, `a dongle id is ${ID_RULE_TEXT}`);
const BusName = z.string().regex(BUS_RULE, `a bus name is ${BUS_RULE_TEXT}`);
const GroupBody = z.strictObject({
  sides: z.strictObject({ a: DongleId, b: DongleId }),
  bus_map: z.record(BusName, BusName).optional(),
});
// From a millisecond (the resolution of expires_at: less expired as it was made) to a day.
const TimeoutS = z.number().min(0.001).max(86_400);
const ViewerTokenBody = z.strictObject({
  ttl_s: z
    .number()
    .int()
    .positive()
    .max(10 * 365 * 86_400)
    .optional(),
});
const COMMAND_TYPES: readonly string[] = CommandBody.options.flatMap((o) => [...o.shape.type.values]);

export interface AdminDeps {
  store: StateStore;
  relay: GroupRelay;
  consoles: BridgeConsoles;
  commands: CommandCenter;
  agents: AgentServer;
  stats: BridgeStats;
  viewers: ViewerSessions;
  log: Logger;
}

type Handler = (req: IncomingMessage, params: string[]) => Promise<{ status: number; body: unknown }>;
export interface AdminRoute {
  pattern: RegExp;
  /** What the path's parameters are, for the 400 message when one breaks the id rule. */
  params: string[];
  methods: Record<string, Handler>;
}

export class AdminApi {
  /** Every admin route and its methods (read by the test that refuses a viewer token on every write). */
  readonly routes: readonly AdminRoute[];

  constructor(private readonly d: AdminDeps) {
    this.routes = [
      { pattern: /^\/api\/v1\/dongles$/, params: [], methods: { GET: async () => ({ status: 200, body: { dongles: d.store.dongles().map((r) => this.dongleView(r)) } }) } },
      {
        pattern: /^\/api\/v1\/dongles\/([^/]+)$/,
        params: ['dongle id'],
        methods: { PUT: (_q, [id]) => this.putDongle(id!), GET: (_q, [id]) => this.getDongle(id!), DELETE: (_q, [id]) => this.deleteDongle(id!) },
      },
      { pattern: /^\/api\/v1\/dongles\/([^/]+)\/token$/, params: ['dongle id'], methods: { POST: (_q, [id]) => this.rotateToken(id!) } },
      {
        pattern: /^\/api\/v1\/dongles\/([^/]+)\/commands$/,
        params: ['dongle id'],
        methods: { POST: (q, [id]) => this.postCommand(q, id!), GET: (q, [id]) => this.recentCommands(q, id!) },
      },
      { pattern: /^\/api\/v1\/groups$/, params: [], methods: { GET: async () => ({ status: 200, body: { groups: d.store.groups().map((g) => this.groupView(g)) } }) } },
      {
        pattern: /^\/api\/v1\/groups\/([^/]+)$/,
        params: ['group id'],
        methods: { PUT: (q, [gid]) => this.putGroup(q, gid!), GET: (_q, [gid]) => this.getGroup(gid!), DELETE: (_q, [gid]) => this.deleteGroup(gid!) },
      },
      { pattern: /^\/api\/v1\/viewer-tokens$/, params: [], methods: { GET: () => this.listViewerTokens(), POST: (q) => this.newViewerToken(q) } },
      { pattern: /^\/api\/v1\/viewer-tokens\/([^/]+)$/, params: ['viewer token id'], methods: { DELETE: (_q, [tid]) => this.revokeViewerToken(tid!) } },
      { pattern: /^\/api\/v1\/commands\/([^/]+)$/, params: ['command id'], methods: { GET: (_q, [cid]) => this.getCommand(cid!) } },
    ];
  }

  /** Serves an admin route; the caller has already identified who is calling. */
  async handle(req: IncomingMessage, res: ServerResponse, path: string, caller: Caller | undefined): Promise<void> {
    try {
      if (caller === undefined) throw new HttpError(401, 'missing or wrong admin token: send Authorization: Bearer <admin token>', { 'WWW-Authenticate': 'Bearer' });
      if (caller.kind !== 'admin') throw new HttpError(403, `a ${caller.kind} token cannot use the admin API; use the admin token`);
      const route = this.routes.find((r) => r.pattern.test(path));
      if (!route) throw new HttpError(404, `no admin route ${path}; see /api/v1/dongles, /api/v1/groups, /api/v1/viewer-tokens, /api/v1/commands/<id>`);
      // HEAD is GET without the body (Node's response leaves it out), wherever GET is.
      const handler = route.methods[req.method ?? ''] ?? (req.method === 'HEAD' ? route.methods.GET : undefined);
      if (!handler) {
        const allow = [...Object.keys(route.methods), ...('GET' in route.methods ? ['HEAD'] : [])].join(', ');
        throw new HttpError(405, `${req.method} is not supported on ${path}; use ${allow}`, { Allow: allow });
      }
      const params = route.pattern.exec(path)!.slice(1);
      params.forEach((p, i) => {
        if (!ID_RULE.test(p)) throw new HttpError(400, `bad ${route.params[i]} ${JSON.stringify(p.slice(0, 80))}: use 1-64 letters, digits, ".", "_" or "-"`);
      });
      const out = await handler(req, params);
      sendJson(res, out.status, out.body);
    } catch (err) {
      if (err instanceof HttpError) {
        discardBody(req); // an unread body must not stall the connection, nor reset it under the answer
        sendJson(res, err.status, { error: err.message }, err.headers);
        return;
      }
      if (err instanceof StateRefusedError) {
        req.resume();
        sendJson(res, err.reason === 'conflict' ? 409 : 404, { error: err.message });
        return;
      }
      if (err instanceof StateWriteError) {
        req.resume();
        sendUnavailable(res, err.message);
        return;
      }
      throw err;
    }
  }

  // ---- dongles ----

  private async putDongle(id: string): Promise<{ status: number; body: unknown }> {
    const token = newToken();
    if (!(await this.d.store.createDongle(id, hashToken(token), isoNow()))) return { status: 200, body: { id } };
    this.d.log.info({ dongle: id }, 'dongle registered');
    this.d.consoles.dongleRegistered(id);
    return { status: 201, body: { id, token } };
  }

  private async getDongle(id: string): Promise<{ status: number; body: unknown }> {
    return { status: 200, body: this.dongleView(this.mustDongle(id)) };
  }

  private async rotateToken(id: string): Promise<{ status: number; body: unknown }> {
    this.mustDongle(id);
    const token = newToken();
    await this.d.store.rotateAgentToken(id, hashToken(token), isoNow());
    this.d.agents.disconnect(id, CLOSE.UNAUTHORIZED, 'agent token rotated; reconnect with the new token');
    this.d.log.info({ dongle: id }, 'agent token rotated');
    return { status: 200, body: { id, token } };
  }

  private async deleteDongle(id: string): Promise<{ status: number; body: unknown }> {
    this.mustDongle(id);
    // The store first: when it refuses (503), nothing is changed, its commands included.
    const { group } = await this.d.store.deleteDongle(id);
    this.d.commands.dongleRemoved(id);
    if (group !== undefined) this.endGroup(group);
    this.d.agents.disconnect(id, CLOSE.UNAUTHORIZED, 'dongle removed from the bridge');
    forgetDongle(this.d, id);
    this.d.log.info({ dongle: id, group_ended: group ?? null }, 'dongle removed');
    return { status: 200, body: { id, deleted: true, group_ended: group ?? null } };
  }

  private dongleView(r: DongleRow): Record<string, unknown> {
    const link = this.d.agents.linkOf(r.id);
    const online = link?.ready === true;
    const m = this.d.relay.groupOf(r.id);
    return {
      id: r.id,
      online,
      group: m?.group ?? null,
      side: m?.side ?? null,
      last_seen: online ? new Date(link.lastHeardAt).toISOString() : r.last_seen,
      created_at: r.created_at,
      link: online ? (this.d.agents.info(r.id) ?? null) : null,
    };
  }

  private mustDongle(id: string): DongleRow {
    const r = this.d.store.dongle(id);
    if (!r) throw new HttpError(404, `dongle "${id}" is not registered; register it with PUT /api/v1/dongles/${id}`);
    return r;
  }

  // ---- groups ----

  private async putGroup(req: IncomingMessage, gid: string): Promise<{ status: number; body: unknown }> {
    const body = parseWith(GroupBody, await readJson(req), 'group');
    const { a, b } = body.sides;
    if (a === b) throw new HttpError(400, `the two sides of a group must be different dongles (both are "${a}")`);
    const busMap = body.bus_map ?? {};
    const seen = new Map<string, string>();
    for (const [from, to] of Object.entries(busMap)) {
      const prev = seen.get(to);
      if (prev !== undefined) throw new HttpError(400, `bus_map sends both "${prev}" and "${from}" to "${to}"; it must be one-to-one so that b→a can use its inverse`);
      seen.set(to, from);
    }
    if (seen.size > 64) throw new HttpError(400, 'bus_map has more than 64 entries');
    for (const d of [a, b]) {
      this.mustDongle(d);
      const m = this.d.relay.groupOf(d);
      if (m && m.group !== gid)
        throw new HttpError(409, `dongle "${d}" is already side ${m.side} of group "${m.group}"; a dongle is in at most one group (update or delete "${m.group}" first)`);
    }
    const { created } = await this.d.store.putGroup(gid, a, b, busMap, isoNow());
    const row = this.d.store.group(gid)!;
    this.d.relay.put(row, created);
    this.d.log.info({ group: gid, a, b, bus_map: busMap, created }, created ? 'group created' : 'group updated');
    return { status: created ? 201 : 200, body: this.groupView(row) };
  }

  private async getGroup(gid: string): Promise<{ status: number; body: unknown }> {
    const state = this.d.relay.state(gid);
    if (!state) throw new HttpError(404, `no group "${gid}"; create it with PUT /api/v1/groups/${gid}`);
    return { status: 200, body: state };
  }

  private async deleteGroup(gid: string): Promise<{ status: number; body: unknown }> {
    if (!(await this.d.store.deleteGroup(gid))) throw new HttpError(404, `no group "${gid}"`);
    this.endGroup(gid);
    this.d.log.info({ group: gid }, 'group deleted');
    return { status: 200, body: { group: gid, deleted: true } };
  }

  private endGroup(gid: string): void {
    this.d.relay.remove(gid);
    this.d.consoles.removeGroup(gid);
  }

  private groupView(g: GroupRow): Record<string, unknown> {
    return {
      group: g.id,
      sides: { a: g.side_a, b: g.side_b },
      bus_map: JSON.parse(g.bus_map) as unknown,
      created_at: g.created_at,
      updated_at: g.updated_at,
      state: this.d.relay.state(g.id) ?? null,
    };
  }

  // ---- viewer tokens ----

  private async newViewerToken(req: IncomingMessage): Promise<{ status: number; body: unknown }> {
    const body = parseWith(ViewerTokenBody, (await readJson(req)) ?? {}, 'viewer token request');
    const token = newToken();
    const hash = hashToken(token);
    const expiresAt = body.ttl_s === undefined ? null : new Date(Date.now() + body.ttl_s * 1000).toISOString();
    await this.d.store.addViewerToken(hash, isoNow(), expiresAt);
    const id = viewerTokenId(hash);
    this.d.log.info({ viewer_token: id, expires_at: expiresAt }, 'viewer token issued');
    return { status: 201, body: { id, token, expires_at: expiresAt } };
  }

  private async listViewerTokens(): Promise<{ status: number; body: unknown }> {
    const now = Date.now();
    const viewer_tokens = this.d.store.viewerTokens().map((t) => {
      const id = viewerTokenId(t.hash);
      return {
        id,
        created_at: t.created_at,
        expires_at: t.expires_at,
        expired: t.expires_at !== null && Date.parse(t.expires_at) <= now,
        open_streams: this.d.viewers.openStreams(id),
      };
    });
    return { status: 200, body: { viewer_tokens } };
  }

  private async revokeViewerToken(id: string): Promise<{ status: number; body: unknown }> {
    if (!VIEWER_ID.test(id))
      throw new HttpError(400, `bad viewer token id ${JSON.stringify(id.slice(0, 40))}: it is the ${VIEWER_ID_LENGTH} hex digits listed by GET /api/v1/viewer-tokens`);
    if (!(await this.d.store.deleteViewerToken(id))) throw new HttpError(404, `no viewer token "${id}"; GET /api/v1/viewer-tokens lists them`);
    const closed = this.d.viewers.revoke(id);
    this.d.log.info({ viewer_token: id, streams_closed: closed }, 'viewer token revoked');
    return { status: 200, body: { id, revoked: true, streams_closed: closed } };
  }

  // ---- commands ----

  private async postCommand(req: IncomingMessage, dongle: string): Promise<{ status: number; body: unknown }> {
    this.mustDongle(dongle);
    const raw = await readJson(req);
    // Again: the dongle may have been deleted while its body arrived (a command must never outlive it).
    this.mustDongle(dongle);
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
      throw new HttpError(400, `a command is a JSON object, e.g. {"type":"send_frame","bus":"can0","id":"0x123","data_hex":"01 02"}`);
    const { timeout_s, ...rest } = raw as Record<string, unknown>;
    let timeout: number | undefined;
    if (timeout_s !== undefined) {
      const t = TimeoutS.safeParse(timeout_s);
      if (!t.success) throw new HttpError(400, `timeout_s must be a number of seconds from 0.001 to 86400, got ${JSON.stringify(timeout_s).slice(0, 40)}`);
      timeout = t.data;
    }
    const type = rest.type;
    if (typeof type !== 'string') throw new HttpError(400, `"type" is required; known command types: ${COMMAND_TYPES.join(', ')}`);
    if (!COMMAND_TYPES.includes(type)) throw new HttpError(400, `unknown command type ${JSON.stringify(type.slice(0, 40))}; known command types: ${COMMAND_TYPES.join(', ')}`);
    const body = parseWith(CommandBody, rest, `${type} command`);
    const f = frameFromCommand(body);
    if (!f.ok) throw new HttpError(400, `bad ${type} command: ${f.error}`);
    let row;
    try {
      row = await this.d.commands.create(dongle, body, timeout);
    } catch (err) {
      if (err instanceof TooManyCommandsError) throw new HttpError(429, err.message, { 'Retry-After': '5' });
      throw err;
    }
    this.d.log.info({ dongle, command_id: row.id, type }, 'command queued');
    return { status: 202, body: { command_id: row.id, status: 'queued' } };
  }

  /** GET /api/v1/dongles/<id>/commands?limit=n: the dongle's newest commands (default 20, at most 100). */
  private async recentCommands(req: IncomingMessage, dongle: string): Promise<{ status: number; body: unknown }> {
    this.mustDongle(dongle);
    const raw = new URL(req.url ?? '/', 'http://bridge').searchParams.get('limit');
    const limit = raw === null ? 20 : Number(raw);
    if (!Number.isInteger(limit) || limit < 1 || limit > 100) throw new HttpError(400, `limit must be a whole number from 1 to 100, got ${JSON.stringify(raw?.slice(0, 20))}`);
    return { status: 200, body: { dongle, commands: this.d.commands.recent(dongle, limit) } };
  }

  private async getCommand(cid: string): Promise<{ status: number; body: unknown }> {
    const v = this.d.commands.view(cid);
    if (!v) throw new HttpError(404, `no command "${cid}" (finished commands are deleted after the bridge's --command-retention)`);
    return { status: 200, body: v };
  }
}
