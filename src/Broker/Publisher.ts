/**
 * The confirmed publisher used by the outbox relay. It keeps one connection
 * and confirm channel alive under `supervise` (reconnecting with backoff and
 * declaring the topology each time). A publish while disconnected fails at
 * once with BrokerError; the caller keeps its rows and tries again. `send`
 * reports the broker's answer to each message, so a caller can tell a
 * confirmed message from one returned as unroutable (mandatory) or refused.
 */
import type { ConfirmChannel } from "amqplib"
import { Context, Effect, Layer, Option, Ref } from "effect"
import { QueueType, WorkerConfig } from "../Config.js"
import {
  awaitClose,
  batchSocketWrites,
  BrokerError,
  connectionNode,
  openConfirmChannel,
  superviseInBackground
} from "./Amqp.js"
import type { OutgoingMessage } from "./Message.js"
import { publishAll, publishConfirmed, type PublishOutcome } from "./Publish.js"
import { declareTopology, topologyOptions } from "./Topology.js"

export type { OutgoingMessage } from "./Message.js"
export type { PublishOutcome } from "./Publish.js"

export class Publisher extends Context.Tag("OpsDesk/Broker/Publisher")<Publisher, {
  /** Publishes every message and waits until the broker confirmed all of them. */
  readonly publishAll: (messages: ReadonlyArray<OutgoingMessage>) => Effect.Effect<void, BrokerError>
  /**
   * Sends every message now and returns the wait for the broker's answer to
   * each, in order, so a caller can send the next batch while the broker
   * confirms this one.
   */
  readonly send: (
    messages: ReadonlyArray<OutgoingMessage>
  ) => Effect.Effect<Effect.Effect<ReadonlyArray<PublishOutcome>>, BrokerError>
  readonly isConnected: Effect.Effect<boolean>
  /**
   * The RabbitMQ node the publisher is connected to (`amqp://host:port`, no
   * credentials or vhost; with a cluster's AMQP_URL, the one it failed over
   * to); none while disconnected. For /ready and the ops dashboard.
   */
  readonly node: Effect.Effect<Option.Option<string>>
}>() {}

export const PublisherLive = Layer.scoped(
  Publisher,
  Effect.gen(function*() {
    const topology = topologyOptions(yield* QueueType, yield* WorkerConfig)
    const current = yield* Ref.make(
      Option.none<{ readonly channel: ConfirmChannel; readonly node: Option.Option<string> }>()
    )

    yield* superviseInBackground("opsdesk-publisher", (connection) =>
      Effect.gen(function*() {
        // A batch's publishes leave in one socket write.
        batchSocketWrites(connection)
        const channel = yield* openConfirmChannel(connection)
        yield* declareTopology(channel, topology)
        yield* Ref.set(current, Option.some({ channel, node: connectionNode(connection) }))
        yield* Effect.logInfo("Publisher connected to RabbitMQ")
        return yield* awaitClose(channel, "publisher channel")
      }).pipe(Effect.ensuring(Ref.set(current, Option.none()))))

    const connected = Ref.get(current).pipe(
      Effect.flatMap(Option.match({
        onNone: () => Effect.fail(new BrokerError({ message: "RabbitMQ is not connected" })),
        onSome: ({ channel }) => Effect.succeed(channel)
      }))
    )
    return Publisher.of({
      send: (messages) => Effect.flatMap(connected, (channel) => publishConfirmed(channel, messages)),
      publishAll: (messages) => Effect.flatMap(connected, (channel) => Effect.flatten(publishAll(channel, messages))),
      isConnected: Effect.map(Ref.get(current), Option.isSome),
      node: Effect.map(Ref.get(current), Option.flatMap(({ node }) => node))
    })
  })
)
