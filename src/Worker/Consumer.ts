/**
 * The worker process: consumes the four queues over RabbitMQ and feeds the
 * processor, with reconnection, metrics summaries and graceful shutdown.
 *
 * Deliveries from all queues go into one in-memory queue; WORKER_CONCURRENCY
 * fibers each take whatever is waiting (1 to WORKER_BATCH_SIZE, never waiting
 * to fill a batch, so a lone event is not delayed) and process it as a batch.
 * PREFETCH bounds the unacked messages per queue consumer (RabbitMQ's
 * per-consumer QoS; the channel-wide "global" limit costs the broker a
 * channel/queue round of coordination per message, ~40% of the drain rate).
 */
import { Deferred, Duration, Effect, Layer, Metric, Queue, Ref, Schedule } from "effect"
import type { ConfirmChannel, ConsumeMessage, Options } from "amqplib"
import { AckBatcher } from "../Broker/AckBatcher.js"
import { AmqpUrl, BrokerReconnect, QueueType, WorkerConfig } from "../Config.js"
import { awaitClose, BrokerError, openChannel, openConfirmChannel, publishConfirmed, supervise } from "../Broker/Amqp.js"
import { declareTopology, DLQ, QUEUES, RETRY_EXCHANGE, RETRY_RETURN_EXCHANGE, retryRoutingKey } from "../Broker/Topology.js"
import { Fatal } from "../Fatal.js"
import { DLQ_HEADERS, type Delivery, type FailureKind, RETRY_HEADER, SEED_RETRY_HEADER } from "../Broker/Delivery.js"
import { queueDepth, summary, WorkerMetrics } from "./Metrics.js"
import { makeProcessor } from "./Processor.js"
import { brokerDelays } from "./RetryPolicy.js"

/** Broker-owned headers are not copied onto republished messages. */
const BROKER_HEADERS = /^x-(death|first-death-|last-death-)/

const copyHeaders = (msg: ConsumeMessage): Record<string, unknown> => {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(msg.properties.headers ?? {})) if (!BROKER_HEADERS.test(k)) out[k] = v
  return out
}

const republishOptions = (msg: ConsumeMessage, headers: Record<string, unknown>): Options.Publish => ({
  persistent: true,
  contentType: msg.properties.contentType,
  messageId: msg.properties.messageId,
  type: msg.properties.type,
  appId: msg.properties.appId,
  timestamp: msg.properties.timestamp,
  correlationId: msg.properties.correlationId,
  headers
})

/**
 * Wraps an amqplib message; every settle is once-only and bound to its channel.
 * A class, not an object of closures: one is made per message on the hot path.
 */
class AmqpDelivery implements Delivery {
  readonly routingKey: string
  private settled = false

  constructor(
    private readonly msg: ConsumeMessage,
    readonly queue: string,
    private readonly acks: AckBatcher,
    private readonly confirm: ConfirmChannel,
    private readonly open: { value: boolean }
  ) {
    // A message back from a retry queue arrives with routing key `<delay>ms.<queue>`; its first routing key travels in a header.
    const original = msg.properties.headers?.[DLQ_HEADERS.routingKey]
    this.routingKey = msg.fields.exchange === RETRY_RETURN_EXCHANGE && typeof original === "string" ? original : msg.fields.routingKey
  }

  get body(): Uint8Array {
    return this.msg.content
  }
  get messageId(): string | undefined {
    return this.msg.properties.messageId
  }
  get headers(): Readonly<Record<string, unknown>> {
    return this.msg.properties.headers ?? {}
  }
  get ack(): Effect.Effect<void> {
    return Effect.sync(() => this.settle(() => this.acks.ack(this.msg)))
  }
  get requeue(): Effect.Effect<void> {
    return Effect.sync(() => this.settle(() => this.acks.requeue(this.msg)))
  }

  private settle(f: () => void): void {
    if (this.settled || !this.open.value) return
    this.settled = true
    try {
      f()
    } catch {
      // The channel closed under us: the broker will redeliver.
    }
  }

  retryLater({ attempt, delayMs, error }: { readonly delayMs: number; readonly attempt: number; readonly error: string }) {
    const headers = copyHeaders(this.msg)
    delete headers[SEED_RETRY_HEADER]
    return publishConfirmed(
      this.confirm,
      RETRY_EXCHANGE,
      retryRoutingKey(delayMs, this.queue),
      this.msg.content,
      republishOptions(this.msg, {
        ...headers,
        [RETRY_HEADER]: attempt,
        [DLQ_HEADERS.routingKey]: this.routingKey,
        "opsdesk-last-error": error.slice(0, 500)
      })
    )
  }

  deadLetter({ attempts, kind, reason }: { readonly kind: FailureKind; readonly reason: string; readonly attempts: number }) {
    return publishConfirmed(
      this.confirm,
      "",
      DLQ,
      this.msg.content,
      republishOptions(this.msg, {
        ...copyHeaders(this.msg),
        [DLQ_HEADERS.reason]: reason.slice(0, 2000),
        [DLQ_HEADERS.kind]: kind,
        [DLQ_HEADERS.attempts]: attempts,
        [DLQ_HEADERS.routingKey]: this.routingKey,
        [DLQ_HEADERS.queue]: this.queue,
        [DLQ_HEADERS.failedAt]: new Date().toISOString()
      })
    )
  }
}

export const toDelivery = (
  msg: ConsumeMessage,
  queue: string,
  acks: AckBatcher,
  confirm: ConfirmChannel,
  open: { value: boolean }
): Delivery => new AmqpDelivery(msg, queue, acks, confirm, open)

