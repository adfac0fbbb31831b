// Build of the console web page: compiles web/src (and the browser-safe core/ files web/tsconfig.json
// lists) with tsc from node_modules into build/web/, then lays the result out in dist/web/: the page's
// scripts at the top (dist/web/main.js, fleet-main.js, views/…, state/…), the core files under
// dist/web/core/, the static files (index.html, fleet.html, style.css, favicon.svg) next to them, and
// uPlot (the signal chart) in dist/web/vendor/uplot.
// Usage: node web/build.mjs
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const out = join(root, 'dist', 'web');
const staging = join(root, 'build', 'web');
const STATIC = ['index.html', 'fleet.html', 'style.css', 'favicon.svg'];

// Start from empty folders: the agent serves every file under dist/web, so nothing stale may linger; the
// build info goes too, or tsc would find its (deleted) output up to date and emit nothing.
rmSync(out, { recursive: true, force: true });
rmSync(staging, { recursive: true, force: true });
rmSync(join(root, 'build', 'tsbuildinfo', 'web.tsbuildinfo'), { force: true });
mkdirSync(out, { recursive: true });
const tsc = join(root, 'node_modules', '.bin', 'tsc');
const r = spawnSync(tsc, ['-p', join(here, 'tsconfig.json')], { stdio: 'inherit' });
if (r.status !== 0) process.exit(r.status ?? 1);

/** Every file under dir, as paths relative to it. */
function walk(dir, sub = '') {
  return readdirSync(join(dir, sub), { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(dir, join(sub, e.name)) : [join(sub, e.name)]));
}

/**
 * Copies one compiled file from the staging tree to dist/web. The page's own files move up two levels
 * (web/src/x.js → x.js), so their relative imports of core (`../../core/…` from web/src/) are rewritten to
 * the same files at their new place (`./core/…`); source maps keep pointing at the sources.
 */
function place(from, to, depthInSrc) {
  let text = readFileSync(from, 'utf8');
  if (from.endsWith('.js') && depthInSrc !== undefined) {
    const before = '../'.repeat(depthInSrc + 2) + 'core/';
    const after = (depthInSrc === 0 ? './' : '../'.repeat(depthInSrc)) + 'core/';
    text = text.replaceAll(`'${before}`, `'${after}`).replaceAll(`"${before}`, `"${after}`);
  } else if (from.endsWith('.js.map')) {
    const map = JSON.parse(text);
    map.sources = map.sources.map((s) => relative(dirname(to), resolve(dirname(from), s)));
    text = JSON.stringify(map);
  }
  mkdirSync(dirname(to), { recursive: true });
  writeFileSync(to, text);
}

const pageOut = join(staging, 'web', 'src');
for (const f of walk(pageOut)) place(join(pageOut, f), join(out, f), f.split('/').length - 1);
const coreOut = join(staging, 'core');
for (const f of walk(coreOut)) place(join(coreOut, f), join(out, 'core', f));

for (const f of STATIC) copyFileSync(join(here, f), join(out, f));
// The chart library ships inside the package (no CDN): uPlot's ES module, its CSS and its licence.
const uplot = join(root, 'node_modules', 'uplot');
mkdirSync(join(out, 'vendor', 'uplot'), { recursive: true });
for (const [from, to] of [
  ['dist/uPlot.esm.js', 'uPlot.esm.js'],
  ['dist/uPlot.min.css', 'uPlot.min.css'],
  ['LICENSE', 'LICENSE'],
]) {
  copyFileSync(join(uplot, from), join(out, 'vendor', 'uplot', to));
}
