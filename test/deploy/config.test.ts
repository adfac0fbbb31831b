/**
 * The configuration file end to end, through the real CLI (`node dist/cli.js agent|bridge --config …`):
 * keys = long flag names, flags override the file, the environment is the fallback, secrets never
 * printed, unknown keys / wrong JSON types / out-of-range values → one line naming the key, exit 2.
 * Also: the shipped example configs are valid and docs/deployment.md documents every key.
 */
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { AGENT_OPTIONS } from '../../agent/options.js';
import { BRIDGE_OPTIONS } from '../../cloud-bridge/options.js';
import { REPO } from '../helpers/deploy.js';
import { runCli, startAgentProcess, tempDir as makeTempDir } from '../helpers/processes.js';

const made: string[] = [];
function tempDir(prefix: string): string {
  const d = makeTempDir(prefix);
  made.push(d);
  return d;
}
after(() => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

const TOKEN = 'agent-token-0123456789abcdef';
const ADMIN = 'admin-token-0123456789abcdef';

async function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = runCli(args, { CANRELAY_TOKEN: '', CANRELAY_ADMIN_TOKEN: '', STATE_DIRECTORY: '', ...env });
  const code = await p.wait();
  return { code, stdout: p.stdout, stderr: p.stderr };
}

function writeJson(dir: string, name: string, obj: unknown): string {
  const p = join(dir, name);
  writeFileSync(p, typeof obj === 'string' ? obj : JSON.stringify(obj, null, 2));
  return p;
}

test('agent --config: file values apply, flags override the file, the environment fills the rest', async () => {
  const dir = tempDir('canrelay-cfg-');
  const cfg = writeJson(dir, 'agent.json', {
    id: 'gw-17',
    sim: true,
    'sim-rate': 500,
    listen: '127.0.0.1:0',
    'console-max-rate': 123,
    'history-events': 500,
    'state-dir': join(dir, 'state'),
    'log-level': 'warn',
  });
  const r = await cli(['agent', '--config', cfg, '--console-max-rate', '77', '--check-config'], { CANRELAY_TOKEN: TOKEN });
  assert.equal(r.code, 0, r.stderr);
  const eff = JSON.parse(r.stdout) as Record<string, unknown>;
  assert.equal(eff.id, 'gw-17');
  assert.equal(eff.sim, true);
  assert.equal(eff['sim-rate'], 500);
  assert.equal(eff['console-max-rate'], 77, 'the flag wins over the file');
  assert.equal(eff['history-events'], 500);
  assert.equal(eff['history-seconds'], 60, 'defaults fill what neither sets');
  assert.equal(eff['log-level'], 'warn');
  assert.equal(eff['state-dir'], join(dir, 'state'));
  // CANRELAY_TOKEN without --bridge: allowed (a shared environment), masked.
  assert.equal(eff.token, '********');
  assert.ok(!r.stdout.includes(TOKEN), 'the token is never printed');
});

test('agent --config: the default state dir is $STATE_DIRECTORY (what systemd sets from StateDirectory=)', async () => {
  const dir = tempDir('canrelay-cfg-');
  const cfg = writeJson(dir, 'agent.json', { id: 'gw-1', sim: true });
  const r = await cli(['agent', '--config', cfg, '--check-config'], { STATE_DIRECTORY: '/var/lib/canrelay/agent' });
  assert.equal(r.code, 0, r.stderr);
  assert.equal((JSON.parse(r.stdout) as Record<string, unknown>)['state-dir'], '/var/lib/canrelay/agent');
});

