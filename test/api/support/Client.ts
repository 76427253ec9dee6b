/** A small HTTP client for the API under test: raw requests, so tests see the wire format. */
import { HttpClient, HttpClientRequest } from "@effect/platform"
import { Effect, Schema } from "effect"
import { STATUS_CODES } from "node:http"

export interface Reply {
  readonly status: number
  readonly text: string
  /** The parsed JSON body (undefined when the body is not JSON). */
  readonly body: unknown
  readonly headers: Readonly<Record<string, string>>
}

export interface CallOptions {
  readonly token?: string | undefined
  /** Sent as JSON. */
  readonly json?: unknown
  /** Sent verbatim, with `contentType` (default application/json). */
  readonly raw?: string | undefined
  readonly contentType?: string | undefined
  readonly headers?: Readonly<Record<string, string>> | undefined
}

const parse = (text: string): unknown => {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

export const call = (method: "GET" | "POST" | "PATCH" | "PUT" | "DELETE", path: string, options: CallOptions = {}) =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    let request = HttpClientRequest.make(method)(path)
    if (options.token !== undefined) request = HttpClientRequest.bearerToken(request, options.token)
    if (options.headers !== undefined) request = HttpClientRequest.setHeaders(request, options.headers)
    if (options.json !== undefined) request = HttpClientRequest.bodyUnsafeJson(request, options.json)
    if (options.raw !== undefined) {
      request = HttpClientRequest.bodyText(request, options.raw, options.contentType ?? "application/json")
    }
    const response = yield* client.execute(request)
    const text = yield* response.text
    const reply: Reply = { status: response.status, text, body: parse(text), headers: response.headers }
    return reply
  }).pipe(Effect.scoped, Effect.orDie)

export const get = (path: string, token?: string) => call("GET", path, { token })
export const post = (path: string, json: unknown, token?: string) => call("POST", path, { token, json })
export const patch = (path: string, json: unknown, token?: string) => call("PATCH", path, { token, json })

/** The reply's body decoded with `schema` (a contract check as well as a cast). */
/** The exact body of an error answer: RFC 9457 problem details (src/Kit/Problem.ts) with the error's own members. */
export const problem = (status: number, tag: string, message: unknown, extra: Record<string, unknown> = {}) => ({
  type: "about:blank",
  title: STATUS_CODES[status],
  status,
  detail: message,
  ...extra,
  _tag: tag,
  message
})

export const decode = <A, I>(schema: Schema.Schema<A, I>, reply: Reply): A =>
  Schema.decodeUnknownSync(schema)(reply.body)
