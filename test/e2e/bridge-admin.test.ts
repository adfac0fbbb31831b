/** The bridge's admin API and console access rules, through the real CLI process and real HTTP/WebSocket. */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { afterEach, test } from 'node:test';
import { AdminApi, type AdminDeps } from '../../cloud-bridge/admin-api.js';
import { ADMIN_TOKEN, startBridgeProcess, type StartedBridge } from '../helpers/bridge-process.js';
import { FakeAgent, upgradeStatus } from '../helpers/fake-agent.js';
import { runCli, tempDir } from '../helpers/processes.js';
import { getJson, metricValue, SseClient } from '../helpers/sse-client.js';

const running: StartedBridge[] = [];
const agents: FakeAgent[] = [];
afterEach(async () => {
  // Per test: a loaded CI machine should not carry every earlier test's bridge.
  for (const a of agents.splice(0)) a.kill();
  for (const b of running.splice(0)) await b.proc.stop('SIGKILL');
});
async function bridge(args: string[] = [], opts: Parameters<typeof startBridgeProcess>[1] = {}): Promise<StartedBridge> {
  const b = await startBridgeProcess(args, opts);
  running.push(b);
  return b;
}
async function agent(...args: Parameters<typeof FakeAgent.connect>): Promise<FakeAgent> {
  const a = await FakeAgent.connect(...args);
  agents.push(a);
  return a;
}

test('admin token: 401 without or with a wrong one; flags and token sources', async () => {
  const b = await bridge();
  for (const client of [b.admin.withToken(undefined), b.admin.withToken('not-the-admin-token-at-all')]) {
    const r = await client.get('/api/v1/dongles');
    assert.equal(r.status, 401);
    assert.match(String(r.body.error), /admin token/);
  }
  const ok = await b.admin.get('/api/v1/dongles');
  assert.equal(ok.status, 200);
  assert.deepEqual(ok.body.dongles, []);

  // --admin-token-file works; a missing token or a bad flag exits 2 with one line.
  const dir = tempDir('canrelay-bridge-token-');
  writeFileSync(join(dir, 'admin'), 'file-admin-token-0123456789\n');
  const fromFile = await bridge(['--admin-token-file', join(dir, 'admin')], { env: { CANRELAY_ADMIN_TOKEN: '' } });
  assert.equal((await fromFile.admin.withToken('file-admin-token-0123456789').get('/api/v1/dongles')).status, 200);
  const missing = runCli(['bridge', '--listen', '127.0.0.1:0', '--db', join(dir, 'x.sqlite')], { CANRELAY_ADMIN_TOKEN: '' });
  assert.equal(await missing.wait(), 2);
  assert.match(missing.stderr, /admin token is required/);
  // The admin token's 16-character minimum: 15 refused at start with the reason, 16 accepted.
  const short = runCli(['bridge', '--listen', '127.0.0.1:0', '--db', join(dir, 's.sqlite')], { CANRELAY_ADMIN_TOKEN: 'fifteen-chars-x' });
  assert.equal(await short.wait(), 2, 'a 15-character admin token stops the start (exit 2)');
  assert.match(short.stderr, /admin token must be at least 16 characters/);
  assert.equal(short.stderr.trim().split('\n').length, 1, `one line: ${short.stderr}`);
  const sixteen = await bridge(['--db', join(dir, 'sixteen.sqlite')], { adminToken: 'sixteen-chars-ok' });
  assert.equal((await sixteen.admin.get('/api/v1/dongles')).status, 200, 'a 16-character admin token works');
  const badFlag = runCli(['bridge', '--backlog-max-age-ms', 'soon', '--db', join(dir, 'y.sqlite')], { CANRELAY_ADMIN_TOKEN: ADMIN_TOKEN });
  assert.equal(await badFlag.wait(), 2);
  assert.match(badFlag.stderr, /--backlog-max-age-ms/);
});

