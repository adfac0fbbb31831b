/**
 * cloud-bridge/link-arbiter.ts: a silent link may be taken over, a healthy one keeps the dongle; a
 * takeover is counted only once carried out (in a cluster a takeover verdict can still lose the lease to
 * another node's write, and the newcomer is refused: CI saw the metric count one takeover twice).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { LinkArbiter } from '../../../cloud-bridge/link-arbiter.js';
import { BridgeStats } from '../../../cloud-bridge/metrics.js';
import type { BridgeConsoles } from '../../../cloud-bridge/consoles.js';

function arbiter(): { a: LinkArbiter; stats: BridgeStats; announced: unknown[] } {
  const stats = new BridgeStats();
  const announced: unknown[] = [];
  const consoles = { dongleEvent: (_d: string, e: unknown) => void announced.push(e) } as unknown as BridgeConsoles;
  return { a: new LinkArbiter(1000, consoles, stats, pino({ level: 'silent' })), stats, announced };
}

test('no current link: accepted; a healthy one: the newcomer refused and announced; a silent one: takeover', () => {
  const { a, stats, announced } = arbiter();
  assert.equal(a.decide('d', undefined, undefined), 'accept');
  assert.equal(a.decide('d', { silentMs: 1999 }, '10.0.0.2'), 'refuse');
  assert.equal(announced.length, 1, 'the refusal is told on the console');
  assert.equal(a.decide('d', { silentMs: 2000 }, '10.0.0.2'), 'takeover');
  assert.equal(stats.takeovers, 0, 'a verdict alone is not a takeover');
});

test('a takeover verdict whose claim is then lost and retried counts once, when carried out', () => {
  const { a, stats } = arbiter();
  assert.equal(a.decide('d', { silentMs: 2500 }, undefined), 'takeover'); // the lease went to another write: refused
  assert.equal(a.decide('d', { silentMs: 3500 }, undefined), 'takeover'); // the retry wins
  a.tookOver('d', undefined);
  assert.equal(stats.takeovers, 1);
});
