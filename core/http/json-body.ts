/**
 * Request bodies of the HTTP APIs (the bridge's admin API, the agent's recordings): small JSON documents.
 * The one place that enforces their size and shape before any handler sees them:
 *  - at most MAX_BODY_BYTES, whether the size is declared (Content-Length, answered before reading),
 *    chunked (answered as soon as the cap is passed) or announced with `Expect: 100-continue`
 *    (answered instead of the 100);
 *  - the rest of an over-size body is read and discarded, bounded in bytes and time, so the client
 *    reads the 413 instead of a connection reset (closing a socket with unread data resets it);
 *  - keys that name object internals (`__proto__`, `constructor`, `prototype`) are refused: parsed into
 *    a plain object they would silently vanish or change its prototype.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import { HttpError } from './http-error.js';
import { sendJson } from './replies.js';

export const MAX_BODY_BYTES = 64 * 1024;
/** How much of a refused body is read and discarded before the connection is cut. */
const DISCARD_MAX_BYTES = 64 * 1024 * 1024;
const DISCARD_MAX_MS = 30_000;
const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

export { HttpError };

const tooLarge = (): HttpError => new HttpError(413, `request body over ${MAX_BODY_BYTES / 1024} KiB; requests here are small JSON documents`);

function declaredTooLarge(req: IncomingMessage): boolean {
  const declared = Number(req.headers['content-length'] ?? 0);
  return Number.isFinite(declared) && declared > MAX_BODY_BYTES;
}

/**
 * The server's `checkContinue` handler: a body declared over the cap is refused before the client sends
 * it; any other request gets its 100 and goes to `handle`.
 */
export function answerExpectContinue(req: IncomingMessage, res: ServerResponse, handle: (req: IncomingMessage, res: ServerResponse) => void): void {
  if (declaredTooLarge(req)) {
    sendJson(res, 413, { error: tooLarge().message }, { Connection: 'close' });
    return;
  }
  res.writeContinue();
  handle(req, res);
}

/** Reads a JSON body of at most MAX_BODY_BYTES (undefined when empty). Throws HttpError 413 or 400. */
export async function readJson(req: IncomingMessage): Promise<unknown> {
  if (declaredTooLarge(req)) throw tooLarge();
  const body = await new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        done();
        reject(tooLarge());
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      done();
      resolve(Buffer.concat(chunks));
    };
    const onError = (err: Error): void => {
      done();
      reject(new HttpError(400, `could not read the request body: ${err.message}`));
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
  const text = body.toString('utf8');
  if (text.trim() === '') return undefined;
  try {
    return JSON.parse(text, (key, value: unknown) => {
      if (FORBIDDEN_KEYS.has(key)) throw new HttpError(400, `the key ${JSON.stringify(key)} is not allowed in a request body`);
      return value;
    }) as unknown;
  } catch (err) {
    if (err instanceof HttpError) throw err;
    throw new HttpError(400, `body is not valid JSON: ${(err as Error).message}`);
  }
}

/**
 * Reads and throws away what is left of a request body after an early answer, so the connection stays
 * usable and the client sees the answer; a body beyond DISCARD_MAX_BYTES or DISCARD_MAX_MS is cut off.
 */
export function discardBody(req: IncomingMessage): void {
  if (req.complete || req.destroyed) return;
  let size = 0;
  const timer = setTimeout(() => req.destroy(), DISCARD_MAX_MS);
  timer.unref();
  req.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (size > DISCARD_MAX_BYTES) req.destroy();
  });
  req.once('close', () => clearTimeout(timer));
  req.resume();
}

/** Checks a parsed body with zod: 400 with the reason. */
export function parseWith<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const r = schema.safeParse(value);
  if (!r.success)
    throw new HttpError(
      400,
      `bad ${what}: ${z
        .prettifyError(r.error)
        .replace(/\s*\n\s*/g, ' ')
        .slice(0, 400)}`,
    );
  return r.data;
}
