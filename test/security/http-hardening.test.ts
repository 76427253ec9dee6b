/**
 * Finding 8, "smaller" HTTP weaknesses, against the production server layer
 * (NodeServerLive on a free port, real sockets, PostgreSQL and Redis):
 * - the media type is checked exactly (`application/jsonx` and
 *   `text/plain; x=application/json` were accepted as JSON), and a body
 *   without Content-Type is refused;
 * - a request whose client broke off is counted as 499, not 500 (or 413);
 * - a 400 repeats at most a short prefix of a rejected value (a 60 KB field
 *   came back twice);
 * - a client that never finishes its headers (slowloris), or its body, is
 *   answered 408 and disconnected within the configured timeouts, and
 *   connections beyond HTTP_MAX_CONNECTIONS are closed;
 * - /docs and /openapi.json carry an ETag and Cache-Control, answer 304 to a
 *   revalidation, and come gzipped when the client accepts it;
 * - /metrics (the API's and the worker's) asks for METRICS_TOKEN when it is
 *   set, and the worker's listens on loopback only by default.
 */
import { expect, layer } from "@effect/vitest"
import { type Duration, Effect, Layer } from "effect"
import { createServer, request } from "node:http"
import { connect } from "node:net"
import { networkInterfaces } from "node:os"
import { gunzipSync } from "node:zlib"
import { MigrateOnStart } from "../../src/App/ApiProcess.js"
import { HttpLive, NodeServerLive } from "../../src/App/Server.js"
import { WorkerObservabilityLive } from "../../src/App/WorkerProcess.js"
import { Tokens } from "../../src/Auth/Tokens.js"
import * as Otel from "../../src/Observability/Otel.js"
import { RedisLive } from "../../src/Store/Redis.js"
import { PgLive } from "../../src/Store/Sql.js"
import { FakePublisher, PassThroughCache } from "../api/support/Layers.js"
import { waitUntil } from "../support/Env.js"
import { NO_THROTTLE, ThrottleCleanup, throttlePrefix, withSettings } from "../support/LoginThrottle.js"
import { rawRequest, serverPort } from "../support/RawHttp.js"

const freePort = Effect.async<number>((resume) => {
  const probe = createServer().listen(0, "127.0.0.1", () => {
    const address = probe.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    probe.close(() => resume(Effect.succeed(port)))
  })
})

const METRICS_TOKEN = `metrics-${crypto.randomUUID()}`
const AUTHORIZED = { authorization: `Bearer ${METRICS_TOKEN}` }

/** The API as `npm start` serves it, on a free port, with `settings`. */
const productionServer = (name: string, settings: Record<string, string | number>) =>
  Layer.unwrapEffect(Effect.map(freePort, (port) => {
    const prefix = throttlePrefix(name)
    return ThrottleCleanup(prefix).pipe(
      Layer.provideMerge(HttpLive),
      Layer.provide(MigrateOnStart),
      Layer.provideMerge(
        Layer.mergeAll(
          PassThroughCache,
          FakePublisher,
          Tokens.Default,
          Otel.layer({ serviceName: "opsdesk-hardening" })
        )
      ),
      Layer.provideMerge(NodeServerLive),
      Layer.provideMerge(Layer.merge(PgLive, RedisLive)),
      Layer.provide(withSettings({ PORT: port, LOGIN_THROTTLE_PREFIX: prefix, ...NO_THROTTLE, ...settings }))
    )
  }))

interface Exchange {
  /** Everything the server sent before it closed the connection. */
  readonly received: string
}

/** Writes `data` and keeps the connection open until the server closes it; fails after `bound`. */
const untilServerCloses = (port: number, data: string, bound: Duration.DurationInput = "20 seconds") =>
  Effect.async<Exchange>((resume) => {
    const socket = connect(port, "127.0.0.1", () => socket.write(data))
    const chunks: Array<Buffer> = []
    socket.on("data", (c: Buffer) => chunks.push(c))
    socket.on("error", () => undefined)
    socket.on("close", () => resume(Effect.succeed({ received: Buffer.concat(chunks).toString("latin1") })))
    return Effect.sync(() => socket.destroy())
  }).pipe(
    Effect.timeoutFail({
      duration: bound,
      onTimeout: () => new Error(`the server kept the connection open (${bound})`)
    })
  )

