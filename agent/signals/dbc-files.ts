/**
 * The agent's `--dbc` files: reads and parses them at start and on every reload (SIGHUP,
 * `POST /api/v1/dbc/reload`). A file that cannot be read or parsed is reported (file and line) and
 * never stops the agent: on a reload its last good version stays in use, so a half-saved edit loses
 * nothing already decoding; at start the agent runs without it.
 */
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { DbcParseError, type DbcDatabase } from '../../core/can/dbc-parse.js';
import { parseUsableDbc, SignalDecoder } from '../../core/can/dbc-decode.js';
import type { DbcUpload } from '../../core/uplink/dbc-transfer.js';
import { splitBusPrefix } from '../../core/names.js';

/** Largest DBC accepted: real ones are well under 2 MiB; a bigger file is most likely the wrong file. */
const MAX_DBC_BYTES = 16 * 1024 * 1024;

export interface DbcSpec {
  /** undefined: every bus. */
  bus: string | undefined;
  file: string;
}

/** "can1=powertrain.dbc" binds the file to can1; "powertrain.dbc" applies to every bus. */
export function parseDbcSpec(spec: string): DbcSpec {
  const { bus, value } = splitBusPrefix(spec);
  return { bus, file: value };
}

export interface DbcFileStatus {
  file: string;
  bus: string | null;
  /** Messages in use from this file (0 when it never loaded). */
  messages: number;
  /** Unusable statements skipped (file:line: …). */
  warnings: string[];
  /** Set when the last load failed; `messages` then counts the previous good version, if any. */
  error?: string;
  loaded_at?: string;
}

export interface DbcLoadResult {
  decoder: SignalDecoder | undefined;
  files: DbcFileStatus[];
  errors: string[];
}

export class DbcFiles {
  private readonly good = new Map<string, { db: DbcDatabase; at: string; text: string }>();
  readonly specs: DbcSpec[];
  last: DbcLoadResult = { decoder: undefined, files: [], errors: [] };

  constructor(specs: readonly string[]) {
    this.specs = specs.map(parseDbcSpec);
  }

  inUse(): Array<{ bus: string | undefined; file: string; text: string }> {
    const out: Array<{ bus: string | undefined; file: string; text: string }> = [];
    for (const spec of this.specs) {
      const g = this.good.get(`${spec.bus ?? ''}=${spec.file}`);
      if (g !== undefined) out.push({ bus: spec.bus, file: spec.file, text: g.text });
    }
    return out;
  }

  /** Reads every file again. Never throws: failures are in `errors` (and `files[].error`). */
  async load(): Promise<DbcLoadResult> {
    const files: DbcFileStatus[] = [];
    const errors: string[] = [];
    const bound: Array<{ bus: string | undefined; db: DbcDatabase }> = [];
    for (const spec of this.specs) {
      const key = `${spec.bus ?? ''}=${spec.file}`;
      let error: string | undefined;
      try {
        const text = await readDbcText(spec.file);
        this.good.set(key, { db: parseUsableDbc(text, spec.file), at: new Date().toISOString(), text });
      } catch (err) {
        error = err instanceof DbcParseError ? err.message : `${spec.file}: ${(err as Error).message}`;
        const kept = this.good.has(key) ? ' (its previous version stays in use)' : '';
        errors.push(`DBC not loaded: ${error}${kept}; fix the file and reload (SIGHUP or POST /api/v1/dbc/reload)`);
      }
      const g = this.good.get(key);
      if (g !== undefined) bound.push({ bus: spec.bus, db: g.db });
      // A copy: the decoder's warnings are added to it below, and the kept version's own list must not grow
      // with them at every reload.
      const st: DbcFileStatus = { file: spec.file, bus: spec.bus ?? null, messages: g?.db.messages.length ?? 0, warnings: [...(g?.db.warnings ?? [])] };
      if (error !== undefined) st.error = error;
      if (g !== undefined) st.loaded_at = g.at;
      files.push(st);
    }
    let decoder: SignalDecoder | undefined;
    try {
      decoder = bound.length > 0 ? new SignalDecoder(bound) : undefined;
    } catch (err) {
      // A database that parses but cannot be compiled (a multiplexer loop): keep what decoded before.
      errors.push(`DBC not used: ${(err as Error).message}; fix the file and reload`);
      decoder = this.last.decoder;
    }
    for (const w of decoder?.warnings ?? []) files.find((f) => w.startsWith(f.file + ':'))?.warnings.push(w);
    this.last = { decoder, files, errors };
    return this.last;
  }
}

/** The texts of the files in use (last good versions), for the bridge (core/uplink/dbc-transfer.ts). */
export function dbcUploads(files: DbcFiles): DbcUpload[] {
  return files.inUse().map((g) => ({ bus: g.bus ?? null, file: g.file, text: g.text }));
}

async function readDbcText(file: string): Promise<string> {
  // Looked at before it is read: a huge file, /dev/zero or a FIFO must not fill memory or hang every reload.
  const fh = await open(file, constants.O_RDONLY | constants.O_NONBLOCK);
  let buf: Buffer;
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new Error('is not a regular file');
    if (st.size > MAX_DBC_BYTES) throw new Error(`is ${st.size} bytes; a DBC file over ${MAX_DBC_BYTES} bytes is not accepted`);
    buf = await fh.readFile();
  } finally {
    await fh.close();
  }
  if (buf.length > MAX_DBC_BYTES) throw new Error(`is ${buf.length} bytes; a DBC file over ${MAX_DBC_BYTES} bytes is not accepted`);
  // DBC files are often Windows-1252 (Vector's tools write it; cantools reads it so), UTF-8 where it is valid.
  const utf8 = buf.toString('utf8');
  return utf8.includes('\uFFFD') ? windows1252(buf) : utf8;
}

/**
 * Windows-1252: Latin-1 but for 0x80-0x9F, where it has ‰, €, – and the like (Latin-1 has control
 * characters there; Node's TextDecoder('windows-1252') gives those too). The five bytes it leaves
 * undefined stay as Latin-1 has them.
 */
const CP1252_80_9F = '€\u0081‚ƒ„…†‡ˆ‰Š‹Œ\u008DŽ\u008F\u0090‘’“”•–—˜™š›œ\u009DžŸ';
function windows1252(buf: Buffer): string {
  const latin1 = buf.toString('latin1');
  return /[\u0080-\u009f]/.test(latin1) ? latin1.replace(/[\u0080-\u009f]/g, (c) => CP1252_80_9F[c.charCodeAt(0) - 0x80]!) : latin1;
}