test('agent --config: secrets from the file, the environment or a token file are masked', async () => {
  const dir = tempDir('canrelay-cfg-');
  const tokenFile = join(dir, 'agent.token');
  writeFileSync(tokenFile, TOKEN + '\n', { mode: 0o600 });
  for (const [label, file, env] of [
    ['token in the file', { token: TOKEN }, {}],
    ['CANRELAY_TOKEN', {}, { CANRELAY_TOKEN: TOKEN }],
    ['token-file', { 'token-file': tokenFile }, {}],
  ] as const) {
    const cfg = writeJson(dir, 'agent.json', { id: 'gw-1', sim: true, bridge: 'https://bridge.example.com/', ...file });
    const r = await cli(['agent', '--config', cfg, '--check-config'], env);
    assert.equal(r.code, 0, `${label}: ${r.stderr}`);
    assert.ok(!r.stdout.includes(TOKEN) && !r.stderr.includes(TOKEN), `${label}: token printed`);
    const eff = JSON.parse(r.stdout) as Record<string, unknown>;
    assert.equal(eff.bridge, 'https://bridge.example.com', label);
    if (label === 'token-file') assert.equal(eff['token-file'], tokenFile);
    else assert.equal(eff.token, '********', label);
  }
  // A bridge without any token is a configuration error, not a run without uplink.
  const cfg = writeJson(dir, 'agent.json', { id: 'gw-1', sim: true, bridge: 'https://bridge.example.com' });
  const r = await cli(['agent', '--config', cfg, '--check-config']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /token/);
});

test('agent --config: bad files are rejected with the key and the reason, one line, exit 2', async () => {
  const dir = tempDir('canrelay-cfg-');
  const cases: Array<[string, unknown, RegExp]> = [
    ['unknown key', { id: 'gw-1', sim: true, 'console-max-rat': 200 }, /unknown key "console-max-rat"/],
    ['string for a number', { id: 'gw-1', sim: true, 'console-max-rate': '200' }, /"console-max-rate".*JSON number/],
    ['word for a number', { id: 'gw-1', sim: true, 'history-events': 'lots' }, /"history-events"/],
    ['number for a string', { id: 17, sim: true }, /"id".*JSON string/],
    ['string for a boolean', { id: 'gw-1', sim: 'yes' }, /"sim".*true or false/],
    ['array', { id: 'gw-1', can: ['can0', 'can1'] }, /"can"/],
    ['null', { id: 'gw-1', sim: true, listen: null }, /"listen"/],
    ['out of range (low)', { id: 'gw-1', sim: true, 'console-max-rate': 0 }, /"console-max-rate".*from 1 to/],
    ['out of range (high)', { id: 'gw-1', sim: true, 'history-seconds': 100_000 }, /"history-seconds".*from 1 to 86400/],
    ['fraction for an integer', { id: 'gw-1', sim: true, 'keepalive-seconds': 1.5 }, /"keepalive-seconds"/],
    ['bad port', { id: 'gw-1', sim: true, listen: '0.0.0.0:99999' }, /"listen".*host:port/],
    ['bad id', { id: 'gw 17!', sim: true }, /"id"/],
    ['bad log level', { id: 'gw-1', sim: true, 'log-level': 'loud' }, /"log-level".*one of/],
    ['bad bridge URL', { id: 'gw-1', sim: true, bridge: 'ftp://x', token: TOKEN }, /"bridge"/],
    ['two sources', { id: 'gw-1', sim: true, can: 'can0' }, /one CAN source/],
    ['not JSON', '{"id": "gw-1", sim: true}', /not valid JSON/],
    ['not an object', '["id"]', /JSON object/],
  ];
  for (const [label, content, re] of cases) {
    const cfg = writeJson(dir, 'bad.json', content);
    const r = await cli(['agent', '--config', cfg, '--check-config']);
    assert.equal(r.code, 2, `${label}: exit ${r.code}, stderr ${r.stderr}`);
    assert.match(r.stderr, re, label);
    assert.equal(r.stderr.trim().split('\n').length, 1, `${label}: one line, got ${JSON.stringify(r.stderr)}`);
    assert.equal(r.stdout, '', `${label}: nothing on stdout`);
  }
  const missing = await cli(['agent', '--config', join(dir, 'nope.json'), '--check-config']);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /cannot read .*nope\.json.*ENOENT/);
});