test('dongles: register (idempotent), show, list, rotate the token, delete', async () => {
  const b = await bridge();
  const created = await b.admin.put('/api/v1/dongles/gw-1');
  assert.equal(created.status, 201);
  assert.equal(created.body.id, 'gw-1');
  const token1 = String(created.body.token);
  assert.match(token1, /^[A-Za-z0-9_-]{43}$/, '32 random bytes, base64url');

  const again = await b.admin.put('/api/v1/dongles/gw-1');
  assert.equal(again.status, 200);
  assert.deepEqual(again.body, { id: 'gw-1' }, 'no token when it already exists');

  assert.equal((await b.admin.put('/api/v1/dongles/bad%20id')).status, 400);
  assert.equal((await b.admin.put('/api/v1/dongles/' + 'x'.repeat(65))).status, 400);

  const shown = await b.admin.get('/api/v1/dongles/gw-1');
  assert.equal(shown.status, 200);
  assert.equal(shown.body.online, false);
  assert.equal(shown.body.group, null);
  assert.equal(shown.body.last_seen, null);
  assert.equal((await b.admin.get('/api/v1/dongles/nope')).status, 404);

  // The agent connects with its token; rotating it disconnects that agent and the old token stops working.
  const a1 = await agent(b.base, { dongle: 'gw-1', token: token1 });
  assert.equal(a1.welcome!.event_ack, 0);
  assert.equal(a1.welcome!.group, null);
  const online = await b.admin.get('/api/v1/dongles/gw-1');
  assert.equal(online.body.online, true);
  assert.equal((online.body.link as Record<string, unknown>).version, 'fake-1');

  const rotated = await b.admin.post('/api/v1/dongles/gw-1/token');
  assert.equal(rotated.status, 200);
  const token2 = String(rotated.body.token);
  assert.notEqual(token2, token1);
  assert.equal(await a1.closed(), 4401, 'the agent with the old token is disconnected');
  assert.equal(await upgradeStatus(b.base, { Authorization: `Bearer ${token1}` }), 401, 'the old token no longer opens the uplink');
  const a2 = await agent(b.base, { dongle: 'gw-1', token: token2 });
  assert.ok(a2.welcome);
  assert.equal((await b.admin.post('/api/v1/dongles/nope/token')).status, 404);

  // Rotated again while the agent holding the link does not read (it never answers the close frame): its
  // replacement with the new token is welcomed at once, not refused as a second gateway on the token (4409).
  a2.ws.pause();
  const token3 = String((await b.admin.post('/api/v1/dongles/gw-1/token')).body.token);
  const a3 = await agent(b.base, { dongle: 'gw-1', token: token3 });
  assert.ok(a3.welcome, `welcomed, not refused: ${a3.closeCode} ${a3.closeReason}`);
  assert.equal((await b.admin.get('/api/v1/dongles/gw-1')).body.online, true);
  a2.ws.resume();
  assert.equal(await a2.closed(), 4401);

  await b.admin.put('/api/v1/dongles/gw-2');
  const list = await b.admin.get('/api/v1/dongles');
  assert.deepEqual(
    (list.body.dongles as { id: string }[]).map((d) => d.id),
    ['gw-1', 'gw-2'],
  );

  assert.equal((await b.admin.del('/api/v1/dongles/nope')).status, 404);
  const removed = await b.admin.del('/api/v1/dongles/gw-1');
  assert.equal(removed.status, 200);
  assert.equal(await a3.closed(), 4401, 'a removed dongle is disconnected');
  assert.equal((await b.admin.get('/api/v1/dongles/gw-1')).status, 404);
  assert.equal(await upgradeStatus(b.base, { Authorization: `Bearer ${token3}` }), 401);

  // Wrong method → 405 with Allow.
  const patch = await b.admin.call('PATCH', '/api/v1/dongles/gw-2');
  assert.equal(patch.status, 405);
  assert.match(String(patch.headers.get('allow')), /PUT/);
  assert.equal((await b.admin.post('/api/v1/dongles')).status, 405);
  assert.equal((await b.admin.get('/api/v1/nothing-here')).status, 404);
});

