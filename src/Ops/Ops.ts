/**
 * What the ops dashboard reads and does, from the same sources as the CLI:
 *  - queue depths and the DLQ through the `Dlq` service (src/Dlq/Dlq.ts);
 *  - the outbox backlog, and the events in it waiting for a route, with the queries the relay's
 *    gauges use (src/Outbox/Backlog.ts);
 *  - the worker's counters by scraping its Prometheus endpoint
 *    (WORKER_METRICS_URL, default http://127.0.0.1:9464/metrics);
 *  - every live worker, and their sums, from the registry (src/Ops/Workers.ts).
 *
 * The overview never fails: a source that does not answer (RabbitMQ,
 * PostgreSQL, the worker) is reported in its own panel with the reason.
 *
 * DLQ operations run one at a time in this process: each borrows the messages
 * it scans (see Dlq.ts), so a listing running next to a discard would hide
 * the very message the discard looks for.
 */
import { FetchHttpClient, HttpClient, HttpClientRequest, HttpClientResponse } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { DateTime, Duration, Effect, Option, Redacted } from "effect"
import type { Actor } from "../Auth/CurrentUser.js"
import { DLQ } from "../Broker/Topology.js"
import { MetricsToken, WorkerMetricsUrl, WorkerRegistryConfig } from "../Config.js"
import { Dlq, type DlqError } from "../Dlq/Dlq.js"
import { EVENT_NAMES } from "../Domain/Events.js"
import { describe } from "../Kit/Cause.js"
import { readBacklog, readUnroutable } from "../Outbox/Backlog.js"
import { recordAudit } from "../Store/Audit.js"
import { readDisabledWebhooks } from "../Webhooks/Status.js"
import {
  DlqEntryNotFound,
  NotReplayable,
  type Overview,
  Unavailable,
  type WorkerCounters,
  type WorkerEventStats
} from "./Domain.js"
import { parse, type Sample } from "./Prometheus.js"
import { readWorkers } from "./Workers.js"

export const DEFAULT_DLQ_LIMIT = 50
const BROKER_READ_TIMEOUT = "6 seconds"
const SQL_TIMEOUT = "5 seconds"
const SCRAPE_TIMEOUT = "2 seconds"

const unavailable = (e: DlqError) => new Unavailable({ message: e.message })

const COUNTERS = {
  opsdesk_worker_processed_total: "processed",
  opsdesk_worker_failed_total: "failed",
  opsdesk_worker_retried_total: "retried",
  opsdesk_worker_duplicates_total: "duplicates",
  opsdesk_worker_poison_total: "poison"
} as const satisfies Record<string, keyof WorkerCounters>

const zero = (): { -readonly [K in keyof WorkerCounters]: number } => ({
  processed: 0,
  failed: 0,
  retried: 0,
  duplicates: 0,
  poison: 0,
  deadLettered: 0
})

/** Per event type: the five counters, and the average processing time and lag from the histograms' sums and counts. */
export const workerStats = (
  samples: ReadonlyArray<Sample>
): { readonly events: ReadonlyArray<WorkerEventStats>; readonly totals: WorkerCounters } => {
  const byEvent = new Map<
    string,
    { counters: ReturnType<typeof zero>; timeSum: number; timeCount: number; lagSum: number; lagCount: number }
  >()
  const entry = (event: string) => {
    let e = byEvent.get(event)
    if (e === undefined) byEvent.set(event, e = { counters: zero(), timeSum: 0, timeCount: 0, lagSum: 0, lagCount: 0 })
    return e
  }
  for (const event of EVENT_NAMES) entry(event)
  for (const s of samples) {
    if (!s.name.startsWith("opsdesk_worker_") || !Number.isFinite(s.value)) continue
    const e = entry(s.labels["event"] ?? "unknown")
    const counter = (COUNTERS as Record<string, keyof WorkerCounters | undefined>)[s.name]
    if (counter !== undefined) e.counters[counter] += s.value
    else if (s.name === "opsdesk_worker_processing_seconds_sum") e.timeSum += s.value
    else if (s.name === "opsdesk_worker_processing_seconds_count") e.timeCount += s.value
    else if (s.name === "opsdesk_worker_lag_seconds_sum") e.lagSum += s.value
    else if (s.name === "opsdesk_worker_lag_seconds_count") e.lagCount += s.value
  }
  const totals = zero()
  const events = [...byEvent.entries()].map(([event, e]): WorkerEventStats => {
    e.counters.deadLettered = e.counters.failed + e.counters.poison
    for (const k of Object.keys(totals) as Array<keyof WorkerCounters>) totals[k] += e.counters[k]
    return {
      event,
      ...e.counters,
      avgProcessingMs: e.timeCount > 0 ? (e.timeSum / e.timeCount) * 1000 : null,
      avgLagMs: e.lagCount > 0 ? (e.lagSum / e.lagCount) * 1000 : null
    }
  })
  return { events, totals }
}

