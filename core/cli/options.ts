/**
 * Command-line options described once, as data: the same table drives commander's flags and help, the
 * JSON config file (`--config`, keys = long flag names), environment fallbacks, validation and the
 * masked printout of `--check-config`. A bad value is one clear line naming the flag, and exit code 2.
 */

export type OptionValue = string | number | boolean | string[];

export interface OptionSpec<T extends OptionValue = OptionValue> {
  /** Long flag name without dashes, e.g. "console-max-rate"; also the config file key. */
  name: string;
  /** Placeholder for the flag's argument ("<n>"); absent for boolean flags. */
  arg?: string;
  description: string;
  /** Validates and converts the raw text (or the JSON value of a config file). Throws OptionError. */
  parse: (raw: unknown) => T;
  default?: T | (() => T | undefined);
  /** Environment variables read when neither flag nor file sets it. */
  env?: string[];
  /** Masked in printouts; such options should also be settable from the environment or a file. */
  secret?: boolean;
  /** The flag may be given more than once (a config file gives a JSON array); `parse` gets the list. */
  repeatable?: boolean;
}

export class OptionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OptionError';
  }
}

export type ResolvedOptions = Record<string, OptionValue | undefined>;

/** Resolution order: command line, then the config file, then the environment, then the default. */
export function resolveOptions(specs: readonly OptionSpec[], cli: Record<string, unknown>, file: Record<string, unknown>, env: NodeJS.ProcessEnv): ResolvedOptions {
  const known = new Set(specs.map((s) => s.name));
  for (const key of Object.keys(file)) {
    if (!known.has(key)) throw new OptionError(`config file: unknown key "${key}" (keys are the long flag names, e.g. "console-max-rate")`);
  }
  const out: ResolvedOptions = {};
  for (const spec of specs) {
    let raw: unknown;
    let where: string;
    if (cli[spec.name] !== undefined) {
      raw = cli[spec.name];
      where = `--${spec.name}`;
    } else if (file[spec.name] !== undefined) {
      raw = file[spec.name];
      where = `config file key "${spec.name}"`;
      if (spec.arg === undefined && typeof raw !== 'boolean') throw new OptionError(`${where}: must be true or false, got ${JSON.stringify(raw)}`);
      if (spec.repeatable && Array.isArray(raw)) {
        if (!raw.every((x) => typeof x === 'string')) throw new OptionError(`${where}: must be a string or an array of strings`);
      } else if (spec.arg !== undefined && typeof raw !== 'string' && typeof raw !== 'number')
        throw new OptionError(`${where}: must be a string or number, got ${JSON.stringify(raw)}`);
      // JSON has types: a count is a number (200, not "200"), a name or path is a string.
      const json = (spec.parse as { json?: 'number' | 'string' }).json;
      if (json !== undefined && spec.arg !== undefined && !Array.isArray(raw) && typeof raw !== json)
        throw new OptionError(`${where}: must be a JSON ${json}, got ${JSON.stringify(raw)}`);
    } else {
      const envName = spec.env?.find((e) => env[e] !== undefined && env[e] !== '');
      if (envName !== undefined) {
        raw = env[envName];
        where = `environment variable ${envName}`;
      } else {
        const d = typeof spec.default === 'function' ? spec.default() : spec.default;
        out[spec.name] = d;
        continue;
      }
    }
    try {
      out[spec.name] = spec.parse(raw);
    } catch (err) {
      if (err instanceof OptionError) throw new OptionError(`${where}: ${err.message}`);
      throw err;
    }
  }
  return out;
}

/** The effective configuration as a config file would hold it, secrets masked. */
export function describeOptions(specs: readonly OptionSpec[], values: ResolvedOptions): Record<string, OptionValue> {
  const out: Record<string, OptionValue> = {};
  for (const spec of specs) {
    const v = values[spec.name];
    if (v === undefined) continue;
    out[spec.name] = spec.secret ? '********' : v;
  }
  return out;
}

// ---- parsers ----

/** Marks what JSON type a config file must use for the option (flags and environment are always text). */
function json<F extends (raw: unknown) => unknown>(type: 'number' | 'string', fn: F): F & { json: 'number' | 'string' } {
  return Object.assign(fn, { json: type });
}