test('groups: create, update, 400/404/409 cases, live state, delete', async () => {
  const b = await bridge();
  for (const id of ['a1', 'b1', 'c1', 'd1']) await b.admin.register(id);

  assert.equal((await b.admin.put('/api/v1/groups/g1', { sides: { a: 'a1', b: 'zz' } })).status, 404, 'unknown dongle');
  assert.equal((await b.admin.put('/api/v1/groups/g1', { sides: { a: 'a1', b: 'a1' } })).status, 400, 'same dongle twice');
  assert.equal((await b.admin.put('/api/v1/groups/g1', { sides: { a: 'a1' } })).status, 400, 'missing side');
  assert.equal((await b.admin.put('/api/v1/groups/g1', { sides: { a: 'a1', b: 'b1' }, extra: 1 })).status, 400, 'unknown field');
  assert.equal((await b.admin.call('PUT', '/api/v1/groups/g1', undefined, '{not json')).status, 400, 'not JSON');
  const notInjective = await b.admin.put('/api/v1/groups/g1', { sides: { a: 'a1', b: 'b1' }, bus_map: { can0: 'can9', can1: 'can9' } });
  assert.equal(notInjective.status, 400);
  assert.match(String(notInjective.body.error), /one-to-one/);
  assert.equal((await b.admin.put('/api/v1/groups/g1', { sides: { a: 'a1', b: 'b1' }, bus_map: { 'bad bus': 'can0' } })).status, 400);

  const created = await b.admin.put('/api/v1/groups/g1', { sides: { a: 'a1', b: 'b1' }, bus_map: { can0: 'can1' } });
  assert.equal(created.status, 201);
  assert.deepEqual(created.body.sides, { a: 'a1', b: 'b1' });
  assert.deepEqual(created.body.bus_map, { can0: 'can1' });

  const state = await b.admin.get('/api/v1/groups/g1');
  assert.equal(state.status, 200);
  assert.equal(state.body.group, 'g1');
  assert.equal(state.body.mode, 'down');
  assert.equal(state.body.offline_side, 'both');
  assert.deepEqual(state.body.sides, { a: { dongle: 'a1', online: false, backlog: 0 }, b: { dongle: 'b1', online: false, backlog: 0 } });
  assert.equal(state.body.dropped, 0);
  assert.equal(state.body.relayed_total, 0);
  assert.equal(typeof state.body.relay_rate, 'number');
  assert.match(String(state.body.ts), /Z$/);

  const conflict = await b.admin.put('/api/v1/groups/g2', { sides: { a: 'c1', b: 'b1' } });
  assert.equal(conflict.status, 409, 'a dongle is in at most one group');
  assert.match(String(conflict.body.error), /g1/);

  const updated = await b.admin.put('/api/v1/groups/g1', { sides: { a: 'a1', b: 'c1' } });
  assert.equal(updated.status, 200, 'update');
  assert.equal((await b.admin.get('/api/v1/dongles/b1')).body.group, null, 'b1 left the group');
  assert.equal((await b.admin.get('/api/v1/dongles/c1')).body.group, 'g1');
  assert.equal((await b.admin.put('/api/v1/groups/g2', { sides: { a: 'b1', b: 'd1' } })).status, 201, 'b1 is free again');

  // An agent connected while its group changes is told.
  const tokenD = String((await b.admin.post('/api/v1/dongles/d1/token')).body.token);
  const d = await agent(b.base, { dongle: 'd1', token: tokenD });
  assert.equal(d.welcome!.group, 'g2');

  // HEAD wherever GET is: the same status and headers, no body.
  const head = await b.admin.call('HEAD', '/api/v1/groups/g1');
  assert.equal(head.status, 200);
  assert.equal(head.body._text, '');
  assert.equal((await b.admin.call('HEAD', '/api/v1/groups/nope')).status, 404);
  const notAllowed = await b.admin.call('PATCH', '/api/v1/groups/g1');
  assert.equal(notAllowed.status, 405);
  assert.equal(notAllowed.headers.get('allow'), 'PUT, GET, DELETE, HEAD');
  const list = await b.admin.get('/api/v1/groups');
  assert.deepEqual(
    (list.body.groups as { group: string }[]).map((g) => g.group),
    ['g1', 'g2'],
  );
  assert.equal((await b.admin.del('/api/v1/groups/g2')).status, 200);
  await d.waitFor(() => d.ofType('group').some((m) => m.group === null), 5000, 'group: null');
  assert.equal((await b.admin.get('/api/v1/groups/g2')).status, 404);
  assert.equal((await b.admin.del('/api/v1/groups/g2')).status, 404);
});