/** Sends `data`, then disconnects once the server has read it (a client that gave up). */
const breakOff = (port: number, data: string) =>
  Effect.async<void>((resume) => {
    const socket = connect(port, "127.0.0.1", () => {
      socket.write(data, () => {
        // Written to the kernel; the server reads it before it sees the FIN/RST that follows.
        socket.destroy()
        resume(Effect.void)
      })
    })
    socket.on("error", () => undefined)
  })

interface BinaryReply {
  readonly status: number
  readonly headers: Readonly<Record<string, string | Array<string> | undefined>>
  readonly body: Buffer
}

const getBinary = (port: number, path: string, headers: Record<string, string> = {}) =>
  Effect.async<BinaryReply>((resume) => {
    const req = request({ host: "127.0.0.1", port, path, headers, agent: false }, (res) => {
      const chunks: Array<Buffer> = []
      res.on("data", (c: Buffer) => chunks.push(c))
      res.on(
        "end",
        () => resume(Effect.succeed({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }))
      )
    })
    req.on("error", (e) => resume(Effect.die(e)))
    req.end()
  })

/** `opsdesk_http_requests_total` for one method, route and status, as /metrics reports it. */
const requestCount = (port: number, method: string, route: string, status: number) =>
  Effect.map(rawRequest(port, { method: "GET", path: "/metrics", headers: AUTHORIZED }), (reply) => {
    const line = reply.text.split("\n").find((l) =>
      l.startsWith("opsdesk_http_requests_total{") && l.includes(`method="${method}"`) &&
      l.includes(`route="${route}"`) && l.includes(`status="${status}"`)
    )
    return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1))
  })

const postRaw = (port: number, path: string, body: string, headers: Record<string, string>) =>
  rawRequest(port, { method: "POST", path, headers, body })

