/**
 * Wiring for the processor's unit tests: a WorkerConfig with tiny delays, the
 * in-memory layers, a driver for the TestClock, and a drain loop that feeds
 * the processor from the MemoryBroker until the broker is empty.
 */
import { Clock, Duration, Effect, Fiber, Layer, Logger, LogLevel, Option, TestClock } from "effect"
import type { Delivery } from "../../src/Broker/Delivery.js"
import type { WorkerConfig } from "../../src/Config.js"
import { TicketListCacheMemory } from "../../src/Tickets/ListCache.js"
import { WorkerMetricsLive } from "../../src/Worker/Metrics.js"
import type { ProcessBatch } from "../../src/Worker/Processor.js"
import { ControllableCacheLayer } from "./ControllableCache.js"
import { ControllableFaultsLayer } from "./ControllableFaults.js"
import { type DeliveryRecord, MemoryBroker } from "./MemoryBroker.js"
import { MemoryEventStoreLayer } from "./MemoryEventStore.js"

/** Broker-held delays keep their real values (they are never slept in-process); in-process ones are 1 ms. */
export const testConfig = (overrides: Partial<WorkerConfig> = {}): WorkerConfig => ({
  prefetch: 50,
  batchSize: 5,
  concurrency: 1,
  logEvents: "each",
  maxRetries: 3,
  retryInitialDelay: Duration.millis(1000),
  retryMaxDelay: Duration.millis(30_000),
  immediateRetries: 2,
  immediateRetryDelay: Duration.millis(1),
  metricsInterval: Duration.seconds(30),
  shutdownTimeout: Duration.seconds(1),
  processorName: "worker",
  ...overrides
})

/** Fresh in-memory world per `Effect.provide`: store, faults, broker, cache, real metrics. */
export const WorkerTestLayer = Layer.mergeAll(
  MemoryEventStoreLayer,
  ControllableFaultsLayer,
  MemoryBroker.Default,
  TicketListCacheMemory,
  WorkerMetricsLive
)

/** The same world with a listing cache whose Redis can be taken down (`ControllableCache`). */
export const WorkerTestLayerWithFlakyRedis = Layer.mergeAll(
  MemoryEventStoreLayer,
  ControllableFaultsLayer,
  MemoryBroker.Default,
  ControllableCacheLayer,
  WorkerMetricsLive
)

/** The processor's logs are noise in a property run; OPSDESK_TEST_LOGS=1 shows them. */
export const quietLogs = process.env["OPSDESK_TEST_LOGS"] === "1" ? Layer.empty : Logger.minimumLogLevel(LogLevel.None)

/**
 * The TestClock, in whole milliseconds. Jittered Schedules sleep fractional
 * milliseconds, which moves the TestClock to a fractional instant; its
 * `currentTimeNanos` is then `BigInt(millis * 1e6)`, which throws a RangeError
 * once the product is not an integer, and the processor's spans read it
 * (`endSpan`). The live clock has no such problem, so sleeps are rounded up.
 */
const integerMillis = (clock: Clock.Clock): Clock.Clock => {
  const millis = () => Math.floor(clock.unsafeCurrentTimeMillis())
  return {
    [Clock.ClockTypeId]: Clock.ClockTypeId,
    unsafeCurrentTimeMillis: millis,
    currentTimeMillis: Effect.sync(millis),
    unsafeCurrentTimeNanos: () => BigInt(millis()) * 1_000_000n,
    currentTimeNanos: Effect.sync(() => BigInt(millis()) * 1_000_000n),
    sleep: (duration) => clock.sleep(Duration.millis(Math.ceil(Duration.toMillis(duration))))
  }
}

/** Runs `self` on the TestClock with whole-millisecond sleeps (see `integerMillis`). */
export const withTestClock = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.flatMap(TestClock.testClock(), (clock) => Effect.withClock(self, integerMillis(clock)))

/**
 * Runs `self` under the TestClock, advancing the clock whenever every fiber is
 * asleep: the processor's Schedules (immediate retries, the infrastructure
 * hold) complete at once instead of hanging.
 */
