/**
 * Request guards around the whole API, so that no input a client can send
 * yields a 500 or an empty body:
 * - a declared body over 64 KiB → 413 before anything is read; every other
 *   body of a POST, PATCH or PUT is read here, a chunked one up to the limit
 *   and over it → 413 as well (the platform's reader would destroy the socket
 *   instead of answering; `MaxBodySize`, set on the server layer, stays as the
 *   backstop for the bodies of other methods);
 * - a body whose media type is not exactly `application/json` (parameters such
 *   as `; charset=utf-8` allowed, any case), or that has no `Content-Type` → 415;
 * - malformed JSON → 400 (HttpApi reads bodies with `orDie`, so this arrives
 *   as a defect); JSON nested deeper than MAX_JSON_DEPTH (src/Domain/Json.ts) → 400 before it is
 *   decoded (a few KiB of `[[[[…` otherwise overflow the stack while the
 *   Schema error that quotes it is formatted: a 500);
 * - an unknown route → 404 JSON;
 * - PostgreSQL unreachable (a connection-class SQL error, see
 *   `isTransientSqlError`) → 503 with `Retry-After: 1`, logged at warning level;
 * - a client that breaks off while its body is read → interrupted as a client
 *   abort (RequestMetrics.ts counts it as 499; nobody is left to answer);
 * - any other defect → 500 JSON, logged at error level with its cause.
 * Typed errors pass through, the values they echo bounded (`boundEchoes`): HttpApi encodes them afterwards.
 */
import { HttpApiError, type HttpApp, HttpServerError, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { SqlError } from "@effect/sql/SqlError"
import { Cause, Effect, Option } from "effect"
import { type IncomingMessage, type Server, type ServerResponse, STATUS_CODES } from "node:http"
import type { Duplex } from "node:stream"
import { nestedTooDeep } from "../Domain/Json.js"
import { PROBLEM_CONTENT_TYPE, problemJson } from "../Kit/Problem.js"
import { describeSqlError, isTransientSqlError } from "../Store/SqlState.js"

export const BODY_LIMIT = 64 * 1024

const errorResponse = (status: number, tag: string, message: string, headers?: Record<string, string>) =>
  HttpServerResponse.unsafeJson({ _tag: tag, message }, { status, ...(headers ? { headers } : {}) })

// Responses are immutable values: build the fixed ones once.
const PAYLOAD_TOO_LARGE = errorResponse(413, "PayloadTooLarge", `request body exceeds ${BODY_LIMIT} bytes`, {
  connection: "close"
})
const UNSUPPORTED_MEDIA_TYPE = errorResponse(415, "UnsupportedMediaType", "request body must be application/json")
const MALFORMED_BODY = errorResponse(400, "BadRequest", "request body is not valid JSON")
const ROUTE_NOT_FOUND = errorResponse(404, "NotFound", "no such route")
const HOST_REQUIRED = errorResponse(400, "BadRequest", "HTTP/1.1 requests need a Host header", { connection: "close" })
const TOO_DEEP = errorResponse(400, "BadRequest", "request body is nested too deeply")
const INTERNAL_ERROR = errorResponse(500, "InternalServerError", "internal server error")
const SERVICE_UNAVAILABLE = errorResponse(503, "ServiceUnavailable", "the database is unavailable; retry shortly", {
  "retry-after": "1"
})

const hasBody = (method: string) => method === "POST" || method === "PATCH" || method === "PUT"

/**
 * Whether a `Content-Type` is JSON: its media type (RFC 9110 §8.3.1: the part
 * before any `;` parameter, case-insensitive) is exactly `application/json`.
 * Hand-written: one comparison, where a parser package would add a dependency.
 */
const isJson = (contentType: string) => contentType.split(";", 1)[0]!.trim().toLowerCase() === "application/json"

/** Whether the request carries a body: a non-zero Content-Length, or a chunked one. */
const carriesBody = (headers: HttpServerRequest.HttpServerRequest["headers"]) =>
  headers["transfer-encoding"] !== undefined ||
  (headers["content-length"] !== undefined && Number(headers["content-length"]) !== 0)

/** The longest part of a rejected value that an error message repeats. */
export const ECHO_LIMIT = 64

const bounded = (value: string) => (value.length > ECHO_LIMIT ? `${value.slice(0, ECHO_LIMIT)}…` : value)

/** A JSON string literal, as Schema's formatters quote a value. */
const QUOTED = /"(?:[^"\\\n]|\\.)*"/g

/**
 * An error message with the client's values in it cut to ECHO_LIMIT
 * characters: every quoted string (`actual "…"`, `Unable to decode "…"`,
 * a path's `["…"]`), then whatever else follows `actual ` on a line (arrays,
 * objects). Schema's formatters repeat a rejected value whole, in the message
 * and in each issue: a 60 KB field would come back twice.
 */
