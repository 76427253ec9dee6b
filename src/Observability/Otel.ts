/**
 * OpenTelemetry through @effect/opentelemetry, one layer per process.
 *
 * - Metrics: every Effect `Metric` is read by an OpenTelemetry Prometheus
 *   exporter (pull). The worker serves it on its own small HTTP port
 *   (WORKER_METRICS_HOST:WORKER_METRICS_PORT, 127.0.0.1:9464; port 0 turns it
 *   off; MetricsEndpoint.ts); the API mounts the same handler at `GET /metrics`.
 *   Both ask for `Authorization: Bearer <METRICS_TOKEN>` when that is set.
 * - Traces: off by default. They are exported over OTLP/HTTP when the standard
 *   variables ask for it (OTEL_TRACES_EXPORTER=otlp, or an
 *   OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT); the exporter reads the rest of its
 *   OTEL_* settings itself. OTEL_SDK_DISABLED=true turns everything off.
 *   Extra span processors (tests) turn tracing on as well. The decision is
 *   the `Tracing` service: when traces go somewhere, every span is recorded
 *   (a span per HTTP request, the outbox write, the relay's publish, the
 *   worker's handling) and the trace context travels in the outbox row and
 *   the AMQP headers as W3C `traceparent`. When they go nowhere, Effect's
 *   tracer is switched off for the whole process: spans cost CPU on every
 *   request and nobody would read them. OpsDesk's own spans then are not
 *   built at all (`traced` and `tracedFn`, Span.ts).
 */
import { NodeSdk } from "@effect/opentelemetry"
import { PrometheusExporter } from "@opentelemetry/exporter-prometheus"
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http"
import { BatchSpanProcessor, type SpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Context, Effect, Layer, Option, type Redacted } from "effect"
import { OtelConfig } from "../Config.js"
import { serveMetrics } from "./MetricsEndpoint.js"

export class PrometheusMetrics
  extends Context.Tag("OpsDesk/Observability/PrometheusMetrics")<PrometheusMetrics, PrometheusExporter>()
{}

/** Whether this process records and exports spans (see the module comment). */
export class Tracing extends Context.Tag("OpsDesk/Observability/Tracing")<Tracing, { readonly enabled: boolean }>() {}

/**
 * The SDK for one process. `metricsPort` > 0 serves `GET /metrics` on
 * `metricsHost` (loopback unless given) for the life of the layer, behind
 * `metricsToken` when it is set; `extraSpanProcessors` lets tests capture spans.
 */
export const layer = (options: {
  readonly serviceName: string
  readonly metricsPort?: number
  readonly metricsHost?: string
  readonly metricsToken?: Option.Option<Redacted.Redacted<string>>
  readonly extraSpanProcessors?: ReadonlyArray<SpanProcessor>
}) =>
  Layer.unwrapScoped(
    Effect.gen(function*() {
      const cfg = yield* OtelConfig
      const exporter = new PrometheusExporter({ preventServerStart: true })
      if (options.metricsPort !== undefined && options.metricsPort > 0) {
        yield* serveMetrics({
          exporter,
          port: options.metricsPort,
          host: options.metricsHost ?? "127.0.0.1",
          token: options.metricsToken ?? Option.none()
        })
      }
      const exportTraces = !cfg.disabled &&
        (cfg.tracesExporter.split(",").includes("otlp") || Option.isSome(cfg.endpoint) ||
          Option.isSome(cfg.tracesEndpoint))
      const processors: Array<SpanProcessor> = [...(options.extraSpanProcessors ?? [])]
      if (exportTraces) processors.push(new BatchSpanProcessor(new OTLPTraceExporter()))
      if (exportTraces) yield* Effect.logInfo("Exporting traces over OTLP")
      const tracing = !cfg.disabled && processors.length > 0
      const sdk = cfg.disabled
        ? Layer.empty
        : NodeSdk.layer(() => ({
          resource: { serviceName: Option.getOrElse(cfg.serviceName, () => options.serviceName) },
          metricReader: exporter,
          ...(tracing ? { spanProcessor: processors } : {})
        }))
      return Layer.mergeAll(
        sdk,
        Layer.succeed(PrometheusMetrics, exporter),
        Layer.succeed(Tracing, { enabled: tracing }),
        // Spans become no-ops (and carry no trace context) in every layer this one is provided to.
        tracing ? Layer.empty : Layer.setTracerEnabled(false)
      )
    })
  )
