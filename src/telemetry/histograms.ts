/**
 * Histograms recorded without the OpenTelemetry SDK's per-call work, exported through the SDK's
 * readers.
 *
 * The SDK's `Histogram.record` hashes its attribute set (sorting the keys, building a string),
 * looks the series up by that hash and reads the clock, on every call. `PUT /v1/kv` records one
 * value per request and a follower one per applied entry: with that call skipped a node took
 * 3-7% more PUTs/s at 50 clients (docs/BENCHMARKS.md, session 29). Here a caller resolves its
 * series once (by a key it already has) and a record is a bucket search and a few additions.
 *
 * The figures reach the same readers (Prometheus text, OTLP push) through a
 * {@link MetricProducer}, as the data points the SDK builds for an explicit-bucket histogram:
 * cumulative, buckets with inclusive upper bounds plus one above the last, sum, count, min and
 * max; negative values and NaN are dropped, as the SDK drops them. A series appears once it has
 * a value.
 *
 * @module
 */
import { type Attributes, type HrTime, ValueType } from "@opentelemetry/api";
import type { Resource } from "@opentelemetry/resources";
import {
  AggregationTemporality,
  type CollectionResult,
  DataPointType,
  type HistogramMetricData,
  type MetricProducer,
} from "@opentelemetry/sdk-metrics";

function hrTimeNow(): HrTime {
  const ms = performance.timeOrigin + performance.now();
  const seconds = Math.floor(ms / 1000);
  return [seconds, Math.round((ms - seconds * 1000) * 1e6)];
}

/** One attribute set's counts. */
export class HistogramSeries {
  readonly attributes: Attributes;
  readonly startTime: HrTime = hrTimeNow();
  readonly #boundaries: readonly number[];
  /** counts[i]: values in (boundaries[i-1], boundaries[i]]; the last, values above them all. */
  readonly counts: number[];
  count = 0;
  sum = 0;
  min = Infinity;
  max = -Infinity;

  constructor(boundaries: readonly number[], attributes: Attributes) {
    this.#boundaries = boundaries;
    this.attributes = attributes;
    this.counts = new Array<number>(boundaries.length + 1).fill(0);
  }

  record(value: number): void {
    if (!(value >= 0)) return; // negative or NaN
    const boundaries = this.#boundaries;
    // Linear: at most twenty boundaries, and most values land in the first few buckets.
    let i = 0;
    while (i < boundaries.length && boundaries[i] < value) i++;
    this.counts[i]++;
    this.count++;
    this.sum += value;
    if (value < this.min) this.min = value;
    if (value > this.max) this.max = value;
  }
}

/** One named histogram: a series without attributes, and series by a caller's key. */
export class Histogram {
  readonly name: string;
  readonly description: string;
  readonly unit: string;
  readonly boundaries: readonly number[];
  #plain: HistogramSeries | undefined;
  readonly #series = new Map<string, HistogramSeries>();

  constructor(name: string, description: string, unit: string, boundaries: readonly number[]) {
    if (boundaries.some((b, i) => i > 0 && b <= boundaries[i - 1])) {
      throw new RangeError(`Histogram ${name}: bucket boundaries must increase`);
    }
    this.name = name;
    this.description = description;
    this.unit = unit;
    this.boundaries = boundaries;
  }

  /** Records into the series without attributes. */
  record(value: number): void {
    (this.#plain ??= new HistogramSeries(this.boundaries, {})).record(value);
  }

  /**
   * The series for `key` (one key per attribute set, chosen by the caller), made with
   * `attributes()` the first time. Keep it: recording into it costs no lookup.
   */
  series(key: string, attributes: () => Attributes): HistogramSeries {
    let series = this.#series.get(key);
    if (series === undefined) {
      this.#series.set(key, series = new HistogramSeries(this.boundaries, attributes()));
    }
    return series;
  }

  /** The metric as the SDK reports an explicit-bucket histogram, or undefined with no value. */
  collect(endTime: HrTime): HistogramMetricData | undefined {
    const all = this.#plain === undefined
      ? [...this.#series.values()]
      : [this.#plain, ...this.#series.values()];
    const recorded = all.filter((s) => s.count > 0);
    if (recorded.length === 0) return undefined;
    return {
      descriptor: {
        name: this.name,
        description: this.description,
        unit: this.unit,
        valueType: ValueType.DOUBLE,
      },
      aggregationTemporality: AggregationTemporality.CUMULATIVE,
      dataPointType: DataPointType.HISTOGRAM,
      dataPoints: recorded.map((s) => ({
        attributes: s.attributes,
        startTime: s.startTime,
        endTime,
        value: {
          buckets: { boundaries: [...this.boundaries], counts: [...s.counts] },
          count: s.count,
          sum: s.sum,
          min: s.min,
          max: s.max,
        },
      })),
    };
  }
}

/** The histograms of one instrumentation scope, handed to the SDK's readers as a producer. */
export class Histograms implements MetricProducer {
  readonly #resource: Resource;
  readonly #scope: { name: string; version?: string };
  readonly #histograms: Histogram[] = [];

  /** `resource` is the meter provider's (readers keep theirs and take only the scopes). */
  constructor(resource: Resource, scope: { name: string; version?: string }) {
    this.#resource = resource;
    this.#scope = scope;
  }

  create(
    name: string,
    description: string,
    unit: string,
    boundaries: readonly number[],
  ): Histogram {
    if (this.#histograms.some((h) => h.name === name)) {
      throw new Error(`Histogram ${name} is already registered`);
    }
    const histogram = new Histogram(name, description, unit, boundaries);
    this.#histograms.push(histogram);
    return histogram;
  }

  collect(): Promise<CollectionResult> {
    const endTime = hrTimeNow();
    const metrics = this.#histograms.flatMap((h) => h.collect(endTime) ?? []);
    return Promise.resolve({
      resourceMetrics: {
        resource: this.#resource,
        scopeMetrics: metrics.length === 0 ? [] : [{ scope: this.#scope, metrics }],
      },
      errors: [],
    });
  }
}
