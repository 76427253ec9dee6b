/**
 * What every request carries, around the whole API:
 * - a request id: the client's `X-Request-Id` when it is a sane token (1–128
 *   characters of `A–Z a–z 0–9 . _ ~ : / + = -`), else a new UUID; returned as
 *   `X-Request-Id` on every response (errors too: a pre-response handler sees
 *   the final response) and on every log line written while the request runs
 *   (`requestId` annotation);
 * - every JSON error answer (4xx and 5xx, whoever built it: HttpApi's error
 *   encoding, the request guards, the authentication middleware) as RFC 9457
 *   problem details (Kit/Problem.ts), in this one place;
 * - CORS for the origins in CORS_ORIGINS (the platform's `HttpMiddleware.cors`:
 *   preflights answered 204, headers on every response), nothing when unset.
 * The access log line is written where the request's outcome is known
 * (RequestMetrics.ts `measured`), inside this, so it carries the request id.
 */
import { HttpApp, HttpMiddleware, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect, FiberRef, HashMap } from "effect"
import type { HttpConventionsConfig } from "../Config.js"
import { PROBLEM_CONTENT_TYPE, toProblem } from "../Kit/Problem.js"

export const REQUEST_ID_HEADER = "x-request-id"
const SANE_ID = /^[A-Za-z0-9._~:/+=-]{1,128}$/

/** The client's id when it is safe to echo and log, else a new one. */
export const requestIdOf = (header: string | undefined): string =>
  header !== undefined && SANE_ID.test(header) ? header : crypto.randomUUID()

const utf8 = new TextDecoder()

/** A JSON error answer as problem details; any other answer as it is. */
export const asProblem = (response: HttpServerResponse.HttpServerResponse): HttpServerResponse.HttpServerResponse => {
  const body = response.body
  if (response.status < 400 || body._tag !== "Uint8Array" || !body.contentType.startsWith("application/json")) {
    return response
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(utf8.decode(body.body))
  } catch {
    return response
  }
  return HttpServerResponse.unsafeJson(toProblem(response.status, parsed), {
    status: response.status,
    headers: response.headers,
    contentType: PROBLEM_CONTENT_TYPE
  })
}

export const withRequestId = (app: HttpApp.Default): HttpApp.Default =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
    const id = requestIdOf(request.headers[REQUEST_ID_HEADER])
    return HttpApp.appendPreResponseHandler((_request, response) =>
      Effect.succeed(HttpServerResponse.setHeader(asProblem(response), REQUEST_ID_HEADER, id))
    ).pipe(
      // Set on the request's own fiber, not `annotateLogs` (a set and a restore per request): that fiber ends with it.
      Effect.zipRight(
        FiberRef.update(FiberRef.currentLogAnnotations, (annotations) => HashMap.set(annotations, "requestId", id))
      ),
      Effect.zipRight(app)
    )
  })

/** The request id, then CORS when origins are configured, around `app`. */
export const requestContext = (cfg: HttpConventionsConfig) => {
  const cors = cfg.corsOrigins.length === 0 ? undefined : HttpMiddleware.cors({
    allowedOrigins: cfg.corsOrigins.includes("*") ? [] : cfg.corsOrigins,
    allowedMethods: ["GET", "POST", "PATCH", "PUT", "DELETE"],
    allowedHeaders: ["authorization", "content-type", "if-none-match", "last-event-id", REQUEST_ID_HEADER],
    exposedHeaders: [REQUEST_ID_HEADER, "retry-after", "etag", "location"],
    maxAge: 600
  })
  return (app: HttpApp.Default): HttpApp.Default => withRequestId(cors === undefined ? app : cors(app))
}
