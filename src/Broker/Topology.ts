/**
 * RabbitMQ topology, with the seed's names: topic exchange `opsdesk.events`,
 * one durable queue per event (`<event>.queue`) dead-lettered to `tickets.dlq`.
 *
 * Delayed retries are held by the broker: a message to retry is published to
 * the topic exchange `opsdesk.retry` with routing key `<delay>ms.<queue>`; the
 * queue `opsdesk.retry.<delay>ms` holds it for its TTL, then dead-letters it to
 * `opsdesk.retry.return`, where only its original queue is bound
 * (`*.<queue>`). A waiting message occupies no consumer and survives restarts.
 * The delays are the tier-2 retry delays: the seed's exponential backoff
 * (initial delay, doubling, capped), one per retry up to MAX_RETRIES.
 */
import type { Channel } from "amqplib"
import { Chunk, Duration, Effect, Schedule } from "effect"
import { QUORUM_DELIVERY_LIMIT, type WorkerConfig } from "../Config.js"
import { EVENT_NAMES, type EventName } from "../Domain/Events.js"
import { describe } from "../Kit/Cause.js"
import { BrokerError, TopologyError } from "./Amqp.js"

export const EXCHANGE = "opsdesk.events"
export const DLQ = "tickets.dlq"
export const RETRY_EXCHANGE = "opsdesk.retry"
export const RETRY_RETURN_EXCHANGE = "opsdesk.retry.return"

export const queueFor = (event: EventName) => `${event}.queue` as const
export const QUEUES = EVENT_NAMES.map(queueFor)
export const retryQueueFor = (delayMs: number) => `${RETRY_EXCHANGE}.${delayMs}ms`
export const retryRoutingKey = (delayMs: number, queue: string) => `${delayMs}ms.${queue}`

export type QueueType = "classic" | "quorum"

export type RetryConfig = Pick<WorkerConfig, "retryInitialDelay" | "retryMaxDelay" | "maxRetries">

/** Delay before retry n+1 is min(initial * 2^n, max), for n < maxRetries. */
export const retrySchedule = (cfg: RetryConfig) =>
  Schedule.exponential(cfg.retryInitialDelay, 2).pipe(
    Schedule.map((d) => Duration.min(d, cfg.retryMaxDelay)),
    Schedule.intersect(Schedule.recurs(cfg.maxRetries)),
    Schedule.map(([d]) => d)
  )

/** The retry delays in milliseconds, one per retry: [1000, 2000, 4000] by default. */
export const retryDelays = (cfg: RetryConfig): ReadonlyArray<number> =>
  Effect.runSync(
    Schedule.run(retrySchedule(cfg), 0, Array.from({ length: cfg.maxRetries }, () => undefined)).pipe(
      Effect.map((delays) => Chunk.toReadonlyArray(delays).map((d) => Math.round(Duration.toMillis(d))))
    )
  )

export interface TopologyOptions {
  readonly queueType: QueueType
  readonly retryDelaysMs: ReadonlyArray<number>
}

export const topologyOptions = (queueType: QueueType, cfg: RetryConfig): TopologyOptions => ({
  queueType,
  retryDelaysMs: retryDelays(cfg)
})

// Classic queues are declared without `x-queue-type`, so they match queues
// declared by tools that never set it (the seed's worker, the bench scripts).
const queueArgs = (type: QueueType): Record<string, unknown> => (type === "quorum" ? { "x-queue-type": "quorum" } : {})

/**
 * Quorum queues that dead-letter (the event queues, through their delivery
 * limit; the retry queues, when a TTL expires) do it at-least-once: the source
 * queue keeps a dead letter until its target confirmed it. The default,
 * at-most-once, drops it if the target is unavailable (a node down). RabbitMQ
 * takes at-least-once only with `x-overflow: reject-publish`; no length limit
 * is set, so nothing is ever rejected for it. Checked on 3.10.
 */
const safeDeadLettering = (type: QueueType): Record<string, unknown> =>
  type === "quorum" ? { "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish" } : {}

/**
 * The event queues' broker-side crash-loop guard on quorum queues: a message
 * returned QUORUM_DELIVERY_LIMIT times is dead-lettered to the DLQ (kind
 * `crash-loop` there). The worker's own guard (CRASH_LOOP_LIMIT, lower) acts
 * first; this one catches what the worker cannot, say a message that kills
 * every worker that takes it. Classic queues have no such argument.
 */
const eventQueueLimit = (type: QueueType): Record<string, unknown> =>
  type === "quorum" ? { "x-delivery-limit": QUORUM_DELIVERY_LIMIT } : {}

