/**
 * The HTTP surface: health and readiness, OpenAPI and docs, and the guards
 * that keep any client input away from a 500 (size, content type, malformed
 * JSON, unknown routes, arbitrary bodies).
 */
import { expect, layer } from "@effect/vitest"
import { Effect, FastCheck, Ref } from "effect"
import { Ticket } from "../../src/Tickets/Domain.js"
import { call, decode, get, patch, post, problem } from "./support/Client.js"
import { makeFixtures } from "./support/Fixtures.js"
import { apiTestLayer, PublisherConnected } from "./support/Layers.js"

layer(apiTestLayer(), { excludeTestServices: true, timeout: "60 seconds" })("HTTP surface", (it) => {
  it.effect("GET /health answers 200 JSON", () =>
    Effect.gen(function*() {
      const r = yield* get("/health")
      expect(r.status).toBe(200)
      expect(r.headers["content-type"]).toContain("application/json")
      expect(r.body).toEqual({ status: "ok" })
    }))

  it.effect("GET /ready is 200 when PostgreSQL, Redis and the publisher are up", () =>
    Effect.gen(function*() {
      const r = yield* get("/ready")
      expect(r.status).toBe(200)
      expect(r.body).toEqual({
        status: "ready",
        checks: { database: "up", redis: "up", rabbitmq: "up" },
        broker: { status: "up", node: "amqp://127.0.0.1:5672" }
      })
    }))

  it.effect("GET /ready is 503 naming RabbitMQ when the publisher is disconnected", () =>
    Effect.gen(function*() {
      const connected = yield* PublisherConnected
      yield* Ref.set(connected, false)
      const r = yield* get("/ready").pipe(Effect.ensuring(Ref.set(connected, true)))
      expect(r.status).toBe(503)
      expect(r.body).toMatchObject({
        type: "about:blank",
        _tag: "NotReady",
        status: 503,
        checks: { database: "up", redis: "up", rabbitmq: "down" },
        broker: { status: "down" },
        down: ["rabbitmq"]
      })
    }))

  it.effect("GET /openapi.json describes every endpoint, GET /docs serves a page", () =>
    Effect.gen(function*() {
      const spec = yield* get("/openapi.json")
      expect(spec.status).toBe(200)
      const paths = Object.keys((spec.body as { paths: Record<string, unknown> }).paths)
      expect(paths).toEqual(expect.arrayContaining([
        "/health",
        "/ready",
        "/v1/auth/login",
        "/v1/users",
        "/v1/users/me",
        "/v1/tickets",
        "/v1/tickets/{id}",
        "/v1/tickets/{id}/status",
        "/v1/messages",
        "/v1/tickets/{id}/messages"
      ]))
      const docs = yield* get("/docs")
      expect(docs.status).toBe(200)
      expect(docs.headers["content-type"]).toContain("text/html")
    }))

  it.effect("GET /metrics serves the process's metrics in Prometheus text format", () =>
    Effect.gen(function*() {
      yield* get("/health")
      const r = yield* get("/metrics")
      expect(r.status).toBe(200)
      expect(r.headers["content-type"]).toContain("text/plain")
      expect(r.text).toMatch(/^# (HELP|TYPE) /m)
      // HTTP requests by route and status, with a latency histogram; unknown paths collapse to "other".
      yield* get(`/v1/tickets/${crypto.randomUUID()}`)
      yield* get("/no/such/path/for/metrics")
      const again = yield* get("/metrics")
      expect(again.text).toMatch(
        /opsdesk_http_requests_total\{[^}]*method="GET"[^}]*route="\/health"[^}]*status="200"[^}]*\} [1-9]/
      )
      expect(again.text).toMatch(/opsdesk_http_requests_total\{[^}]*route="\/v1\/tickets\/:id"[^}]*status="401"/)
      expect(again.text).toMatch(/opsdesk_http_requests_total\{[^}]*route="other"[^}]*status="404"/)
      expect(again.text).not.toContain("/no/such/path")
      expect(again.text).toMatch(/opsdesk_http_request_duration_seconds_bucket\{/)
    }))

  it.effect("unknown routes and methods are 404 JSON", () =>
    Effect.gen(function*() {
      for (const [method, path] of [["GET", "/nope"], ["DELETE", "/v1/tickets"], ["GET", "/v1"]] as const) {
        const r = yield* call(method, path)
        expect(r.status).toBe(404)
        expect(r.body).toEqual(problem(404, "NotFound", "no such route"))
      }
    }))

  it.scoped("a body over 64 KiB is 413 JSON, with or without Content-Length", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const user = yield* fx.user("customer")
      const big = JSON.stringify({ title: "big", description: "x".repeat(70 * 1024) })
      const declared = yield* call("POST", "/v1/tickets", { token: user.token, raw: big })
      expect(declared.status).toBe(413)
      expect(declared.body).toMatchObject({ _tag: "PayloadTooLarge" })
      // Under the limit the body is read and validated (description is at most 10000 characters).
      const under = yield* call("POST", "/v1/tickets", {
        token: user.token,
        json: { title: "small", description: "x".repeat(60 * 1024) }
      })
      expect(under.status).toBe(400)
      expect(under.body).toMatchObject({ _tag: "HttpApiDecodeError" })
    }))

  it.scoped("a chunked body over 64 KiB is 413 JSON; a small chunked body is accepted", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const user = yield* fx.user("customer")
      const { request: send } = yield* Effect.promise(() => import("node:http"))
      const { HttpServer } = yield* Effect.promise(() => import("@effect/platform"))
      const server = yield* HttpServer.HttpServer
      const port = server.address._tag === "TcpAddress" ? server.address.port : 0
      const chunked = (body: string) =>
        Effect.async<{ status: number; text: string }>((resume) => {
          const req = send({
            host: "127.0.0.1",
            port,
            method: "POST",
            path: "/v1/tickets",
            headers: {
              "content-type": "application/json",
              authorization: `Bearer ${user.token}`,
              "transfer-encoding": "chunked"
            }
          }, (res) => {
            let text = ""
            res.setEncoding("utf8").on("data", (c: string) => (text += c)).on(
              "end",
              () => resume(Effect.succeed({ status: res.statusCode ?? 0, text }))
            )
          })
          req.on("error", (e) => resume(Effect.die(e)))
          for (let i = 0; i < body.length; i += 8192) req.write(body.slice(i, i + 8192))
          req.end()
        })
      const big = yield* chunked(JSON.stringify({ title: "big", description: "y".repeat(80 * 1024) }))
      expect(big.status).toBe(413)
      expect(JSON.parse(big.text)).toMatchObject({ _tag: "PayloadTooLarge" })
      const small = yield* chunked(JSON.stringify({ title: "chunked", description: "fine" }))
      expect(small.status).toBe(201)
      expect(JSON.parse(small.text)).toMatchObject({ title: "chunked" })
    }))

  it.scoped("a non-JSON content type is 415, malformed JSON is 400, both JSON", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const user = yield* fx.user("customer")
      const text = yield* call("POST", "/v1/tickets", {
        token: user.token,
        raw: "title=x",
        contentType: "application/x-www-form-urlencoded"
      })
      expect(text.status).toBe(415)
      expect(text.body).toMatchObject({ _tag: "UnsupportedMediaType" })
      const broken = yield* call("POST", "/v1/tickets", { token: user.token, raw: "{\"title\": " })
      expect(broken.status).toBe(400)
      expect(broken.body).toMatchObject({ _tag: "BadRequest" })
      const login = yield* call("POST", "/v1/auth/login", { raw: "nope" })
      expect(login.status).toBe(400)
    }))

  it.scoped("validation failures are 400 and name the field", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const user = yield* fx.user("customer")
      const cases: Array<[unknown, string]> = [
        [{ title: "", description: "d" }, "title"],
        [{ title: "   ", description: "d" }, "title"],
        [{ title: "t".repeat(201), description: "d" }, "title"],
        [{ title: "t", description: "d".repeat(10_001) }, "description"],
        [{ title: "t" }, "description"],
        [{ title: "t", description: "d", priority: "critical" }, "priority"],
        [{ title: 42, description: "d" }, "title"]
      ]
      for (const [body, field] of cases) {
        const r = yield* post("/v1/tickets", body, user.token)
        expect(r.status, JSON.stringify(body)).toBe(400)
        const issues = (r.body as { issues: Array<{ path: Array<string> }> }).issues
        expect(issues.map((i) => i.path[0]), JSON.stringify(body)).toContain(field)
      }
    }))

  it.scoped("no JSON body a client sends to any endpoint produces a 5xx (property)", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const user = yield* fx.user("agent")
      const created = yield* post("/v1/tickets", { title: "fuzz target", description: "d" }, user.token)
      const id = (created.body as { id: string }).id
      const routes: Array<["POST" | "PATCH", string]> = [
        ["POST", "/v1/auth/login"],
        ["POST", "/v1/users"],
        ["POST", "/v1/tickets"],
        ["PATCH", `/v1/tickets/${id}`],
        ["POST", `/v1/tickets/${id}/status`],
        ["POST", "/v1/messages"]
      ]
      const samples = FastCheck.sample(
        FastCheck.tuple(FastCheck.constantFrom(...routes), FastCheck.jsonValue({ maxDepth: 3 })),
        60
      )
      for (const [[method, path], body] of samples) {
        const r = yield* call(method, path, { token: user.token, raw: JSON.stringify(body) })
        expect(r.status, `${method} ${path} ${JSON.stringify(body)}`).toBeLessThan(500)
        expect(r.body, `${method} ${path} ${JSON.stringify(body)}`).toBeTypeOf("object")
      }
      const queries = FastCheck.sample(
        FastCheck.dictionary(
          FastCheck.constantFrom("status", "assigneeId", "priority", "limit", "cursor", "other"),
          FastCheck.string()
        ),
        40
      )
      for (const query of queries) {
        const qs = new URLSearchParams(query).toString()
        const r = yield* get(`/v1/tickets?${qs}`, user.token)
        expect(r.status, qs).toBeLessThan(500)
        const m = yield* get(`/v1/tickets/${id}/messages?${qs}`, user.token)
        expect(m.status, qs).toBeLessThan(500)
      }
    }))

  it.scoped("any text in any string field (NUL, lone surrogates, emoji...): never a 5xx; accepted text is stored verbatim (property)", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const agent = yield* fx.user("agent")
      const text = FastCheck.string({ unit: "binary", maxLength: 30 })
      const samples = FastCheck.sample(
        FastCheck.record({ title: text, description: text, content: text, username: text }),
        40
      )
      // Make sure the nasty cases are there whatever the sample.
      samples.push({ title: "a\u0000b", description: "d", content: "\ud800", username: "x\u0000" })
      samples.push({ title: "ok \ud83d\ude00", description: "\udc00 alone", content: "fine", username: "\ud800" })
      for (const s of samples) {
        const what = JSON.stringify(s)
        const created = yield* post("/v1/tickets", { title: s.title, description: s.description }, agent.token)
        expect(created.status, what).toBeLessThan(500)
        if (created.status === 201) {
          const back = decode(Ticket, yield* get(`/v1/tickets/${decode(Ticket, created).id}`, agent.token))
          expect([back.title, back.description], what).toEqual([s.title, s.description])
          expect((yield* post("/v1/messages", { ticketId: back.id, content: s.content }, agent.token)).status, what)
            .toBeLessThan(500)
          expect((yield* patch(`/v1/tickets/${back.id}`, { description: s.content }, agent.token)).status, what)
            .toBeLessThan(500)
        }
        expect((yield* post("/v1/auth/login", { username: s.username, password: s.title })).status, what).toBeLessThan(
          500
        )
      }
    }))
})
