/**
 * The static files of the console and fleet pages (core/http/static-files.ts, served by the agent and the
 * bridge): the pages as built in dist/web, with the headers that keep another site from framing them.
 */
import { strict as assert } from 'node:assert';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { StaticFiles } from '../../../core/http/static-files.js';

const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));

/** serve() writes only writeHead and end: a response that records them. */
async function serve(files: StaticFiles, path: string, method = 'GET'): Promise<{ served: boolean; status: number; headers: Record<string, string | number> }> {
  const got = { status: 0, headers: {} as Record<string, string | number> };
  const res = {
    writeHead(status: number, headers: Record<string, string | number>) {
      got.status = status;
      got.headers = headers;
      return res;
    },
    end() {},
  };
  const served = await files.serve({ method } as IncomingMessage, res as unknown as ServerResponse, path);
  return { served, ...got };
}

test('the pages may not be framed by another site: CSP frame-ancestors none and X-Frame-Options DENY', async () => {
  const files = new StaticFiles(join(ROOT, 'dist', 'web'));
  for (const path of ['/index.html', '/fleet.html', '/main.js', '/style.css']) {
    const r = await serve(files, path);
    assert.equal(r.status, 200, `${path} is served`);
    assert.equal(r.headers['Content-Security-Policy'], "frame-ancestors 'none'", path);
    assert.equal(r.headers['X-Frame-Options'], 'DENY', path);
    assert.equal(r.headers['X-Content-Type-Options'], 'nosniff', path);
  }
  assert.equal((await serve(files, '/index.html', 'HEAD')).headers['X-Frame-Options'], 'DENY', 'HEAD too');
  assert.equal((await serve(files, '/nope.html')).served, false, 'an unknown path is not served');
});