export const boundEchoes = (message: string): string =>
  message
    .replace(QUOTED, (quoted) => (quoted.length > ECHO_LIMIT + 2 ? `${quoted.slice(0, ECHO_LIMIT + 1)}…"` : quoted))
    .replace(/(actual )(.+)$/gm, (_, prefix: string, value: string) =>
      // A quoted value is bounded already (at most ECHO_LIMIT + 3 characters with its quotes and ellipsis).
      prefix + (value.length > ECHO_LIMIT + 3 ? `${value.slice(0, ECHO_LIMIT)}…` : value))

const boundPath = (path: ReadonlyArray<PropertyKey>) =>
  path.map((key) => (typeof key === "string" ? bounded(key) : key))

/** The same typed error with its echoed values bounded (HttpApi's decode errors, and any `{ message }` error). */
const withBoundedEchoes = <E>(error: E): E => {
  if (error instanceof HttpApiError.HttpApiDecodeError) {
    return new HttpApiError.HttpApiDecodeError({
      message: boundEchoes(error.message),
      issues: error.issues.map((issue) => ({
        ...issue,
        message: boundEchoes(issue.message),
        path: boundPath(issue.path)
      }))
    }) as E
  }
  if (
    error instanceof Error && "_tag" in error && typeof error.message === "string" &&
    boundEchoes(error.message) !== error.message
  ) {
    // A tagged error class whose fields are its own enumerable properties: rebuilt with the message bounded.
    const Class = error.constructor as new(fields: Record<string, unknown>) => E
    return new Class({ ...(error as Record<string, unknown>), message: boundEchoes(error.message) })
  }
  return error
}

const isTooLarge = (error: HttpServerError.RequestError) =>
  error.cause instanceof Error && error.cause.message === "maxBytes exceeded"

const recover = (request: HttpServerRequest.HttpServerRequest, cause: Cause.Cause<never>) => {
  const failure: Option.Option<unknown> = Cause.failureOption(cause)
  if (Option.isSome(failure)) {
    const error = failure.value
    return HttpServerError.isServerError(error) && error._tag === "RouteNotFound"
      ? Effect.succeed(ROUTE_NOT_FOUND)
      : Effect.failCause(Cause.map(cause, withBoundedEchoes))
  }
  const defect = Cause.dieOption(cause)
  if (Option.isNone(defect)) return Effect.failCause(cause) // interrupted
  const error = defect.value
  if (HttpServerError.isServerError(error) && error._tag === "RequestError") {
    if (clientGone(request)) return clientAbort
    return Effect.succeed(isTooLarge(error) ? PAYLOAD_TOO_LARGE : MALFORMED_BODY)
  }
  if (error instanceof SqlError && isTransientSqlError(error)) {
    return Effect.as(
      Effect.logWarning(`${request.method} ${request.url}: database unavailable (${describeSqlError(error)})`),
      SERVICE_UNAVAILABLE
    )
  }
  return Effect.as(
    Effect.logError(`${request.method} ${request.url} failed`, cause),
    INTERNAL_ERROR
  )
}

/** The client broke off before its request was read to the end. */
const clientGone = (request: HttpServerRequest.HttpServerRequest) =>
  NodeHttpServerRequest.toIncomingMessage(request).readableAborted

/** Ends the request as the platform does when the client disconnects (RequestMetrics.ts: 499). */
const clientAbort = Effect.interruptWith(HttpServerError.clientAbortFiberId)

/**
 * Reads a body to its end, keeping at most BODY_LIMIT bytes (a chunked one
 * can be longer); `undefined` when it was longer, `null` when the client
 * broke off (a request stream's error is its client going away).
 * Hand-written rather than the platform's `text`, which reads through a fiber
 * and a cached Effect of its own on every request.
 */
const readBody = (incoming: IncomingMessage) =>
  Effect.async<string | undefined | null>((resume) => {
    const chunks: Array<Buffer> = []
    let size = 0
    incoming.on("data", (chunk: Buffer) => {
      size += chunk.length
      if (size <= BODY_LIMIT) chunks.push(chunk)
      else chunks.length = 0
    })
    incoming.once("end", () =>
      resume(Effect.succeed(size > BODY_LIMIT ? undefined : Buffer.concat(chunks).toString("utf8"))))
    incoming.once("error", () =>
      resume(Effect.succeed(null)))
  })

/**
 * Hands the body already read to HttpApi, whose `json` reads `text`: the
 * request's own `text` (a getter of its class) is shadowed on this instance,
 * so the request in the context stays the same object.
 */
const setText = (request: HttpServerRequest.HttpServerRequest, text: string) => {
  Object.defineProperty(request, "text", { value: Effect.succeed(text), configurable: true })
}

