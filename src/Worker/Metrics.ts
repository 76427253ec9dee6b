/**
 * Worker metrics. Each outcome is an Effect `Metric` tagged with the event
 * type (exported to Prometheus elsewhere), and also kept in plain totals for
 * the seed's periodic summary.
 *
 * Label values come from a fixed set, the event types (anything else counts
 * as `unknown`): whoever can publish chooses routing keys and headers, and a
 * label taken from them would let them create series without end. The lag
 * is clamped to [0, 1 day], so an event stamped decades away cannot skew the
 * histogram's sum; the clamped observations are counted.
 */
import { Context, Effect, Layer, Metric, MetricBoundaries } from "effect"
import { EVENT_NAMES } from "../Domain/Events.js"
import { withLabels } from "../Kit/Metrics.js"

export type Outcome =
  | "processed"
  | "failed"
  | "retried"
  | "duplicates"
  | "poison"
  | "invalid"
  | "conflicts"
  | "crashLoops"

export const processedTotal = Metric.counter("opsdesk_worker_processed_total", {
  description: "Events processed",
  incremental: true
})
export const failedTotal = Metric.counter("opsdesk_worker_failed_total", {
  description: "Events dead-lettered after their retries",
  incremental: true
})
export const retriedTotal = Metric.counter("opsdesk_worker_retried_total", {
  description: "Retries scheduled",
  incremental: true
})
export const duplicatesTotal = Metric.counter("opsdesk_worker_duplicates_total", {
  description: "Duplicate deliveries suppressed",
  incremental: true
})
export const poisonTotal = Metric.counter("opsdesk_worker_poison_total", {
  description: "Undecodable messages (or messages too large to copy) sent to the DLQ",
  incremental: true
})
export const invalidTotal = Metric.counter("opsdesk_worker_invalid_total", {
  description:
    "Events sent to the DLQ unprocessed: on another event's queue, or about a ticket or message that does not exist",
  incremental: true
})
export const conflictsTotal = Metric.counter("opsdesk_worker_conflicts_total", {
  description: "Events sent to the DLQ unprocessed: their eventId was already processed with another payload",
  incremental: true
})
export const crashLoopsTotal = Metric.counter("opsdesk_worker_crash_loop_total", {
  description:
    "Messages sent to the DLQ unprocessed after CRASH_LOOP_LIMIT deliveries that each ended without settling them (their batch failed, or the worker died)",
  incremental: true
})
export const lagClampedTotal = Metric.counter("opsdesk_worker_lag_clamped_total", {
  description: "Lag observations outside [0, 1 day] (an occurredAt in the future, or over a day old), recorded clamped",
  incremental: true
})
export const queueDepth = Metric.gauge("opsdesk_queue_depth", {
  description: "Messages ready in a queue (the four event queues and tickets.dlq)"
})
export const processingTime = Metric.histogram(
  "opsdesk_worker_processing_seconds",
  MetricBoundaries.exponential({ start: 0.0005, factor: 2, count: 16 }),
  "Time from taking a delivery to its ack"
)
export const endToEndLag = Metric.histogram(
  "opsdesk_worker_lag_seconds",
  MetricBoundaries.exponential({ start: 0.001, factor: 2, count: 18 }),
  "Time from the event's occurredAt to its processing"
)

/** The longest lag recorded as it is. */
export const MAX_LAG_MS = 24 * 60 * 60 * 1000

/** A metric label for an event type: itself if it is one of ours, else `unknown`. */
export const eventLabel = (eventType: string): string =>
  (EVENT_NAMES as ReadonlyArray<string>).includes(eventType) ? eventType : "unknown"

export interface Totals {
  processed: number
  failed: number
  retried: number
  duplicates: number
  poison: number
  invalid: number
  conflicts: number
  crashLoops: number
  /** Per event type: count and summed milliseconds of processed events. */
  timings: Map<string, { count: number; totalMs: number; maxMs: number }>
}

/** One processed event's timings: from taking its delivery to its ack, and from its occurredAt. */
export interface Timing {
  readonly eventType: string
  readonly millis: number
  readonly lagMillis: number
}

