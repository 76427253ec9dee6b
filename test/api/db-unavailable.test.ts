/**
 * PostgreSQL unreachable: the API answers 503 `ServiceUnavailable` with
 * `Retry-After: 1` (not a 500, and without hanging), keeps serving /health,
 * does not count the failed logins against anyone, and recovers by itself
 * once the database is back. The API reaches PostgreSQL through a TCP proxy
 * that the test cuts (connections reset, new ones refused), silences (new
 * connections accepted but never answered, like a partition) and restores.
 */
import { expect, layer } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { connect, createServer, type Server, type Socket } from "node:net"
import { waitUntil } from "../support/Env.js"
import { apiWithOwnThrottle } from "../support/LoginThrottle.js"
import { type RawReply, rawRequest, serverPort } from "../support/RawHttp.js"
import { TEST_DATABASE_URL } from "../support/testDatabase.js"
import { problem } from "./support/Client.js"
import { makeFixtures, PASSWORD } from "./support/Fixtures.js"

interface Proxy {
  readonly port: number
  /** Resets every open connection and refuses new ones. */
  readonly cut: Effect.Effect<void>
  /** Resets every open connection; new ones are accepted and never answered. */
  readonly silence: Effect.Effect<void>
  /** Accepts connections again, on the same port. */
  readonly restore: Effect.Effect<void>
}
class DbProxy extends Context.Tag("test/DbProxy")<DbProxy, Proxy>() {}

const target = new URL(TEST_DATABASE_URL)

const listen = (server: Server, port: number) =>
  Effect.async<number>((resume) => {
    server.listen(port, "127.0.0.1", () => {
      const address = server.address()
      resume(Effect.succeed(typeof address === "object" && address !== null ? address.port : port))
    })
  })

const makeProxy = Effect.gen(function*() {
  const sockets = new Set<Socket>()
  const held = new Set<Socket>()
  const mode = { silent: false }
  const server = createServer((client) => {
    if (mode.silent) {
      held.add(client)
      client.on("error", () => undefined).on("close", () => held.delete(client))
      return
    }
    const upstream = connect(Number(target.port || 5432), target.hostname)
    for (const s of [client, upstream]) {
      sockets.add(s)
      s.on("error", () => undefined)
      s.on("close", () => {
        sockets.delete(s)
        client.destroy()
        upstream.destroy()
      })
    }
    client.pipe(upstream)
    upstream.pipe(client)
  })
  const port = yield* listen(server, 0)
  const resetAll = Effect.sync(() => {
    for (const s of [...sockets, ...held]) s.resetAndDestroy()
  })
  const cut = Effect.async<void>((resume) => {
    server.close(() => resume(Effect.void))
    for (const s of [...sockets, ...held]) s.resetAndDestroy()
  })
  const silence = Effect.zipRight(resetAll, Effect.sync(() => void (mode.silent = true)))
  /** Forwards again; connections held while silent are reset (their clients retry). */
  const restore = Effect.suspend(() => {
    mode.silent = false
    for (const s of held) s.resetAndDestroy()
    return server.listening ? Effect.void : Effect.asVoid(listen(server, port))
  })
  yield* Effect.addFinalizer(() =>
    Effect.sync(() => {
      for (const s of [...sockets, ...held]) s.destroy()
      server.close()
    })
  )
  return DbProxy.of({ port, cut, silence, restore })
})

const TestLayer = Layer.unwrapScoped(Effect.map(makeProxy, (proxy) => {
  const url = new URL(TEST_DATABASE_URL)
  url.hostname = "127.0.0.1"
  url.port = String(proxy.port)
  return apiWithOwnThrottle("db-down", {
    DATABASE_URL: url.toString(),
    DATABASE_CONNECT_TIMEOUT_MS: 1000,
    LOGIN_MAX_FAILURES: 2
  }).pipe(
    Layer.provideMerge(Layer.succeed(DbProxy, proxy))
  )
}))

const send = (method: string, path: string, options: { token?: string; body?: unknown } = {}) =>
  Effect.flatMap(serverPort, (port) =>
    rawRequest(port, {
      method,
      path,
      headers: {
        ...(options.body === undefined ? {} : { "content-type": "application/json" }),
        ...(options.token ? { authorization: `Bearer ${options.token}` } : {})
      },
      body: options.body === undefined ? undefined : JSON.stringify(options.body)
    }))

