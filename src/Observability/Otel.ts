/**
 * OpenTelemetry through @effect/opentelemetry, one layer per process.
 *
 * - Metrics: every Effect `Metric` is read by an OpenTelemetry Prometheus
 *   exporter (pull). The worker serves it on its own small HTTP port
 *   (WORKER_METRICS_PORT, 9464; 0 turns it off); the API mounts the same
 *   handler at `GET /metrics`.
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
 *   request and nobody would read them.
 */
import { NodeSdk } from "@effect/opentelemetry"
import { PrometheusExporter } from "@opentelemetry/exporter-prometheus"
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http"
import { BatchSpanProcessor, type SpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Context, Effect, Layer, Option, Runtime } from "effect"
import { OtelConfig } from "../Config.js"

export class PrometheusMetrics
  extends Context.Tag("OpsDesk/Observability/PrometheusMetrics")<PrometheusMetrics, PrometheusExporter>()
{}

/** Whether this process records and exports spans (see the module comment). */
export class Tracing extends Context.Tag("OpsDesk/Observability/Tracing")<Tracing, { readonly enabled: boolean }>() {}

/**
 * The SDK for one process. `metricsPort` > 0 makes the exporter serve
 * `/metrics` itself on that port; `extraSpanProcessors` lets tests capture spans.
 */
export const layer = (options: {
  readonly serviceName: string
  readonly metricsPort?: number
  readonly extraSpanProcessors?: ReadonlyArray<SpanProcessor>
}) =>
  Layer.unwrapEffect(
    Effect.gen(function*() {
      const cfg = yield* OtelConfig
      const runtime = yield* Effect.runtime<never>()
      const exporter = new PrometheusExporter(
        options.metricsPort && options.metricsPort > 0
          ? { port: options.metricsPort, host: "0.0.0.0" }
          : { preventServerStart: true },
        // The exporter would otherwise swallow a port already in use: say it, and carry on without /metrics.
        (error) => {
          if (error) {
            Runtime.runFork(runtime)(
              Effect.logWarning(
                `Metrics endpoint not served: cannot listen on port ${options.metricsPort} (${error.message}); set WORKER_METRICS_PORT to a free port, or 0 to turn it off`
              )
            )
          }
        }
      )
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
