/**
 * One error shape for every 4xx and 5xx: RFC 9457 problem details
 * (`application/problem+json`). `type` is `about:blank` (the status says what
 * happened), `title` the status's reason phrase, `detail` the message; the
 * machine-readable code stays in `_tag`, beside `message` and whatever else
 * the error carries (`issues`, `field`, `retryAfterSeconds`…), so clients
 * written against the earlier `{ _tag, message }` bodies keep working.
 */
import { STATUS_CODES } from "node:http"

export const PROBLEM_CONTENT_TYPE = "application/problem+json"

export interface Problem {
  readonly type: string
  readonly title: string
  readonly status: number
  readonly detail: string
  readonly _tag: string
  readonly message: string
  readonly [extension: string]: unknown
}

/** The problem for an error body (`{ _tag, message, ... }`, or anything else JSON) answered with `status`. */
export const toProblem = (status: number, body: unknown): Problem => {
  const fields = typeof body === "object" && body !== null && !Array.isArray(body)
    ? (body as Record<string, unknown>)
    : {}
  const tag = typeof fields["_tag"] === "string" ? fields["_tag"] : (STATUS_CODES[status] ?? "Error").replace(/\W/g, "")
  const message = typeof fields["message"] === "string"
    ? fields["message"]
    : (STATUS_CODES[status] ?? "error").toLowerCase()
  return {
    ...fields,
    type: "about:blank",
    title: STATUS_CODES[status] ?? "Error",
    status,
    detail: message,
    _tag: tag,
    message
  }
}

/** A problem's JSON text, for answers built outside HttpApi (the Node server's protocol errors). */
export const problemJson = (status: number, tag: string, message: string) =>
  JSON.stringify(toProblem(status, { _tag: tag, message }))
