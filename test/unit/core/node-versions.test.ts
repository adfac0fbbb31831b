/**
 * The Node.js versions canrelay declares: package.json `engines` and the README say the same, the
 * node running this suite is one of them (the suite runs on Debian's Node 20 and, through
 * `make test-node24`, on the packages' Node 24), and Node 24 is what the amd64/arm64 packages carry.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { engines: { node: string } };

/** `^a.b.c || ^d.e.f …` → the minimum version per major line (the only form `engines` uses here). */
function lines(range: string): Map<number, [number, number]> {
  const out = new Map<number, [number, number]>();
  for (const part of range.split('||').map((s) => s.trim())) {
    const m = /^\^(\d+)\.(\d+)\.(\d+)$/.exec(part);
    assert.ok(m, `engines part ${JSON.stringify(part)} is ^major.minor.patch`);
    out.set(Number(m[1]), [Number(m[2]), Number(m[3])]);
  }
  return out;
}

// package-lock.json's copy of the root `engines` is rewritten by the next `npm install`; it is not
// edited by hand, so that this change does not make every checkout's `make` run `npm ci` again.
test('engines declares Node 20, 22 and 24, and the README says the same', () => {
  const range = pkg.engines.node;
  assert.deepEqual([...lines(range).keys()], [20, 22, 24]);
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  assert.ok(readme.includes(`\`engines\`: \`${range}\``), `README states the engines range ${range}`);
});

test('the node running the tests is a declared version', () => {
  const [major, minor, patch] = process.versions.node.split('.').map(Number) as [number, number, number];
  const min = lines(pkg.engines.node).get(major);
  assert.ok(min, `Node ${process.version} is not declared in engines (${pkg.engines.node})`);
  assert.ok(minor > min[0] || (minor === min[0] && patch >= min[1]), `Node ${process.version} is below ${major}.${min[0]}.${min[1]}`);
});

test('the packages carry a declared Node (packaging/targets.sh)', () => {
  const targets = readFileSync(join(ROOT, 'packaging/targets.sh'), 'utf8');
  const declared = lines(pkg.engines.node);
  for (const m of targets.matchAll(/NODE_VERSION=(\d+)\.(\d+)\.(\d+)/g)) {
    const min = declared.get(Number(m[1]));
    assert.ok(min, `packaging/targets.sh carries Node ${m[1]}.${m[2]}.${m[3]}, not declared in engines`);
    assert.ok(Number(m[2]) > min[0] || (Number(m[2]) === min[0] && Number(m[3]) >= min[1]), `Node ${m[0]} below the engines minimum`);
  }
});
