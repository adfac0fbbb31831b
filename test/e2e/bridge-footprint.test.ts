/**
 * A bridge on SQLite (one process, no cluster) never loads the PostgreSQL driver or NATS: they were ~13 MB
 * of its RSS (docs/benchmarks.md, "Fourth round"), and a single static import brings them back without any
 * other symptom. Same module hook as the agent's footprint test; the second test shows the check can fail.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startBridgeProcess } from '../helpers/bridge-process.js';
import { packages, traceModules } from '../helpers/module-trace.js';
import { runCli, startAgentProcess } from '../helpers/processes.js';

test('a bridge on SQLite relaying a group loads neither the PostgreSQL driver nor NATS (cluster mode only)', async () => {
  const trace = traceModules();
  const b = await startBridgeProcess([], { env: trace.env });
  const agents: Awaited<ReturnType<typeof startAgentProcess>>[] = [];
  try {
    for (const id of ['fp-a', 'fp-b']) {
      const token = await b.admin.register(id);
      agents.push(await startAgentProcess(['--sim', '--sim-rate', '50', '--bridge', b.base, '--token', token], { id }));
    }
    assert.equal((await b.admin.group('fp-g', 'fp-a', 'fp-b')).status, 201);
    for (const a of agents) await a.proc.waitForLog((l) => l.msg === 'uplink connected');
    const urls = trace.loaded();
    assert.ok(
      urls.some((u) => u.endsWith('/dist/cloud-bridge/bridge.js')),
      'the hook saw the bridge load',
    );
    const pkgs = packages(urls);
    assert.ok(pkgs.has('ws') && pkgs.has('better-sqlite3'), `the hook sees the bridge's packages: ${[...pkgs].join(', ')}`);
    assert.equal(pkgs.has('pg'), false, 'pg was loaded');
    assert.equal(pkgs.has('nats'), false, 'nats was loaded');
  } finally {
    for (const a of agents) assert.equal(await a.proc.stop(), 0);
    await b.proc.stop();
  }
});

test('a bridge given a PostgreSQL URL loads the driver (the check above can fail)', async () => {
  const trace = traceModules();
  // Nothing listens on port 1: the bridge loads pg, cannot connect, and stops with an error.
  const p = runCli(['bridge', '--listen', '127.0.0.1:0', '--db', 'postgres://canrelay@127.0.0.1:1/none'], { CANRELAY_ADMIN_TOKEN: 'x'.repeat(43), ...trace.env });
  const code = await p.wait();
  assert.notEqual(code, 0, `the bridge cannot start without its database: ${p.stderr.slice(-300)}`);
  assert.ok(packages(trace.loaded()).has('pg'), 'pg loaded for a postgres:// --db');
});
