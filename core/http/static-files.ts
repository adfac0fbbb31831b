/**
 * Serves the console web page from a folder shipped in the package (no CDN: gateways' LANs are often
 * offline). Only files directly known at start are served, so no path from a request reaches the disk.
 * No page may be framed by another site.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join, relative, sep } from 'node:path';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.map': 'application/json',
  '.json': 'application/json',
};

export class StaticFiles {
  private readonly files = new Map<string, { body: Buffer; type: string }>();

  constructor(root: string) {
    const walk = (dir: string): void => {
      for (const name of readdirSync(dir)) {
        const full = join(dir, name);
        if (statSync(full).isDirectory()) walk(full);
        else {
          const ext = name.slice(name.lastIndexOf('.'));
          const type = TYPES[ext];
          if (type) this.files.set('/' + relative(root, full).split(sep).join('/'), { body: readFileSync(full), type });
        }
      }
    };
    walk(root);
  }

  get size(): number {
    return this.files.size;
  }

  /** Serves `path` if it is one of the files; returns false (and writes nothing) otherwise. */
  async serve(req: IncomingMessage, res: ServerResponse, path: string): Promise<boolean> {
    const f = this.files.get(path);
    if (!f) return false;
    res.writeHead(200, {
      'Content-Type': f.type,
      'Content-Length': f.body.length,
      'Cache-Control': 'no-cache',
      'X-Content-Type-Options': 'nosniff',
      // No other site may frame the pages: framed invisibly, the console's Send and Delete buttons could be
      // clicked by a visitor who thinks they are clicking something else (clickjacking). Nothing frames
      // them on purpose. CSP frame-ancestors for current browsers, X-Frame-Options for older ones.
      'Content-Security-Policy': "frame-ancestors 'none'",
      'X-Frame-Options': 'DENY',
    });
    res.end(req.method === 'HEAD' ? undefined : f.body);
    return true;
  }
}