/**
 * The DLQ must never drop a message to a delivery limit: its listing borrows
 * and gives messages back (the dashboard does every 2 s), and each give-back
 * counts as a delivery on quorum queues. RabbitMQ 4 sets a default limit of
 * 20 and drops beyond it (the DLQ has no dead-letter target). `-1` turns the
 * limit off on 4.x, but 3.x reads it as 0 and drops a message on its first
 * give-back (checked on 3.10), so the limit is set out of reach instead, with
 * the same value on both. A limit also keeps a given-back message near the
 * head of the queue: without one (3.12+), it goes to the back.
 */
export const DLQ_DELIVERY_LIMIT = 1_000_000_000
const dlqArgs = (type: QueueType): Record<string, unknown> =>
  type === "quorum" ? { "x-queue-type": "quorum", "x-delivery-limit": DLQ_DELIVERY_LIMIT } : {}

/**
 * Declares everything (idempotent). A queue that exists with other arguments
 * (say, classic where quorum is asked for) closes the channel with 406; that
 * is reported as a TopologyError naming the queue, which callers treat as
 * fatal rather than a reason to reconnect.
 */
export const declareTopology = (channel: Channel, options: TopologyOptions) =>
  Effect.gen(function*() {
    const step = <A>(what: string, f: () => Promise<A>) =>
      Effect.tryPromise({
        try: f,
        catch: (cause) =>
          new TopologyError({
            cause,
            message: /PRECONDITION_FAILED|406/.test(describe(cause))
              ? `RabbitMQ ${what} already exists with different settings (${describe(cause)}). ` +
                `Check QUEUE_TYPE (now '${options.queueType}') or delete the ${what} and restart.`
              : `Declaring ${what} failed: ${describe(cause)}`
          })
      })
    yield* step(`exchange ${EXCHANGE}`, () => channel.assertExchange(EXCHANGE, "topic", { durable: true }))
    yield* step(`exchange ${RETRY_EXCHANGE}`, () => channel.assertExchange(RETRY_EXCHANGE, "topic", { durable: true }))
    yield* step(`exchange ${RETRY_RETURN_EXCHANGE}`, () =>
      channel.assertExchange(RETRY_RETURN_EXCHANGE, "topic", { durable: true }))
    yield* step(`queue ${DLQ}`, () =>
      channel.assertQueue(DLQ, { durable: true, arguments: dlqArgs(options.queueType) }))
    for (const event of EVENT_NAMES) {
      const queue = queueFor(event)
      yield* step(`queue ${queue}`, () =>
        channel.assertQueue(queue, {
          durable: true,
          deadLetterExchange: "",
          deadLetterRoutingKey: DLQ,
          arguments: {
            ...queueArgs(options.queueType),
            ...safeDeadLettering(options.queueType),
            ...eventQueueLimit(options.queueType)
          }
        }))
      yield* step(`binding ${queue}`, () => channel.bindQueue(queue, EXCHANGE, event))
      yield* step(
        `binding ${queue} (retry return)`,
        () => channel.bindQueue(queue, RETRY_RETURN_EXCHANGE, `*.${queue}`)
      )
    }
    for (const delay of new Set(options.retryDelaysMs)) {
      const queue = retryQueueFor(delay)
      yield* step(`queue ${queue}`, () =>
        channel.assertQueue(queue, {
          durable: true,
          messageTtl: delay,
          deadLetterExchange: RETRY_RETURN_EXCHANGE,
          arguments: { ...queueArgs(options.queueType), ...safeDeadLettering(options.queueType) }
        }))
      yield* step(`binding ${queue}`, () => channel.bindQueue(queue, RETRY_EXCHANGE, `${delay}ms.#`))
    }
  })

/** One queue's state as RabbitMQ reports it (passive declare). */
export interface QueueState {
  readonly queue: string
  /** Ready messages (not those delivered and unacked). */
  readonly messages: number
  readonly consumers: number
}

export const checkQueues = (
  channel: Channel,
  queues: ReadonlyArray<string>
): Effect.Effect<ReadonlyArray<QueueState>, BrokerError> =>
  Effect.forEach(queues, (queue) =>
    Effect.tryPromise({
      try: () => channel.checkQueue(queue),
      catch: (cause) => new BrokerError({ message: `Cannot read ${queue}: ${describe(cause)}`, cause })
    }).pipe(Effect.map((q): QueueState => ({ queue, messages: q.messageCount, consumers: q.consumerCount }))))
