/**
 * HTTP conventions on every answer, errors included: `X-Request-Id` accepted
 * (when sane) or generated, returned, and on the request's log lines; one
 * access-log line per request (ACCESS_LOG=on); CORS for the configured
 * origins only (CORS_ORIGINS), preflights answered, and the cached docs'
 * `Vary: Accept-Encoding` kept beside CORS's `Vary: Origin`.
 */
import { HttpClient, HttpClientRequest } from "@effect/platform"
import { describe, expect, it, layer } from "@effect/vitest"
import { ConfigProvider, Effect, HashMap, Layer, Logger } from "effect"
import { requestIdOf } from "../../src/App/RequestContext.js"
import { call, get } from "./support/Client.js"
import { apiTestLayer } from "./support/Layers.js"

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

interface Line {
  readonly message: string
  readonly annotations: Readonly<Record<string, unknown>>
}
const lines: Array<Line> = []
const CaptureLogs = Logger.add(Logger.make(({ annotations, message }) => {
  lines.push({
    message: (Array.isArray(message) ? message : [message]).map(String).join(" "),
    annotations: Object.fromEntries(HashMap.toEntries(annotations))
  })
}))

const APP = "https://app.example.com"
const ADMIN = "https://admin.example.com"
const configured = Layer.setConfigProvider(
  ConfigProvider.fromMap(new Map([["CORS_ORIGINS", `${APP}, ${ADMIN}/`], ["ACCESS_LOG", "on"]])).pipe(
    ConfigProvider.orElse(() => ConfigProvider.fromEnv())
  )
)

const options = (path: string, headers: Record<string, string>) =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    const response = yield* client.execute(HttpClientRequest.setHeaders(HttpClientRequest.options(path), headers))
    return { status: response.status, headers: response.headers }
  }).pipe(Effect.scoped, Effect.orDie)

describe("requestIdOf", () => {
  it("keeps a sane client id, replaces anything else", () => {
    expect(requestIdOf("abc-123_x.y:z/w+v=u~")).toBe("abc-123_x.y:z/w+v=u~")
    for (const bad of [undefined, "", "has space", "new\nline", "x".repeat(129), "quote\"", "é"]) {
      expect(requestIdOf(bad)).toMatch(UUID)
    }
  })
})

layer(apiTestLayer().pipe(Layer.provide(Layer.merge(configured, CaptureLogs))), {
  excludeTestServices: true,
  timeout: "60 seconds"
})("request id, access log and CORS (configured)", (it) => {
  it.effect("every answer carries a request id: the client's when sane, else a new one", () =>
    Effect.gen(function*() {
      const answers = [
        yield* get("/health"),
        yield* get("/no/such/route"),
        yield* get("/v1/users/me"),
        yield* call("POST", "/v1/auth/login", { raw: "{not json" }),
        yield* call("POST", "/v1/auth/login", { json: { username: "" } })
      ]
      expect(answers.map((a) => a.status)).toEqual([200, 404, 401, 400, 400])
      for (const a of answers) expect(a.headers["x-request-id"]).toMatch(UUID)
      expect(new Set(answers.map((a) => a.headers["x-request-id"])).size).toBe(answers.length)

      const mine = yield* call("GET", "/v1/users/me", { headers: { "x-request-id": "trace-42.a" } })
      expect(mine.status).toBe(401)
      expect(mine.headers["x-request-id"]).toBe("trace-42.a")
      const hostile = yield* call("GET", "/health", { headers: { "x-request-id": "a".repeat(300) } })
      expect(hostile.headers["x-request-id"]).toMatch(UUID)
    }))

  it.effect("one access-log line per request, with its request id, method, path without query, status", () =>
    Effect.gen(function*() {
      const id = `access-${crypto.randomUUID()}`
      yield* call("GET", "/v1/tickets?limit=5&secret=shh", { headers: { "x-request-id": id } })
      const mine = lines.filter((l) => l.annotations["requestId"] === id)
      const access = mine.filter((l) => l.message === "request")
      expect(access).toHaveLength(1)
      expect(access[0]!.annotations).toMatchObject({ method: "GET", path: "/v1/tickets", status: 401 })
      expect(typeof access[0]!.annotations["durationMs"]).toBe("number")
      expect(JSON.stringify(mine)).not.toContain("shh")
    }))

  it.effect("CORS: listed origins get the headers on answers and errors, preflights are 204, others get none", () =>
    Effect.gen(function*() {
      const ok = yield* call("GET", "/health", { headers: { origin: APP } })
      expect(ok.headers["access-control-allow-origin"]).toBe(APP)
      expect(ok.headers["access-control-expose-headers"]).toContain("x-request-id")
      const error = yield* call("GET", "/v1/users/me", { headers: { origin: ADMIN } })
      expect(error.status).toBe(401)
      expect(error.headers["access-control-allow-origin"]).toBe(ADMIN)

      const preflight = yield* options("/v1/tickets", {
        origin: APP,
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type"
      })
      expect(preflight.status).toBe(204)
      expect(preflight.headers["access-control-allow-origin"]).toBe(APP)
      expect(preflight.headers["access-control-allow-methods"]).toContain("POST")
      expect(preflight.headers["access-control-allow-headers"]).toContain("authorization")

      const stranger = yield* call("GET", "/health", { headers: { origin: "https://evil.example.net" } })
      expect(stranger.headers["access-control-allow-origin"]).toBeUndefined()
    }))

  it.effect("the cached documents keep Vary: Accept-Encoding beside CORS's Vary: Origin", () =>
    Effect.gen(function*() {
      for (const path of ["/openapi.json", "/asyncapi.json"]) {
        const r = yield* call("GET", path, { headers: { origin: APP, "accept-encoding": "gzip" } })
        expect(r.status).toBe(200)
        expect(r.headers["vary"]?.toLowerCase()).toContain("accept-encoding")
        expect(r.headers["vary"]?.toLowerCase()).toContain("origin")
      }
    }))
})

layer(apiTestLayer(), { excludeTestServices: true, timeout: "60 seconds" })("CORS (default: off)", (it) => {
  it.effect("no CORS headers without CORS_ORIGINS, whatever the origin", () =>
    Effect.gen(function*() {
      const r = yield* call("GET", "/health", { headers: { origin: APP } })
      expect(r.status).toBe(200)
      expect(r.headers["access-control-allow-origin"]).toBeUndefined()
      expect(r.headers["x-request-id"]).toMatch(UUID)
    }))
})
