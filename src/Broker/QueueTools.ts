/**
 * What the operator tools (the DLQ service) do on the broker: read queue
 * depths, borrow messages, remove them or give them back, purge a queue, and
 * republish copies, over one lazily opened connection (see LazyConnection.ts)
 * on which the topology is declared first, so the tools work on a fresh broker.
 *
 * A borrowed message is read with basic.get *without* acking: until it is
 * removed it stays the queue's. Given back (nack with requeue), a classic
 * queue puts it back in its original position; should the process die midway,
 * the broker requeues it when the connection closes. Nothing is lost by
 * looking. A quorum queue puts given-back messages in a list of their own,
 * served first, behind those given back before (checked on 3.10): a reader
 * that gives back only the first few of them rotates that list, so readers
 * borrow on through it (`Borrowed.redelivered`, see Dlq.ts). Each give-back
 * counts as a delivery there, which the DLQ's delivery limit (Topology.ts)
 * keeps from ever dropping a message.
 */
import type { Channel, ConfirmChannel, Message } from "amqplib"
import { Duration, Effect, Option, Schedule, type Scope } from "effect"
import { OperatorAmqpUrl, QueueType, WorkerConfig } from "../Config.js"
import { describe } from "../Kit/Cause.js"
import { BrokerError, connectedNode, openChannel, openConfirmChannel, openConnection } from "./Amqp.js"
import type { TopologyError } from "./Amqp.js"
import { makeLazyConnection } from "./LazyConnection.js"
import type { OutgoingMessage, QueuedMessage } from "./Message.js"
import { publishConfirmed, type PublishOutcome } from "./Publish.js"
import { checkQueues, declareTopology, type QueueState, type QueueType as Type, topologyOptions } from "./Topology.js"

export interface Borrowed {
  readonly message: QueuedMessage
  /** It was borrowed (or delivered) before and given back. */
  readonly redelivered: boolean
  /** Removes the message from its queue (acks it). */
  readonly remove: Effect.Effect<void, BrokerError>
}

