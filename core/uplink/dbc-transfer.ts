/**
 * How an agent's DBC files reach the bridge, so the bridge's dongle and group consoles show the same
 * decoded signals as the agent's own console. Frames travel as compact binary batches (frame-codec.ts)
 * and stay undecoded on the wire; the bridge decodes, with the agent's own files and the same decoder
 * (core/can/dbc-decode.ts), only the frames its console sampler lets through.
 *
 * The files (JSON: [{bus, file, text}]) are cut into `dbc` text messages small enough for the uplink's
 * 64 KiB limit, numbered by generation: a new generation (a reload, a reconnect) replaces any partial
 * earlier one. The agent sends them only to a bridge whose welcome lists the `dbc` feature.
 */
import { z } from 'zod';
import { BUS_RULE } from '../names.js';

/** Characters of the JSON text per message: even if every one were escaped as \u00XX it stays < 64 KiB. */
export const DBC_CHUNK_CHARS = 8 * 1024;
/** Bounds what one agent can make the bridge hold: 16 MiB of DBC text in at most 2,048 parts. */
export const MAX_DBC_PARTS = 2048;
export const MAX_DBC_TOTAL_CHARS = 16 * 1024 * 1024;

export const DbcChunkMessage = z.strictObject({
  t: z.literal('dbc'),
  gen: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  part: z
    .number()
    .int()
    .min(0)
    .max(MAX_DBC_PARTS - 1),
  parts: z.number().int().min(1).max(MAX_DBC_PARTS),
  chunk: z.string().max(DBC_CHUNK_CHARS),
});
export type DbcChunkMessage = z.infer<typeof DbcChunkMessage>;

const DbcFileList = z.array(z.strictObject({ bus: z.string().regex(BUS_RULE).nullable(), file: z.string().min(1).max(1000), text: z.string() })).max(64);
export type DbcUpload = z.infer<typeof DbcFileList>[number];

/**
 * The messages that carry `files`. An empty list is one message: "the agent has no DBC now". A set over
 * the bridge's bound (MAX_DBC_TOTAL_CHARS as JSON: escaping makes it longer than the files) goes as an
 * empty set, with why in `refused`: sent whole, the bridge would refuse every part and close the link,
 * again at every reconnect, and nothing would be relayed.
 */
export function dbcChunks(files: readonly DbcUpload[], gen: number): { messages: DbcChunkMessage[]; refused?: string } {
  const json = JSON.stringify(files);
  if (json.length > MAX_DBC_TOTAL_CHARS) {
    return {
      messages: dbcChunks([], gen).messages,
      refused: `the DBC files are ${json.length} characters as sent, over the bridge's ${MAX_DBC_TOTAL_CHARS}: the bridge's consoles show this dongle's frames undecoded`,
    };
  }
  const parts = Math.max(1, Math.ceil(json.length / DBC_CHUNK_CHARS));
  const out: DbcChunkMessage[] = [];
  for (let i = 0; i < parts; i++) out.push({ t: 'dbc', gen, part: i, parts, chunk: json.slice(i * DBC_CHUNK_CHARS, (i + 1) * DBC_CHUNK_CHARS) });
  return { messages: out };
}

export type AssembleResult = { state: 'partial' } | { state: 'done'; files: DbcUpload[] } | { state: 'error'; error: string };

/** Bridge side, one per link: collects the parts of the current generation, in order. */
export class DbcAssembler {
  private gen = -1;
  private chunks: string[] = [];
  private parts = 0;
  private chars = 0;

  push(m: DbcChunkMessage): AssembleResult {
    if (m.gen !== this.gen || m.part === 0) {
      this.gen = m.gen;
      this.chunks = [];
      this.parts = m.parts;
      this.chars = 0;
    }
    if (m.part !== this.chunks.length || m.parts !== this.parts) return this.fail(`DBC part ${m.part}/${m.parts} of generation ${m.gen} out of order`);
    this.chars += m.chunk.length;
    if (this.chars > MAX_DBC_TOTAL_CHARS) return this.fail(`DBC files over ${MAX_DBC_TOTAL_CHARS} characters`);
    this.chunks.push(m.chunk);
    if (this.chunks.length < this.parts) return { state: 'partial' };
    const text = this.chunks.join('');
    this.chunks = [];
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      return this.fail('DBC files are not valid JSON');
    }
    const r = DbcFileList.safeParse(json);
    if (!r.success) return this.fail(`bad DBC file list: ${z.prettifyError(r.error).slice(0, 200)}`);
    return { state: 'done', files: r.data };
  }

  private fail(error: string): AssembleResult {
    this.chunks = [];
    this.gen = -1;
    return { state: 'error', error };
  }
}