export class WorkerMetrics extends Context.Tag("OpsDesk/Worker/Metrics")<WorkerMetrics, {
  readonly record: (outcome: Outcome, eventType: string, count?: number) => Effect.Effect<void>
  /** A batch's timings in one step (the worker's hot path: no Effect per event). */
  readonly timings: (timings: ReadonlyArray<Timing>) => Effect.Effect<void>
  readonly totals: Effect.Effect<Totals>
}>() {}

/** Tagged metrics are built once per (metric, event type): tagging allocates and hashes a new key. */
const memo = <M>(make: (eventType: string) => M) => {
  const cache = new Map<string, M>()
  return (eventType: string): M => {
    let m = cache.get(eventType)
    if (m === undefined) cache.set(eventType, m = make(eventType))
    return m
  }
}

export const make = Effect.sync(() => {
  const totals: Totals = {
    processed: 0,
    failed: 0,
    retried: 0,
    duplicates: 0,
    poison: 0,
    invalid: 0,
    conflicts: 0,
    crashLoops: 0,
    timings: new Map()
  }
  const tagged = {
    processed: memo((e) => withLabels(processedTotal, { event: e })),
    failed: memo((e) => withLabels(failedTotal, { event: e })),
    retried: memo((e) => withLabels(retriedTotal, { event: e })),
    duplicates: memo((e) => withLabels(duplicatesTotal, { event: e })),
    poison: memo((e) => withLabels(poisonTotal, { event: e })),
    invalid: memo((e) => withLabels(invalidTotal, { event: e })),
    conflicts: memo((e) => withLabels(conflictsTotal, { event: e })),
    crashLoops: memo((e) => withLabels(crashLoopsTotal, { event: e }))
  } satisfies Record<Outcome, unknown>
  const time = memo((e) => withLabels(processingTime, { event: e }))
  const lag = memo((e) => withLabels(endToEndLag, { event: e }))
  const clamped = memo((e) => withLabels(lagClampedTotal, { event: e }))
  const observe = (timing: Timing) => {
    const eventType = eventLabel(timing.eventType)
    const { lagMillis, millis } = timing
    const t = totals.timings.get(eventType) ?? { count: 0, totalMs: 0, maxMs: 0 }
    t.count++
    t.totalMs += millis
    t.maxMs = Math.max(t.maxMs, millis)
    totals.timings.set(eventType, t)
    // What Metric.update does, minus its Effect: these metrics carry no ambient labels.
    time(eventType).unsafeUpdate(millis / 1000, [])
    const inRange = lagMillis >= 0 && lagMillis <= MAX_LAG_MS
    if (!inRange) clamped(eventType).unsafeUpdate(1, [])
    const lagMs = inRange ? lagMillis : Number.isNaN(lagMillis) || lagMillis < 0 ? 0 : MAX_LAG_MS
    lag(eventType).unsafeUpdate(lagMs / 1000, [])
  }
  return WorkerMetrics.of({
    record: (outcome, eventType, count = 1) =>
      Effect.suspend(() => {
        totals[outcome] += count
        return Metric.incrementBy(tagged[outcome](eventLabel(eventType)), count)
      }),
    timings: (timings) =>
      Effect.sync(() => {
        for (const t of timings) observe(t)
      }),
    totals: Effect.sync(() => ({ ...totals, timings: new Map(totals.timings) }))
  })
})

export const WorkerMetricsLive = Layer.effect(WorkerMetrics, make)

/** The seed's summary block, plus processing time per event type. */
export const summary = (t: Totals): string => {
  const lines = [
    "",
    "📊 Worker Metrics:",
    `  ✅ Processed: ${t.processed}`,
    `  ❌ Failed: ${t.failed + t.poison + t.invalid + t.conflicts + t.crashLoops}`,
    `  🔄 Retried: ${t.retried}`,
    `  ⏭️  Duplicates: ${t.duplicates}`
  ]
  for (const [event, { count, maxMs, totalMs }] of [...t.timings.entries()].sort()) {
    lines.push(`  ⏱️  ${event}: ${count} in avg ${(totalMs / count).toFixed(1)}ms (max ${maxMs.toFixed(1)}ms)`)
  }
  return lines.join("\n")
}