/** RFC 9112: an HTTP/1.1 request without Host is a 400 (NodeServerLive turns off Node's own, bodyless, check). */
const missingHost = (request: HttpServerRequest.HttpServerRequest) =>
  request.headers.host === undefined && NodeHttpServerRequest.toIncomingMessage(request).httpVersion === "1.1"

export const guard = (app: HttpApp.Default): HttpApp.Default =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
    if (missingHost(request)) return Effect.succeed(HOST_REQUIRED)
    const run = Effect.catchAllCause(app, (cause) => recover(request, cause))
    if (!hasBody(request.method)) return run
    const headers = request.headers
    const type = headers["content-type"]
    if (type === undefined ? carriesBody(headers) : !isJson(type)) {
      return Effect.succeed(UNSUPPORTED_MEDIA_TYPE)
    }
    const length = headers["content-length"]
    if (length !== undefined && Number(length) > BODY_LIMIT) return Effect.succeed(PAYLOAD_TOO_LARGE)
    if (length === undefined && headers["transfer-encoding"] === undefined) return run
    return Effect.flatMap(readBody(NodeHttpServerRequest.toIncomingMessage(request)), (text) => {
      if (text === null) return clientAbort
      // Over the limit: a chunked body (a declared one over it was answered above).
      if (text === undefined) return Effect.succeed(PAYLOAD_TOO_LARGE)
      if (nestedTooDeep(text)) return Effect.succeed(TOO_DEEP)
      setText(request, text)
      return run
    })
  })

/**
 * Outermost: logs what still failed after the response was sent (a response
 * that could not be encoded, say). The platform re-raises after answering,
 * with the answer as a defect in the cause: client disconnects (499) and
 * other answers below 500 are not errors.
 */
export const logUnhandled = (app: HttpApp.Default): HttpApp.Default =>
  Effect.tapErrorCause(app, (cause) => {
    const answered = Cause.find(cause, (c) =>
      Cause.isDieType(c) && HttpServerResponse.isServerResponse(c.defect) ? Option.some(c.defect) : Option.none())
    if (Option.isSome(answered) && answered.value.status < 500) {
      return Effect.void
    }
    if (Cause.isInterruptedOnly(cause)) {
      return Effect.void
    }
    return Effect.logError("Unhandled HTTP failure", cause)
  })

const protocolError = (status: number, tag: string, message: string) => {
  const body = problemJson(status, tag, message)
  return `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: ${PROBLEM_CONTENT_TYPE}\r\ncontent-length: ${
    Buffer.byteLength(body)
  }\r\n` +
    `connection: close\r\n\r\n${body}`
}
const HEADERS_TOO_LARGE = protocolError(431, "RequestHeaderFieldsTooLarge", "request headers exceed 16 KiB")
const REQUEST_TIMEOUT = protocolError(408, "RequestTimeout", "the request took too long to arrive")
const CHUNK_EXTENSIONS_TOO_LARGE = protocolError(413, "PayloadTooLarge", "chunk extensions are too large")
const MALFORMED_REQUEST = protocolError(400, "BadRequest", "malformed HTTP request")
const EXPECTATION_FAILED = problemJson(417, "ExpectationFailed", "only `Expect: 100-continue` is supported")

/**
 * Requests that Node's HTTP parser rejects before the API sees them (a
 * malformed request line, header or Content-Length, headers over 16 KiB) and
 * unsupported `Expect` headers: answered, like every other error, with
 * problem details (Kit/Problem.ts), where Node sends a bare status line. Same
 * statuses and conditions as Node's own handler.
 */
export const answerProtocolErrorsAsJson = (server: Server) => {
  server.on("clientError", (error: Error & { readonly code?: string }, socket: Duplex) => {
    const inFlight = (socket as Duplex & { readonly _httpMessage?: { readonly headersSent?: boolean } })._httpMessage
    if (error.code === "ECONNRESET" || !socket.writable || inFlight?.headersSent === true) {
      socket.destroy()
      return
    }
    socket.end(
      error.code === "HPE_HEADER_OVERFLOW"
        ? HEADERS_TOO_LARGE
        : error.code === "ERR_HTTP_REQUEST_TIMEOUT"
        ? REQUEST_TIMEOUT
        : error.code === "HPE_CHUNK_EXTENSIONS_OVERFLOW"
        ? CHUNK_EXTENSIONS_TOO_LARGE
        : MALFORMED_REQUEST
    )
  })
  server.on("checkExpectation", (_request: IncomingMessage, response: ServerResponse) => {
    response.writeHead(417, { "content-type": PROBLEM_CONTENT_TYPE, connection: "close" }).end(EXPECTATION_FAILED)
  })
}
