/**
 * Consuming queues across broker outages. Each session (under `supervise`)
 * opens a channel and a confirm channel, declares the topology, sets the
 * prefetch, consumes the queues and hands every message over as a
 * `Delivery`; while connected it reports the queue depths every 5 s.
 *
 * PREFETCH bounds the unacked messages per queue consumer (RabbitMQ's
 * per-consumer QoS): the channel-wide "global" limit makes the broker
 * coordinate channel and queue for every message.
 */
import type { Channel, ChannelModel } from "amqplib"
import { Effect, type Option, Ref, Schedule } from "effect"
import { AckBatcher } from "./AckBatcher.js"
import {
  awaitClose,
  BrokerError,
  connectedNode,
  openChannel,
  openConfirmChannel,
  superviseInBackground
} from "./Amqp.js"
import { AmqpDelivery } from "./AmqpDelivery.js"
import type { Delivery } from "./Delivery.js"
import { checkQueues, declareTopology, type QueueState, type TopologyOptions } from "./Topology.js"

export interface ConsumerOptions {
  /** The connection's name, as RabbitMQ shows it. */
  readonly name: string
  readonly queues: ReadonlyArray<string>
  /** Unacked messages per queue consumer. */
  readonly prefetch: number
  readonly topology: TopologyOptions
  /** Called on amqplib's callback, once per message. */
  readonly onDelivery: (delivery: Delivery) => void
  /** Runs in every session once the queues are consumed. */
  readonly onConsuming: Effect.Effect<void>
  /** The queues whose depth is reported, and what to do with each reading. */
  readonly depths: {
    readonly queues: ReadonlyArray<string>
    readonly report: (state: QueueState) => Effect.Effect<void>
  }
}

export interface Consumer {
  /** Cancels the consumers, in this session and any later one; messages already delivered stay unacked until settled. */
  readonly stop: Effect.Effect<void>
  /** The node (`amqp://host:port`) the consumers' connection is on; none while disconnected. */
  readonly node: Effect.Effect<Option.Option<string>>
}

const cancelAll = (channel: Channel, tags: ReadonlyArray<string>) =>
  Effect.promise(() => Promise.all(tags.map((t) => channel.cancel(t).catch(() => undefined)))).pipe(
    // Also called from finalizers (uninterruptible): the timeout must be able to interrupt the wait.
    Effect.interruptible,
    Effect.timeout("3 seconds"),
    Effect.ignore
  )

/** Starts consuming in the background of the current scope; a topology mismatch stops the process (Fatal). */
export const consume = (options: ConsumerOptions) =>
  Effect.gen(function*() {
    // How to stop the current session's consumers; replaced on every reconnect.
    const cancelConsumers = yield* Ref.make<Effect.Effect<void>>(Effect.void)
    const stopping = yield* Ref.make(false)

    const session = (connection: ChannelModel) =>
      Effect.gen(function*() {
        const channel = yield* openChannel(connection)
        const confirm = yield* openConfirmChannel(connection)
        yield* declareTopology(confirm, options.topology)
        yield* Effect.tryPromise({
          try: () => channel.prefetch(options.prefetch, false),
          catch: (cause) => new BrokerError({ message: "prefetch failed", cause })
        })
        const open = { value: true }
        const acks = new AckBatcher(channel)
        channel.once("close", () => (open.value = false))
        confirm.once("close", () => (open.value = false))
        const tags: Array<string> = []
        for (const queue of options.queues) {
          const { consumerTag } = yield* Effect.tryPromise({
            try: () =>
              channel.consume(queue, (msg) => {
                if (msg === null) {
                  // The broker cancelled us (queue deleted): reconnect and declare again.
                  channel.close().catch(() => undefined)
                  return
                }
                options.onDelivery(new AmqpDelivery(msg, queue, acks, confirm, open))
              }, { noAck: false }),
            catch: (cause) => new BrokerError({ message: `consume ${queue} failed`, cause })
          })
          tags.push(consumerTag)
        }
        yield* Ref.set(cancelConsumers, cancelAll(channel, tags))
        if (yield* Ref.get(stopping)) yield* cancelAll(channel, tags)
        yield* checkQueues(confirm, options.depths.queues).pipe(
          Effect.flatMap((states) => Effect.forEach(states, options.depths.report, { discard: true })),
          Effect.ignore,
          Effect.repeat(Schedule.spaced("5 seconds")),
          Effect.forkScoped
        )
        yield* options.onConsuming
        return yield* Effect.raceFirst(awaitClose(channel, "consumer channel"), awaitClose(confirm, "confirm channel"))
      }).pipe(Effect.ensuring(Ref.set(cancelConsumers, Effect.void)))

    yield* superviseInBackground(options.name, session)

    const consumer: Consumer = {
      stop: Effect.zipRight(Ref.set(stopping, true), Effect.flatten(Ref.get(cancelConsumers))),
      node: connectedNode(options.name)
    }
    return consumer
  })
