/**
 * Prometheus series filled at scrape time. The hot paths count in plain numbers and maps; these helpers
 * copy them into the registry only when /metrics is read, so counting a frame costs an increment.
 *
 * A family here is not a prom-client Counter or Gauge but a plain metric object that lists its series
 * as they are now, once per scrape, and renders its own text (ScrapedRegistry). prom-client's `inc`/`set`
 * hash and validate every label set and its renderer allocates per series: at fleet shape (per-dongle
 * and per-group series, ~22,000 at 2,000 dongles) a scrape held the bridge's event loop for ~75 ms.
 */
import { Registry } from 'prom-client';

type Labels = Record<string, string>;

/** What a fill callback writes: each label set at most once per scrape (families here are snapshots). */
export interface ScrapedSeries {
  /** The value of an unlabelled series, or of the series with `labels`. Named for what a counter does. */
  inc(labelsOrValue: Labels | number, value?: number): void;
  /** The same, for gauges. */
  set(labelsOrValue: Labels | number, value?: number): void;
}

interface Value {
  labels: Labels;
  value: number;
}

/** A family that renders its own exposition text (ScrapedRegistry asks for it instead of prom-client's rendering). */
interface SelfRendered {
  /** `defaults`: the registry's default labels (cluster mode: `node`), after the series' own. */
  text(defaults: Labels): string;
}

/** Rendering time after which a scrape lets the event loop run (see ScrapedRegistry.metrics). */
const YIELD_AFTER_MS = 5;

/**
 * The Registry both daemons serve: families from these helpers render their own text in one pass;
 * prom-client's own metrics (process, GC) render as before.
 */
export class ScrapedRegistry extends Registry {
  /** What setDefaultLabels set (prom-client keeps its copy private): every series carries them. */
  private defaults: Labels = {};

  override setDefaultLabels(labels: object): void {
    this.defaults = { ...(labels as Labels) };
    super.setDefaultLabels(labels);
  }

  /**
   * The exposition text, rendered one family after another with a pause for I/O whenever a run of them
   * took YIELD_AFTER_MS: a scrape of a large fleet's bridge (tens of thousands of series) then holds the
   * event loop for about one family at a time, not for the whole scrape, so the data plane keeps moving.
   * Families are read at slightly different moments, as with prom-client's async collectors.
   */
  override async metrics(): Promise<string> {
    if (this.contentType !== Registry.PROMETHEUS_CONTENT_TYPE) return super.metrics();
    const parts: string[] = [];
    let since = performance.now();
    for (const m of this.getMetricsAsArray()) {
      parts.push(await this.getMetricsAsString(m));
      if (performance.now() - since >= YIELD_AFTER_MS) {
        await new Promise((resolve) => setImmediate(resolve));
        since = performance.now();
      }
    }
    return `${parts.join('\n\n')}\n`;
  }

  // Not in prom-client's typings, but what its metrics() calls for each family (prom-client 15).
  async getMetricsAsString(metric: unknown): Promise<string> {
    const own = metric as Partial<SelfRendered>;
    return typeof own.text === 'function' ? own.text(this.defaults) : promRender.call(this, metric);
  }
}

const promRender = (Registry.prototype as unknown as { getMetricsAsString(this: Registry, metric: unknown): Promise<string> }).getMetricsAsString;

// The text format's escaping (https://prometheus.io/docs/instrumenting/exposition_formats/).
const escapeHelp = (s: string): string => s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
const NEEDS_ESCAPE = /[\\"\n]/;
const escapeLabel = (s: string): string => (NEEDS_ESCAPE.test(s) ? escapeHelp(s).replace(/"/g, '\\"') : s);
const valueText = (v: number): string => (Number.isFinite(v) ? String(v) : Number.isNaN(v) ? 'NaN' : v > 0 ? '+Inf' : '-Inf');

function register(registry: Registry, type: 'counter' | 'gauge', name: string, help: string, labelNames: readonly string[], fill: (s: ScrapedSeries) => void): void {
  const allowed = new Set(labelNames);
  /** Calls fill, handing each series to `take` with its labels checked. */
  const collect = (take: (labels: Labels | undefined, value: number) => void): void => {
    const put = (labelsOrValue: Labels | number, value?: number): void => {
      if (typeof labelsOrValue === 'number') return take(undefined, labelsOrValue);
      // A label the family does not declare is a programming error: prom-client threw for it too.
      for (const k in labelsOrValue) if (!allowed.has(k)) throw new Error(`metric ${name} has no label "${k}" (it has ${labelNames.join(', ') || 'none'})`);
      take(labelsOrValue, value ?? 0);
    };
    fill({ inc: put, set: put });
  };
  const metric = {
    name,
    help,
    type,
    aggregator: 'sum' as const,
    /** prom-client's form (getMetricsAsJSON). */
    get() {
      const values: Value[] = [];
      collect((labels, value) => values.push({ labels: labels ?? {}, value }));
      return { name, help, type, aggregator: 'sum', values };
    },
    text(defaults: Labels): string {
      const lines = [`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`];
      // As prom-client: the series' labels, then each default label the series does not set itself.
      const defaultKeys = Object.keys(defaults);
      collect((labels, value) => {
        let l = '';
        if (labels !== undefined) for (const k in labels) l += `,${k}="${escapeLabel(labels[k]!)}"`;
        for (const k of defaultKeys) if (labels === undefined || !(k in labels)) l += `,${k}="${escapeLabel(defaults[k]!)}"`;
        lines.push(l === '' ? `${name} ${valueText(value)}` : `${name}{${l.slice(1)}} ${valueText(value)}`);
      });
      return lines.join('\n');
    },
  };
  // prom-client renders any registered object with name, help, type and get(); the cast is to its class type.
  registry.registerMetric(metric as unknown as Parameters<Registry['registerMetric']>[0]);
}

export function scrapedCounter(registry: Registry, name: string, help: string, labelNames: string[], fill: (c: ScrapedSeries) => void): void {
  register(registry, 'counter', name, help, labelNames, fill);
}

export function scrapedGauge(registry: Registry, name: string, help: string, labelNames: string[], fill: (g: ScrapedSeries) => void): void {
  register(registry, 'gauge', name, help, labelNames, fill);
}
