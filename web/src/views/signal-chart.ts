/**
 * The live signal chart: the pinned signals over the last 60 s, one y axis per unit (left, right,
 * left…), drawn by uPlot (shipped in the package: node_modules/uplot copied to /vendor/uplot by
 * web/build.mjs, loaded on the first pin). Pause freezes the picture; dragging across the chart zooms
 * into that time span (the live data keeps arriving underneath), "Reset zoom" or a double click returns
 * to the moving 60 s window. Redrawn at most a few times per second.
 */
import type uPlot from 'uplot';
import { h, setHidden, setText } from '../dom.js';
import { HISTORY_MS, type SignalsModel } from '../state/signals.js';

const UPLOT_URL = '/vendor/uplot/uPlot.esm.js';
const COLOURS = ['#2563eb', '#dc2626', '#16a34a', '#d97706', '#7c3aed', '#0891b2', '#db2777', '#4b5563'];
const HEIGHT = 320;

type UPlotCtor = typeof uPlot;
let loading: Promise<UPlotCtor> | undefined;
function loadUPlot(): Promise<UPlotCtor> {
  // A variable, not a literal: the page's TypeScript does not resolve the browser path.
  const url: string = UPLOT_URL;
  return (loading ??= import(url).then((m: { default: UPlotCtor }) => m.default));
}

export class SignalChart {
  private plot: uPlot | undefined;
  private U: UPlotCtor | undefined;
  /** The pinned keys the plot was built for: a change rebuilds series and axes. */
  private built = '';
  private paused = false;
  private zoomed = false;
  private lastVersion = -1;
  private building = false;
  /** The empty state's own text (a failed library load replaces it until the pins are gone). */
  private readonly emptyText: string;

  constructor(
    private readonly model: SignalsModel,
    private readonly box: HTMLElement,
    private readonly legend: HTMLElement,
    private readonly empty: HTMLElement,
  ) {
    this.emptyText = empty.textContent ?? '';
    box.addEventListener('dblclick', () => this.resetZoom());
  }

  get isPaused(): boolean {
    return this.paused;
  }

  get isZoomed(): boolean {
    return this.zoomed;
  }

  setPaused(p: boolean): void {
    this.paused = p;
    if (!p) this.lastVersion = -1;
  }

  resetZoom(): void {
    this.zoomed = false;
    this.lastVersion = -1;
    this.render();
  }

  /** Called from the page's draw loop (throttled there). */
  render(): void {
    const keys = [...this.model.pinned.keys()];
    // Written only when they change: the Signals view redraws several times a second.
    setHidden(this.empty, keys.length > 0);
    setHidden(this.box, keys.length === 0);
    if (keys.length === 0) {
      this.destroy();
      this.legend.replaceChildren();
      setText(this.empty, this.emptyText);
      return;
    }
    const sig = keys.join('\n');
    if (sig !== this.built) {
      if (this.building) return;
      this.building = true;
      void loadUPlot()
        .then((U) => {
          // The pins as they are now: one may have gone while the library loaded.
          const now = [...this.model.pinned.keys()];
          if (now.length > 0) this.build(U, now, now.join('\n'));
          else this.render();
        })
        .catch((e: unknown) => {
          this.empty.hidden = false;
          this.empty.textContent = `The chart library could not be loaded (${(e as Error).message}).`;
        })
        .finally(() => (this.building = false));
      return;
    }
    if (this.paused || this.model.version === this.lastVersion || !this.plot) return;
    this.lastVersion = this.model.version;
    this.plot.setData(this.data(keys, this.U!), !this.zoomed);
    if (!this.zoomed) {
      const end = this.model.newestMs / 1000;
      this.plot.setScale('x', { min: end - HISTORY_MS / 1000, max: end });
    }
  }

  private build(U: UPlotCtor, keys: string[], sig: string): void {
    this.destroy();
    this.U = U;
    // New series: the moving window again (a zoom kept across the rebuild froze the x range for good).
    this.zoomed = false;
    const label = chartLabels(
      keys.map((k) => this.model.rows.get(k)),
      keys,
    );
    const units: string[] = [];
    const series: uPlot.Series[] = [{}];
    keys.forEach((k, i) => {
      const row = this.model.rows.get(k);
      const unit = row?.unit ?? '';
      if (!units.includes(unit)) units.push(unit);
      series.push({
        label: `${label[i]}${unit ? ` (${unit})` : ''}`,
        scale: `u:${unit}`,
        stroke: COLOURS[i % COLOURS.length]!,
        width: 1.5,
        spanGaps: true,
        points: { show: false },
      });
    });
    const axes: uPlot.Axis[] = [{ stroke: 'currentColor' }];
    units.forEach((u, i) => axes.push({ scale: `u:${u}`, side: i % 2 === 0 ? 3 : 1, label: u || '(no unit)', stroke: 'currentColor', grid: { show: i === 0 } }));
    const scales: uPlot.Scales = { x: { time: true } };
    for (const u of units) scales[`u:${u}`] = { auto: true };
    const opts: uPlot.Options = {
      width: Math.max(320, this.box.clientWidth || this.box.parentElement?.clientWidth || 800),
      height: HEIGHT,
      series,
      axes,
      scales,
      cursor: { drag: { x: true, y: false } },
      legend: { show: true },
      hooks: {
        setSelect: [
          (u) => {
            // uPlot zooms to the selection; keep that span while live data arrives.
            if (u.select.width > 0) this.zoomed = true;
          },
        ],
      },
    };
    this.plot = new U(opts, this.data(keys, U), this.box);
    this.built = sig;
    this.lastVersion = -1;
    this.box.dataset.series = String(keys.length);
    this.box.dataset.axes = String(units.length);
    this.legend.replaceChildren(...keys.map((_k, i) => h('span', { class: 'pinned-chip', style: `--c:${COLOURS[i % COLOURS.length]}`, text: label[i]! })));
    this.render();
  }

  private data(keys: string[], U: UPlotCtor): uPlot.AlignedData {
    const tables: uPlot.AlignedData[] = keys.map((k) => {
      const hist = this.model.pinned.get(k)!;
      return [hist.t.map((t) => t / 1000), hist.v.slice()];
    });
    return tables.length === 1 ? tables[0]! : U.join(tables);
  }

  /** The time span shown, in seconds (60 unless zoomed). */
  get span(): number {
    const x = this.plot?.scales.x;
    return x?.min != null && x.max != null ? x.max - x.min : 0;
  }

  /** Points currently plotted (x values), for the page's tests and status line. */
  get points(): number {
    return this.plot?.data[0]?.length ?? 0;
  }

  private destroy(): void {
    this.plot?.destroy();
    this.plot = undefined;
    this.built = '';
  }
}

/**
 * Each pinned signal's name, with its bus — and dongle on a group page — where names collide: ENGINE_RPM of
 * side A and of side B (comparing the two sides is what a group page is for) read the same otherwise.
 */
export function chartLabels(rows: readonly ({ name: string; bus: string; dongle: string } | undefined)[], keys: readonly string[]): string[] {
  const names = rows.map((r, i) => r?.name ?? keys[i]!);
  const count = (xs: string[], x: string): number => xs.filter((y) => y === x).length;
  const withBus = rows.map((r, i) => (r && count(names, names[i]!) > 1 ? `${r.bus} ${names[i]}` : names[i]!));
  return rows.map((r, i) => (r && count(withBus, withBus[i]!) > 1 && r.dongle ? `${r.dongle} ${withBus[i]}` : withBus[i]!));
}