const expectUnavailable = (r: RawReply, what: string) => {
  expect(r.status, `${what}: ${r.text}`).toBe(503)
  expect(r.json, what).toEqual(problem(503, "ServiceUnavailable", expect.any(String)))
  expect(r.headers["retry-after"], what).toBe("1")
}

layer(TestLayer, { excludeTestServices: true, timeout: "60 seconds" })("PostgreSQL unreachable", (it) => {
  it.scoped("requests that need the database get 503 + Retry-After; the rest keeps working; it recovers by itself", () =>
    Effect.gen(function*() {
      const proxy = yield* DbProxy
      const fx = yield* makeFixtures
      const user = yield* fx.user("agent")
      const created = yield* send("POST", "/v1/tickets", {
        token: user.token,
        body: { title: "before", description: "d" }
      })
      expect(created.status).toBe(201)
      const ticketId = (created.json as { id: string }).id

      yield* proxy.cut
      // The database comes back whatever happens, so the fixtures can clean up.
      yield* Effect.addFinalizer(() => proxy.restore.pipe(Effect.ignore))
      const login = { username: user.username, password: PASSWORD }
      for (let i = 0; i < 3; i++) {
        expectUnavailable(yield* send("POST", "/v1/auth/login", { body: login }), `login ${i}`)
      }
      expectUnavailable(yield* send("GET", "/v1/tickets", { token: user.token }), "list")
      expectUnavailable(yield* send("GET", `/v1/tickets/${ticketId}`, { token: user.token }), "get")
      expectUnavailable(
        yield* send("POST", "/v1/tickets", { token: user.token, body: { title: "during", description: "d" } }),
        "create"
      )
      expectUnavailable(
        yield* send("PATCH", `/v1/tickets/${ticketId}`, { token: user.token, body: { title: "x" } }),
        "update"
      )
      expectUnavailable(
        yield* send("POST", `/v1/tickets/${ticketId}/status`, { token: user.token, body: { status: "in_progress" } }),
        "status"
      )
      expectUnavailable(
        yield* send("POST", "/v1/messages", { token: user.token, body: { ticketId, content: "hi" } }),
        "message"
      )
      expectUnavailable(yield* send("GET", "/v1/users/me", { token: user.token }), "me")
      // No database needed: still answered as usual.
      expect((yield* send("GET", "/health")).status).toBe(200)
      const ready = yield* send("GET", "/ready")
      expect(ready.status).toBe(503)
      expect(ready.json).toMatchObject({ _tag: "NotReady", down: ["database"] })
      expect((yield* send("POST", "/v1/tickets", { token: user.token, body: { title: "" } })).status).toBe(400)
      expect((yield* send("GET", "/v1/tickets", { token: "garbage" })).status).toBe(401)

      yield* proxy.restore
      yield* waitUntil(
        "the API to reach PostgreSQL again",
        Effect.map(send("GET", "/v1/tickets", { token: user.token }), (r) => r.status === 200)
      )
      expect((yield* send("GET", `/v1/tickets/${ticketId}`, { token: user.token })).status).toBe(200)
      // Three logins died with a 503 while the limit is 2 failures: none of them counted.
      const back = yield* send("POST", "/v1/auth/login", { body: login })
      expect(back.status, back.text).toBe(200)
    }))

  it.scoped("a database that accepts connections but never answers: 503 within the connect timeout, not a hang", () =>
    Effect.gen(function*() {
      const proxy = yield* DbProxy
      const fx = yield* makeFixtures
      const user = yield* fx.user("customer")
      yield* proxy.silence
      yield* Effect.addFinalizer(() => proxy.restore.pipe(Effect.ignore))
      const started = Date.now()
      const replies = yield* Effect.all([
        send("GET", "/v1/tickets", { token: user.token }),
        send("POST", "/v1/tickets", { token: user.token, body: { title: "partition", description: "d" } }),
        send("POST", "/v1/auth/login", { body: { username: user.username, password: PASSWORD } })
      ], { concurrency: "unbounded" })
      replies.forEach((r, i) => expectUnavailable(r, `request ${i}`))
      // DATABASE_CONNECT_TIMEOUT_MS is 1 s here (5 s by default).
      expect(Date.now() - started).toBeLessThan(4000)
      yield* proxy.restore
      yield* waitUntil(
        "the API to reach PostgreSQL again",
        Effect.map(send("GET", "/v1/tickets", { token: user.token }), (r) => r.status === 200)
      )
    }))
})
