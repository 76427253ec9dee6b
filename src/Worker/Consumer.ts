/**
 * The worker process: consumes the four queues (src/Broker/Consumer.ts) and
 * feeds the processor, with metrics summaries and graceful shutdown.
 *
 * Deliveries from all queues go into one in-memory queue; WORKER_CONCURRENCY
 * fibers each take whatever is waiting (1 to WORKER_BATCH_SIZE, never waiting
 * to fill a batch, so a lone event is not delayed) and process it as a batch.
 */
import { Duration, Effect, Layer, Metric, Queue, Schedule } from "effect"
import { consume } from "../Broker/Consumer.js"
import type { Delivery } from "../Broker/Delivery.js"
import { DLQ, QUEUES, topologyOptions } from "../Broker/Topology.js"
import { CrashLoopLimit, QueueType, WorkerConfig } from "../Config.js"
import { queueDepth, summary, WorkerMetrics } from "./Metrics.js"
import { makeProcessor } from "./Processor.js"

/** The worker's RabbitMQ connection name (the broker's connection list, the registry's `broker_node`). */
export const WORKER_CONNECTION = "opsdesk-worker"

export const WorkerLive = Layer.scopedDiscard(
  Effect.gen(function*() {
    const cfg = yield* WorkerConfig
    const queueType = yield* QueueType
    const metrics = yield* WorkerMetrics
    const processBatch = yield* makeProcessor(cfg, { crashLoopLimit: yield* CrashLoopLimit })

    const inbox = yield* Queue.unbounded<Delivery>()
    // Deliveries received and not yet through the processor (read by shutdown).
    const inFlight = { count: 0 }

    // Processing fibers.
    const worker = Queue.takeBetween(inbox, 1, cfg.batchSize).pipe(
      Effect.flatMap((batch) =>
        processBatch([...batch]).pipe(Effect.ensuring(Effect.sync(() => (inFlight.count -= batch.length))))
      ),
      Effect.forever
    )
    for (let i = 0; i < cfg.concurrency; i++) yield* Effect.forkScoped(worker)

    // The broker session, reconnecting forever; a topology mismatch stops the process.
    const consumer = yield* consume({
      name: WORKER_CONNECTION,
      queues: QUEUES,
      prefetch: cfg.prefetch,
      topology: topologyOptions(queueType, cfg),
      onDelivery: (delivery) => {
        inFlight.count++
        Queue.unsafeOffer(inbox, delivery)
      },
      onConsuming: Effect.logInfo(
        `Worker consuming ${
          QUEUES.join(", ")
        } (prefetch ${cfg.prefetch}, batch ≤ ${cfg.batchSize}, concurrency ${cfg.concurrency})`
      ),
      depths: {
        queues: [...QUEUES, DLQ],
        report: ({ messages, queue }) => Metric.set(queueDepth.pipe(Metric.tagged("queue", queue)), messages)
      }
    })

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
        yield* consumer.stop
        // Finalizers run uninterruptibly, and a timeout ends its effect by interrupting it: without
        // `interruptible` a batch that never finishes (a stuck handler) would hold shutdown forever.
        const drained = yield* Effect.sync(() => inFlight.count).pipe(
          Effect.repeat({ schedule: Schedule.spaced("20 millis"), until: (n) => n <= 0 }),
          Effect.interruptible,
          Effect.timeout(cfg.shutdownTimeout),
          Effect.option
        )
        const left = inFlight.count
        yield* drained._tag === "Some"
          ? Effect.logInfo("Worker drained: no messages in flight")
          : Effect.logWarning(
            `Shutdown timeout (${Duration.format(cfg.shutdownTimeout)}): ${left} message(s) left unacked for redelivery`
          )
        yield* metrics.totals.pipe(Effect.flatMap((t) => Effect.logInfo(summary(t))))
      })
    )
  })
)
