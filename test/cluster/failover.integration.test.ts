/**
 * AMQP_URL as a list of nodes (src/Config.ts `amqpNodeUrls`) and the one
 * connect function's failover (src/Broker/Amqp.ts `openConnection`), against
 * the machine's broker: dead nodes are ports nobody listens on, and a node the
 * network drops is a TCP proxy to the broker whose sockets the test destroys.
 */
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Exit, Logger, Redacted } from "effect"
import { createServer, type Server, Socket } from "node:net"
import { currentNodes, openConnection } from "../../src/Broker/Amqp.js"
import { amqpNodeUrls, AmqpUrl, OperatorAmqpUrl } from "../../src/Config.js"
import { AMQP_BASE } from "../support/Env.js"

const broker = new URL(AMQP_BASE)
const brokerPort = Number(broker.port || 5672)
const dead = (port: number) => `amqp://guest:secret-${port}@127.0.0.1:${port}`

/** A TCP proxy to the broker; `drop` destroys every connection through it and stops listening. */
const proxy = Effect.acquireRelease(
  Effect.async<{ readonly port: number; readonly drop: Effect.Effect<void> }>((resume) => {
    const sockets = new Set<Socket>()
    const server: Server = createServer((client) => {
      const upstream = new Socket()
      upstream.connect(brokerPort, broker.hostname)
      client.pipe(upstream).pipe(client)
      for (const s of [client, upstream]) {
        sockets.add(s)
        s.on("error", () => undefined)
        s.on("close", () => {
          sockets.delete(s)
          client.destroy()
          upstream.destroy()
        })
      }
    })
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      const drop = Effect.sync(() => {
        server.close()
        for (const s of sockets) s.destroy()
      })
      resume(Effect.succeed({ port, drop }))
    })
  }),
  ({ drop }) => drop
)

const nodeUrl = (port: number) => {
  const u = new URL(AMQP_BASE)
  u.hostname = "127.0.0.1"
  u.port = String(port)
  return u.toString()
}

/** Runs `self` with its log messages collected. */
const withLogs = <A, E, R>(self: (lines: Array<string>) => Effect.Effect<A, E, R>) => {
  const lines: Array<string> = []
  return self(lines).pipe(
    Effect.provide(Logger.replace(Logger.defaultLogger, Logger.make(({ message }) => void lines.push(String(message)))))
  )
}

const config = (map: Record<string, string>) => Effect.withConfigProvider(ConfigProvider.fromJson(map))

describe("AMQP_URL with several nodes", () => {
  it("splits a list only before amqp:// or amqps://, so a single URL is read as before", () => {
    expect(amqpNodeUrls("amqp://u:p,w@h:5672/v")).toEqual(["amqp://u:p,w@h:5672/v"])
    expect(amqpNodeUrls("amqp://guest:guest@127.0.0.1:5672")).toEqual(["amqp://guest:guest@127.0.0.1:5672"])
    expect(amqpNodeUrls("amqps://a:1@n1:5671/v, amqps://a:1@n2:5671/v,AMQP://a:1@n3/v")).toEqual([
      "amqps://a:1@n1:5671/v",
      "amqps://a:1@n2:5671/v",
      "AMQP://a:1@n3/v"
    ])
  })

  it.effect("refuses a list with something other than amqp(s) URLs, without printing the URL", () =>
    Effect.gen(function*() {
      const bad = yield* Effect.exit(AmqpUrl.pipe(config({ AMQP_URL: "hunter2,amqp://u:hunter2@h" })))
      expect(Exit.isFailure(bad)).toBe(true)
      expect(String(bad)).toContain("amqp:// or amqps:// URLs only")
      expect(String(bad)).not.toContain("hunter2")
      const good = yield* AmqpUrl.pipe(config({ AMQP_URL: "amqp://a@h1,amqp://a@h2" }))
      expect(Redacted.value(good)).toBe("amqp://a@h1,amqp://a@h2")
      // An invalid OPS_AMQP_URL fails; it does not fall back to AMQP_URL (another user).
      const ops = yield* Effect.exit(
        OperatorAmqpUrl.pipe(config({ AMQP_URL: "amqp://a@h1", OPS_AMQP_URL: "x,amqp://b@h" }))
      )
      expect(Exit.isFailure(ops)).toBe(true)
      const fallback = yield* OperatorAmqpUrl.pipe(config({ AMQP_URL: "amqp://a@h1" }))
      expect(Redacted.value(fallback)).toBe("amqp://a@h1")
    }))

  it.live("connects to the next node when the first does not answer, and starts there next time", () =>
    withLogs((lines) =>
      Effect.gen(function*() {
        const url = Redacted.make(`${dead(1)},${nodeUrl(brokerPort)}`)
        const first = yield* openConnection(url, "failover-test")
        expect(first).toBeDefined()
        expect(lines.some((l) => l.startsWith("RabbitMQ node amqp://127.0.0.1:1 unavailable (failover-test)"))).toBe(
          true
        )
        expect(lines).toContain(`RabbitMQ connected (failover-test) to amqp://127.0.0.1:${brokerPort} (node 2 of 2)`)
        expect((yield* currentNodes).get("failover-test")).toBe(`amqp://127.0.0.1:${brokerPort}`)
        lines.length = 0
        // Another connection to the same list does not try the dead node first.
        yield* Effect.scoped(openConnection(url, "failover-test-2"))
        expect(lines).toEqual([`RabbitMQ connected (failover-test-2) to amqp://127.0.0.1:${brokerPort} (node 2 of 2)`])
      }).pipe(Effect.scoped)
    ))

  it.live("moves on to the next node when the broker or the network drops the connection", () =>
    withLogs((lines) =>
      Effect.gen(function*() {
        const a = yield* proxy
        const b = yield* proxy
        const url = Redacted.make(`${nodeUrl(a.port)},${nodeUrl(b.port)}`)
        const connection = yield* openConnection(url, "drop-test")
        expect(lines).toContain(`RabbitMQ connected (drop-test) to amqp://127.0.0.1:${a.port} (node 1 of 2)`)
        const closed = Effect.async<void>((resume) => void connection.once("close", () => resume(Effect.void)))
        yield* a.drop
        yield* closed
        lines.length = 0
        yield* Effect.scoped(openConnection(url, "drop-test"))
        expect(lines).toEqual([`RabbitMQ connected (drop-test) to amqp://127.0.0.1:${b.port} (node 2 of 2)`])
      }).pipe(Effect.scoped)
    ))

  it.live("names every node's failure when none answers, and no password", () =>
    withLogs((lines) =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(Effect.scoped(openConnection(Redacted.make(`${dead(1)},${dead(2)}`), "t")))
        expect(error.message).toMatch(
          /^Cannot connect to RabbitMQ: none of its 2 nodes answered \(amqp:\/\/127\.0\.0\.1:1: .*ECONNREFUSED.*; amqp:\/\/127\.0\.0\.1:2: .*ECONNREFUSED.*\)$/
        )
        expect([...lines, error.message].join("\n")).not.toContain("secret")
      })
    ))

  it.live("reports a single node's failure exactly as before", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Effect.scoped(openConnection(Redacted.make(dead(1)), "t")))
      expect(error.message).toBe("Cannot connect to RabbitMQ: connect ECONNREFUSED 127.0.0.1:1")
    }))
})