export const parse = {
  string(pattern?: RegExp, what?: string) {
    return json('string', (raw: unknown): string => {
      const s = String(raw);
      if (pattern && !pattern.test(s)) throw new OptionError(`${what ?? 'invalid value'}, got ${JSON.stringify(s.slice(0, 80))}`);
      return s;
    });
  },
  int(min: number, max: number) {
    return json('number', (raw: unknown): number => {
      const s = String(raw).trim();
      const n = /^-?\d+$/.test(s) ? Number(s) : NaN;
      if (!Number.isSafeInteger(n) || n < min || n > max) throw new OptionError(`must be an integer from ${min} to ${max}, got ${JSON.stringify(String(raw).slice(0, 40))}`);
      return n;
    });
  },
  number(min: number, max: number) {
    return json('number', (raw: unknown): number => {
      const s = String(raw).trim();
      const n = s === '' ? NaN : Number(s);
      if (!Number.isFinite(n) || n < min || n > max) throw new OptionError(`must be a number from ${min} to ${max}, got ${JSON.stringify(String(raw).slice(0, 40))}`);
      return n;
    });
  },
  bool() {
    return (raw: unknown): boolean => {
      if (raw === true || raw === 'true' || raw === '1' || raw === 'yes') return true;
      if (raw === false || raw === 'false' || raw === '0' || raw === 'no') return false;
      throw new OptionError(`must be true or false, got ${JSON.stringify(String(raw).slice(0, 40))}`);
    };
  },
  oneOf<T extends string>(values: readonly T[]) {
    return json('string', (raw: unknown): T => {
      const s = String(raw);
      if (!(values as readonly string[]).includes(s)) throw new OptionError(`must be one of ${values.join(', ')}, got ${JSON.stringify(s.slice(0, 40))}`);
      return s as T;
    });
  },
  /** "host:port", "[::1]:port" or ":port"; port 0 picks a free one. */
  hostPort() {
    return json('string', (raw: unknown): string => {
      const s = String(raw);
      const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]*):(\d{1,5})$/.exec(s);
      if (!m || Number(m[2]) > 65535) throw new OptionError(`must be host:port (e.g. 0.0.0.0:8080, [::1]:8080, :0), got ${JSON.stringify(s.slice(0, 80))}`);
      return s;
    });
  },
  /** For a repeatable option: each value (flag, or element of a config file's array) checked by `item`. */
  list(item: (raw: unknown) => string) {
    return (raw: unknown): string[] => (Array.isArray(raw) ? raw : [raw]).map((x) => item(x));
  },
  url(protocols: readonly string[]) {
    return json('string', (raw: unknown): string => {
      const s = String(raw);
      let u: URL;
      try {
        u = new URL(s);
      } catch {
        throw new OptionError(`must be a URL like ${protocols[0]}//host:port, got ${JSON.stringify(s.slice(0, 80))}`);
      }
      if (!protocols.includes(u.protocol)) throw new OptionError(`must use ${protocols.join(' or ')}, got ${u.protocol}`);
      return s.replace(/\/+$/, '');
    });
  },
  /** A duration in whole seconds: "604800", or with a unit "45s", "30m", "12h", "7d" (a JSON number or string). */
  seconds(min: number, max: number) {
    return (raw: unknown): number => {
      const m = /^(\d+)\s*([smhd]?)$/.exec(String(raw).trim());
      const n = m ? Number(m[1]) * { '': 1, s: 1, m: 60, h: 3600, d: 86_400 }[m[2] as '' | 's' | 'm' | 'h' | 'd'] : NaN;
      if (!Number.isSafeInteger(n) || n < min || n > max)
        throw new OptionError(`must be seconds from ${min} to ${max}, or a number with s, m, h or d (e.g. 7d), got ${JSON.stringify(String(raw).slice(0, 40))}`);
      return n;
    };
  },
};

export function splitHostPort(hp: string): { host: string; port: number } {
  const i = hp.lastIndexOf(':');
  let host = hp.slice(0, i);
  if (host.startsWith('[')) host = host.slice(1, -1);
  return { host: host === '' ? '0.0.0.0' : host, port: Number(hp.slice(i + 1)) };
}
