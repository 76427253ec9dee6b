/**
 * Helpers for the ops dashboard tests: a free port, a stand-in for the
 * worker's Prometheus endpoint whose answer a test sets, and the address of
 * an in-process HTTP server.
 */
import { HttpServer } from "@effect/platform"
import { Effect, Ref } from "effect"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"

/** A port nobody listens on right now (the OS's pick, released at once). */
export const freePort = Effect.async<number>((resume) => {
  const server = createServer()
  server.listen(0, "127.0.0.1", () => {
    const { port } = server.address() as AddressInfo
    server.close(() => resume(Effect.succeed(port)))
  })
})

export interface FakeMetrics {
  readonly url: string
  /** What the next scrapes get. */
  readonly answer: (status: number, body: string) => Effect.Effect<void>
}

/** A scoped HTTP server on 127.0.0.1 answering `GET /metrics` with whatever `answer` set (200, empty at first). */
export const fakeMetricsServer = Effect.gen(function*() {
  const reply = yield* Ref.make({ status: 200, body: "" })
  const server = yield* Effect.acquireRelease(
    Effect.async<ReturnType<typeof createServer>>((resume) => {
      const s = createServer((req, res) => {
        const { status, body } = Effect.runSync(Ref.get(reply))
        res.writeHead(req.url === "/metrics" ? status : 404, { "content-type": "text/plain; version=0.0.4" }).end(body)
      })
      s.listen(0, "127.0.0.1", () => resume(Effect.succeed(s)))
    }),
    (s) =>
      Effect.async<void>((resume) => {
        s.closeAllConnections()
        s.close(() => resume(Effect.void))
      })
  )
  const { port } = server.address() as AddressInfo
  const fake: FakeMetrics = {
    url: `http://127.0.0.1:${port}/metrics`,
    answer: (status, body) => Ref.set(reply, { status, body })
  }
  return fake
})

/** `http://127.0.0.1:<port>` of the in-process server. */
export const serverUrl = Effect.map(HttpServer.HttpServer, (server) => {
  const address = server.address
  if (address._tag !== "TcpAddress") throw new Error("the test server does not listen on TCP")
  return `http://127.0.0.1:${address.port}`
})

/** Worker counters in the Prometheus text format, as the worker's exporter writes them. */
export const workerMetricsText = (
  counters: ReadonlyArray<{ readonly name: string; readonly event: string; readonly value: number }>
) =>
  [
    "# HELP target_info Target metadata",
    "# TYPE target_info gauge",
    "target_info{service_name=\"opsdesk-worker\"} 1",
    ...counters.flatMap((c) => [
      `# TYPE ${c.name} ${c.name.endsWith("_total") ? "counter" : "histogram"}`,
      `${c.name}{event="${c.event}",otel_scope_name="@effect/opentelemetry/Metrics"} ${c.value}`
    ])
  ].join("\n") + "\n"