test("a group's relay revision: in the welcome and the group message; another after a bus map, sides or re-creation, the same after a PUT of the same group", async () => {
  const b = await bridge();
  const tokens: Record<string, string> = {};
  for (const id of ['r1', 'r2', 'r3']) {
    await b.admin.register(id);
    tokens[id] = String((await b.admin.post(`/api/v1/dongles/${id}/token`)).body.token);
  }
  const put = async (body: object, status: number): Promise<void> => assert.equal((await b.admin.put('/api/v1/groups/gr', body)).status, status);
  await put({ sides: { a: 'r1', b: 'r2' }, bus_map: { can0: 'can1' } }, 201);
  const welcomeRev = async (): Promise<string> => {
    const a = await agent(b.base, { dongle: 'r2', token: tokens.r2! });
    assert.equal(a.welcome!.group, 'gr');
    const rev = a.welcome!.relay_rev;
    assert.ok(typeof rev === 'string' && rev.length > 0, 'the welcome carries the revision');
    a.kill();
    await a.closed();
    return rev;
  };
  const rev1 = await welcomeRev();
  // While r2 is away: the same group put again changes nothing it holds…
  await put({ sides: { a: 'r1', b: 'r2' }, bus_map: { can0: 'can1' } }, 200);
  assert.equal(await welcomeRev(), rev1, 'the same group, the same revision');
  // …another bus map does.
  await put({ sides: { a: 'r1', b: 'r2' }, bus_map: { can0: 'can2' } }, 200);
  const rev2 = await welcomeRev();
  assert.notEqual(rev2, rev1, 'another bus map, another revision');
  // Connected: the side that stays is told when the other side changes, with the new revision.
  const r2 = await agent(b.base, { dongle: 'r2', token: tokens.r2! });
  assert.equal(r2.welcome!.relay_rev, rev2);
  await put({ sides: { a: 'r3', b: 'r2' }, bus_map: { can0: 'can2' } }, 200);
  await r2.waitFor(() => r2.ofType('group').length > 0, 5000, 'a group message');
  const told = r2.ofType('group')[0]!;
  assert.equal(told.group, 'gr');
  assert.ok(told.relay_rev !== undefined && told.relay_rev !== rev2, 'a new revision for new sides');
  // Deleted and made again the same: another group for what r2 may hold.
  assert.equal((await b.admin.del('/api/v1/groups/gr')).status, 200);
  await new Promise((r) => setTimeout(r, 5)); // creation times differ by at least a millisecond
  await put({ sides: { a: 'r3', b: 'r2' }, bus_map: { can0: 'can2' } }, 201);
  await r2.waitFor(() => r2.ofType('group').length >= 3, 5000, 'no group, then the group again');
  const [, gone, again] = r2.ofType('group');
  assert.equal(gone!.group, null);
  assert.equal(again!.group, 'gr');
  assert.ok(again!.relay_rev !== undefined && again!.relay_rev !== told.relay_rev, 're-created: another revision');
});

