/**
 * `GET /metrics`: every Effect metric of the process (the outbox relay's
 * counters and backlog gauge among them) in Prometheus text format, read from
 * the Observability layer's exporter. A plain route, not part of the OpenAPI
 * contract.
 */
import { HttpApiBuilder, HttpServerResponse } from "@effect/platform"
import { PrometheusSerializer } from "@opentelemetry/exporter-prometheus"
import { Effect } from "effect"
import { PrometheusMetrics } from "../Observability/Otel.js"

export const MetricsRouteLive = HttpApiBuilder.Router.use((router) =>
  Effect.gen(function*() {
    const exporter = yield* PrometheusMetrics
    const serializer = new PrometheusSerializer()
    yield* router.get(
      "/metrics",
      Effect.promise(() => exporter.collect()).pipe(
        Effect.map(({ resourceMetrics }) =>
          HttpServerResponse.text(serializer.serialize(resourceMetrics), {
            contentType: "text/plain; version=0.0.4; charset=utf-8"
          })
        )
      )
    )
  })
)
