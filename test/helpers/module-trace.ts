/** Which modules a canrelay process loads: a resolve hook (node:module register) lists every URL it resolves (the footprint tests). */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './processes.js';

/** Writes a preload that registers a resolve hook appending every resolved URL to `list`. */
export function traceModules(): { env: NodeJS.ProcessEnv; loaded: () => string[] } {
  const dir = tempDir('canrelay-footprint-');
  const list = join(dir, 'modules.txt');
  writeFileSync(list, '');
  writeFileSync(
    join(dir, 'hooks.mjs'),
    `import { appendFileSync } from 'node:fs';
export async function resolve(spec, ctx, next) {
  const r = await next(spec, ctx);
  appendFileSync(${JSON.stringify(list)}, r.url + '\\n');
  return r;
}
`,
  );
  writeFileSync(join(dir, 'trace.mjs'), `import { register } from 'node:module';\nregister(${JSON.stringify('file://' + join(dir, 'hooks.mjs'))});\n`);
  return { env: { NODE_OPTIONS: `--import=${join(dir, 'trace.mjs')}` }, loaded: () => readFileSync(list, 'utf8').split('\n').filter(Boolean) };
}

export const packages = (urls: string[]): Set<string> =>
  new Set(urls.map((u) => /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(u)?.[1]).filter((p): p is string => p !== undefined));
