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
import type { WorkerConfig } from "../Config.js"
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
      channel.assertQueue(DLQ, { durable: true, arguments: queueArgs(options.queueType) }))
    for (const event of EVENT_NAMES) {
      const queue = queueFor(event)
      yield* step(`queue ${queue}`, () =>
        channel.assertQueue(queue, {
          durable: true,
          deadLetterExchange: "",
          deadLetterRoutingKey: DLQ,
          arguments: queueArgs(options.queueType)
        }))
      yield* step(`binding ${queue}`, () =>
        channel.bindQueue(queue, EXCHANGE, event))
      yield* step(`binding ${queue} (retry return)`, () =>
        channel.bindQueue(queue, RETRY_RETURN_EXCHANGE, `*.${queue}`))
    }
    for (const delay of new Set(options.retryDelaysMs)) {
      const queue = retryQueueFor(delay)
      yield* step(`queue ${queue}`, () =>
        channel.assertQueue(queue, {
          durable: true,
          messageTtl: delay,
          deadLetterExchange: RETRY_RETURN_EXCHANGE,
          arguments: queueArgs(options.queueType)
        }))
      yield* step(`binding ${queue}`, () =>
        channel.bindQueue(queue, RETRY_EXCHANGE, `${delay}ms.#`))
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