export const driven = <A, E, R>(self: Effect.Effect<A, E, R>, maxAdjustments = 1000): Effect.Effect<A, E, R> =>
  Effect.gen(function*() {
    const fiber = yield* Effect.fork(withTestClock(self))
    for (let i = 0; i < maxAdjustments; i++) {
      if (Option.isSome(yield* Fiber.poll(fiber))) break
      yield* TestClock.adjust("10 minutes")
    }
    if (Option.isNone(yield* Fiber.poll(fiber))) {
      yield* Fiber.interrupt(fiber)
      return yield* Effect.dieMessage(`driven: still running after ${maxAdjustments} clock adjustments`)
    }
    return yield* Fiber.join(fiber)
  })

export interface DrainOptions<R> {
  /** Batch sizes, cycled. */
  readonly batchSizes?: ReadonlyArray<number>
  /** How many batches run concurrently per step, cycled. */
  readonly parallel?: ReadonlyArray<number>
  /** Runs before each step (fault injection, late publishes). */
  readonly beforeStep?: (step: number) => Effect.Effect<void, never, R>
  /** Runs when the broker is empty; returns true if it published more work. */
  readonly onIdle?: Effect.Effect<boolean, never, R>
  /** Step budget; by default 50 + 20 per message published (retry and DLQ copies excluded). */
  readonly maxSteps?: number
}

export interface DrainReport {
  readonly steps: number
  readonly batches: number
  readonly deliveries: number
  readonly crashes: number
  readonly releases: number
  /** Steps that ran more than one batch concurrently. */
  readonly concurrentSteps: number
  /** Deliveries the processor returned from without settling (no ack, no requeue, no failed publish). */
  readonly stranded: ReadonlyArray<DeliveryRecord>
  /** True when the step budget ran out before the broker was empty. */
  readonly exhausted: boolean
}

/**
 * Feeds the processor until the broker is empty: ready messages first (in
 * batches), then redelivery of whatever is still unacked (a channel crash),
 * then the retry queues' copies. After every step, each delivery of the step
 * must be settled, or excused by a lost ack or an unconfirmed publish.
 */
export const drain = <R = never>(processBatch: ProcessBatch, options: DrainOptions<R> = {}) =>
  Effect.gen(function*() {
    const broker = yield* MemoryBroker
    const sizes = options.batchSizes ?? [5]
    const parallel = options.parallel ?? [1]
    const stranded: Array<DeliveryRecord> = []
    let batches = 0
    let deliveries = 0
    let crashes = 0
    let releases = 0
    let concurrentSteps = 0
    let step = 0
    let exhausted = false
    for (;; step++) {
      if (options.beforeStep) yield* options.beforeStep(step)
      const s = yield* broker.get
      // A runaway (a message retried forever) must fail fast, shrinking included.
      if (step >= (options.maxSteps ?? 50 + 20 * s.published)) {
        exhausted = true
        break
      }
      if (s.ready.length > 0) {
        const group: Array<ReadonlyArray<Delivery>> = []
        const n = parallel[step % parallel.length]!
        for (let i = 0; i < n; i++) {
          const batch = yield* broker.take(sizes[batches % sizes.length]!)
          if (batch.length === 0) break
          group.push(batch)
          batches++
          deliveries += batch.length
        }
        if (group.length > 1) concurrentSteps++
        yield* Effect.forEach(group, processBatch, { concurrency: "unbounded", discard: true })
        const after = yield* broker.get
        for (const record of after.deliveries.values()) {
          if (
            record.epoch === after.epoch && record.status === "unacked" && !record.publishFailed &&
            record.tag >= s.nextTag
          ) {
            stranded.push(record)
          }
        }
      } else if (s.unacked.size > 0) {
        yield* broker.crash
        crashes++
      } else if (s.retry.length > 0) {
        yield* broker.releaseRetries
        releases++
      } else if (options.onIdle === undefined || !(yield* options.onIdle)) {
        break
      }
    }
    return {
      steps: step,
      batches,
      deliveries,
      crashes,
      releases,
      concurrentSteps,
      stranded,
      exhausted
    } satisfies DrainReport
  })
