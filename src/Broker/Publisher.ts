/**
 * The confirmed publisher used by the outbox relay. It keeps one connection
 * and confirm channel alive under `supervise` (reconnecting with backoff and
 * declaring the topology each time). A publish while disconnected fails at
 * once with BrokerError; the caller keeps its rows and tries again.
 */
import { Context, Deferred, Effect, Exit, Layer, Option, Ref } from "effect"
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
  /**
   * Sends every message now and returns the wait for their confirms, so a
   * caller can send the next batch while the broker confirms this one.
   */
  readonly send: (messages: ReadonlyArray<OutgoingMessage>) => Effect.Effect<Effect.Effect<void, BrokerError>, BrokerError>
  readonly isConnected: Effect.Effect<boolean>
}>() {}

/** A connection that dies mid-publish may never answer: the wait for confirms is bounded. */
const CONFIRM_TIMEOUT = "15 seconds"

/** Sends a batch on a confirm channel; the returned effect succeeds once every message is acked by the broker. */
export const sendBatch = (channel: ConfirmChannel, messages: ReadonlyArray<OutgoingMessage>) =>
  Effect.gen(function*() {
    const confirmed = yield* Deferred.make<void, BrokerError>()
    let pending = messages.length
    if (pending === 0) return Effect.void
    const done = (err: unknown) => {
      if (err) Deferred.unsafeDone(confirmed, Exit.fail(new BrokerError({ message: `Publish not confirmed: ${String(err)}`, cause: err })))
      else if (--pending === 0) Deferred.unsafeDone(confirmed, Exit.void)
    }
    yield* Effect.try({
      try: () => {
        for (const m of messages) channel.publish(m.exchange, m.routingKey, m.content, m.options, done)
      },
      catch: (cause) => new BrokerError({ message: `Publish failed: ${String(cause)}`, cause })
    })
    return Deferred.await(confirmed).pipe(
      Effect.timeoutFail({
        duration: CONFIRM_TIMEOUT,
        onTimeout: () => new BrokerError({ message: `RabbitMQ did not confirm the publish within ${CONFIRM_TIMEOUT}` })
      })
    )
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

    const send = (messages: ReadonlyArray<OutgoingMessage>) =>
      Ref.get(current).pipe(
        Effect.flatMap(Option.match({
          onNone: () => Effect.fail(new BrokerError({ message: "RabbitMQ is not connected" })),
          onSome: (channel) => sendBatch(channel, messages)
        }))
      )
    return Publisher.of({
      send,
      publishAll: (messages) => Effect.flatten(send(messages)),
      isConnected: Effect.map(Ref.get(current), Option.isSome)
    })
  })
)
