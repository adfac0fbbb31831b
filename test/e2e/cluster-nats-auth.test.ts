/**
 * A bridge node on a NATS server that requires a user and password (real nats-server --user/--pass): the
 * user in the --cluster URL and the password from CANRELAY_NATS_PASSWORD connect; a wrong or missing
 * password is one clear line at start, and the password is never printed.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startBridgeProcess } from '../helpers/bridge-process.js';
import { ensureNatsServer, NatsServer } from '../helpers/nats.js';
import { PostgresServer } from '../helpers/postgres.js';
import { runCli } from '../helpers/processes.js';
import { getJson } from '../helpers/sse-client.js';

const PASSWORD = 'nats-secret-0123456789';
let nats: NatsServer;
let pgServer: PostgresServer;
before(async () => {
  ensureNatsServer();
  nats = await NatsServer.start(['--user', 'canrelay', '--pass', PASSWORD]);
  pgServer = await PostgresServer.start();
});
after(async () => {
  await nats?.stop();
  await pgServer?.stop();
});

const userUrl = (): string => nats.url.replace('nats://', 'nats://canrelay@');

test('the NATS user in the --cluster URL with its password from CANRELAY_NATS_PASSWORD: the node connects; the password is masked', async () => {
  const db = await pgServer.createDatabase();
  const n = await startBridgeProcess(['--cluster', userUrl(), '--node-id', 'auth1'], { db, env: { CANRELAY_NATS_PASSWORD: PASSWORD } });
  try {
    const h = (await getJson(n.base + '/healthz')).body as { cluster: { nats: string } };
    assert.equal(h.cluster.nats, 'reachable');
    assert.ok(!n.proc.stdout.includes(PASSWORD) && !n.proc.stderr.includes(PASSWORD), 'the password is in no log line');
  } finally {
    await n.proc.stop();
  }
  const check = runCli(['bridge', '--db', db, '--cluster', userUrl(), '--node-id', 'auth1', '--check-config'], {
    CANRELAY_NATS_PASSWORD: PASSWORD,
    CANRELAY_ADMIN_TOKEN: 'admin-token-0123456789abcdef',
  });
  assert.equal(await check.wait(), 0, check.stderr);
  assert.equal((JSON.parse(check.stdout) as Record<string, unknown>)['cluster-password'], '********');
});

test('a wrong or missing NATS password: the node does not start, one line says why', async () => {
  const db = await pgServer.createDatabase();
  const env = { CANRELAY_ADMIN_TOKEN: 'admin-token-0123456789abcdef' };
  const wrong = runCli(['bridge', '--listen', '127.0.0.1:0', '--db', db, '--cluster', userUrl(), '--node-id', 'auth2'], { ...env, CANRELAY_NATS_PASSWORD: 'not-it' });
  assert.equal(await wrong.wait(), 2, 'a refused password is configuration: exit 2, which systemd does not restart');
  assert.match(
    wrong.stdout + wrong.stderr,
    /cannot reach NATS at nats:\/\/127\.0\.0\.1:\d+: 'Authorization Violation'; check the NATS user in the --cluster URL .* and its password/,
  );
  assert.ok(!(wrong.stdout + wrong.stderr).includes('not-it'), 'the password is not printed');
  const missing = runCli(['bridge', '--listen', '127.0.0.1:0', '--db', db, '--cluster', userUrl(), '--node-id', 'auth2', '--check-config'], { ...env, CANRELAY_NATS_PASSWORD: '' });
  assert.equal(await missing.wait(), 2);
  assert.match(missing.stderr, /--cluster names the NATS user "canrelay": give its password in CANRELAY_NATS_PASSWORD/);
});