test('agent --config: the same file starts the agent (not only --check-config)', async () => {
  const dir = tempDir('canrelay-cfg-');
  const cfg = writeJson(dir, 'agent.json', { sim: true, 'sim-rate': 200, 'console-max-rate': 50, 'log-level': 'info' });
  const a = await startAgentProcess(['--config', cfg], { id: 'cfg-gw' });
  try {
    const m = await fetch(`${a.base}/metrics`).then((r) => r.text());
    assert.match(m, /canrelay_/);
    assert.match(a.url, /\/api\/v1\/streams\/dongles\/cfg-gw\/console$/);
  } finally {
    assert.equal(await a.proc.stop(), 0);
  }
});

test('the shipped example configs are valid and use only real keys', async () => {
  const dir = tempDir('canrelay-cfg-');
  const tokenFile = join(dir, 'agent.token');
  writeFileSync(tokenFile, TOKEN + '\n');
  const agentExample = JSON.parse(readFileSync(join(REPO, 'systemd/agent.example.json'), 'utf8')) as Record<string, unknown>;
  const agentNames = new Set(AGENT_OPTIONS.map((o) => o.name));
  for (const k of Object.keys(agentExample)) assert.ok(agentNames.has(k), `agent.example.json: unknown key ${k}`);
  // As shipped, except the token paths (the real ones are /etc/canrelay/agent.token and local-tokens).
  const localTokens = join(dir, 'local-tokens');
  writeFileSync(localTokens, 'admin cfg-test-admin-0123456789abcdef\nread cfg-test-read-0123456789abcdef\n');
  // The example listens on the LAN: its local API must not be open to writes from it.
  assert.equal(agentExample['local-token-file'], '/etc/canrelay/local-tokens');
  const cfg = writeJson(dir, 'agent.json', { ...agentExample, 'token-file': tokenFile, 'local-token-file': localTokens });
  const r = await cli(['agent', '--config', cfg, '--check-config']);
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stdout, /cfg-test-admin|cfg-test-read/, 'the local tokens are not printed');
  const eff = JSON.parse(r.stdout) as Record<string, unknown>;
  for (const [k, v] of Object.entries(agentExample)) if (k !== 'token-file' && k !== 'local-token-file') assert.deepEqual(eff[k], v, `agent key ${k}`);

  const bridgeExample = JSON.parse(readFileSync(join(REPO, 'systemd/bridge.example.json'), 'utf8')) as Record<string, unknown>;
  const bridgeNames = new Set(BRIDGE_OPTIONS.map((o) => o.name));
  for (const k of Object.keys(bridgeExample)) assert.ok(bridgeNames.has(k), `bridge.example.json: unknown key ${k}`);
  const adminFile = join(dir, 'admin.token');
  writeFileSync(adminFile, ADMIN + '\n');
  const bcfg = writeJson(dir, 'bridge.json', { ...bridgeExample, 'admin-token-file': adminFile });
  const b = await cli(['bridge', '--config', bcfg, '--check-config']);
  assert.equal(b.code, 0, `bridge --check-config: ${b.stderr}`);
  assert.ok(!b.stdout.includes(ADMIN), 'admin token printed');
  const beff = JSON.parse(b.stdout) as Record<string, unknown>;
  for (const [k, v] of Object.entries(bridgeExample)) if (k !== 'admin-token-file') assert.deepEqual(beff[k], v, `bridge key ${k}`);
});

