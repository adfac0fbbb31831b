// Build of the console web page: compiles web/src with web/tsconfig.json (tsc from node_modules) into
// dist/web, then copies the static files (index.html, fleet.html, style.css, favicon.svg) next to the scripts, and
// uPlot (the signal chart) into dist/web/vendor/uplot.
// Usage: node web/build.mjs
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const out = join(root, 'dist', 'web');
const STATIC = ['index.html', 'fleet.html', 'style.css', 'favicon.svg'];

// Start from an empty folder: the agent serves every file under dist/web, so nothing stale may linger.
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const tsc = join(root, 'node_modules', '.bin', 'tsc');
const r = spawnSync(tsc, ['-p', join(here, 'tsconfig.json')], { stdio: 'inherit' });
if (r.status !== 0) process.exit(r.status ?? 1);
for (const f of STATIC) copyFileSync(join(here, f), join(out, f));
// The chart library ships inside the package (no CDN): uPlot's ES module, its CSS and its licence.
const uplot = join(root, 'node_modules', 'uplot');
mkdirSync(join(out, 'vendor', 'uplot'), { recursive: true });
for (const [from, to] of [['dist/uPlot.esm.js', 'uPlot.esm.js'], ['dist/uPlot.min.css', 'uPlot.min.css'], ['LICENSE', 'LICENSE']]) {
  copyFileSync(join(uplot, from), join(out, 'vendor', 'uplot', to));
}
