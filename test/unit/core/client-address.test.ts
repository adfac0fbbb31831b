/**
 * core/net/client-address.ts, the one rule of the per-address caps: IPv4 (and IPv4-mapped IPv6) per
 * address, IPv6 per /64 except on the gateway's own networks (per address), link-local IPv6 per address;
 * and the console's ClientLimit, which counts by it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ClientLimit } from '../../../core/http/client-limit.js';
import { AllowList } from '../../../core/net/allow-list.js';
import { asIPv4, clientGroup, ClientGroupCounts, ownNetworks } from '../../../core/net/client-address.js';

test("client groups: IPv4 and IPv4-mapped per address, IPv6 by its /64 — per address on the gateway's own networks — link-local per address with its zone", () => {
  const cases: [string | undefined, string][] = [
    ['192.168.1.7', '192.168.1.7'],
    ['::ffff:192.168.1.7', '192.168.1.7'],
    ['::FFFF:10.0.0.5', '10.0.0.5'],
    ['::ffff:c0a8:107', '192.168.1.7'],
    ['2001:db8:1:2::1', '2001:db8:1:2::/64'],
    ['2001:db8:1:2:a1b2:c3d4:e5f6:789', '2001:db8:1:2::/64'],
    ['2001:0DB8:0001:0002:ffff:ffff:ffff:ffff', '2001:db8:1:2::/64'],
    ['2001:db8:1:3::1', '2001:db8:1:3::/64'],
    ['2001:db8::1', '2001:db8::/64'],
    ['2001:0:0:5::1', '2001:0:0:5::/64'],
    ['0:0:0:5::1', '0:0:0:5::/64'],
    ['fd00::1.2.3.4', 'fd00::/64'],
    ['64:ff9b::192.0.2.1', '64:ff9b::/64'],
    ['::1', '::/64'],
    ['fe80::1%eth0', 'fe80::1%eth0'],
    ['fe80::2%eth0', 'fe80::2%eth0'],
    ['FE80::1%eth1', 'fe80::1%eth1'],
    ['febf::1', 'febf::1'],
    ['not an address', 'not an address'],
    [undefined, ''],
  ];
  for (const [remote, group] of cases) assert.equal(clientGroup(remote, new Set()), group, String(remote));
  // A network of the gateway's own (its LAN, where every host has an address of one /64): per address.
  const own = new Set(['2001:db8:1:2::/64']);
  assert.equal(clientGroup('2001:db8:1:2:a1b2:c3d4:e5f6:789', own), '2001:db8:1:2:a1b2:c3d4:e5f6:789');
  assert.equal(clientGroup('2001:0DB8:0001:0002:0:0:0:1', own), '2001:db8:1:2::1', 'one text per address');
  assert.equal(clientGroup('2001:db8:1:3::1', own), '2001:db8:1:3::/64', 'another network: by its /64');
  assert.equal(asIPv4('::ffff:1.2.3.4'), '1.2.3.4');
  assert.equal(asIPv4('::ffff:1.2.3.400'), undefined);
  assert.equal(asIPv4('2001:db8::1'), undefined);
});

test('the allow-list matches an IPv4-mapped client as IPv4, an IPv6 one as IPv6', () => {
  const a = AllowList.parse('192.168.1.0/24,2001:db8:1::/48');
  assert.equal(a.allows('::ffff:192.168.1.9'), true);
  assert.equal(a.allows('192.168.2.9'), false);
  assert.equal(a.allows('2001:db8:1:2::9'), true);
  assert.equal(a.allows('2001:db8:2::9'), false);
});

test('ClientGroupCounts forgets a group whose clients all left', () => {
  const c = new ClientGroupCounts();
  c.add('a');
  c.add('a');
  c.release('a');
  assert.equal(c.count('a'), 1);
  c.release('a');
  c.release('a');
  assert.equal(c.count('a'), 0);
});

test("the console's per-address cap counts an IPv6 host's privacy addresses as one: its /64", () => {
  const limit = new ClientLimit({
    full: 'the console is full',
    daemon: 'agent',
    flag: 'console-max-clients',
    max: 64,
    perAddress: { flag: 'console-max-clients-per-address', max: 3 },
  });
  // One host, a new temporary address for each connection.
  for (let i = 1; i <= 3; i++) assert.equal(limit.tryAdd(`2001:db8:1:2:${i.toString(16)}::9`), undefined, `client ${i}`);
  assert.match(limit.tryAdd('2001:db8:1:2:ffff::9') ?? '', /^too many clients from 2001:db8:1:2::\/64: 3 are connected \(the agent's --console-max-clients-per-address\)/);
  assert.equal(limit.tryAdd('2001:db8:1:3::9'), undefined, 'another /64 is another host');
  // IPv4 stays per address, whether it arrives plain or mapped by a dual-stack listener.
  for (let i = 1; i <= 3; i++) assert.equal(limit.tryAdd(i % 2 === 0 ? '10.0.0.1' : '::ffff:10.0.0.1'), undefined);
  assert.match(limit.tryAdd('10.0.0.1') ?? '', /^too many clients from 10\.0\.0\.1: 3/);
  assert.equal(limit.tryAdd('10.0.0.2'), undefined);
  // Link-local: every host of the link is in fe80::/64, so each address counts on its own.
  for (let i = 1; i <= 4; i++) assert.equal(limit.tryAdd(`fe80::${i}%eth0`), undefined, `link-local host ${i}`);
  assert.equal(limit.refused, 2);
  // A leaving client frees its group's place, whichever of its addresses it came from.
  limit.release('2001:db8:1:2:2::9');
  assert.equal(limit.tryAdd('2001:db8:1:2:abcd::1'), undefined);
  assert.equal(limit.count, 3 + 1 + 3 + 1 + 4);
});

test("the gateway's own networks are read from its interfaces: the /64 of each IPv6 address of a prefix of /64 or wider", () => {
  const own = ownNetworks();
  for (const p of own) assert.match(p, /^[0-9a-f:]+\/64$/);
  // This machine's loopback ::1 is a /128: not a network of hosts.
  assert.equal(own.has('::/64'), false);
});
