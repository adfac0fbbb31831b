/** What a native addon that cannot load is told as (core/native-addon.ts): the cause an operator can act on. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EXIT_BROKEN_INSTALL } from '../../../core/cli/exit-codes.js';
import { addonLoadError, addonLoadMessage } from '../../../core/native-addon.js';

test('an addon built on a newer system (a C library version not found) is told as such, not as "another Node.js"', () => {
  const err = new Error(
    "/lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.34' not found (required by /opt/canrelay/0.1.0/node_modules/better-sqlite3/build/Release/better_sqlite3.node)",
  );
  const m = addonLoadMessage(err, 'better-sqlite3');
  assert.match(m, /better_sqlite3\.node needs GLIBC_2\.34/);
  assert.match(m, /for a newer system; install the package for this architecture on a supported system/);
  assert.doesNotMatch(m, /another Node\.js|npm rebuild/);
});

test('an addon built for another Node.js ABI is told as such, with both module versions', () => {
  const err = new Error(
    "The module '/x/better_sqlite3.node'\nwas compiled against a different Node.js version using\nNODE_MODULE_VERSION 115. This version of Node.js requires\nNODE_MODULE_VERSION 137. Please try re-compiling",
  );
  const m = addonLoadMessage(err, 'better-sqlite3');
  assert.match(m, /built for NODE_MODULE_VERSION 115, this Node\.js v[\d.]+ needs 137/);
  assert.match(m, /reinstall the canrelay package built for this system/);
});

test('a missing addon is a broken installation too, named with its package and how to rebuild it', () => {
  const err = Object.assign(new Error("Cannot find module '../build/Release/can_signals.node'\nRequire stack:\n- /x/socketcan/dist/socketcan.js"), { code: 'MODULE_NOT_FOUND' });
  const e = addonLoadError(err, 'socketcan');
  assert.equal(e.exitCode, EXIT_BROKEN_INSTALL);
  assert.equal(
    e.message,
    "cannot load the native addon socketcan (Cannot find module '../build/Release/can_signals.node'): reinstall the canrelay package built for this system and its Node.js (from a source tree: npm rebuild socketcan)",
  );
});
