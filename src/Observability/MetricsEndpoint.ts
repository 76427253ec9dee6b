/**
 * `GET /metrics` in Prometheus text format, read from the process's
 * OpenTelemetry Prometheus exporter: the body (shared by the API's route,
 * App/MetricsRoute.ts, and the worker's own server below), and the optional
 * bearer token (METRICS_TOKEN) both check.
 *
 * The worker serves it itself, on node:http, rather than through the
 * exporter's built-in server: that one cannot ask for a token.
 */
import { PrometheusSerializer } from "@opentelemetry/exporter-prometheus"
import type { PrometheusExporter } from "@opentelemetry/exporter-prometheus"
import { Effect, Option, Redacted, Runtime } from "effect"
import { createHash, timingSafeEqual } from "node:crypto"
import { createServer } from "node:http"

export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

const serializer = new PrometheusSerializer()

/** Every metric of the process, serialized. */
export const scrape = (exporter: PrometheusExporter) =>
  Effect.map(Effect.promise(() => exporter.collect()), ({ resourceMetrics }) => serializer.serialize(resourceMetrics))

const digest = (value: string) => createHash("sha256").update(value).digest()

/**
 * Whether an `Authorization` header may read the metrics: always without a
 * token; with one, only `Bearer <token>` (compared in constant time).
 */
export const metricsAuthorized = (
  authorization: string | undefined,
  token: Option.Option<Redacted.Redacted<string>>
): boolean =>
  Option.match(token, {
    onNone: () => true,
    onSome: (expected) =>
      authorization !== undefined &&
      timingSafeEqual(digest(authorization.trim()), digest(`Bearer ${Redacted.value(expected)}`))
  })

export const UNAUTHORIZED_BODY = JSON.stringify({
  _tag: "Unauthorized",
  message: "the metrics need `Authorization: Bearer <METRICS_TOKEN>`"
})

/**
 * Serves `GET /metrics` on host:port for the life of the scope. A port that
 * cannot be listened on is logged and the process goes on without metrics.
 */
export const serveMetrics = (options: {
  readonly exporter: PrometheusExporter
  readonly host: string
  readonly port: number
  readonly token: Option.Option<Redacted.Redacted<string>>
}) =>
  Effect.gen(function*() {
    const runtime = yield* Effect.runtime<never>()
    const run = Runtime.runPromise(runtime)
    const server = createServer((req, res) => {
      const path = (req.url ?? "").split("?", 1)[0]
      if (path !== "/metrics" || (req.method !== "GET" && req.method !== "HEAD")) {
        res.writeHead(404, { "content-type": "text/plain" }).end("not found: only GET /metrics is served here\n")
        return
      }
      if (!metricsAuthorized(req.headers.authorization, options.token)) {
        res.writeHead(401, { "content-type": "application/json", "www-authenticate": "Bearer" }).end(UNAUTHORIZED_BODY)
        return
      }
      run(scrape(options.exporter)).then(
        (text) => res.writeHead(200, { "content-type": METRICS_CONTENT_TYPE }).end(req.method === "HEAD" ? "" : text),
        (error: unknown) =>
          res.writeHead(503, { "content-type": "text/plain" }).end(`metrics unavailable: ${String(error)}\n`)
      )
    })
    yield* Effect.acquireRelease(
      Effect.async<void>((resume) => {
        server.once("error", (error) => {
          resume(Effect.logWarning(
            `Metrics endpoint not served: cannot listen on ${options.host}:${options.port} (${error.message}); set WORKER_METRICS_PORT to a free port, or 0 to turn it off`
          ))
        })
        server.listen(options.port, options.host, () => resume(Effect.void))
      }),
      () =>
        Effect.async<void>((resume) => {
          if (!server.listening) return resume(Effect.void)
          server.close(() => resume(Effect.void))
          server.closeAllConnections()
        })
    )
  })
