import assert from "node:assert/strict";
import { PrometheusSerializer } from "@opentelemetry/exporter-prometheus";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { DataPointType, MeterProvider, MetricReader } from "@opentelemetry/sdk-metrics";
import { Histograms } from "./histograms.ts";

class PullReader extends MetricReader {
  protected onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
  protected onShutdown(): Promise<void> {
    return Promise.resolve();
  }
}

const BOUNDARIES = [0.25, 1, 5, 10];
// Values on each boundary (inclusive upper bounds), between, above the last, zero, and the
// ones the SDK drops (negative, NaN).
const VALUES = [0, 0.25, 0.3, 1, 4.99, 5, 10, 10.01, 1e6, -1, NaN, 2];

/** The same values through the SDK's own histogram and through ours, as Prometheus text. */
async function bothWays(): Promise<{ sdk: string; ours: string }> {
  const resource = resourceFromAttributes({ "service.name": "t" });
  const sdkReader = new PullReader();
  const sdkProvider = new MeterProvider({ resource, readers: [sdkReader] });
  const sdkHistogram = sdkProvider.getMeter("scope", "1.0").createHistogram("h", {
    description: "d",
    unit: "ms",
    advice: { explicitBucketBoundaries: BOUNDARIES },
  });
  const histograms = new Histograms(resource, { name: "scope", version: "1.0" });
  const oursReader = new PullReader({ metricProducers: [histograms] });
  const oursProvider = new MeterProvider({ resource, readers: [oursReader] });
  const ours = histograms.create("h", "d", "ms", BOUNDARIES);
  for (const value of VALUES) {
    sdkHistogram.record(value, { route: "/a" });
    sdkHistogram.record(value * 2, { route: "/b" });
    sdkHistogram.record(value);
    ours.series("a", () => ({ route: "/a" })).record(value);
    ours.series("b", () => ({ route: "/b" })).record(value * 2);
    ours.record(value);
  }
  const serializer = new PrometheusSerializer();
  const text = async (reader: MetricReader) =>
    serializer.serialize((await reader.collect()).resourceMetrics);
  try {
    return { sdk: await text(sdkReader), ours: await text(oursReader) };
  } finally {
    await sdkProvider.shutdown();
    await oursProvider.shutdown();
  }
}

Deno.test("Histograms export what the SDK's histogram exports for the same values", async () => {
  const { sdk, ours } = await bothWays();
  const lines = (text: string) => text.split("\n").filter((l) => l !== "").sort();
  assert.deepEqual(lines(ours), lines(sdk));
  // The comparison is not empty: three series, every bucket.
  assert.match(
    ours,
    /h_bucket\{route="\/a",otel_scope_name="scope",otel_scope_version="1.0",le="5"\} 7/,
  );
  assert.match(ours, /h_count\{otel_scope_name="scope",otel_scope_version="1.0"\} 10/);
  assert.equal(lines(ours).filter((l) => l.startsWith("h_bucket")).length, 3 * 5);
});

Deno.test("A histogram reports min and max, and no metric before its first value", async () => {
  const resource = resourceFromAttributes({});
  const histograms = new Histograms(resource, { name: "s" });
  const h = histograms.create("latency", "d", "ms", [1, 2]);
  assert.deepEqual((await histograms.collect()).resourceMetrics.scopeMetrics, []);
  h.series("k", () => ({ peer: "n2" })); // a series made but not yet recorded into
  assert.deepEqual((await histograms.collect()).resourceMetrics.scopeMetrics, []);
  h.record(1.5);
  h.record(0.5);
  h.record(3);
  const [scope] = (await histograms.collect()).resourceMetrics.scopeMetrics;
  assert.deepEqual(scope.scope, { name: "s" });
  const [metric] = scope.metrics;
  assert.equal(metric.dataPointType, DataPointType.HISTOGRAM);
  assert.equal(metric.dataPoints.length, 1);
  assert.deepEqual(metric.dataPoints[0].value, {
    buckets: { boundaries: [1, 2], counts: [1, 1, 1] },
    count: 3,
    sum: 5,
    min: 0.5,
    max: 3,
  });
});

Deno.test("Histograms refuse boundaries that do not increase and a name used twice", () => {
  const histograms = new Histograms(resourceFromAttributes({}), { name: "s" });
  assert.throws(() => histograms.create("a", "d", "ms", [1, 1]), /must increase/);
  histograms.create("b", "d", "ms", [1, 2]);
  assert.throws(() => histograms.create("b", "d", "ms", [1, 2]), /already registered/);
});