/** One operation's channels; they close with its scope, which gives back whatever it did not remove. */
export interface QueueSession {
  /** Classic queues give borrowed messages back in place; quorum queues behind the others given back. */
  readonly queueType: Type
  readonly states: (queues: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<QueueState>, BrokerError>
  /** Ready messages in `queue` (not those borrowed by anyone). */
  readonly depth: (queue: string) => Effect.Effect<number, BrokerError>
  /** The next ready message of `queue`, borrowed; None once no ready message is left. */
  readonly borrow: (queue: string) => Effect.Effect<Option.Option<Borrowed>, BrokerError>
  /** Gives every borrowed message not removed back, in its original position, once the queue holds them again. */
  readonly giveBack: Effect.Effect<void>
  /** Removes every ready message of `queue`; returns how many. */
  readonly purge: (queue: string) => Effect.Effect<number, BrokerError>
  /** Publishes copies (confirmed; mandatory ones come back as Returned when unroutable). Needs a session opened with `confirm`. */
  readonly republish: (
    messages: ReadonlyArray<OutgoingMessage>
  ) => Effect.Effect<ReadonlyArray<PublishOutcome>, BrokerError>
}

export interface QueueTools {
  readonly session: (
    options?: { readonly confirm?: boolean }
  ) => Effect.Effect<QueueSession, BrokerError | TopologyError, Scope.Scope>
  /** Whether a broker connection is open right now (one is opened on demand). */
  readonly isConnected: Effect.Effect<boolean>
  /** The node (`amqp://host:port`) the tools' connection is on; none while none is open. */
  readonly node: Effect.Effect<Option.Option<string>>
}

const brokerError = (what: string) => (cause: unknown) =>
  new BrokerError({ message: `${what}: ${describe(cause)}`, cause })

/** How long a give-back waits for the broker to hold the messages again (a concurrent reader can keep it short of that). */
const GIVE_BACK_WAIT = Duration.seconds(2)

const sessionOn = (channel: Channel, confirm: ConfirmChannel | undefined, queueType: Type): QueueSession => {
  // Borrowed and not removed, per queue: what a give-back returns.
  const held = new Map<string, number>()
  const hold = (queue: string, n: number) => void held.set(queue, (held.get(queue) ?? 0) + n)

  /**
   * The nack is not answered, and the queue applies it on its own time (a
   * quorum queue through its log): an operation right after this one, on
   * another channel, could find them missing (an empty or short listing). So
   * it waits until the queues' ready counts are back up by what it returned.
   */
  const giveBack = Effect.gen(function*() {
    const returned = [...held].filter(([, n]) => n > 0)
    held.clear()
    if (returned.length === 0) return
    const names = returned.map(([queue]) => queue)
    const before = yield* checkQueues(channel, names)
    channel.nackAll(true)
    const targets = returned.map(([, n], i) => (before[i]?.messages ?? 0) + n)
    yield* checkQueues(channel, names).pipe(
      Effect.map((states) => states.every((state, i) => (state?.messages ?? 0) >= targets[i]!)),
      Effect.repeat({ until: (back) => back, schedule: Schedule.spaced("5 millis") }),
      Effect.timeout(GIVE_BACK_WAIT)
    )
  }).pipe(
    // The channel is gone: the broker has requeued them already.
    Effect.catchAllCause(() => Effect.void)
  )

  return {
    queueType,
    states: (queues) => checkQueues(channel, queues),
    depth: (queue) => Effect.map(checkQueues(channel, [queue]), ([state]) => state?.messages ?? 0),
    borrow: (queue) =>
      Effect.tryPromise({
        try: () => channel.get(queue, { noAck: false }),
        catch: brokerError(`Cannot read from ${queue}`)
      }).pipe(
        Effect.map((msg) => {
          if (msg === false) return Option.none()
          hold(queue, 1)
          return Option.some(borrowed(channel, queue, msg, () => hold(queue, -1)))
        })
      ),
    giveBack,
    purge: (queue) =>
      Effect.tryPromise({ try: () => channel.purgeQueue(queue), catch: brokerError(`Cannot purge ${queue}`) }).pipe(
        Effect.map((r) => r.messageCount)
      ),
    republish: (messages) =>
      confirm === undefined
        ? Effect.fail(new BrokerError({ message: "This session has no confirm channel" }))
        : Effect.flatten(publishConfirmed(confirm, messages))
  }
}

const borrowed = (channel: Channel, queue: string, message: Message, removed: () => void): Borrowed => ({
  message,
  redelivered: message.fields.redelivered,
  remove: Effect.try({
    try: () => {
      channel.ack(message)
      removed()
    },
    catch: brokerError(`Cannot remove a message from ${queue}`)
  })
})

/** Tools on OPS_AMQP_URL (else AMQP_URL), declaring the topology of QUEUE_TYPE and the worker's retry delays. */
export const makeQueueTools = (options: {
  /** The connection's name, as RabbitMQ shows it. */
  readonly name: string
  readonly idleTimeToLive: Duration.DurationInput
}) =>
  Effect.gen(function*() {
    const url = yield* OperatorAmqpUrl
    const queueType = yield* QueueType
    const topology = topologyOptions(queueType, yield* WorkerConfig)
    const pool = yield* makeLazyConnection<BrokerError | TopologyError>({
      open: Effect.gen(function*() {
        const connection = yield* openConnection(url, options.name)
        yield* Effect.scoped(Effect.flatMap(openChannel(connection), (channel) => declareTopology(channel, topology)))
        return connection
      }),
      idleTimeToLive: options.idleTimeToLive
    })

    // A channel that will not open means the connection is unusable: it is replaced and the open tried once more.
    const session = (sessionOptions: { readonly confirm?: boolean } = {}) =>
      Effect.gen(function*() {
        const { connection, invalidate } = yield* pool.lease
        return yield* Effect.all({
          channel: openChannel(connection),
          confirm: sessionOptions.confirm === true ? openConfirmChannel(connection) : Effect.succeed(undefined)
        }).pipe(
          Effect.map(({ channel, confirm }) => sessionOn(channel, confirm, queueType)),
          Effect.tapError(() => invalidate)
        )
      }).pipe(Effect.retry({ times: 1, while: (e) => e._tag === "BrokerError" }))

    const tools: QueueTools = { session, isConnected: pool.isOpen, node: connectedNode(options.name) }
    return tools
  })
