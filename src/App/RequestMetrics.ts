/**
 * HTTP request metrics: `opsdesk_http_requests_total{method,route,status}`
 * and `opsdesk_http_request_duration_seconds{method,route}`. The route label is
 * the path with ids replaced by `:id`, and only known routes keep their name
 * (anything else is `other`), so random paths cannot blow up the label set.
 */
import { HttpApi, type HttpApp, HttpServerError, HttpServerRequest } from "@effect/platform"
import { Cause, Effect, Exit, Metric, MetricBoundaries, Option, Schema, SchemaAST } from "effect"
import type { HttpConventionsConfig } from "../Config.js"
import { withLabels } from "../Kit/Metrics.js"
import { Api } from "./Api.js"

export const httpRequests = Metric.counter("opsdesk_http_requests_total", {
  description: "HTTP requests answered",
  incremental: true
})
export const httpDuration = Metric.histogram(
  "opsdesk_http_request_duration_seconds",
  MetricBoundaries.exponential({ start: 0.0005, factor: 2, count: 16 }),
  "Time to answer an HTTP request"
)

const KNOWN_ROUTES = new Set([
  "/health",
  "/ready",
  "/metrics",
  "/openapi.json",
  "/docs",
  "/ops",
  "/v1/auth/login",
  "/v1/users",
  "/v1/users/me",
  "/v1/messages",
  "/v1/tickets",
  "/v1/tickets/:id",
  "/v1/tickets/:id/status",
  "/v1/tickets/:id/messages",
  "/v1/notifications",
  "/v1/notifications/unread-count",
  "/v1/notifications/read-all",
  "/v1/notifications/stream",
  "/v1/notifications/:id/read",
  "/v1/users/me/preferences",
  "/ops/api/overview",
  "/ops/api/dlq",
  "/ops/api/dlq/replay",
  "/ops/api/dlq/discard",
  "/ops/api/dlq/purge"
])
const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi
/** Notification ids are integers. */
const NOTIFICATION_ID = /^\/v1\/notifications\/\d+(?=\/)/

export const routeOf = (url: string): string => {
  const path = (url.split("?")[0] ?? "").replace(UUID, ":id").replace(NOTIFICATION_ID, "/v1/notifications/:id")
    .replace(/\/+$/, "") || "/"
  return KNOWN_ROUTES.has(path) ? path : "other"
}

const METHODS = new Set(["GET", "POST", "PATCH", "PUT", "DELETE", "HEAD", "OPTIONS"])

/**
 * The typed errors of the API with the status each is declared with (by
 * `addError`, or as a middleware's `failure`). An error class has one status
 * wherever it is declared, so the first match is the status HttpApi encodes.
 */
const declaredErrors = (() => {
  const statuses = new Map<SchemaAST.AST, number>()
  const collect = (ast: SchemaAST.AST, status: number): void => {
    if (SchemaAST.isUnion(ast)) ast.types.forEach((member) => collect(member, status))
    else statuses.set(ast, status)
  }
  HttpApi.reflect(Api, {
    onGroup: () => {},
    onEndpoint: ({ errors }) => errors.forEach(({ ast }, status) => Option.map(ast, (ast) => collect(ast, status)))
  })
  return Array.from(statuses, ([ast, status]) => ({ is: Schema.is(Schema.make(ast)), status }))
})()

/**
 * The status HttpApi answers for a failure: its declared status for a typed
 * error, else what the server renders (`causeResponse`, as the platform
 * does): the response a defect carries, 500 for other defects, and for an
 * interruption 499 when the client went away (503 when the server stopped).
 */
const statusOf = (cause: Cause.Cause<unknown>): Effect.Effect<number> => {
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) {
    const declared = declaredErrors.find((error) => error.is(failure.value))
    if (declared !== undefined) return Effect.succeed(declared.status)
  }
  return Effect.map(HttpServerError.causeResponse(cause), ([response]) => response.status)
}

/** Labelled metrics, built once per label set (Kit/Metrics.ts: each update then finds its series at once). */
const tagged = new Map<
  string,
  { readonly count: Metric.Metric.Counter<number>; readonly time: Metric.Metric.Histogram<number> }
>()
const metricsFor = (method: string, route: string, status: number) => {
  const key = `${method} ${route} ${status}`
  let m = tagged.get(key)
  if (m === undefined) {
    m = {
      count: withLabels(httpRequests, { method, route, status: String(status) }),
      time: withLabels(httpDuration, { method, route })
    }
    tagged.set(key, m)
  }
  return m
}

/**
 * Counts one answered request, in one synchronous step: what Metric.increment
 * and Metric.update do, minus their two Effects (these metrics carry no
 * ambient labels). `started` is a `performance.now()` reading.
 */
export const recordRequest = (method: string, route: string, status: number, started: number) => {
  const m = metricsFor(METHODS.has(method) ? method : "other", route, status)
  m.count.unsafeUpdate(1, [])
  m.time.unsafeUpdate((performance.now() - started) / 1000, [])
}

/** Whether ACCESS_LOG (Config.ts) asks for this answer's line. */
export const accessLogged = (cfg: Pick<HttpConventionsConfig, "accessLog" | "accessLogSample">, status: number) =>
  cfg.accessLog === "on" || (cfg.accessLog === "sampled" && (status >= 400 || Math.random() < cfg.accessLogSample))

/** The path without its query (which may carry what should not be logged), bounded. */
const loggedPath = (url: string) => {
  const path = url.split("?", 1)[0]!
  return path.length > 200 ? `${path.slice(0, 200)}…` : path
}

export const accessLine = (method: string, url: string, status: number, started: number) =>
  Effect.logInfo("request").pipe(Effect.annotateLogs({
    method: METHODS.has(method) ? method : "other",
    path: loggedPath(url),
    status,
    durationMs: Math.round((performance.now() - started) * 10) / 10
  }))

/**
 * Wraps the whole app. Errors that HttpApi encodes further out (401s from its
 * security middleware, typed endpoint errors) are counted with the status the
 * server will answer (`statusOf`). On exit, so that a request interrupted
 * because its client disconnected is counted too (as 499). The same outcome
 * makes the access log's line (ACCESS_LOG), one per request.
 */
export const measured =
  (cfg: Pick<HttpConventionsConfig, "accessLog" | "accessLogSample">) => (app: HttpApp.Default): HttpApp.Default =>
    Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
      const started = performance.now()
      const record = (status: number) =>
        cfg.accessLog !== "off" && accessLogged(cfg, status)
          ? Effect.zipRight(
            Effect.sync(() => recordRequest(request.method, routeOf(request.url), status, started)),
            accessLine(request.method, request.url, status, started)
          )
          : Effect.sync(() => recordRequest(request.method, routeOf(request.url), status, started))
      return Effect.onExit(
        app,
        Exit.match({
          onSuccess: (response) => record(response.status),
          onFailure: (cause) => Effect.flatMap(statusOf(cause), record)
        })
      )
    })
