/**
 * `GET /metrics`: every Effect metric of the process (the outbox relay's
 * counters and backlog gauge among them) in Prometheus text format, read from
 * the Observability layer's exporter; behind `Authorization: Bearer
 * <METRICS_TOKEN>` when that is set. A plain route, not part of the OpenAPI
 * contract.
 */
import { HttpApiBuilder, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect } from "effect"
import { MetricsToken } from "../Config.js"
import { METRICS_CONTENT_TYPE, metricsAuthorized, scrape, UNAUTHORIZED_BODY } from "../Observability/MetricsEndpoint.js"
import { PrometheusMetrics } from "../Observability/Otel.js"

const UNAUTHORIZED = HttpServerResponse.text(UNAUTHORIZED_BODY, {
  status: 401,
  contentType: "application/json",
  headers: { "www-authenticate": "Bearer" }
})

export const MetricsRouteLive = HttpApiBuilder.Router.use((router) =>
  Effect.gen(function*() {
    const exporter = yield* PrometheusMetrics
    const token = yield* MetricsToken
    yield* router.get(
      "/metrics",
      Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
        metricsAuthorized(request.headers.authorization, token)
          ? Effect.map(scrape(exporter), (text) =>
            HttpServerResponse.text(text, { contentType: METRICS_CONTENT_TYPE }))
          : Effect.succeed(UNAUTHORIZED))
    )
  })
)
