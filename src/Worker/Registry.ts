/**
 * The worker registry: every worker process keeps a row in `workers`
 * (migration 0008) with its host, pid, start time, a heartbeat (`last_seen`)
 * and the counters the ops dashboard shows, written every WORKER_HEARTBEAT_MS.
 * /ops/api and the dashboard sum the live rows (src/Ops/Workers.ts), so they
 * see every worker, however many run and wherever; the Prometheus metrics stay
 * per process.
 *
 * A row not refreshed for WORKER_REGISTRY_TTL_MS is not counted (its worker
 * died without a goodbye); each heartbeat also removes rows ten times that
 * old. A worker that stops gracefully writes its final counters (after its
 * drain) and marks its row stopped.
 *
 * The counters are read from this process's Effect metrics (the same values
 * its /metrics endpoint exports): since the process started. The row also
 * says which RabbitMQ node the worker's consumer connection is on (none while
 * it is disconnected), so a cluster's failovers show on the dashboard.
 */
import { SqlClient } from "@effect/sql"
import { Duration, Effect, Layer, Metric, MetricState, Option, Schedule } from "effect"
import { randomUUID } from "node:crypto"
import { hostname } from "node:os"
import { connectedNode } from "../Broker/Amqp.js"
import { WorkerRegistryConfig } from "../Config.js"
import { EVENT_NAMES } from "../Domain/Events.js"
import { describe } from "../Kit/Cause.js"
import { rateLimitedWarning } from "../Kit/Warnings.js"
import { WORKER_CONNECTION } from "./Consumer.js"

/** One event type's counters in a worker's row (`events`): sums and counts, so rows add up. */
export interface EventCounters {
  event: string
  processed: number
  failed: number
  retried: number
  duplicates: number
  poison: number
  timeSum: number
  timeCount: number
  lagSum: number
  lagCount: number
}

const COUNTERS = {
  opsdesk_worker_processed_total: "processed",
  opsdesk_worker_failed_total: "failed",
  opsdesk_worker_retried_total: "retried",
  opsdesk_worker_duplicates_total: "duplicates",
  opsdesk_worker_poison_total: "poison"
} as const

const HISTOGRAMS = {
  opsdesk_worker_processing_seconds: ["timeSum", "timeCount"],
  opsdesk_worker_lag_seconds: ["lagSum", "lagCount"]
} as const

const empty = (event: string): EventCounters => ({
  event,
  processed: 0,
  failed: 0,
  retried: 0,
  duplicates: 0,
  poison: 0,
  timeSum: 0,
  timeCount: 0,
  lagSum: 0,
  lagCount: 0
})

/** This process's worker counters per event type, from the metric registry. */
export const readCounters = Effect.map(Metric.snapshot, (pairs) => {
  const byEvent = new Map<string, EventCounters>(EVENT_NAMES.map((e) => [e, empty(e)]))
  for (const { metricKey, metricState } of pairs) {
    const name = metricKey.name
    if (!name.startsWith("opsdesk_worker_")) continue
    const event = metricKey.tags.find((t) => t.key === "event")?.value ?? "unknown"
    let entry = byEvent.get(event)
    if (entry === undefined) byEvent.set(event, entry = empty(event))
    if (name in COUNTERS && MetricState.isCounterState(metricState)) {
      entry[COUNTERS[name as keyof typeof COUNTERS]] += Number(metricState.count)
    } else if (name in HISTOGRAMS && MetricState.isHistogramState(metricState)) {
      const [sum, count] = HISTOGRAMS[name as keyof typeof HISTOGRAMS]
      entry[sum] += metricState.sum
      entry[count] += metricState.count
    }
  }
  return [...byEvent.values()]
})

type Counted = typeof COUNTERS[keyof typeof COUNTERS]

const total = (events: ReadonlyArray<EventCounters>, key: Counted) => events.reduce((n, e) => n + e[key], 0)

export const WorkerRegistryLive = Layer.scopedDiscard(
  Effect.gen(function*() {
    const cfg = yield* WorkerRegistryConfig
    const sql = yield* SqlClient.SqlClient
    const id = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`
    const startedAt = new Date()
    const warning = rateLimitedWarning(Duration.toMillis(cfg.heartbeat) * 6)
    const expiry = Duration.toMillis(cfg.ttl) * 10

    const write = (stopped: boolean) =>
      Effect.gen(function*() {
        const events = yield* readCounters
        const node = Option.getOrNull(yield* connectedNode(WORKER_CONNECTION))
        yield* sql`
          INSERT INTO workers (id, host, pid, started_at, last_seen, stopped_at, processed, failed, retried, duplicates, poison, events, broker_node)
          VALUES (${id}, ${hostname()}, ${process.pid}, ${startedAt}, now(), ${stopped ? new Date() : null},
            ${total(events, "processed")}, ${total(events, "failed")}, ${total(events, "retried")},
            ${total(events, "duplicates")}, ${total(events, "poison")}, ${JSON.stringify(events)}::jsonb, ${node})
          ON CONFLICT (id) DO UPDATE SET last_seen = now(), stopped_at = EXCLUDED.stopped_at,
            processed = EXCLUDED.processed, failed = EXCLUDED.failed, retried = EXCLUDED.retried,
            duplicates = EXCLUDED.duplicates, poison = EXCLUDED.poison, events = EXCLUDED.events,
            broker_node = EXCLUDED.broker_node`
      })

    const removeExpired = sql`DELETE FROM workers WHERE last_seen < now() - ${expiry} * interval '1 millisecond'`

    const heartbeat = write(false).pipe(
      Effect.zipRight(removeExpired),
      // PostgreSQL away: the next heartbeat tries again; the row expires if it stays away.
      Effect.catchAll((e) => warning.warn(`Worker registry: heartbeat not written (${describe(e)})`))
    )

    yield* Effect.logInfo(`Worker registered as ${id}`)
    yield* heartbeat.pipe(Effect.repeat(Schedule.spaced(cfg.heartbeat)), Effect.forkScoped)
    // Runs after the worker's drain (this layer is built before the worker, so released after it).
    yield* Effect.addFinalizer(() =>
      write(true).pipe(
        // A finalizer is uninterruptible: `interruptible` lets the timeout end a write the database never answers.
        Effect.interruptible,
        Effect.timeout("3 seconds"),
        Effect.catchAllCause(() => Effect.logWarning("Worker registry: final counters not written")),
        Effect.asVoid
      )
    )
  })
)