export const WorkerLive = Layer.scopedDiscard(
  Effect.gen(function*() {
    const cfg = yield* WorkerConfig
    const url = yield* AmqpUrl
    const policy = yield* BrokerReconnect
    const queueType = yield* QueueType
    const fatal = yield* Fatal
    const metrics = yield* WorkerMetrics
    const processBatch = yield* makeProcessor(cfg)
    const retryDelaysMs = brokerDelays(cfg)

    const inbox = yield* Queue.unbounded<Delivery>()
    // Deliveries received and not yet through the processor (read by shutdown).
    const inFlight = { count: 0 }
    // How to stop the current session's consumers; replaced on every reconnect.
    const cancelConsumers = yield* Ref.make<Effect.Effect<void>>(Effect.void)
    const stopping = yield* Ref.make(false)

    const session = (connection: Parameters<typeof openChannel>[0]) =>
      Effect.gen(function*() {
        const channel = yield* openChannel(connection)
        const confirm = yield* openConfirmChannel(connection)
        yield* declareTopology(confirm, { queueType, retryDelaysMs })
        // Per consumer (global=false): PREFETCH in flight per queue.
        yield* Effect.tryPromise({
          try: () => channel.prefetch(cfg.prefetch, false),
          catch: (cause) => new BrokerError({ message: "prefetch failed", cause })
        })
        const open = { value: true }
        const acks = new AckBatcher(channel)
        channel.once("close", () => (open.value = false))
        confirm.once("close", () => (open.value = false))
        const cancelled = yield* Deferred.make<void>()
        const tags: Array<string> = []
        for (const queue of QUEUES) {
          const { consumerTag } = yield* Effect.tryPromise({
            try: () =>
              channel.consume(queue, (msg) => {
                if (msg === null) {
                  // The broker cancelled us (queue deleted): reconnect and declare again.
                  channel.close().catch(() => undefined)
                  return
                }
                inFlight.count++
                Queue.unsafeOffer(inbox, toDelivery(msg, queue, acks, confirm, open))
              }, { noAck: false }),
            catch: (cause) => new BrokerError({ message: `consume ${queue} failed`, cause })
          })
          tags.push(consumerTag)
        }
        yield* Ref.set(
          cancelConsumers,
          Effect.promise(() => Promise.all(tags.map((t) => channel.cancel(t).catch(() => undefined)))).pipe(
            Effect.zipRight(Deferred.succeed(cancelled, undefined)),
            Effect.timeout("3 seconds"),
            Effect.ignore
          )
        )
        if (yield* Ref.get(stopping)) yield* Effect.flatten(Ref.get(cancelConsumers))
        // Queue and DLQ depth gauges, every 5 s while connected.
        yield* Effect.forEach([...QUEUES, DLQ], (queue) =>
          Effect.tryPromise(() => confirm.checkQueue(queue)).pipe(
            Effect.flatMap(({ messageCount }) => Metric.set(queueDepth.pipe(Metric.tagged("queue", queue)), messageCount))
          ), { discard: true }).pipe(Effect.ignore, Effect.repeat(Schedule.spaced("5 seconds")), Effect.forkScoped)
        yield* Effect.logInfo(`Worker consuming ${QUEUES.join(", ")} (prefetch ${cfg.prefetch}, batch ≤ ${cfg.batchSize}, concurrency ${cfg.concurrency})`)
        return yield* Effect.raceFirst(awaitClose(channel, "consumer channel"), awaitClose(confirm, "confirm channel"))
      }).pipe(Effect.ensuring(Ref.set(cancelConsumers, Effect.void)))

    // Processing fibers.
    const worker = Queue.takeBetween(inbox, 1, cfg.batchSize).pipe(
      Effect.flatMap((batch) =>
        processBatch([...batch]).pipe(Effect.ensuring(Effect.sync(() => (inFlight.count -= batch.length))))
      ),
      Effect.forever
    )
    for (let i = 0; i < cfg.concurrency; i++) yield* Effect.forkScoped(worker)

    // The broker session, reconnecting forever; a topology mismatch stops the process.
    yield* supervise("opsdesk-worker", url, policy, session).pipe(
      Effect.catchTag("TopologyError", (e) => Deferred.fail(fatal, e)),
      Effect.forkScoped
    )

    // The seed's periodic summary.
    yield* metrics.totals.pipe(
      Effect.flatMap((t) => Effect.logInfo(summary(t))),
      Effect.repeat(Schedule.spaced(cfg.metricsInterval)),
      Effect.delay(cfg.metricsInterval),
      Effect.forkScoped
    )

    // Runs first on shutdown (finalizers run in reverse): stop consuming, then
    // let in-flight messages finish within SHUTDOWN_TIMEOUT_MS. Whatever is
    // still unacked after that is redelivered by the broker later.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        yield* Ref.set(stopping, true)
        yield* Effect.flatten(Ref.get(cancelConsumers))
        const drained = yield* Effect.sync(() => inFlight.count).pipe(
          Effect.repeat({ schedule: Schedule.spaced("20 millis"), until: (n) => n <= 0 }),
          Effect.timeout(cfg.shutdownTimeout),
          Effect.option
        )
        const left = inFlight.count
        yield* drained._tag === "Some"
          ? Effect.logInfo("Worker drained: no messages in flight")
          : Effect.logWarning(`Shutdown timeout (${Duration.format(cfg.shutdownTimeout)}): ${left} message(s) left unacked for redelivery`)
        yield* metrics.totals.pipe(Effect.flatMap((t) => Effect.logInfo(summary(t))))
      })
    )
  })
)
