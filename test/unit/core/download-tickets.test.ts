/** core/http/download-tickets.ts: a signed ticket opens its one path for a minute, on every node with the key, and names its holder. */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { DownloadTickets, TICKET_PARAM, TICKET_TTL_MS } from '../../../core/http/download-tickets.js';

const at = (url: string): URL => new URL(url, 'http://gw');

test('a ticket opens its own path until it ends, and nothing else', () => {
  let now = 1_800_000_000_000;
  const t = new DownloadTickets(randomBytes(32), () => now);
  const { url, expires_in_s } = t.issue('/api/v1/recordings/r1', 'v1');
  assert.equal(expires_in_s, TICKET_TTL_MS / 1000);
  assert.match(url, new RegExp(`^/api/v1/recordings/r1\\?${TICKET_PARAM}=\\d+\\.v1\\.[A-Za-z0-9_-]{43}$`));
  assert.equal(t.holderOf(at(url)), 'v1');
  assert.equal(t.holderOf(at(url.replace('/r1?', '/r2?'))), undefined, 'another recording');
  assert.equal(t.holderOf(at('/api/v1/recordings/r1')), undefined, 'no ticket');
  const ticket = at(url).searchParams.get(TICKET_PARAM)!;
  const [end, holder, mac] = ticket.split('.') as [string, string, string];
  assert.equal(t.holderOf(at(`/api/v1/recordings/r1?ticket=${Number(end) + 1000}.${holder}.${mac}`)), undefined, 'a later end than signed');
  assert.equal(t.holderOf(at(`/api/v1/recordings/r1?ticket=${end}.admin.${mac}`)), undefined, 'another holder than signed');
  const flipped = (mac[0] === 'A' ? 'B' : 'A') + mac.slice(1);
  assert.equal(t.holderOf(at(`/api/v1/recordings/r1?ticket=${end}.${holder}.${flipped}`)), undefined, 'a changed signature');
  assert.equal(t.holderOf(at(`/api/v1/recordings/r1?ticket=${end}.${holder}.${mac}x`)), undefined, 'a malformed one');
  assert.equal(t.holderOf(at(`/api/v1/recordings/r1?ticket=${end}.${mac}`)), undefined, 'the former format (no holder)');
  assert.throws(() => t.issue('/x', 'A token?'), /holder/, 'a holder is an id, never a token');
  now += TICKET_TTL_MS - 1;
  assert.equal(t.holderOf(at(url)), 'v1', 'still within the minute (a resumed download)');
  now += 1;
  assert.equal(t.holderOf(at(url)), undefined, 'ended');
});

test('a ticket is admitted by another node with the same key, not by one with another key', () => {
  const key = randomBytes(32);
  const url = at(new DownloadTickets(key).issue('/api/v1/dongles/gw1/recordings/r1', 'admin').url);
  assert.equal(new DownloadTickets(Buffer.from(key)).holderOf(url), 'admin');
  assert.equal(new DownloadTickets(randomBytes(32)).holderOf(url), undefined);
  // Issued by a node whose clock is a little ahead (50 ms, or a few seconds): admitted at once by the others.
  for (const ahead of [50, 4000]) {
    const issued = new DownloadTickets(key, () => Date.now() + ahead).issue('/y', 'admin').url;
    assert.equal(new DownloadTickets(key).holderOf(at(issued)), 'admin', `a node ${ahead} ms ahead`);
  }
  // A ticket signed with the key but ending far beyond a minute from now (a node whose clock ran ahead, or
  // one made to last) is refused: no ticket lives longer than TICKET_TTL_MS on the admitting node.
  const ahead = new DownloadTickets(key, () => Date.now() + 10 * TICKET_TTL_MS).issue('/x', 'admin').url;
  assert.equal(new DownloadTickets(key).holderOf(at(ahead)), undefined);
});
