/**
 * Which RabbitMQ node each process is on (issue 12): with AMQP_URL listing a
 * dead node first, the publisher (/ready's `broker.node`), the DLQ tools and
 * the consumers fail over to the next one and report it, without credentials,
 * and `opsdesk_broker_connected` says so on /metrics.
 */
import { expect, it } from "@effect/vitest"
import { Duration, Effect, Layer, Metric, Option } from "effect"
import { createServer } from "node:net"
import { brokerConnected, nodeLabel } from "../../src/Broker/Amqp.js"
import { consume } from "../../src/Broker/Consumer.js"
import { Publisher, PublisherLive } from "../../src/Broker/Publisher.js"
import { makeQueueTools } from "../../src/Broker/QueueTools.js"
import { topologyOptions } from "../../src/Broker/Topology.js"
import { WorkerConfig } from "../../src/Config.js"
import { FatalLive } from "../../src/Fatal.js"
import { configFrom, waitUntil, withVhost } from "../support/Env.js"

/** A port nobody listens on (taken from the OS, then let go). */
const deadPort = Effect.async<number>((resume) => {
  const probe = createServer()
  probe.listen(0, "127.0.0.1", () => {
    const address = probe.address()
    probe.close(() => resume(Effect.succeed(typeof address === "object" && address !== null ? address.port : 0)))
  })
})

const connected = (connection: string, node: string) =>
  Metric.value(brokerConnected.pipe(Metric.tagged("connection", connection), Metric.tagged("node", node)))

it.live(
  "with a dead node listed first, publisher, DLQ tools and consumers report the next node",
  () =>
    Effect.gen(function*() {
      const { url } = yield* withVhost("broker_node")
      const dead = `amqp://guest:guest@127.0.0.1:${yield* deadPort}/`
      const list = `${dead},${url}`
      const live = nodeLabel(url)
      expect(live).not.toContain("guest")

      yield* Effect.gen(function*() {
        const publisher = yield* Publisher
        yield* waitUntil("the publisher to connect", publisher.isConnected, "30 seconds")
        expect(yield* publisher.node).toEqual(Option.some(live))
        expect((yield* connected("opsdesk-publisher", live)).value).toBe(1)

        const tools = yield* makeQueueTools({ name: "opsdesk-node-test-tools", idleTimeToLive: "1 minute" })
        expect(yield* tools.node).toEqual(Option.none())
        yield* Effect.scoped(tools.session())
        expect(yield* tools.node).toEqual(Option.some(live))

        const consumer = yield* consume({
          name: "opsdesk-node-test-consumer",
          queues: [],
          prefetch: 10,
          topology: topologyOptions("classic", yield* WorkerConfig),
          onDelivery: () => undefined,
          onConsuming: Effect.void,
          depths: { queues: [], report: () => Effect.void }
        })
        yield* waitUntil("the consumer to connect", Effect.map(consumer.node, Option.isSome), "30 seconds")
        expect(yield* consumer.node).toEqual(Option.some(live))
        // A clean-clone CI run once hung past this point for 150 s: these lines say which close it was.
        yield* Effect.logInfo("node test: checks done; closing the consumer, the DLQ tools and the publisher")
      }).pipe(
        Effect.provide(Layer.provideMerge(PublisherLive, FatalLive)),
        Effect.withConfigProvider(configFrom({ AMQP_URL: list, OPS_AMQP_URL: list, QUEUE_TYPE: "classic" })),
        Effect.scoped,
        Effect.timed,
        Effect.tap(([took]) =>
          Effect.logInfo(`node test: done and closed in ${Duration.format(took)}; deleting the vhost`)
        )
      )
      // Closed with its scope: the gauge says the publisher left the node.
      expect((yield* connected("opsdesk-publisher", live)).value).toBe(0)
    }).pipe(Effect.scoped),
  { timeout: 90_000 }
)