test('bridge --config: unknown keys and bad values exit 2 naming the key; the admin token is masked', async () => {
  const dir = tempDir('canrelay-cfg-');
  const bad = writeJson(dir, 'bridge.json', { listen: '127.0.0.1:0', 'admin-tokn': ADMIN });
  let r = await cli(['bridge', '--config', bad, '--check-config']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /unknown key "admin-tokn"/);
  const range = writeJson(dir, 'bridge.json', { listen: '127.0.0.1:0', 'backlog-max-age-ms': 0 });
  r = await cli(['bridge', '--config', range, '--check-config'], { CANRELAY_ADMIN_TOKEN: ADMIN });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /"backlog-max-age-ms"/);
  const ok = writeJson(dir, 'bridge.json', { listen: '127.0.0.1:0', db: join(dir, 'b.sqlite') });
  r = await cli(['bridge', '--config', ok, '--check-config', '--listen', '127.0.0.1:9999'], { CANRELAY_ADMIN_TOKEN: ADMIN });
  assert.equal(r.code, 0, r.stderr);
  const eff = JSON.parse(r.stdout) as Record<string, unknown>;
  assert.equal(eff.listen, '127.0.0.1:9999', 'the flag wins');
  assert.equal(eff['admin-token'], '********');
  assert.ok(!r.stdout.includes(ADMIN));
});

test('docs/deployment.md documents every configuration key of agent and bridge', () => {
  const doc = readFileSync(join(REPO, 'docs/deployment.md'), 'utf8');
  for (const o of [...AGENT_OPTIONS, ...BRIDGE_OPTIONS]) assert.ok(doc.includes(`\`${o.name}\``), `docs/deployment.md does not mention \`${o.name}\``);
});

test('agent bridge URLs: comma-separated, repeated, a config array or CANRELAY_BRIDGE; each URL checked, the bad one named', async () => {
  const dir = tempDir('canrelay-cfg-');
  const [u1, u2, u3] = ['https://n1.example.com', 'https://n2.example.com:8443', 'http://10.0.0.3:8080'];
  const effective = async (args: string[], env: NodeJS.ProcessEnv = {}): Promise<unknown> => {
    const r = await cli(['agent', '--sim', ...args, '--check-config'], { CANRELAY_TOKEN: TOKEN, ...env });
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as Record<string, unknown>).bridge;
  };
  // --check-config prints the list as one comma-separated string, in the order the agent tries them.
  assert.equal(await effective(['--bridge', u1]), u1, 'one URL');
  assert.equal(await effective(['--bridge', `${u1}, ${u2},${u3}/`]), `${u1},${u2},${u3}`, 'comma-separated (spaces and a trailing slash tolerated)');
  assert.equal(await effective(['--bridge', u1, '--bridge', `${u2},${u3}`]), `${u1},${u2},${u3}`, 'repeated, mixed with commas');
  assert.equal(await effective(['--config', writeJson(dir, 'a.json', { bridge: [u2, u1] })]), `${u2},${u1}`, 'a config file array');
  assert.equal(await effective(['--config', writeJson(dir, 'b.json', { bridge: `${u3},${u1}` })]), `${u3},${u1}`, 'a config file string with commas');
  assert.equal(await effective([], { CANRELAY_BRIDGE: `${u1},${u2}` }), `${u1},${u2}`, 'the environment');
  assert.equal(await effective(['--bridge', u3], { CANRELAY_BRIDGE: u1 }), u3, 'the flag wins over the environment');
  const bad: Array<[string[], RegExp]> = [
    [['--bridge', `${u1},ftp://x`], /--bridge: URL 2 of 2 "ftp:\/\/x": must use http: or https:/],
    [['--bridge', `${u1},`], /--bridge: URL 2 of 2 is empty/],
    [['--bridge', u1, '--bridge', 'n2.example.com'], /--bridge: URL 2 of 2 "n2.example.com": must be a URL/],
    [['--bridge', `${u1},${u1}/`], /--bridge: .*given twice/],
    [['--config', writeJson(dir, 'c.json', { bridge: [u1, 7] })], /config file key "bridge": must be a string or an array of strings/],
  ];
  for (const [args, re] of bad) {
    const r = await cli(['agent', '--sim', ...args, '--check-config'], { CANRELAY_TOKEN: TOKEN });
    assert.equal(r.code, 2, `${args.join(' ')}: exit ${r.code}, stderr ${r.stderr}`);
    assert.match(r.stderr, re, args.join(' '));
    assert.equal(r.stderr.trim().split('\n').length, 1, 'one line');
  }
});