test('consoles: admin or viewer token (header or ?access_token=); 401, 403 for agent tokens, 404', async () => {
  const b = await bridge();
  const agentToken = await b.admin.register('gw-c');
  await b.admin.register('gw-d');
  await b.admin.group('gc', 'gw-c', 'gw-d');
  const v = await b.admin.post('/api/v1/viewer-tokens');
  assert.equal(v.status, 201);
  const viewer = String(v.body.token);
  assert.match(viewer, /^[A-Za-z0-9_-]{43}$/);
  assert.equal((await b.admin.withToken(viewer).get('/api/v1/dongles')).status, 403, 'viewer tokens are read-only');

  const url = `${b.base}/api/v1/streams/dongles/gw-c/console`;
  const byHeader = await SseClient.connect(url, { Authorization: `Bearer ${viewer}` });
  assert.equal(byHeader.status, 200);
  assert.equal(byHeader.headers['content-type'], 'text/event-stream; charset=utf-8');
  byHeader.close();
  const byQuery = await SseClient.connect(`${b.base}/api/v1/streams/groups/gc/console?access_token=${viewer}`);
  assert.equal(byQuery.status, 200);
  byQuery.close();
  const byAdmin = await SseClient.connect(url, { Authorization: `Bearer ${ADMIN_TOKEN}` });
  assert.equal(byAdmin.status, 200);
  byAdmin.close();

  assert.equal((await getJson(url)).status, 401, 'no token');
  assert.equal((await getJson(url, { Authorization: 'Bearer wrong-token' })).status, 401, 'wrong token');
  const asAgent = await getJson(url, { Authorization: `Bearer ${agentToken}` });
  assert.equal(asAgent.status, 403, 'an agent token never reads consoles, not even its own');
  assert.match(String(asAgent.body.error), /viewer token/);
  assert.equal((await getJson(`${b.base}/api/v1/streams/dongles/gw-d/console?access_token=${agentToken}`)).status, 403);
  assert.equal((await getJson(`${b.base}/api/v1/streams/dongles/nope/console`, { Authorization: `Bearer ${viewer}` })).status, 404);
  assert.equal((await getJson(`${b.base}/api/v1/streams/groups/nope/console`, { Authorization: `Bearer ${viewer}` })).status, 404);

  // The uplink refuses anything but an agent token, before any WebSocket exists.
  assert.equal(await upgradeStatus(b.base, {}), 401);
  assert.equal(await upgradeStatus(b.base, { Authorization: `Bearer ${viewer}` }), 401);
  assert.equal(await upgradeStatus(b.base, { Authorization: `Bearer ${ADMIN_TOKEN}` }), 401);
  assert.equal(await upgradeStatus(b.base, { Authorization: `Bearer ${agentToken}` }), undefined);
  const m = await getJson(b.base + '/metrics');
  assert.equal(metricValue(m.text, 'canrelay_bridge_rejected_messages_total', { reason: 'unauthorized' }), 3);
});