export class Ops extends Effect.Service<Ops>()("OpsDesk/Ops", {
  effect: Effect.gen(function*() {
    const dlq = yield* Dlq
    const sql = yield* SqlClient.SqlClient
    const metricsToken = yield* MetricsToken
    // The worker's /metrics asks for METRICS_TOKEN when it is set: the scrape sends it.
    const http = (yield* HttpClient.HttpClient).pipe(
      HttpClient.withTracerPropagation(false),
      HttpClient.mapRequest((request) =>
        Option.match(metricsToken, {
          onNone: () => request,
          onSome: (token) => HttpClientRequest.bearerToken(request, Redacted.value(token))
        })
      )
    )
    const metricsUrl = yield* WorkerMetricsUrl
    const registry = yield* WorkerRegistryConfig
    const lock = yield* Effect.makeSemaphore(1)
    const exclusive = lock.withPermits(1)

    const brokerRead = <A>(self: Effect.Effect<A, DlqError>) =>
      self.pipe(
        Effect.mapError(unavailable),
        Effect.timeoutFail({
          duration: BROKER_READ_TIMEOUT,
          onTimeout: () => new Unavailable({ message: "RabbitMQ did not answer in time" })
        })
      )

    /** Audit rows for DLQ actions are best effort: the broker has acted already, whatever the database says. */
    const audit = (actor: Actor, action: string, entityId: string, changes: unknown) =>
      recordAudit({ actorId: actor.id, action, entity: "dlq", entityId, changes }).pipe(
        Effect.provideService(SqlClient.SqlClient, sql),
        Effect.catchAllCause((cause) => Effect.logWarning(`Could not record ${action} in the audit log`, cause))
      )

    const outbox = Effect.all([readBacklog, readUnroutable]).pipe(
      Effect.provideService(SqlClient.SqlClient, sql),
      Effect.map(([backlog, unroutable]) => ({ available: true, error: null, ...backlog, unroutable })),
      Effect.timeoutFail({ duration: SQL_TIMEOUT, onTimeout: () => new Error("PostgreSQL did not answer in time") }),
      Effect.catchAll((e) =>
        Effect.succeed({
          available: false,
          error: describe(e),
          backlog: 0,
          oldestUnpublishedSeconds: null,
          unroutable: 0
        })
      ),
      Effect.withSpan("Ops.outbox")
    )

    const worker = Effect.gen(function*() {
      const text = yield* http.get(metricsUrl).pipe(
        Effect.flatMap(HttpClientResponse.filterStatusOk),
        Effect.flatMap((response) => response.text),
        Effect.timeoutFail({
          duration: SCRAPE_TIMEOUT,
          onTimeout: () => new Error(`no answer within ${SCRAPE_TIMEOUT}`)
        })
      )
      const scrapedAt = DateTime.formatIso(yield* DateTime.now)
      return { available: true, error: null, url: metricsUrl, scrapedAt, ...workerStats(parse(text)) }
    }).pipe(
      Effect.catchAll((e) =>
        Effect.succeed({
          available: false,
          error: `worker metrics unavailable: ${describe(e)}`,
          url: metricsUrl,
          scrapedAt: null,
          ...workerStats([])
        })
      ),
      Effect.withSpan("Ops.worker")
    )

    /** Every live worker from the registry: one row each and their sums. */
    const workers = readWorkers(registry.ttl).pipe(
      Effect.provideService(SqlClient.SqlClient, sql),
      Effect.timeoutFail({ duration: SQL_TIMEOUT, onTimeout: () => new Error("PostgreSQL did not answer in time") }),
      Effect.flatMap((summary) =>
        Effect.map(DateTime.now, (now) => ({
          available: true,
          error: null,
          ttlSeconds: Duration.toSeconds(registry.ttl),
          live: summary.items.length,
          scrapedAt: DateTime.formatIso(now),
          ...summary
        }))
      ),
      Effect.catchAll((e) =>
        Effect.succeed({
          available: false,
          error: `worker registry unavailable: ${describe(e)}`,
          ttlSeconds: Duration.toSeconds(registry.ttl),
          live: 0,
          scrapedAt: null,
          items: [],
          ...workerStats([])
        })
      ),
      Effect.withSpan("Ops.workers")
    )

    /** The webhook subscriptions OpsDesk disabled: the dashboard flags them. */
    const webhooks = readDisabledWebhooks.pipe(
      Effect.provideService(SqlClient.SqlClient, sql),
      Effect.map((found) => ({ available: true, error: null, ...found })),
      Effect.timeoutFail({ duration: SQL_TIMEOUT, onTimeout: () => new Error("PostgreSQL did not answer in time") }),
      Effect.catchAll((e) => Effect.succeed({ available: false, error: describe(e), disabled: 0, items: [] })),
      Effect.withSpan("Ops.webhooks")
    )

    /** Depths first, then the listing: a listing borrows DLQ messages, which a depth read meanwhile would miss. */
    const broker = (limit: number) =>
      exclusive(Effect.gen(function*() {
        const queues = yield* brokerRead(dlq.queueDepths).pipe(
          Effect.map((items) => ({ available: true, error: null, items })),
          Effect.catchAll((e) => Effect.succeed({ available: false, error: e.message, items: [] }))
        )
        const depth = queues.items.find((q) => q.queue === DLQ)?.messages ?? null
        const entries = yield* brokerRead(dlq.list({ limit })).pipe(
          Effect.map((entries) => ({ available: true, error: null, depth, limit, entries })),
          Effect.catchAll((e) => Effect.succeed({ available: false, error: e.message, depth, limit, entries: [] }))
        )
        return { queues, dlq: entries }
      }))

    const overview = Effect.fn("Ops.overview")(function*(options: { readonly dlqLimit?: number | undefined }) {
      const [brokerPanels, outboxPanel, workerPanel, workersPanel, webhooksPanel] = yield* Effect.all(
        [broker(options.dlqLimit ?? DEFAULT_DLQ_LIMIT), outbox, worker, workers, webhooks],
        { concurrency: "unbounded" }
      )
      const result: Overview = {
        generatedAt: DateTime.formatIso(yield* DateTime.now),
        queues: brokerPanels.queues,
        outbox: outboxPanel,
        worker: workerPanel,
        workers: workersPanel,
        webhooks: webhooksPanel,
        dlq: brokerPanels.dlq
      }
      return result
    })

    const listDlq = Effect.fn("Ops.listDlq")(
      function*(options: { readonly limit?: number | undefined; readonly event?: string | undefined }) {
        return yield* exclusive(brokerRead(Effect.all({
          depth: dlq.depth,
          entries: dlq.list({
            limit: options.limit ?? DEFAULT_DLQ_LIMIT,
            ...(options.event === undefined ? {} : { event: options.event })
          })
        })))
      }
    )

    const replayOne = Effect.fn("Ops.replayOne")(function*(actor: Actor, id: string, force = false) {
      const result = yield* exclusive(dlq.replayOne({ id, force })).pipe(
        Effect.catchTags({
          DlqNotFound: (e) => Effect.fail(new DlqEntryNotFound({ message: e.message })),
          BrokerError: (e) => Effect.fail(unavailable(e)),
          TopologyError: (e) => Effect.fail(unavailable(e))
        })
      )
      yield* audit(actor, "dlq.replay", id, {
        replayed: result.replayed,
        skipped: result.skippedMessages,
        ...(force ? { force, forced: result.forced } : {})
      })
      if (result.replayed === 0) {
        const skipped = result.skippedMessages[0]
        const reason = skipped?.reason ?? "it was not replayed"
        return yield* new NotReplayable({
          message: `Cannot replay ${id}: ${reason}`,
          ...(skipped?.tooOld ? { tooOld: true } : {})
        })
      }
      return result
    })

    const replayAll = Effect.fn("Ops.replayAll")(function*(actor: Actor, force = false) {
      const result = yield* exclusive(dlq.replay({ all: true }, { force })).pipe(Effect.mapError(unavailable))
      yield* audit(actor, "dlq.replay", "all", {
        replayed: result.replayed,
        skipped: result.skipped,
        ...(force ? { force, forced: result.forced } : {})
      })
      return result
    })

    const discard = Effect.fn("Ops.discard")(function*(actor: Actor, id: string) {
      yield* exclusive(dlq.discard({ id })).pipe(
        Effect.catchTags({
          DlqNotFound: (e) => Effect.fail(new DlqEntryNotFound({ message: e.message })),
          BrokerError: (e) => Effect.fail(unavailable(e)),
          TopologyError: (e) => Effect.fail(unavailable(e))
        })
      )
      yield* audit(actor, "dlq.discard", id, {})
      return { discarded: id }
    })

    const purge = Effect.fn("Ops.purge")(function*(actor: Actor) {
      const purged = yield* exclusive(dlq.purge()).pipe(Effect.mapError(unavailable))
      yield* audit(actor, "dlq.purge", "all", { purged })
      return { purged }
    })

    return { overview, listDlq, replayOne, replayAll, discard, purge } as const
  }),
  // Its own Dlq (lazy: no RabbitMQ connection until the first DLQ read) and a fetch client for the scrape.
  dependencies: [Dlq.Default, FetchHttpClient.layer]
}) {}
