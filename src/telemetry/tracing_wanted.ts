/**
 * Whether the node exports traces, apart from the tracing module itself: that module loads the
 * OpenTelemetry trace SDK and its OTLP exporter, which the node imports only when this says yes
 * (loading every OpenTelemetry package at start took about a tenth of a restart).
 *
 * @module
 */

/** True when the OTEL_* variables ask for trace export. */
export function tracingWanted(env: Record<string, string | undefined>): boolean {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === "true") return false;
  const exporter = env.OTEL_TRACES_EXPORTER?.trim();
  if (exporter === "none") return false;
  return exporter === "otlp" || !!env.OTEL_EXPORTER_OTLP_ENDPOINT ||
    !!env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
}