layer(
  productionServer("http-hardening", {
    HTTP_HEADERS_TIMEOUT_MS: 300,
    HTTP_REQUEST_TIMEOUT_MS: 600,
    METRICS_TOKEN
  }),
  { excludeTestServices: true, timeout: "60 seconds" }
)("HTTP hardening", (it) => {
  it.effect("the media type must be exactly application/json; a body without Content-Type is refused", () =>
    Effect.gen(function*() {
      const port = yield* serverPort
      const body = JSON.stringify({ username: "nobody", password: "x" })
      for (const type of ["application/jsonx", "text/plain; x=application/json", "application/json-patch+json"]) {
        const r = yield* postRaw(port, "/v1/auth/login", body, { "content-type": type })
        expect(r.status, type).toBe(415)
        expect(r.json).toMatchObject({ _tag: "UnsupportedMediaType" })
      }
      const untyped = yield* postRaw(port, "/v1/auth/login", body, {})
      expect(untyped.status).toBe(415)
      // Parameters and case do not matter: these reach the login (an unknown user: 401).
      for (const type of ["application/json", "Application/JSON; charset=utf-8", "application/json ; charset=UTF-8"]) {
        const r = yield* postRaw(port, "/v1/auth/login", body, { "content-type": type })
        expect(r.status, type).toBe(401)
      }
      // A POST without a body needs no Content-Type: it is decoded (and rejected as an empty payload), not a 415.
      const empty = yield* rawRequest(port, {
        method: "POST",
        path: "/v1/auth/login",
        headers: { "content-length": "0" }
      })
      expect(empty.status).toBe(400)
    }))

  it.effect("a request whose client broke off is counted as 499, neither 500 nor 413", () =>
    Effect.gen(function*() {
      const port = yield* serverPort
      const before = {
        tickets499: yield* requestCount(port, "POST", "/v1/tickets", 499),
        tickets500: yield* requestCount(port, "POST", "/v1/tickets", 500),
        messages499: yield* requestCount(port, "POST", "/v1/messages", 499),
        messages413: yield* requestCount(port, "POST", "/v1/messages", 413)
      }
      // A declared body of 100 bytes, 5 sent.
      yield* breakOff(
        port,
        "POST /v1/tickets HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"a\":"
      )
      // A chunked body whose last chunk never comes.
      yield* breakOff(
        port,
        "POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n"
      )
      yield* waitUntil(
        "both requests counted as 499",
        Effect.map(
          Effect.all([
            requestCount(port, "POST", "/v1/tickets", 499),
            requestCount(port, "POST", "/v1/messages", 499)
          ]),
          ([tickets, messages]) => tickets > before.tickets499 && messages > before.messages499
        )
      )
      expect(yield* requestCount(port, "POST", "/v1/tickets", 500)).toBe(before.tickets500)
      expect(yield* requestCount(port, "POST", "/v1/messages", 413)).toBe(before.messages413)
    }))

  it.effect("a 400 repeats at most a short prefix of a 60 KB rejected value", () =>
    Effect.gen(function*() {
      const port = yield* serverPort
      const huge = "u".repeat(60_000)
      const r = yield* postRaw(port, "/v1/auth/login", JSON.stringify({ username: huge, password: "x" }), {
        "content-type": "application/json"
      })
      expect(r.status).toBe(400)
      expect(r.text.length).toBeLessThan(2048)
      // The same shape as before, only shorter.
      const body = r.json as { _tag: string; message: string; issues: Array<{ path: Array<string>; message: string }> }
      expect(body._tag).toBe("HttpApiDecodeError")
      expect(body.issues[0]!.path).toEqual(["username"])
      expect(body.issues[0]!.message).toContain(`actual "${"u".repeat(64)}…"`)
      expect(body.message).toContain("…")
      // A long array after `actual` is bounded too.
      const array = yield* postRaw(port, "/v1/auth/login", JSON.stringify(Array.from({ length: 5000 }, () => "x")), {
        "content-type": "application/json"
      })
      expect(array.status).toBe(400)
      expect(array.text.length).toBeLessThan(2048)
    }))

  it.effect("a client that never finishes its headers (slowloris) or its body gets 408 and is disconnected", () =>
    Effect.gen(function*() {
      const port = yield* serverPort
      const headers = yield* untilServerCloses(port, "GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n")
      expect(headers.received).toMatch(/^HTTP\/1\.1 408 /)
      expect(headers.received).toContain("\"_tag\":\"RequestTimeout\"")
      const body = yield* untilServerCloses(
        port,
        "POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{"
      )
      expect(body.received).toMatch(/^HTTP\/1\.1 408 /)
      // And the server goes on serving.
      expect((yield* rawRequest(port, { method: "GET", path: "/health" })).status).toBe(200)
    }))

  it.effect("/docs and /openapi.json: ETag, Cache-Control, 304 on revalidation, gzip when accepted", () =>
    Effect.gen(function*() {
      const port = yield* serverPort
      for (const path of ["/docs", "/openapi.json"]) {
        const plain = yield* getBinary(port, path)
        expect(plain.status, path).toBe(200)
        expect(plain.headers["content-encoding"], path).toBeUndefined()
        expect(plain.headers["cache-control"], path).toMatch(/no-cache/)
        expect(plain.headers.etag, path).toMatch(/^"[^"]+"$/)
        expect(plain.headers.vary, path).toMatch(/accept-encoding/i)

        const zipped = yield* getBinary(port, path, { "accept-encoding": "gzip, deflate, br" })
        expect(zipped.status, path).toBe(200)
        expect(zipped.headers["content-encoding"], path).toBe("gzip")
        expect(zipped.body.length, path).toBeLessThan(plain.body.length / 2)
        expect(gunzipSync(zipped.body).equals(plain.body), path).toBe(true)

        const notModified = yield* getBinary(port, path, { "if-none-match": String(plain.headers.etag) })
        expect(notModified.status, path).toBe(304)
        expect(notModified.body.length, path).toBe(0)
        const zippedAgain = yield* getBinary(port, path, {
          "accept-encoding": "gzip",
          "if-none-match": String(zipped.headers.etag)
        })
        expect(zippedAgain.status, path).toBe(304)
        // gzip;q=0 is a refusal.
        const refused = yield* getBinary(port, path, { "accept-encoding": "gzip;q=0, identity" })
        expect(refused.headers["content-encoding"], path).toBeUndefined()
      }
    }))

  it.effect("the API's /metrics asks for METRICS_TOKEN when it is set", () =>
    Effect.gen(function*() {
      const port = yield* serverPort
      const anonymous = yield* rawRequest(port, { method: "GET", path: "/metrics" })
      expect(anonymous.status).toBe(401)
      expect(anonymous.json).toMatchObject({ _tag: "Unauthorized" })
      const wrong = yield* rawRequest(port, {
        method: "GET",
        path: "/metrics",
        headers: { authorization: "Bearer not-the-token" }
      })
      expect(wrong.status).toBe(401)
      const right = yield* rawRequest(port, { method: "GET", path: "/metrics", headers: AUTHORIZED })
      expect(right.status).toBe(200)
      expect(right.text).toMatch(/^# (HELP|TYPE) /m)
    }))
})

layer(productionServer("http-max-connections", { HTTP_MAX_CONNECTIONS: 2 }), {
  excludeTestServices: true,
  timeout: "60 seconds"
})("HTTP connection cap", (it) => {
  it.effect("connections beyond HTTP_MAX_CONNECTIONS are closed as they arrive", () =>
    Effect.gen(function*() {
      const port = yield* serverPort
      const open = (n: number) =>
        Effect.acquireRelease(
          Effect.async<ReturnType<typeof connect>>((resume) => {
            const socket = connect(port, "127.0.0.1", () => resume(Effect.succeed(socket)))
            socket.on("error", () => undefined)
          }),
          (socket) => Effect.sync(() => socket.destroy())
        ).pipe(Effect.tap(() => Effect.logDebug(`connection ${n} open`)))
      yield* Effect.scoped(Effect.gen(function*() {
        yield* open(1)
        yield* open(2)
        // The cap is reached: the next connection is closed without an answer.
        const third = yield* untilServerCloses(port, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n", "10 seconds")
        expect(third.received).toBe("")
      }))
      // Below the cap again: served.
      yield* waitUntil(
        "a request served once the two connections closed",
        Effect.map(untilServerCloses(port, "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), (r) =>
          r.received.startsWith("HTTP/1.1 200"))
      )
    }))
})

/** A non-loopback IPv4 address of this machine, if it has one. */
const externalAddress = Object.values(networkInterfaces()).flat().find((a) =>
  a !== undefined && a.family === "IPv4" && !a.internal
)?.address

layer(Layer.empty, { excludeTestServices: true, timeout: "60 seconds" })("the worker's metrics endpoint", (it) => {
  const scrape = (host: string, port: number, headers: Record<string, string> = {}) =>
    Effect.async<number>((resume) => {
      const req = request({ host, port, path: "/metrics", headers, agent: false, timeout: 5000 }, (res) => {
        res.resume()
        res.on("end", () => resume(Effect.succeed(res.statusCode ?? 0)))
      })
      req.on("timeout", () => req.destroy(new Error("timeout")))
      req.on("error", () => resume(Effect.succeed(0)))
      req.end()
    })

  it.effect("listens on loopback only by default, and asks for METRICS_TOKEN when it is set", () =>
    Effect.gen(function*() {
      const port = yield* freePort
      yield* Effect.scoped(
        Effect.gen(function*() {
          yield* Layer.build(WorkerObservabilityLive)
          expect(yield* scrape("127.0.0.1", port)).toBe(401)
          expect(yield* scrape("127.0.0.1", port, { authorization: "Bearer wrong" })).toBe(401)
          expect(yield* scrape("127.0.0.1", port, AUTHORIZED)).toBe(200)
          // Another interface of this machine: nobody listens there (0: connection refused).
          if (externalAddress !== undefined) expect(yield* scrape(externalAddress, port, AUTHORIZED)).toBe(0)
        }).pipe(Effect.provide(withSettings({ WORKER_METRICS_PORT: port, METRICS_TOKEN })))
      )
      expect(externalAddress, "this machine has a non-loopback IPv4 address to check against").toBeDefined()
      // WORKER_METRICS_HOST opens it to other interfaces, for a container's healthcheck or a scraper.
      yield* Effect.scoped(
        Effect.gen(function*() {
          yield* Layer.build(WorkerObservabilityLive)
          expect(yield* scrape(externalAddress!, port, AUTHORIZED)).toBe(200)
        }).pipe(
          Effect.provide(withSettings({ WORKER_METRICS_PORT: port, WORKER_METRICS_HOST: "0.0.0.0", METRICS_TOKEN }))
        )
      )
    }))
})
