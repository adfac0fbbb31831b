/**
 * core/metrics/scraped.ts: families filled at scrape time render their own exposition text. It must be
 * the text prom-client renders for the same series (what Prometheus and the tests parse), next to
 * prom-client's own metrics in the same registry.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { ScrapedRegistry, scrapedCounter, scrapedGauge } from '../../../core/metrics/scraped.js';

const series: [Record<string, string>, number][] = [
  [{ dongle: 'gw-a', bus: 'can0' }, 12],
  [{ dongle: 'gw-b', bus: 'can1' }, 0],
  // Label values the text format escapes: backslash, quote, newline.
  [{ dongle: 'odd\\"name\n', bus: 'x' }, 3.5],
];

test('scraped families render the text prom-client renders for the same series, beside its own metrics', async () => {
  const mine = new ScrapedRegistry();
  const theirs = new Registry();
  const help = 'Frames seen, with a \\ backslash and a\nnewline in the help';
  scrapedCounter(mine, 'x_frames_total', help, ['dongle', 'bus'], (c) => {
    for (const [labels, n] of series) c.inc(labels, n);
  });
  const c = new Counter({ name: 'x_frames_total', help, labelNames: ['dongle', 'bus'], registers: [theirs] });
  for (const [labels, n] of series) c.inc(labels, n);

  scrapedGauge(mine, 'x_clients', 'Clients now', [], (g) => g.set(7));
  new Gauge({ name: 'x_clients', help: 'Clients now', registers: [theirs] }).set(7);

  scrapedCounter(mine, 'x_empty_total', 'A labelled family with no series yet', ['reason'], () => undefined);
  new Counter({ name: 'x_empty_total', help: 'A labelled family with no series yet', labelNames: ['reason'], registers: [theirs] });

  // prom-client's own kinds keep rendering through it.
  for (const r of [mine, theirs]) new Histogram({ name: 'x_wait_seconds', help: 'Waits', buckets: [0.1, 1], registers: [r] }).observe(0.5);

  const text = await mine.metrics();
  assert.equal(text, await theirs.metrics());
  assert.match(text, /^x_frames_total\{dongle="odd\\\\\\"name\\n",bus="x"\} 3\.5$/m, 'label values escaped');
  assert.match(text, /^x_wait_seconds_bucket\{le="1"\} 1$/m, 'the histogram is there');
});

test('default labels (cluster mode: node) go on every series, after its own, as prom-client puts them', async () => {
  const mine = new ScrapedRegistry();
  const theirs = new Registry();
  for (const r of [mine, theirs]) r.setDefaultLabels({ node: 'n-1' });
  scrapedCounter(mine, 'x_frames_total', 'Frames', ['dongle', 'bus'], (c) => {
    for (const [labels, n] of series) c.inc(labels, n);
  });
  const c = new Counter({ name: 'x_frames_total', help: 'Frames', labelNames: ['dongle', 'bus'], registers: [theirs] });
  for (const [labels, n] of series) c.inc(labels, n);
  scrapedGauge(mine, 'x_clients', 'Clients now', [], (g) => g.set(7));
  new Gauge({ name: 'x_clients', help: 'Clients now', registers: [theirs] }).set(7);
  const text = await mine.metrics();
  assert.equal(text, await theirs.metrics());
  assert.match(text, /^x_frames_total\{dongle="gw-a",bus="can0",node="n-1"\} 12$/m);
  assert.match(text, /^x_clients\{node="n-1"\} 7$/m);
});

test('a scraped family reads its source at every scrape, and the JSON form lists the same values', async () => {
  const r = new ScrapedRegistry();
  let n = 1;
  scrapedCounter(r, 'x_seen_total', 'Seen', ['bus'], (c) => c.inc({ bus: 'can0' }, n));
  assert.match(await r.metrics(), /^x_seen_total\{bus="can0"\} 1$/m);
  n = 5;
  assert.match(await r.metrics(), /^x_seen_total\{bus="can0"\} 5$/m);
  const json = await r.getMetricsAsJSON();
  assert.deepEqual(
    json.map((m) => ({ name: m.name, type: m.type, values: m.values.map((v) => ({ labels: v.labels, value: v.value })) })),
    [{ name: 'x_seen_total', type: 'counter', values: [{ labels: { bus: 'can0' }, value: 5 }] }],
  );
});

test('a label the family does not declare is refused, as prom-client refuses it', async () => {
  const r = new ScrapedRegistry();
  scrapedCounter(r, 'x_bad_total', 'Bad', ['bus'], (c) => c.inc({ bus: 'can0', dongle: 'gw-a' }, 1));
  await assert.rejects(() => r.metrics(), /metric x_bad_total has no label "dongle" \(it has bus\)/);
});

test('a long scrape lets the event loop run between families (a plain prom-client registry does not)', async () => {
  const busy = (ms: number): void => {
    const end = performance.now() + ms;
    while (performance.now() < end);
  };
  /** Whether an immediate queued as the scrape starts ran before the scrape was done. */
  const ranDuring = async (r: Registry): Promise<boolean> => {
    let ran = false;
    const scrape = r.metrics();
    setImmediate(() => (ran = true));
    const text = await scrape;
    assert.match(text, /^x_slow_3 1$/m);
    return ran;
  };
  const mine = new ScrapedRegistry();
  const theirs = new Registry();
  for (let i = 0; i < 4; i++) {
    // Each family takes 8 ms to fill: longer than the scrape may hold the loop at once.
    scrapedGauge(mine, `x_slow_${i}`, 'Slow to fill', [], (g) => {
      busy(8);
      g.set(1);
    });
    new Gauge({
      name: `x_slow_${i}`,
      help: 'Slow to fill',
      registers: [theirs],
      collect() {
        busy(8);
        this.set(1);
      },
    });
  }
  assert.equal(await ranDuring(theirs), false, 'the control: prom-client renders every family in one turn');
  assert.equal(await ranDuring(mine), true, 'the scrape paused for I/O');
});
