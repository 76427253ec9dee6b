/**
 * The Node server's lifecycle fixes: before the API's handler is attached
 * (and after it is removed) requests get a 503 instead of hanging, and
 * shutdown does not wait for a client that keeps a connection open.
 */
import { HttpServer } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Exit, Layer, Scope } from "effect"
import { createServer, request } from "node:http"
import { connect } from "node:net"
import { NodeServerLive as ServerWithoutRedis, SHUTDOWN_GRACE_MS } from "../../src/App/Server.js"
import { RedisLive } from "../../src/Store/Redis.js"

/** The server (its front cache keeps answers in Redis). */
const NodeServerLive = ServerWithoutRedis.pipe(Layer.provide(RedisLive))

const freePort = Effect.async<number>((resume) => {
  const probe = createServer().listen(0, "127.0.0.1", () => {
    const address = probe.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    probe.close(() => resume(Effect.succeed(port)))
  })
})

const getStatus = (port: number) =>
  Effect.async<{ status: number; body: string }>((resume) => {
    request({ host: "127.0.0.1", port, path: "/health" }, (res) => {
      let body = ""
      res.setEncoding("utf8").on("data", (c: string) => (body += c)).on("end", () =>
        resume(Effect.succeed({ status: res.statusCode ?? 0, body })))
    }).on("error", (e) =>
      resume(Effect.die(e))).end()
  })

describe("NodeServerLive", () => {
  it.live("answers 503 while no API handler is attached, and closes within the grace period despite an open client", () =>
    Effect.gen(function*() {
      const port = yield* freePort
      const scope = yield* Scope.make()
      yield* Layer.buildWithScope(NodeServerLive, scope).pipe(
        Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["PORT", String(port)]])))
      )
      const early = yield* getStatus(port)
      expect(early.status).toBe(503)
      expect(JSON.parse(early.body)).toMatchObject({ _tag: "Unavailable" })

      // A client that sent half a request and went quiet.
      const socket = connect(port, "127.0.0.1")
      yield* Effect.async<void>((resume) => void socket.once("connect", () => resume(Effect.void)))
      socket.write("GET /health HTTP/1.1\r\nHost: x\r\n")
      const started = Date.now()
      yield* Scope.close(scope, Exit.void)
      expect(Date.now() - started).toBeLessThanOrEqual(SHUTDOWN_GRACE_MS + 1000)
      socket.destroy()
    }))

  it.live("the API handler takes over from the fallback once attached", () =>
    Effect.gen(function*() {
      const port = yield* freePort
      const { HttpServerResponse } = yield* Effect.promise(() => import("@effect/platform"))
      const served = HttpServer.serve(Effect.succeed(HttpServerResponse.text("api"))).pipe(
        Layer.provide(NodeServerLive),
        Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map([["PORT", String(port)]]))))
      )
      yield* Effect.gen(function*() {
        for (let i = 0; i < 3; i++) expect(yield* getStatus(port)).toEqual({ status: 200, body: "api" })
      }).pipe(Effect.provide(served))
    }))
})
