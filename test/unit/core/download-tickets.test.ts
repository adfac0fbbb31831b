/** core/http/download-tickets.ts: a signed ticket opens its one path for a minute, on every node with the key. */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { DownloadTickets, TICKET_PARAM, TICKET_TTL_MS } from '../../../core/http/download-tickets.js';

const at = (url: string): URL => new URL(url, 'http://gw');

test('a ticket opens its own path until it ends, and nothing else', () => {
  let now = 1_800_000_000_000;
  const t = new DownloadTickets(randomBytes(32), () => now);
  const { url, expires_in_s } = t.issue('/api/v1/recordings/r1');
  assert.equal(expires_in_s, TICKET_TTL_MS / 1000);
  assert.match(url, new RegExp(`^/api/v1/recordings/r1\\?${TICKET_PARAM}=\\d+\\.[A-Za-z0-9_-]{43}$`));
  assert.equal(t.admits(at(url)), true);
  assert.equal(t.admits(at(url.replace('/r1?', '/r2?'))), false, 'another recording');
  assert.equal(t.admits(at('/api/v1/recordings/r1')), false, 'no ticket');
  const ticket = at(url).searchParams.get(TICKET_PARAM)!;
  const [end, mac] = ticket.split('.') as [string, string];
  assert.equal(t.admits(at(`/api/v1/recordings/r1?ticket=${Number(end) + 1000}.${mac}`)), false, 'a later end than signed');
  const flipped = (mac[0] === 'A' ? 'B' : 'A') + mac.slice(1);
  assert.equal(t.admits(at(`/api/v1/recordings/r1?ticket=${end}.${flipped}`)), false, 'a changed signature');
  assert.equal(t.admits(at(`/api/v1/recordings/r1?ticket=${end}.${mac}x`)), false, 'a malformed one');
  now += TICKET_TTL_MS - 1;
  assert.equal(t.admits(at(url)), true, 'still within the minute (a resumed download)');
  now += 1;
  assert.equal(t.admits(at(url)), false, 'ended');
});

test('a ticket is admitted by another node with the same key, not by one with another key', () => {
  const key = randomBytes(32);
  const url = at(new DownloadTickets(key).issue('/api/v1/dongles/gw1/recordings/r1').url);
  assert.equal(new DownloadTickets(Buffer.from(key)).admits(url), true);
  assert.equal(new DownloadTickets(randomBytes(32)).admits(url), false);
  // Issued by a node whose clock is a little ahead (50 ms, or a few seconds): admitted at once by the others.
  for (const ahead of [50, 4000]) {
    const issued = new DownloadTickets(key, () => Date.now() + ahead).issue('/y').url;
    assert.equal(new DownloadTickets(key).admits(at(issued)), true, `a node ${ahead} ms ahead`);
  }
  // A ticket signed with the key but ending far beyond a minute from now (a node whose clock ran ahead, or
  // one made to last) is refused: no ticket lives longer than TICKET_TTL_MS on the admitting node.
  const ahead = new DownloadTickets(key, () => Date.now() + 10 * TICKET_TTL_MS).issue('/x').url;
  assert.equal(new DownloadTickets(key).admits(at(ahead)), false);
});
