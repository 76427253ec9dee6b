/**
 * The confirmed publisher used by the outbox relay. It keeps one connection
 * and confirm channel alive under `supervise` (reconnecting with backoff and
 * declaring the topology each time). A publish while disconnected fails at
 * once with BrokerError; the caller keeps its rows and tries again.
 */
import { Context, Deferred, Effect, Layer, Option, Ref } from "effect"
import type { ConfirmChannel, Options } from "amqplib"
import { AmqpUrl, BrokerReconnect, QueueType, WorkerConfig } from "../Config.js"
import { brokerDelays } from "../Worker/RetryPolicy.js"
import { awaitClose, BrokerError, openConfirmChannel, supervise } from "./Amqp.js"
import { declareTopology } from "./Topology.js"
import { Fatal } from "../Fatal.js"

export interface OutgoingMessage {
  readonly exchange: string
  readonly routingKey: string
  readonly content: Buffer
  readonly options: Options.Publish
}

export class Publisher extends Context.Tag("OpsDesk/Broker/Publisher")<Publisher, {
  /** Publishes every message and waits until the broker confirmed all of them. */
  readonly publishAll: (messages: ReadonlyArray<OutgoingMessage>) => Effect.Effect<void, BrokerError>
  readonly isConnected: Effect.Effect<boolean>
}>() {}

/** Sends a batch on a confirm channel; succeeds once every message is acked by the broker. */
export const publishBatch = (channel: ConfirmChannel, messages: ReadonlyArray<OutgoingMessage>) =>
  Effect.async<void, BrokerError>((resume) => {
    let pending = messages.length
    let failed = false
    if (pending === 0) return resume(Effect.void)
    const done = (err: unknown) => {
      if (failed) return
      if (err) {
        failed = true
        return resume(Effect.fail(new BrokerError({ message: `Publish not confirmed: ${String(err)}`, cause: err })))
      }
      if (--pending === 0) resume(Effect.void)
    }
    try {
      for (const m of messages) channel.publish(m.exchange, m.routingKey, m.content, m.options, done)
    } catch (cause) {
      failed = true
      resume(Effect.fail(new BrokerError({ message: `Publish failed: ${String(cause)}`, cause })))
    }
  })

export const PublisherLive = Layer.scoped(
  Publisher,
  Effect.gen(function*() {
    const url = yield* AmqpUrl
    const policy = yield* BrokerReconnect
    const queueType = yield* QueueType
    const retryDelaysMs = brokerDelays(yield* WorkerConfig)
    const current = yield* Ref.make(Option.none<ConfirmChannel>())

    yield* supervise("opsdesk-publisher", url, policy, (connection) =>
      Effect.gen(function*() {
        const channel = yield* openConfirmChannel(connection)
        yield* declareTopology(channel, { queueType, retryDelaysMs })
        yield* Ref.set(current, Option.some(channel))
        yield* Effect.logInfo("Publisher connected to RabbitMQ")
        return yield* awaitClose(channel, "publisher channel")
      }).pipe(Effect.ensuring(Ref.set(current, Option.none())))
    ).pipe(
      Effect.catchTag("TopologyError", (e) => Effect.flatMap(Fatal, (fatal) => Deferred.fail(fatal, e))),
      Effect.forkScoped
    )

    return Publisher.of({
      publishAll: (messages) =>
        Ref.get(current).pipe(
          Effect.flatMap(Option.match({
            onNone: () => Effect.fail(new BrokerError({ message: "RabbitMQ is not connected" })),
            onSome: (channel) =>
              publishBatch(channel, messages).pipe(
                // A connection that dies mid-publish may never answer: do not hold the caller (and its row locks) forever.
                Effect.timeoutFail({
                  duration: "15 seconds",
                  onTimeout: () => new BrokerError({ message: "RabbitMQ did not confirm the publish within 15 s" })
                })
              )
          }))
        ),
      isConnected: Effect.map(Ref.get(current), Option.isSome)
    })
  })
)