test('a command whose body was still arriving when its dongle was deleted is refused (404): a new gateway under that id gets nothing', async () => {
  const b = await bridge();
  await b.admin.register('gw-race');
  const body = JSON.stringify({ type: 'send_frame', bus: 'can0', id: '0x123', data_hex: 'DE AD', timeout_s: 600 });
  const u = new URL(`${b.base}/api/v1/dongles/gw-race/commands`);
  let finish!: () => void;
  const answered = new Promise<number>((resolve, reject) => {
    const req = httpRequest(
      {
        host: u.hostname,
        port: u.port,
        path: u.pathname,
        method: 'POST',
        headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.write(body.slice(0, 5));
    finish = () => req.end(body.slice(5));
  });
  await new Promise((r) => setTimeout(r, 200)); // the headers are in: the dongle was checked
  assert.equal((await b.admin.del('/api/v1/dongles/gw-race')).status, 200);
  finish();
  assert.equal(await answered, 404, 'the dongle is gone');
  const token = await b.admin.register('gw-race'); // another gateway under the same id
  const a = await FakeAgent.connect(b.base, { dongle: 'gw-race', token });
  await new Promise((r) => setTimeout(r, 500));
  assert.deepEqual(a.ofType('command'), [], 'it is sent no command of the deleted dongle');
  await a.close();
});

test('commands: 404 unknown dongle, 400 with the reason, 202 queued, GET its history', async () => {
  const b = await bridge();
  await b.admin.register('gw-k');
  const post = (body: unknown, id = 'gw-k'): ReturnType<typeof b.admin.post> => b.admin.post(`/api/v1/dongles/${id}/commands`, body);

  assert.equal((await post({ type: 'send_frame', bus: 'can0', id: '0x123' }, 'nope')).status, 404);
  const cases: [unknown, RegExp][] = [
    [{ type: 'reboot' }, /unknown command type "reboot".*send_frame/],
    [{ bus: 'can0', id: '0x123' }, /"type" is required/],
    [{ type: 'send_frame', bus: 'can0', id: 'xyz' }, /id/],
    [{ type: 'send_frame', bus: 'can0', id: '0x123', data_hex: '01 02 03 04 05 06 07 08 09' }, /CAN FD length/],
    [{ type: 'send_frame', bus: 'can0', id: '0x123', is_remote: true, data_hex: '01' }, /remote frame/],
    [{ type: 'send_frame', bus: 'can0', id: '0x123', colour: 'red' }, /colour/],
    // What is asked is what is sent, or refused (these were sent as other frames):
    [{ type: 'send_frame', bus: 'can0', id: '0x800', is_extended: false }, /does not fit 11 bits/],
    [{ type: 'send_frame', bus: 'can0', id: '0x123', is_fd: false, data_hex: '00 01 02 03 04 05 06 07 08 09 0A 0B' }, /need CAN FD/],
    [{ type: 'send_frame', bus: 'can0', id: '0x123', dlc: 5, data_hex: '01' }, /dlc is for a remote frame/],
    [{ type: 'send_frame', bus: 'can0', id: '0x123', brs: true, data_hex: '01' }, /brs .* CAN FD flag/],
    [{ type: 'send_frame', bus: 'can0', id: '0x123', is_remote: true, dlc: 12 }, /at most 8 bytes/],
    [{ type: 'send_frame', bus: 'can0', id: '0x123', timeout_s: -1 }, /timeout_s/],
    // Below a millisecond it expired as it was made (its expires_at equal to created_at).
    [{ type: 'send_frame', bus: 'can0', id: '0x123', timeout_s: 1e-300 }, /timeout_s must be a number of seconds from 0\.001/],
    // Digits split across separators were joined into other bytes ("1 2 3 4" sent as 12 34).
    [{ type: 'send_frame', bus: 'can0', id: '0x123', data_hex: '1 2 3 4' }, /is not whole hex bytes/],
    [{ type: 'send_frame', bus: 'can0', id: '0x123', data_hex: '123 4' }, /is not whole hex bytes/],
    [[1, 2], /JSON object/],
  ];
  for (const [body, why] of cases) {
    const r = await post(body);
    assert.equal(r.status, 400, JSON.stringify(body));
    assert.match(String(r.body.error), why, JSON.stringify(r.body));
  }

  await b.admin.register('gw-k2'); // another dongle: gw-k's command list is checked below
  for (const data_hex of ['0102', '01:02', '0102 03']) assert.equal((await post({ type: 'send_frame', bus: 'can0', id: '0x123', data_hex }, 'gw-k2')).status, 202, data_hex);
  const ok = await post({ type: 'send_frame', bus: 'can0', id: '0x123', data_hex: '01 02 03', timeout_s: 60 });
  assert.equal(ok.status, 202);
  assert.equal(ok.body.status, 'queued');
  const cid = String(ok.body.command_id);
  const shown = await b.admin.get(`/api/v1/commands/${cid}`);
  assert.equal(shown.status, 200);
  assert.equal(shown.body.command_id, cid);
  assert.equal(shown.body.dongle, 'gw-k');
  assert.equal(shown.body.type, 'send_frame');
  assert.equal(shown.body.status, 'queued', 'the dongle is offline: it stays queued');
  assert.deepEqual((shown.body.command as Record<string, unknown>).data_hex, '01 02 03');
  assert.equal((shown.body.command as Record<string, unknown>).timeout_s, undefined, 'timeout_s is not part of the command');
  assert.deepEqual(
    (shown.body.history as { status: string }[]).map((h) => h.status),
    ['queued'],
  );
  assert.equal((await b.admin.get('/api/v1/commands/no-such-command')).status, 404);

  // A dongle's recent commands, newest first, bounded by ?limit.
  const second = String((await post({ type: 'send_frame', bus: 'can0', id: '0x124' })).body.command_id);
  const recent = await b.admin.get('/api/v1/dongles/gw-k/commands');
  assert.equal(recent.status, 200);
  assert.deepEqual(
    (recent.body.commands as { command_id: string }[]).map((c) => c.command_id),
    [second, cid],
  );
  assert.equal((recent.body.commands as { type: string }[])[0]!.type, 'send_frame');
  const one = await b.admin.get('/api/v1/dongles/gw-k/commands?limit=1');
  assert.deepEqual(
    (one.body.commands as { command_id: string }[]).map((c) => c.command_id),
    [second],
  );
  assert.equal((await b.admin.get('/api/v1/dongles/gw-k/commands?limit=0')).status, 400);
  assert.equal((await b.admin.get('/api/v1/dongles/nope/commands')).status, 404);

  const big = await b.admin.call('POST', '/api/v1/dongles/gw-k/commands', undefined, JSON.stringify({ type: 'send_frame', pad: 'x'.repeat(70 * 1024) }));
  assert.equal(big.status, 413, 'bodies are capped');
});

test('state survives a bridge restart on the same db file', async () => {
  const b1 = await bridge();
  const tokenA = await b1.admin.register('keep-a');
  await b1.admin.register('keep-b');
  await b1.admin.group('keep-g', 'keep-a', 'keep-b', { can0: 'can1' });
  const viewer = String((await b1.admin.post('/api/v1/viewer-tokens')).body.token);
  const cid = String((await b1.admin.post('/api/v1/dongles/keep-a/commands', { type: 'send_frame', bus: 'can0', id: '0x1', timeout_s: 600 })).body.command_id);
  const a = await agent(b1.base, { dongle: 'keep-a', token: tokenA, run: 'run-keep-0001' });
  await a.waitFor(() => a.ofType('command').length === 1, 5000, 'the queued command');
  a.sendEvent(1, 'log', { ts: new Date().toISOString(), level: 'info', message: 'hello from before the restart' });
  await a.waitFor(() => a.ackedEvents === 1, 5000, 'event ack');
  const c1 = await SseClient.connect(`${b1.base}/api/v1/streams/dongles/keep-a/console?access_token=${viewer}&backlog=100`);
  await c1.waitFor((ev) => ev.length > 0);
  const lastId = Number(c1.events.at(-1)!.id);
  c1.close();
  assert.equal(await b1.proc.stop('SIGTERM'), 0, 'SIGTERM: clean exit 0');
  await a.closed();

  const b2 = await bridge([], { db: b1.db });
  const d = await b2.admin.get('/api/v1/dongles/keep-a');
  assert.equal(d.status, 200);
  assert.equal(d.body.group, 'keep-g');
  assert.notEqual(d.body.last_seen, null);
  const g = await b2.admin.get('/api/v1/groups/keep-g');
  assert.deepEqual((g.body.sides as Record<string, { dongle: string }>).a.dongle, 'keep-a');
  const cmd = await b2.admin.get(`/api/v1/commands/${cid}`);
  assert.equal(cmd.body.status, 'sent');
  assert.deepEqual(
    (cmd.body.history as { status: string }[]).map((h) => h.status),
    ['queued', 'sent'],
  );
  // Tokens still work: the viewer reads, the agent connects, and the mirrored-event position is kept.
  const c2 = await SseClient.connect(`${b2.base}/api/v1/streams/dongles/keep-a/console?access_token=${viewer}`, { 'Last-Event-ID': String(lastId) });
  assert.equal(c2.status, 200);
  await c2.waitFor((ev) => ev.length > 0);
  assert.equal(c2.events[0]!.event, 'stream_reset', 'ids from the previous run are recognised');
  assert.equal(c2.events[0]!.json.reason, 'previous_run');
  assert.equal(c2.events[0]!.id, String(c2.events[0]!.json.latest), "the reset's id: is the latest id");
  // The restarted bridge's console ids are above every id of the first run (README: never reused).
  const cmdAfter = await b2.admin.post('/api/v1/dongles/keep-a/commands', { type: 'send_frame', bus: 'can0', id: '0x2', timeout_s: 600 });
  assert.equal(cmdAfter.status, 202);
  await c2.waitFor((ev) => ev.some((e) => e.id !== undefined && e.event === 'command_status'), 10_000, 'an event of the new run');
  const newIds = c2.events.filter((e) => e.id !== undefined).map((e) => Number(e.id));
  assert.ok(
    newIds.every((id) => id > lastId),
    `ids after the restart (${newIds.join(', ')}) are above the first run's last id ${lastId}`,
  );
  c2.close();
  const a2 = await agent(b2.base, { dongle: 'keep-a', token: tokenA, run: 'run-keep-0001' });
  assert.equal(a2.welcome!.event_ack, 1);
  assert.equal(a2.welcome!.group, 'keep-g');
  const h = await getJson(b2.base + '/healthz');
  assert.equal(h.body.status, 'ok');
  assert.equal(h.body.dongles, 2);
  assert.equal(h.body.agents_connected, 1);
});

test('a viewer token is refused (403) on every write of the admin API — every route of its table — and nothing changes', async () => {
  const b = await bridge();
  await b.admin.register('vw-a');
  await b.admin.register('vw-b');
  await b.admin.group('vw-g', 'vw-a', 'vw-b');
  const cid = String((await b.admin.post('/api/v1/dongles/vw-a/commands', { type: 'send_frame', bus: 'can0', id: '0x1', timeout_s: 600 })).body.command_id);
  const issued = await b.admin.post('/api/v1/viewer-tokens');
  const viewer = b.admin.withToken(String(issued.body.token));
  const state = async (): Promise<string> =>
    JSON.stringify(
      await Promise.all(
        ['/api/v1/dongles', '/api/v1/groups', '/api/v1/viewer-tokens', `/api/v1/commands/${cid}`, '/api/v1/dongles/vw-a/commands'].map(async (p) => (await b.admin.get(p)).body),
      ),
      (k, v: unknown) => (k === 'state' ? undefined : v),
    ); // a group's live state has its own clock
  const before = await state();
  // The routes as the bridge serves them (cloud-bridge/admin-api.ts): a route added later is covered too.
  const routes = new AdminApi({} as AdminDeps).routes;

  const writes: string[] = [];
  for (const r of routes) {
    for (const method of Object.keys(r.methods).filter((m) => m !== 'GET' && m !== 'HEAD')) {
      // An example path from the pattern: each parameter an existing id of its kind.
      let i = 0;
      const path = r.pattern.source
        .replace(/^\^|\$$/g, '')
        .replace(/\\\//g, '/')
        .replace(/\(\[\^\/\]\+\)/g, () => {
          const kind = r.params[i++] ?? '';
          return kind.startsWith('group') ? 'vw-g' : kind.startsWith('viewer') ? String(issued.body.id) : kind.startsWith('command') ? cid : 'vw-a';
        });
      assert.match(path, /^\/api\/v1\/[\w./-]+$/, `an example path for ${r.pattern.source}`);
      const body =
        method === 'PUT' && path.startsWith('/api/v1/groups/')
          ? { sides: { a: 'vw-b', b: 'vw-a' } }
          : method === 'POST' && path.endsWith('/commands')
            ? { type: 'send_frame', bus: 'can0', id: '0x2' }
            : undefined;
      const res = await viewer.call(method, path, body);
      assert.equal(res.status, 403, `${method} ${path} with a viewer token: ${res.status} ${JSON.stringify(res.body)}`);
      assert.match(String(res.body.error), /viewer token cannot use the admin API; use the admin token/);
      writes.push(`${method} ${path}`);
    }
  }

  // The table has the writes the README lists (a negative control for an empty or broken enumeration).
  for (const w of [
    'PUT /api/v1/dongles/vw-a',
    'DELETE /api/v1/dongles/vw-a',
    'POST /api/v1/dongles/vw-a/token',
    'POST /api/v1/dongles/vw-a/commands',
    'PUT /api/v1/groups/vw-g',
    'DELETE /api/v1/groups/vw-g',
    'POST /api/v1/viewer-tokens',
    `DELETE /api/v1/viewer-tokens/${String(issued.body.id)}`,
  ])
    assert.ok(writes.includes(w), `${w} was tried (tried: ${writes.join(', ')})`);
  assert.equal(await state(), before, 'nothing changed');
  // And the consoles take no writes at all, with any token.
  for (const path of ['/api/v1/streams/dongles/vw-a/console', '/api/v1/streams/groups/vw-g/console', '/api/v1/streams/fleet'])
    assert.equal((await viewer.call('POST', path)).status, 405, `POST ${path}`);
});
