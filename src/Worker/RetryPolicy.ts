/**
 * The worker's retry policies, all as Effect Schedules.
 *
 * Tier 1, `immediate`: a few quick in-process retries for blips.
 * Tier 2: the seed's exponential backoff (initial delay, doubling, capped),
 * at most MAX_RETRIES times; after that the message goes to the DLQ. The
 * broker holds the message for each delay in a TTL retry queue, so that
 * Schedule and its delays belong to the topology (`retrySchedule` and
 * `retryDelays` in src/Broker/Topology.ts).
 * `infrastructure`: while PostgreSQL or Redis is unreachable the worker holds
 * its messages and retries, so an outage does not burn a message's retries.
 */
import { Schedule } from "effect"
import type { WorkerConfig } from "../Config.js"

export const immediate = (cfg: Pick<WorkerConfig, "immediateRetries" | "immediateRetryDelay">) =>
  Schedule.exponential(cfg.immediateRetryDelay).pipe(
    Schedule.jittered,
    Schedule.intersect(Schedule.recurs(cfg.immediateRetries))
  )

export const infrastructure = Schedule.exponential("100 millis").pipe(
  Schedule.either(Schedule.spaced("5 seconds")),
  Schedule.jittered,
  Schedule.upTo("5 minutes")
)
