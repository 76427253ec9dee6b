/**
 * What the generated OpenAPI document (HttpApi's, from the endpoint Schemas)
 * cannot say by itself, added in one place as its `OpenApi.Transform`:
 * - every error answer is RFC 9457 problem details (`application/problem+json`,
 *   the `Problem` schema beside each error's own members: App/RequestContext.ts
 *   shapes them at run time);
 * - the statuses the request guards and the server answer for every route
 *   (App/Middleware.ts): 413 and 415 where a body is read, 503 with
 *   `Retry-After` when the database is unreachable, 500; and `Retry-After` on
 *   every 429;
 * - the server, the license, the `X-Request-Id` response header.
 * `@redocly/cli lint` (recommended rules) runs on the result in the tests.
 */
import { STATUS_CODES } from "node:http"
import { PROBLEM_CONTENT_TYPE } from "../Kit/Problem.js"

type Spec = Record<string, unknown>
interface Operation {
  requestBody?: unknown
  responses: Record<string, { description?: string; content?: Record<string, { schema?: unknown }>; headers?: Spec }>
}

const PROBLEM_SCHEMA = {
  type: "object",
  description: "RFC 9457 problem details. `_tag` is the machine-readable error code; `detail` and `message` say " +
    "the same for people. An error may add members of its own (`issues`, `field`, `retryAfterSeconds`).",
  required: ["type", "title", "status", "detail", "_tag", "message"],
  properties: {
    type: { type: "string", description: "Always `about:blank`: the status and `_tag` say what happened." },
    title: { type: "string", description: "The status's reason phrase." },
    status: { type: "integer" },
    detail: { type: "string" },
    _tag: { type: "string" },
    message: { type: "string" }
  },
  additionalProperties: true
}

const RETRY_AFTER = {
  description: "Seconds to wait before trying again.",
  schema: { type: "integer", minimum: 0 }
}
const REQUEST_ID = {
  description: "The request's id: the client's X-Request-Id when it sent a valid one, else a new UUID.",
  schema: { type: "string" }
}

const problemResponse = (status: number, tag: string, detail: string) => ({
  description: `${STATUS_CODES[status]}: ${detail}`,
  content: {
    [PROBLEM_CONTENT_TYPE]: {
      schema: { $ref: "#/components/schemas/Problem" },
      example: { type: "about:blank", title: STATUS_CODES[status], status, detail, _tag: tag, message: detail }
    }
  }
})

const asProblem = (schema: unknown) =>
  schema === undefined
    ? { $ref: "#/components/schemas/Problem" }
    : { allOf: [{ $ref: "#/components/schemas/Problem" }, schema] }

const METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"]

/** Whether the route reads no database (its 503 for a database outage cannot happen). */
const withoutDatabase = (path: string) => path === "/health"

export const openApiContract = (generated: Spec): Spec => {
  const spec = structuredClone(generated)
  spec["servers"] = [{
    url: "/",
    description: "The origin that serves this document (`npm start`: http://localhost:3000)"
  }]
  const info = spec["info"] as Spec
  info["license"] = { name: "MIT", identifier: "MIT" }
  const components = (spec["components"] ??= {}) as Spec
  const schemas = (components["schemas"] ??= {}) as Spec
  schemas["Problem"] = PROBLEM_SCHEMA

  for (const [path, item] of Object.entries(spec["paths"] as Record<string, Record<string, Operation>>)) {
    for (const method of METHODS) {
      const operation = item[method]
      if (operation === undefined) continue
      const responses = operation.responses
      for (const [code, response] of Object.entries(responses)) {
        const status = Number(code)
        if (status >= 200 && status < 400) {
          response.headers = { ...response.headers, "X-Request-Id": REQUEST_ID }
          continue
        }
        const json = response.content?.["application/json"]
        response.content = { [PROBLEM_CONTENT_TYPE]: { schema: asProblem(json?.schema) } }
        if (status === 429 || status === 503) response.headers = { ...response.headers, "Retry-After": RETRY_AFTER }
        response.headers = { ...response.headers, "X-Request-Id": REQUEST_ID }
      }
      if (operation.requestBody !== undefined) {
        responses["413"] ??= problemResponse(413, "PayloadTooLarge", "the request body exceeds 64 KiB")
        responses["415"] ??= problemResponse(415, "UnsupportedMediaType", "the request body must be application/json")
      }
      if (!withoutDatabase(path) && responses["503"] === undefined) {
        responses["503"] = {
          ...problemResponse(503, "ServiceUnavailable", "the database is unavailable; retry shortly"),
          headers: { "Retry-After": RETRY_AFTER, "X-Request-Id": REQUEST_ID }
        }
      }
      responses["500"] ??= problemResponse(500, "InternalServerError", "internal server error")
    }
  }
  return spec
}
