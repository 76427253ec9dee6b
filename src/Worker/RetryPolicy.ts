/**
 * The worker's retry policies, all as Effect Schedules.
 *
 * Tier 1, `immediate`: a few quick in-process retries for blips.
 * Tier 2, `brokerDelays`: the seed's exponential backoff (initial delay,
 * doubling, capped), held by the broker in TTL retry queues, at most
 * MAX_RETRIES times; after that the message goes to the DLQ.
 * `infrastructure`: while PostgreSQL or Redis is unreachable the worker holds
 * its messages and retries, so an outage does not burn a message's retries.
 */
import { Chunk, Duration, Effect, Schedule } from "effect"
import type { WorkerConfig } from "../Config.js"

export const immediate = (cfg: Pick<WorkerConfig, "immediateRetries" | "immediateRetryDelay">) =>
  Schedule.exponential(cfg.immediateRetryDelay).pipe(Schedule.jittered, Schedule.intersect(Schedule.recurs(cfg.immediateRetries)))

/** Delay before retry n+1 is min(initial * 2^n, max), for n < maxRetries. */
export const brokerSchedule = (cfg: Pick<WorkerConfig, "retryInitialDelay" | "retryMaxDelay" | "maxRetries">) =>
  Schedule.exponential(cfg.retryInitialDelay, 2).pipe(
    Schedule.map((d) => Duration.min(d, cfg.retryMaxDelay)),
    Schedule.intersect(Schedule.recurs(cfg.maxRetries)),
    Schedule.map(([d]) => d)
  )

/** The tier-2 delays in milliseconds, one per retry: [1000, 2000, 4000] by default. */
export const brokerDelays = (cfg: Pick<WorkerConfig, "retryInitialDelay" | "retryMaxDelay" | "maxRetries">): ReadonlyArray<number> =>
  Effect.runSync(
    Schedule.run(brokerSchedule(cfg), 0, Array.from({ length: cfg.maxRetries }, () => undefined)).pipe(
      Effect.map((delays) => Chunk.toReadonlyArray(delays).map((d) => Math.round(Duration.toMillis(d))))
    )
  )

export const infrastructure = Schedule.exponential("100 millis").pipe(
  Schedule.either(Schedule.spaced("5 seconds")),
  Schedule.jittered,
  Schedule.upTo("5 minutes")
)
