/**
 * Tracing: OpenTelemetry spans for HTTP requests, WAL group commits, snapshots and retention,
 * exported over OTLP/HTTP. On only when the standard variables ask for it
 * (`OTEL_TRACES_EXPORTER=otlp`, or `OTEL_EXPORTER_OTLP_ENDPOINT` /
 * `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` set and `OTEL_TRACES_EXPORTER` not `none`);
 * `OTEL_TRACES_SAMPLER` (always_on, always_off, traceidratio, parentbased_traceidratio) and
 * `OTEL_TRACES_SAMPLER_ARG` pick the sampler.
 *
 * Unlike the OpenTelemetry default (always_on), the default here samples
 * {@link TRACE_SAMPLE_RATIO_DEFAULT} of the spans: the SDK spends about 7 µs creating a span and
 * 5 µs exporting it, which at thousands of writes a second would cost more than the 5% budget
 * telemetry has (see scripts/bench_ops.ts). `OTEL_TRACES_SAMPLER=always_on` records every span.
 *
 * Spans are built from the event bus after the fact (start = end - duration), like the metrics,
 * so the hot paths carry no tracing code. The cost of that choice: a span does not join the
 * caller's trace (no `traceparent` is read); it is a server-side timing record.
 *
 * @module
 */
import { type Attributes, SpanKind, type Tracer } from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  AlwaysOnSampler,
  BasicTracerProvider,
  BatchSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import type { EventBus } from "./events.ts";

export interface TracingOptions {
  events: EventBus;
  env: Record<string, string | undefined>;
  nodeId?: string;
  clusterId?: string;
  version?: string;
}

function tracesUrl(env: Record<string, string | undefined>): string {
  const specific = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim();
  if (specific) return specific;
  return `${
    (env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim() || "http://localhost:4318").replace(/\/+$/, "")
  }/v1/traces`;
}

/** Share of spans recorded unless OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG say otherwise. */
export const TRACE_SAMPLE_RATIO_DEFAULT = 0.1;

/**
 * Share of spans to record. Every span here is a root span (none joins a caller's trace), so a
 * trace-id ratio and an independent coin flip per span keep the same share; flipping the coin
 * before the SDK runs skips its cost (~7 µs: ids, attributes, a non-recording span) for the
 * spans it would drop anyway.
 */
export function sampleRatio(env: Record<string, string | undefined>): number {
  const arg = Number(env.OTEL_TRACES_SAMPLER_ARG ?? TRACE_SAMPLE_RATIO_DEFAULT);
  const ratio = Number.isFinite(arg) && arg >= 0 && arg <= 1 ? arg : TRACE_SAMPLE_RATIO_DEFAULT;
  switch (env.OTEL_TRACES_SAMPLER?.trim()) {
    case "always_off":
    case "parentbased_always_off":
      return 0;
    case "always_on":
    case "parentbased_always_on":
      return 1;
    default: // traceidratio, parentbased_traceidratio, unset
      return ratio;
  }
}

function epochMsNow(): number {
  return performance.timeOrigin + performance.now();
}

/** The node's tracer provider, fed from the bus. */
export class Tracing {
  readonly endpoint: string;
  readonly #provider: BasicTracerProvider;
  readonly #offs: (() => void)[] = [];
  readonly #ratio: number;

  constructor(options: TracingOptions) {
    this.endpoint = tracesUrl(options.env);
    this.#ratio = sampleRatio(options.env);
    const attributes: Attributes = {
      "service.name": options.env.OTEL_SERVICE_NAME?.trim() || "shanghai",
    };
    if (options.nodeId) attributes["service.instance.id"] = options.nodeId;
    if (options.clusterId) attributes["shanghai.cluster.id"] = options.clusterId;
    if (options.version) attributes["service.version"] = options.version;
    this.#provider = new BasicTracerProvider({
      resource: resourceFromAttributes(attributes),
      sampler: new AlwaysOnSampler(),
      spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url: this.endpoint }))],
    });
    this.#subscribe(this.#provider.getTracer("shanghai", options.version), options.events);
  }

  #subscribe(tracer: Tracer, events: EventBus): void {
    const record = (
      name: string,
      kind: SpanKind,
      durationMs: number,
      attributes: Attributes,
      error = false,
    ) => {
      if (this.#ratio < 1 && Math.random() >= this.#ratio) return;
      const end = epochMsNow();
      const span = tracer.startSpan(name, { kind, startTime: end - durationMs, attributes });
      if (error) span.setStatus({ code: 2 });
      span.end(end);
    };
    this.#offs.push(
      events.on(
        "http.request.completed",
        (e) =>
          record(`${e.method} ${e.route}`, SpanKind.SERVER, e.durationMs, {
            "http.request.method": e.method,
            "http.route": e.route,
            "http.response.status_code": e.status,
          }, e.status >= 500),
      ),
      events.on("wal.write.completed", (e) =>
        record("wal.write", SpanKind.INTERNAL, e.durationMs, {
          "shanghai.wal.bytes": e.bytes,
          "shanghai.wal.entries": e.entries,
          "shanghai.wal.sync_ms": e.syncMs,
        })),
      events.on(
        "snapshot.completed",
        (e) =>
          record("snapshot", SpanKind.INTERNAL, e.durationMs, {
            "shanghai.snapshot.lsn": e.lsn,
            "shanghai.snapshot.bytes": e.bytes,
          }),
      ),
      events.on("retention.completed", (e) =>
        record("retention", SpanKind.INTERNAL, e.durationMs, {
          "shanghai.retention.segments": e.segmentsRemoved,
          "shanghai.retention.bytes": e.bytesRemoved,
        })),
    );
  }

  async flush(): Promise<void> {
    await this.#provider.forceFlush();
  }

  async shutdown(): Promise<void> {
    for (const off of this.#offs.splice(0)) off();
    await this.#provider.shutdown().catch(() => {});
  }
}
