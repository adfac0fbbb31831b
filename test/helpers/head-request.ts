/**
 * HEAD against GET for the same URL, for the download routes: a HEAD is sent over a raw socket (a client
 * library would hide body bytes that should not be there) and must answer the status and the headers the
 * GET answers — Content-Length, Content-Type, Content-Disposition, Cache-Control, and ETag / Last-Modified
 * when the GET has them — with nothing after the header block.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';

export interface RawHead {
  status: number;
  headers: Map<string, string>;
  /** Bytes the server sent after the header block (a HEAD must send none). */
  trailing: number;
}

/** Sends `HEAD <url>` with `Connection: close` and reads until the server closes. */
export function rawHead(url: string, headers: Record<string, string> = {}): Promise<RawHead> {
  const u = new URL(url);
  const lines = [`HEAD ${u.pathname}${u.search} HTTP/1.1`, `Host: ${u.host}`, 'Connection: close', ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
  return new Promise((resolve, reject) => {
    const s = connect(Number(u.port), u.hostname, () => s.write(`${lines.join('\r\n')}\r\n\r\n`));
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`HEAD ${url}: no end within 10 s`));
    }, 10_000);
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', reject);
    s.on('close', () => {
      clearTimeout(timer);
      const all = Buffer.concat(chunks);
      const end = all.indexOf('\r\n\r\n');
      if (end < 0) return reject(new Error(`HEAD ${url}: no whole header block: ${JSON.stringify(all.toString('latin1').slice(0, 200))}`));
      const [statusLine, ...fields] = all.subarray(0, end).toString('latin1').split('\r\n');
      const map = new Map<string, string>();
      for (const f of fields) {
        const i = f.indexOf(':');
        map.set(f.slice(0, i).trim().toLowerCase(), f.slice(i + 1).trim());
      }
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine ?? '')?.[1] ?? 0), headers: map, trailing: all.length - end - 4 });
    });
  });
}

const SAME = ['content-length', 'content-type', 'content-disposition', 'cache-control', 'etag', 'last-modified'];

/** GETs `url` (its body read whole), HEADs it, and asserts the same status and headers and no HEAD body; returns the GET's body. */
export async function assertHeadLikeGet(url: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Headers; body: Buffer }> {
  const got = await fetch(url, { headers });
  const body = Buffer.from(await got.arrayBuffer());
  const head = await rawHead(url, headers);
  assert.equal(head.status, got.status, `HEAD ${url}: the GET's status`);
  for (const h of SAME) assert.equal(head.headers.get(h) ?? null, got.headers.get(h), `HEAD ${url}: ${h} as the GET's`);
  if (got.status === 200) assert.equal(Number(head.headers.get('content-length')), body.length, 'Content-Length is the size of the GET body');
  assert.equal(head.trailing, 0, `HEAD ${url}: no body`);
  return { status: got.status, headers: got.headers, body };
}
